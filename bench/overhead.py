"""What the gateway adds to a request, against LiteLLM's proxy, both in front of one fixed-answer upstream.

    python -m bench.overhead [--duration 10] [--concurrency 1,16,64]

The upstream is nginx (Debian's package) returning a canned chat completion, and a canned SSE stream on
a second path: far faster than any proxy, so what is measured is the proxies. The load generator is
wrk (Debian's package) with a Lua body, in its own process, bounded in time. In one run, interleaved
per concurrency level: direct to nginx (the baseline), through hybrid-router (cloud route, cache off,
the direct OpenAI-compatible backend), and through LiteLLM's proxy (`litellm[proxy]` installed by this
script into its own virtual environment under bench/.work, `LITELLM_LOCAL_MODEL_COST_MAP=True`, one
worker, no database). Prints requests/s, p50/p99 latency and the latency each adds over direct, then
streaming time to first byte, then start-up time to ready and resident memory after the load.
Needs `nginx` and `wrk` (`apt-get install nginx-light wrk`).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx

from tests.servers import free_port

HERE = Path(__file__).parent
WORK = HERE / ".work"
MODEL = "gpt-4o-mini"
KEY = "sk-bench-5f0c8a1e9d2b4c7a8e6f1d3b2a9c4e7f"
"""Both proxies authenticate every request with this key (LiteLLM's proxy refuses to start without one)."""
BODY = {"model": MODEL, "messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 16, "temperature": 0}
CANNED = {
    "id": "chatcmpl-bench", "object": "chat.completion", "created": 1_700_000_000, "model": MODEL,
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "Hello from nginx."}, "finish_reason": "stop"}
    ],
    "usage": {"prompt_tokens": 9, "completion_tokens": 5, "total_tokens": 14},
}  # fmt: skip


def _chunk(delta: dict, finish: str | None = None, usage: dict | None = None) -> str:
    body = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1_700_000_000, "model": MODEL,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}] if usage is None else []}  # fmt: skip
    if usage is not None:
        body["usage"] = usage
    return f"data: {json.dumps(body, separators=(',', ':'))}\n\n"


CANNED_SSE = (
    _chunk({"role": "assistant", "content": "Hello"})
    + _chunk({"content": " from nginx."})
    + _chunk({}, "stop")
    + _chunk({}, usage=CANNED["usage"])
    + "data: [DONE]\n\n"
)


def _nginx_conf(port: int, work: Path) -> str:
    def literal(text: str) -> str:
        return "'" + text.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n") + "'"

    return f"""
worker_processes 1;
daemon off;
user root;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {work}/body; proxy_temp_path {work}/proxy; fastcgi_temp_path {work}/fcgi;
    uwsgi_temp_path {work}/uwsgi; scgi_temp_path {work}/scgi;
    keepalive_requests 1000000;
    server {{
        listen 127.0.0.1:{port};
        location = /v1/chat/completions {{ default_type application/json; return 200 {literal(json.dumps(CANNED))}; }}
        location = /sse/v1/chat/completions {{ default_type text/event-stream; return 200 {literal(CANNED_SSE)}; }}
        location = /v1/models {{ default_type application/json; return 200 '{{"object":"list","data":[]}}'; }}
    }}
}}
"""


