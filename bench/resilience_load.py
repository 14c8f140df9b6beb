"""Bounded load while the cloud and Redis die and come back: every request must be accounted for.

Starts its own Redis, fault-injecting stand-in cloud and gateway on 127.0.0.1, sends requests at a
fixed concurrency for a fixed time (it stops by itself), and meanwhile kills the cloud (SIGKILL),
restarts it, stops Redis and restarts it. Each request ends as one of:
  answered    200, by the cloud or (fallback) by the local model
  clear error an OpenAI-style error with a status, within the request's deadline
  lost        anything else: a hang past the deadline, a dropped connection, a malformed reply
and `lost` must be 0.

    python -m bench.resilience_load [--duration 30] [--concurrency 32] [--deadline 10]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import CLOUD_KEY_ENV
from tests.resilience.conftest import RESILIENCE_POLICY, resilient_config
from tests.servers import RedisServer, faulty_cloud_args, free_port, gateway_args, running


def classify(response: httpx.Response, stream: bool, elapsed_s: float, deadline_s: float) -> str:
    """What became of one request: `answered:<route>`, `clear-error:<status> <code>` or `lost:<why>`."""
    if elapsed_s > deadline_s + 2.0:  # a little slack for the client and the event loop
        return "lost:past-deadline"
    if response.status_code == 200:
        text = response.text
        if stream:
            if '"error"' in text:
                return "clear-error:stream-error-event"
            if not text.rstrip().endswith("data: [DONE]"):
                return "lost:truncated-stream"
        route = response.headers.get("x-router-route", "?")
        fallback = response.headers.get("x-router-fallback")
        return f"answered:{route}" + (f" ({fallback})" if fallback else "")
    try:
        error = response.json()["error"]
        assert error["message"] and "type" in error
    except (ValueError, KeyError, AssertionError, TypeError):
        return f"lost:malformed-{response.status_code}"
    return f"clear-error:{response.status_code} {error.get('code')}"


async def send(client: httpx.AsyncClient, url: str, body: dict[str, Any], deadline_s: float) -> str:
    started = time.monotonic()
    try:
        response = await client.post(url, json=body, headers={"x-router-timeout": str(deadline_s)})
    except httpx.HTTPError as exc:
        return f"lost:{type(exc).__name__}"
    return classify(response, bool(body.get("stream")), time.monotonic() - started, deadline_s)


def cloud_body(n: int) -> dict[str, Any]:
    return {
        "model": "cloud",
        "messages": [{"role": "user", "content": f"Say hi ({n})."}],
        "max_tokens": 4,
        "stream": n % 4 == 0,  # a quarter of the traffic streams
    }


async def load(
    url: str, duration_s: float, concurrency: int, deadline_s: float, body_of: Callable[[int], dict[str, Any]]
) -> collections.Counter[str]:
    """`concurrency` workers sending `body_of(n)` for request n until the time is up; outcomes counted."""
    outcomes: collections.Counter[str] = collections.Counter()
    stop_at = time.monotonic() + duration_s
    counter = iter(range(10**9))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=deadline_s + 30, limits=limits) as client:

        async def worker() -> None:
            while time.monotonic() < stop_at:
                outcomes[await send(client, url, body_of(next(counter)), deadline_s)] += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return outcomes


def chaos(cloud: dict[str, Any], redis: RedisServer, duration_s: float, events: list[str]) -> None:
    """Kill and restart the cloud, then stop and restart Redis, at fixed fractions of the run."""
    started = time.monotonic()

    def at(fraction: float) -> None:
        time.sleep(max(0.0, started + duration_s * fraction - time.monotonic()))

    at(0.15)
    cloud["process"].send_signal(signal.SIGKILL)
    cloud["process"].wait()
    events.append(f"{time.monotonic() - started:5.1f}s cloud killed")
    at(0.35)
    cloud["process"] = subprocess.Popen(cloud["args"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    events.append(f"{time.monotonic() - started:5.1f}s cloud restarted")
    at(0.5)
    redis.stop()
    events.append(f"{time.monotonic() - started:5.1f}s redis stopped")
    at(0.7)
    redis.start()
    events.append(f"{time.monotonic() - started:5.1f}s redis restarted")


@dataclass
class ChaosGateway:
    """A gateway on its own Redis and fault-injecting stand-in cloud, both of which `chaos` may kill."""

    url: str
    process: subprocess.Popen[bytes]
    cloud: dict[str, Any]
    redis: RedisServer


@contextlib.contextmanager
def chaos_gateway(log_dir: Path | None) -> Iterator[ChaosGateway]:
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = log_dir or Path(tmp_dir)
        tmp.mkdir(parents=True, exist_ok=True)
        redis = RedisServer(tmp)
        redis.start()
        cloud_port = free_port()
        cloud: dict[str, Any] = {"args": faulty_cloud_args(cloud_port)}
        cloud["process"] = subprocess.Popen(cloud["args"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        config = resilient_config(tmp / "router.yaml", f"http://127.0.0.1:{cloud_port}/v1")
        port = free_port()
        env = {CLOUD_KEY_ENV: "sk-faulty", "ROUTER_REDIS_URL": redis.url}
        base = f"http://127.0.0.1:{port}"
        try:
            with running(gateway_args(port, config, RESILIENCE_POLICY), f"{base}/readyz", tmp / "gw.log", env) as gw:
                yield ChaosGateway(base, gw, cloud, redis)
        finally:
            cloud["process"].kill()
            redis.stop()


def run(
    duration_s: float = 30.0, concurrency: int = 32, deadline_s: float = 10.0, log_dir: Path | None = None
) -> dict[str, Any]:
    events: list[str] = []
    with chaos_gateway(log_dir) as gw:
        loop = asyncio.new_event_loop()
        chaos_done = loop.run_in_executor(None, chaos, gw.cloud, gw.redis, duration_s, events)
        outcomes = loop.run_until_complete(
            load(f"{gw.url}/v1/chat/completions", duration_s, concurrency, deadline_s, cloud_body)
        )
        loop.run_until_complete(chaos_done)
        loop.close()
    total = sum(outcomes.values())
    lost = sum(n for kind, n in outcomes.items() if kind.startswith("lost"))
    return {"total": total, "lost": lost, "outcomes": dict(outcomes.most_common()), "events": events}


def arguments(doc: str | None, duration: float, concurrency: int) -> argparse.Namespace:
    """The load benchmarks' shared options."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=duration)
    parser.add_argument("--concurrency", type=int, default=concurrency)
    parser.add_argument("--deadline", type=float, default=10.0)
    parser.add_argument("--log-dir", type=Path, help="Keep the gateway's log and config here.")
    return parser.parse_args()


def print_outcomes(result: dict[str, Any]) -> None:
    for event in result["events"]:
        print("event ", event)
    for kind, n in result["outcomes"].items():
        print(f"{n:7d}  {kind}")
    print(f"total {result['total']} ({result['total'] / result.get('duration_s', 1):.1f}/s), lost {result['lost']}")


def main() -> None:
    args = arguments(__doc__, 30.0, 32)
    result = {**run(args.duration, args.concurrency, args.deadline, args.log_dir), "duration_s": args.duration}
    print_outcomes(result)
    print(json.dumps(result))
    sys.exit(1 if result["lost"] else 0)


if __name__ == "__main__":
    main()
