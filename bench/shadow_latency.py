"""Client latency with shadow evaluation on and off, at concurrency 16, and the queue dropping under load.

The same gateway config as `bench/shadow_replay.py` (local, cloud and judge are the instant replay
stand-ins, so what is measured is the gateway's own work), run four times on a fresh gateway each:
shadowing off, on at 5% (a production share), on at 100% with a 16-job queue (far more shadow work
than the workers can do: the queue must drop, and say so in /metrics), and off again (the noise).
Each run sends the same GSM8K prompts (the cache is off) after a warm-up; the medians and ratios are
against the first off run.

    python -m bench.shadow_latency [--requests 1500] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench.replay_standin import ROWS
from bench.shadow_replay import config, gateway
from tests.servers import free_port, running

WARMUP = 100


async def timed(url: str, prompts: list[str], concurrency: int) -> list[float]:
    samples: list[float] = []
    queue: asyncio.Queue[str] = asyncio.Queue()
    for p in prompts:
        queue.put_nowait(p)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:

        async def worker() -> None:
            while not queue.empty():
                body = {"model": "auto", "messages": [{"role": "user", "content": queue.get_nowait()}]}
                started = time.perf_counter()
                response = await client.post(f"{url}/v1/chat/completions", json=body)
                samples.append((time.perf_counter() - started) * 1000)
                response.raise_for_status()

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return samples


def shadow_counts(url: str) -> dict[str, float]:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return {
        found.group(1): float(found.group(2))
        for found in re.finditer(r'^router_shadow_jobs_total\{outcome="([\w-]+)"\} (\S+)$', text, re.M)
    }


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=1500)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    prompts = [str(r["prompt"]) for r in ROWS] * (1 + (args.requests + WARMUP) // len(ROWS))
    # "off" again at the end: how far two runs of the same thing differ here (the noise to read the others by).
    runs = [("off", 0.0, 256), ("on, 5%", 0.05, 256), ("on, 100%, queue 16", 1.0, 16), ("off, again", 0.0, 256)]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        port = free_port()
        standin = [sys.executable, "-m", "bench.replay_standin", "--port", str(port)]
        with running(standin, f"http://127.0.0.1:{port}/v1/models", work / "standin.log"):
            for i, (label, share, queue) in enumerate(runs):
                body = config(f"http://127.0.0.1:{port}/v1", work / f"ledger-{i}.sqlite", share, 0.0, True)
                body["shadow"]["queue_size"] = queue
                with gateway(work, f"run{i}", body, 0.7) as url:
                    asyncio.run(timed(url, prompts[:WARMUP], args.concurrency))
                    samples = asyncio.run(timed(url, prompts[WARMUP : WARMUP + args.requests], args.concurrency))
                    results.append((label, samples, shadow_counts(url)))
    base = statistics.median(results[0][1])
    print(f"client latency, {args.requests} requests at c={args.concurrency} (ms):")
    print(f"{'shadowing':<22} {'p50':>7} {'p99':>7} {'p50 ratio':>10}  shadow jobs")
    for label, samples, counts in results:
        jobs = ", ".join(f"{k} {int(v)}" for k, v in sorted(counts.items())) or "-"
        print(f"{label:<22} {statistics.median(samples):>7.1f} {pct(samples, 0.99):>7.1f} "
              f"{statistics.median(samples) / base:>9.2f}x  {jobs}")  # fmt: skip


if __name__ == "__main__":
    main()