def wait_ready(url: str, process: subprocess.Popen, timeout_s: float = 300) -> float:
    """Seconds until `url` answers 200 (polled every 50 ms); fails if the process exits first."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if process.poll() is not None:
            raise RuntimeError(f"{url}: the server exited with {process.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return time.monotonic() - started
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{url} was not ready within {timeout_s} s")


@contextmanager
def _process(args: list[str], log: Path, env: dict[str, str] | None = None, cwd: Path | None = None):
    with log.open("w") as out:
        process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
                                   start_new_session=True, cwd=cwd)  # fmt: skip
    try:
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)


def _rss_mb(pid: int) -> float:
    """Resident memory of a process and its children, in MB."""
    total = 0
    pids = [pid]
    while pids:
        current = pids.pop()
        try:
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
            pids.extend(int(c) for c in children)
        except OSError:
            continue
    return total / 1024


def litellm_venv() -> Path:
    venv = WORK / "litellm-venv"
    if not (venv / "bin" / "litellm").exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "litellm[proxy]"], check=True)
    return venv


def wrk(url: str, concurrency: int, duration_s: int, work: Path) -> dict[str, float]:
    script = work / "post.lua"
    script.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = '{json.dumps(BODY)}'\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
        f'wrk.headers["Authorization"] = "Bearer {KEY}"\n'
    )
    threads = min(2, concurrency)
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{concurrency}", f"-d{duration_s}s", "--latency", "--timeout", "30s",
         "-s", str(script), url],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip

    def ms(token: str) -> float:
        value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", token).groups()
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    result = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))}
    for pct in ("50", "99"):
        result[f"p{pct}"] = ms(re.search(rf"^\s+{pct}%\s+(\S+)", out, re.M).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    result["errors"] = float(errors.group(1)) if errors else 0.0
    if socket_errors:
        result["errors"] += sum(int(n) for n in re.findall(r"\d+", socket_errors.group(1)))
    return result


def ttfb_ms(url: str, model: str, n: int) -> float:
    body = {**BODY, "model": model, "stream": True}
    samples = []
    with httpx.Client(timeout=30, headers={"authorization": f"Bearer {KEY}"}) as client:
        for _ in range(n):
            started = time.perf_counter()
            with client.stream("POST", url, json=body) as response:
                response.raise_for_status()
                chunks = response.iter_bytes()
                next(chunks)
                samples.append((time.perf_counter() - started) * 1000)
                for _rest in chunks:
                    pass
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=10, help="seconds of load per target and level")
    parser.add_argument("--concurrency", default="1,16,64")
    parser.add_argument("--streams", type=int, default=100, help="sequential streamed requests per target")
    parser.add_argument(
        "--before",
        type=Path,
        help="another checkout of hybrid-router, measured in the same run "
        "beside this one (a before/after comparison of a change)",
    )
    parser.add_argument("--skip-litellm", action="store_true", help="leave LiteLLM's proxy out")
    args = parser.parse_args()
    for tool in ("nginx", "wrk"):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            sys.exit(f"{tool} is needed: apt-get install nginx-light wrk")
    WORK.mkdir(exist_ok=True)
    venv = None if args.skip_litellm else litellm_venv()
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        work = Path(tmp)
        nginx_port, ours_port, theirs_port, before_port = free_port(), free_port(), free_port(), free_port()
        (work / "nginx.conf").write_text(_nginx_conf(nginx_port, work))
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        stack.enter_context(_process([nginx, "-c", str(work / "nginx.conf")], work / "nginx.log"))
        upstream = f"http://127.0.0.1:{nginx_port}"
        time.sleep(0.5)

        (work / "router.yaml").write_text(json.dumps({
            "models": {
                "gemma-3-270m": {"engine": "llama-cpp", "package": "gemma-3-270m"},
                MODEL: {"engine": "openai-compatible", "tier": "cloud", "model": MODEL, "api_base": [f"{upstream}/v1"],
                        "max_concurrency": 1024},
                f"{MODEL}-sse": {"engine": "openai-compatible", "tier": "cloud", "model": MODEL,
                                 "api_base": [f"{upstream}/sse/v1"], "max_concurrency": 1024},
            },
            "routes": {"local": "gemma-3-270m", "cloud": MODEL},
            "cache": {"enabled": False},
            "ledger": {"path": str(work / "ledger.sqlite")},
        }))  # fmt: skip
        (work / "policy.yaml").write_text("version: 1\ndefault: {route: cloud}\n")
        (work / "litellm.yaml").write_text(json.dumps({
            "model_list": [
                {"model_name": MODEL, "litellm_params": {"model": f"openai/{MODEL}", "api_base": f"{upstream}/v1",
                                                         "api_key": "sk-bench"}},
                {"model_name": f"{MODEL}-sse", "litellm_params": {"model": f"openai/{MODEL}",
                                                                  "api_base": f"{upstream}/sse/v1",
                                                                  "api_key": "sk-bench"}},
            ],
            "general_settings": {"master_key": KEY},
        }))  # fmt: skip

        ours_args = [sys.executable, "-m", "router", "serve", "--host", "127.0.0.1", "--port", str(ours_port),
                     "--config", str(work / "router.yaml"), "--policy", str(work / "policy.yaml"),
                     "--log-level", "warning"]  # fmt: skip
        theirs_args = [str(venv / "bin" / "litellm"), "--config", str(work / "litellm.yaml"), "--host", "127.0.0.1",
                       "--port", str(theirs_port), "--num_workers", "1"]  # fmt: skip
        ours = stack.enter_context(_process(ours_args, work / "ours.log", {"ROUTER_API_KEYS": f"bench:{KEY}"}))
        ours_ready = wait_ready(f"http://127.0.0.1:{ours_port}/readyz", ours)
        targets = {
            "direct (nginx, baseline)": f"{upstream}/v1/chat/completions",
            "hybrid-router": f"http://127.0.0.1:{ours_port}/v1/chat/completions",
        }
        if args.before is not None:  # the same gateway command, its code from the other checkout
            before_args = [a if a != str(ours_port) else str(before_port) for a in ours_args]
            env = {"ROUTER_API_KEYS": f"bench:{KEY}", "PYTHONPATH": str(args.before.resolve())}
            before = stack.enter_context(_process(before_args, work / "before.log", env, cwd=args.before.resolve()))
            wait_ready(f"http://127.0.0.1:{before_port}/readyz", before)
            targets["hybrid-router (before)"] = f"http://127.0.0.1:{before_port}/v1/chat/completions"
        if venv is not None:
            quiet = {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR"}
            theirs = stack.enter_context(_process(theirs_args, work / "litellm.log", quiet))
            theirs_ready = wait_ready(f"http://127.0.0.1:{theirs_port}/health/readiness", theirs)
            targets["LiteLLM proxy"] = f"http://127.0.0.1:{theirs_port}/v1/chat/completions"
        for name, url in targets.items():  # warm-up, and proof that each answers
            reply = httpx.post(url, json=BODY, headers={"authorization": f"Bearer {KEY}"}, timeout=30)
            reply.raise_for_status()
            assert reply.json()["choices"][0]["message"]["content"] == "Hello from nginx.", name
            wrk(url, 8, 2, work)

        print(f"Upstream: nginx on 127.0.0.1; load: wrk, {args.duration} s per target and level, interleaved.\n")
        print("| concurrency | target | requests/s | p50 ms | p99 ms | added p50 ms | added p99 ms | errors |")
        print("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
        summary: dict[int, dict[str, dict[str, float]]] = {}
        for level in (int(c) for c in args.concurrency.split(",")):
            summary[level] = {name: wrk(url, level, args.duration, work) for name, url in targets.items()}
            direct = summary[level]["direct (nginx, baseline)"]
            for name, r in summary[level].items():
                measured = f"{r['rps']:.0f} | {r['p50']:.2f} | {r['p99']:.2f}"
                added = f"{r['p50'] - direct['p50']:.2f} | {r['p99'] - direct['p99']:.2f}"
                print(f"| {level} | {name} | {measured} | {added} | {r['errors']:.0f} |")
        for other in ("hybrid-router (before)", "LiteLLM proxy"):
            if other not in targets:
                continue
            print(f"\n| concurrency | added p50: ours / {other} | added p99: ours / {other} | req/s: ours / {other} |")
            print("| ---: | ---: | ---: | ---: |")
            for level, results in summary.items():
                d, o, t = results["direct (nginx, baseline)"], results["hybrid-router"], results[other]
                print(f"| {level} | {(o['p50'] - d['p50']) / (t['p50'] - d['p50']):.3f} | "
                      f"{(o['p99'] - d['p99']) / (t['p99'] - d['p99']):.3f} | {o['rps'] / t['rps']:.2f} |")  # fmt: skip

        print(f"\nStreaming, time to first byte (median of {args.streams} sequential requests):\n")
        print("| target | TTFB p50 ms |")
        print("| --- | ---: |")
        stream_urls = {"direct (nginx, baseline)": (f"{upstream}/sse/v1/chat/completions", MODEL)}
        stream_urls |= {
            name: (url, f"{MODEL}-sse") for name, url in targets.items() if name.startswith(("hybrid", "Lite"))
        }
        for name, (url, model) in stream_urls.items():
            print(f"| {name} | {ttfb_ms(url, model, args.streams):.2f} |")

        print("\n| process | start to ready s | RSS after the load MB |")
        print("| --- | ---: | ---: |")
        print(f"| hybrid-router (loads the local model, embedder) | {ours_ready:.1f} | {_rss_mb(ours.pid):.0f} |")
        if venv is not None:
            print(f"| LiteLLM proxy | {theirs_ready:.1f} | {_rss_mb(theirs.pid):.0f} |")


if __name__ == "__main__":
    main()
