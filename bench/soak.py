"""Soak: a long bounded run at high concurrency with every kind of traffic, while the cloud dies and
comes back and Redis is restarted; no request may be lost, and the gateway must not grow.

Starts its own Redis, fault-injecting stand-in cloud and gateway (the local tier is the real Gemma 3
270M in process; the cache is on, exact and semantic) and sends, at a fixed concurrency for a fixed
time: cloud requests with distinct prompts, local ones, repeats that the cache answers, and a quarter of
all of them streamed. Meanwhile `resilience_load.chaos` kills the cloud (SIGKILL) at 15% of the run,
restarts it at 35%, stops Redis at 50% and starts it at 70%. Every 5 s it samples the gateway process:
RSS, open file descriptors, threads, and asyncio tasks (`router_event_loop_tasks` from /metrics).

Prints outcomes (`lost` must be 0), throughput, and the resource series' first and last values with
RSS's slope after warm-up (least squares over the second half of the run, in MB per minute).

    python -m bench.soak [--duration 600] [--concurrency 64]
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from bench.resilience_load import arguments, chaos, chaos_gateway, load, print_outcomes

SAMPLE_EVERY_S = 5.0
REPEATED = ["What is the capital of France?", "Name a colour of the rainbow.", "How many legs does a spider have?"]


def body_for(n: int) -> dict[str, Any]:
    """The mix: 1 in 5 local, 1 in 5 a repeat (a cache hit after the first), the rest distinct cloud
    prompts; every fourth request streams."""
    if n % 5 == 0:
        model, text = "local", f"Say hi ({n})."
    elif n % 5 == 1:
        model, text = "cloud", REPEATED[n % len(REPEATED)]
    else:
        model, text = "cloud", f"Say hello to visitor number {n}."
    return {
        "model": model,
        "messages": [{"role": "user", "content": text}],
        "max_tokens": 4,
        "temperature": 0,
        "stream": n % 4 == 0,
    }  # fmt: skip  (temperature 0: a sampled request is never cached)


def _status_kb(pid: int, field: str) -> int:
    text = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(rf"^{field}:\s+(\d+)", text, re.M).group(1))  # type: ignore[union-attr]


def sample(pid: int, metrics_url: str) -> dict[str, float]:
    try:
        scraped = httpx.get(metrics_url, timeout=5).text
        tasks = float(re.search(r"^router_event_loop_tasks (\S+)", scraped, re.M).group(1))  # type: ignore[union-attr]
    except (httpx.HTTPError, AttributeError):
        tasks = float("nan")
    return {
        "rss_mb": _status_kb(pid, "VmRSS") / 1024,
        "fds": float(len(os.listdir(f"/proc/{pid}/fd"))),
        "threads": float(_status_kb(pid, "Threads")),
        "tasks": tasks,
    }


def _monitor(pid: int, metrics_url: str, stop: threading.Event, started: float, series: list[dict[str, float]]) -> None:
    while not stop.wait(SAMPLE_EVERY_S):
        series.append({"t": time.monotonic() - started, **sample(pid, metrics_url)})


def slope_per_min(series: list[dict[str, float]], key: str) -> float:
    """Least-squares slope of the second half of the run (after warm-up), per minute."""
    half = series[len(series) // 2 :]
    if len(half) < 3:
        return float("nan")
    t = np.array([s["t"] for s in half]) / 60
    y = np.array([s[key] for s in half])
    return float(np.polyfit(t, y, 1)[0])


def run(duration_s: float, concurrency: int, deadline_s: float, log_dir: Path | None) -> dict[str, Any]:
    series: list[dict[str, float]] = []
    events: list[str] = []
    with chaos_gateway(log_dir) as gw:
        pid, metrics = gw.process.pid, f"{gw.url}/metrics"
        started = time.monotonic()
        series.append({"t": 0.0, **sample(pid, metrics)})
        stop = threading.Event()
        monitor = threading.Thread(target=_monitor, args=(pid, metrics, stop, started, series))
        monitor.start()
        loop = asyncio.new_event_loop()
        chaos_done = loop.run_in_executor(None, chaos, gw.cloud, gw.redis, duration_s, events)
        outcomes = loop.run_until_complete(
            load(f"{gw.url}/v1/chat/completions", duration_s, concurrency, deadline_s, body_for)
        )
        loop.run_until_complete(chaos_done)
        loop.close()
        time.sleep(2)  # settle: requests done, background tasks drained
        stop.set()
        monitor.join()
        series.append({"t": time.monotonic() - started, **sample(pid, metrics)})
    total = sum(outcomes.values())
    lost = sum(n for kind, n in outcomes.items() if kind.startswith("lost"))
    first, last = series[0], series[-1]
    return {
        "duration_s": duration_s,
        "concurrency": concurrency,
        "total": total,
        "lost": lost,
        "requests_per_s": round(total / duration_s, 1),
        "outcomes": dict(outcomes.most_common()),
        "events": events,
        "rss_mb": [round(first["rss_mb"], 1), round(max(s["rss_mb"] for s in series), 1), round(last["rss_mb"], 1)],
        "rss_slope_mb_per_min_after_warmup": round(slope_per_min(series, "rss_mb"), 2),
        "fds_slope_per_min_after_warmup": round(slope_per_min(series[:-1], "fds"), 2),
        "tasks_slope_per_min_after_warmup": round(slope_per_min(series[:-1], "tasks"), 2),
        "fds": [first["fds"], max(s["fds"] for s in series), last["fds"]],
        "threads": [first["threads"], max(s["threads"] for s in series), last["threads"]],
        "tasks": [first["tasks"], max(s["tasks"] for s in series), last["tasks"]],
        "samples": len(series),
        "series": series,
    }


def main() -> None:
    args = arguments(__doc__, 600.0, 64)
    result = run(args.duration, args.concurrency, args.deadline, args.log_dir)
    print_outcomes(result)
    for key in ("rss_mb", "fds", "threads", "tasks"):
        print(f"{key:8s} start / max / end: {' / '.join(f'{v:g}' for v in result[key])}")
    print(f"RSS slope after warm-up: {result['rss_slope_mb_per_min_after_warmup']} MB/min; open files "
          f"{result['fds_slope_per_min_after_warmup']}/min; tasks {result['tasks_slope_per_min_after_warmup']}/min "
          "(under load, the last sample after it excluded)")  # fmt: skip
    if args.log_dir:
        (args.log_dir / "soak-series.json").write_text(json.dumps(result["series"]))
    print(json.dumps({k: v for k, v in result.items() if k != "series"}))
    sys.exit(1 if result["lost"] else 0)


if __name__ == "__main__":
    main()
