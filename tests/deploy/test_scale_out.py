"""Scale-out: three gateway processes share one Redis (a single server, or a three-node Redis Cluster)
and behave as one gateway.

A cached answer from one replica is a hit on the others; ledger totals and budgets add up across them
exactly; a circuit opened by one is open for all; and a replica stopped with SIGTERM in the middle of
load finishes every request it had accepted (streams included) before it exits.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
import yaml

from tests.conftest import FaultyCloud, Gateway
from tests.servers import RedisCluster, RedisServer, free_port, gateway_args, running

REPLICAS = 3
POLICY = "default:\n  route: cloud\n"


def config(path: Path, cloud_v1: str, redis_prefix_team: str) -> Path:
    data = {
        "models": {
            "dead-local": {"engine": "openai-compatible", "tier": "local", "model": "m",
                           "api_base": f"http://127.0.0.1:{free_port()}/v1", "retries": {"attempts": 1}},
            "stand-in": {"engine": "openai-compatible", "tier": "cloud", "model": "stand-in", "api_base": cloud_v1,
                         "retries": {"attempts": 1}, "price": {"output_per_1k_usd": 200.0},  # $1.00 an answer
                         "breaker": {"consecutive_failures": 3, "cooldown_s": 60, "min_calls": 1000}},
        },
        "routes": {"local": "dead-local", "cloud": "stand-in"},
        "cache": {"enabled": True, "semantic": False},
        "ledger": {"path": str(path.parent / "ledger.sqlite"), "reference_model": "stand-in"},
        "limits": {"teams": {redis_prefix_team: {"usd_per_day": 4.5}}},
        "server": {"shutdown_grace_s": 20},
    }  # fmt: skip
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="module", params=["redis", "cluster"])
def replicas(
    request: pytest.FixtureRequest, faulty_cloud_session: FaultyCloud, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[list[Gateway], list[subprocess.Popen[bytes]]]]:
    """Three replicas on a Redis of their own, or on a fresh three-node Redis Cluster (a fresh ledger
    either way: totals are this module's requests only)."""
    tmp = tmp_path_factory.mktemp("scale-out")
    redis: RedisServer | RedisCluster = RedisServer(tmp) if request.param == "redis" else RedisCluster(tmp)
    redis.start()
    (tmp / "policy.yaml").write_text(POLICY)
    gateways: list[Gateway] = []
    processes: list[subprocess.Popen[bytes]] = []
    with contextlib.ExitStack() as stack:
        for i in range(REPLICAS):
            port = free_port()
            # Each replica its own SQLite file, as on separate machines: only Redis is shared.
            cfg = config(tmp / f"router-{i}.yaml", faulty_cloud_session.v1, "budgeted")
            data = yaml.safe_load(cfg.read_text())
            data["ledger"]["path"] = str(tmp / f"ledger-{i}.sqlite")
            cfg.write_text(yaml.safe_dump(data))
            log = tmp / f"replica-{i}.log"
            process = stack.enter_context(
                running(
                    gateway_args(port, cfg, tmp / "policy.yaml"),
                    f"http://127.0.0.1:{port}/readyz",
                    log,
                    env={"ROUTER_REDIS_URL": redis.url},
                )
            )
            gateways.append(Gateway(f"http://127.0.0.1:{port}", log))
            processes.append(process)
        try:
            yield gateways, processes
        finally:
            redis.stop()


def chat(gw: Gateway, text: str, team: str = "anyone", **kw: object) -> openai.types.chat.ChatCompletion:
    client = openai.OpenAI(base_url=gw.v1, api_key="unused", max_retries=0, default_headers={"x-team": team})
    return client.chat.completions.create(
        model="auto", messages=[{"role": "user", "content": text}], temperature=0, **kw
    )


def headers_of(gw: Gateway, text: str, team: str = "anyone") -> httpx.Headers:
    response = httpx.post(
        f"{gw.v1}/chat/completions",
        headers={"x-team": team},
        json={"model": "auto", "messages": [{"role": "user", "content": text}], "temperature": 0},
        timeout=30,
    )
    response.raise_for_status()
    return response.headers


def test_an_answer_cached_by_one_replica_is_a_hit_on_the_others(
    replicas: tuple[list[Gateway], list[subprocess.Popen[bytes]]], faulty_cloud: FaultyCloud
) -> None:
    gateways = replicas[0]
    assert headers_of(gateways[0], "what is the capital of France?")["x-router-cache"] == "miss"
    deadline = time.monotonic() + 10  # the store is asynchronous to the answer: give it a moment
    hits = []
    for gw in gateways[1:]:
        while time.monotonic() < deadline:
            h = headers_of(gw, "what is the capital of France?")
            if h["x-router-cache"] == "hit-exact":
                hits.append(h["x-router-route"])
                break
            time.sleep(0.1)
    assert hits == ["cache", "cache"]
    assert len(faulty_cloud.requests()) == 1  # one model call served three replicas


def _totals(gw: Gateway) -> dict:
    return httpx.get(f"{gw.v1}/router/stats", params={"window": "1h"}, timeout=10).json()["totals"]


def test_ledger_totals_and_budgets_add_up_across_replicas(
    replicas: tuple[list[Gateway], list[subprocess.Popen[bytes]]], faulty_cloud: FaultyCloud
) -> None:
    gateways = replicas[0]
    time.sleep(1.5)  # earlier tests' records flushed
    before = _totals(gateways[0])
    for i in range(9):  # 3 per replica, all distinct (no cache hits), $1.00 each
        chat(gateways[i % REPLICAS], f"question number {i}")
    time.sleep(2.5)  # each replica flushes its records once a second
    totals = [_totals(gw) for gw in gateways]
    assert totals[0] == totals[1] == totals[2]  # every replica reports the one shared ledger
    assert totals[0]["requests"] - before["requests"] == 9
    assert totals[0]["cost_usd"] - before["cost_usd"] == pytest.approx(9.0, abs=1e-9)
    # The team's budget is $4.50 a day: whichever replicas answer, the fifth answer crosses it.
    answered = 0
    for i in range(9):
        try:
            chat(gateways[i % REPLICAS], f"budgeted {i}", team="budgeted")
            answered += 1
        except openai.RateLimitError as exc:
            assert exc.body["code"] == "budget_exceeded"
            break
    assert answered == 5


def test_sigterm_mid_load_loses_no_accepted_request(
    replicas: tuple[list[Gateway], list[subprocess.Popen[bytes]]], faulty_cloud: FaultyCloud
) -> None:
    gateways, processes = replicas
    faulty_cloud.set("ok", chunk_delay_s=0.4)  # a stream takes ~2 s: SIGTERM lands in the middle of some
    victim = gateways[2]
    results: list[tuple[str, float, float, str]] = []  # (replica, started, ended, outcome)
    lock = threading.Lock()
    stop = threading.Event()

    def load(worker: int) -> None:
        n = 0
        while not stop.is_set():
            gw = gateways[(worker + n) % REPLICAS]
            n += 1
            started = time.monotonic()
            try:
                with httpx.stream(
                    "POST",
                    f"{gw.v1}/chat/completions",
                    json={
                        "model": "cloud",
                        "stream": True,
                        "messages": [{"role": "user", "content": f"w{worker} {n}"}],
                    },
                    headers={"cache-control": "no-store"},
                    timeout=30,
                ) as response:
                    body = "".join(response.iter_text())
                    outcome = (
                        "ok"
                        if response.status_code == 200 and body.rstrip().endswith("data: [DONE]")
                        else (f"broken {response.status_code}: {body[-200:]}")
                    )
            except httpx.ConnectError:
                outcome = "not-accepted"  # refused before it was accepted: a load balancer retries it elsewhere
            except httpx.HTTPError as exc:
                outcome = f"dropped after it was accepted: {exc!r}"
            with lock:
                results.append((gw.url, started, time.monotonic(), outcome))

    threads = [threading.Thread(target=load, args=(w,)) for w in range(6)]
    for t in threads:
        t.start()
    try:
        time.sleep(3.0)
        signalled = time.monotonic()
        processes[2].send_signal(signal.SIGTERM)
        exit_code = processes[2].wait(timeout=30)
        time.sleep(1.0)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
        faulty_cloud.set("ok", chunk_delay_s=0.01)
    # uvicorn re-raises the signal once it has shut down cleanly, so the exit status says SIGTERM.
    assert exit_code in (0, -signal.SIGTERM)
    assert [r for r in results if r[3] not in ("ok", "not-accepted")] == []
    in_flight = [r for r in results if r[0] == victim.url and r[1] < signalled < r[2]]
    assert in_flight and all(r[3] == "ok" for r in in_flight)  # streams it was serving when signalled finished
    assert any(r[0] == victim.url and r[3] == "not-accepted" for r in results)  # and it stopped accepting
    log = victim.log.read_text()
    assert "Shutting down" in log and "Application shutdown complete" in log


def test_a_circuit_opened_by_one_replica_is_open_on_the_others(  # last: it leaves the circuit open
    replicas: tuple[list[Gateway], list[subprocess.Popen[bytes]]], faulty_cloud: FaultyCloud
) -> None:
    gateways = replicas[0]
    faulty_cloud.set("error500")
    for i in range(3):  # three failures in a row open the stand-in's circuit
        with pytest.raises(openai.APIStatusError):
            chat(gateways[0], f"failing {i}")
    calls = len(faulty_cloud.calls())
    assert calls == 3
    for gw in gateways[1:2]:  # (the third replica was stopped by the SIGTERM test)
        with pytest.raises(openai.APIStatusError) as failed:
            chat(gw, "is the circuit open here too?")
        assert "circuit open" in failed.value.message
    assert len(faulty_cloud.calls()) == calls  # the other replicas never called the failing cloud
