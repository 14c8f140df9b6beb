"""The local path: tokens/s and time to first token through the gateway vs. llama-cpp-python called
directly, same model, prompt and settings, interleaved in one run.

    python -m bench.local_path [--runs 6] [--max-tokens 128]

Direct: `Llama(...).create_completion(stream=True)` in this process. Gateway: `router serve` with the
same GGUF and thread count, a streamed `/v1/completions` (text, so both see the same raw prompt) with
the cache off. Both greedy (temperature 0) with the same sampling settings, so both generate the same
tokens. Tokens/s counts completion tokens over the time from the first token to the last; TTFT is from
sending the request to the first token.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

from router.backends.model_files import default_gguf_path
from router.config import Settings
from tests.servers import free_port, running

PROMPT = "The history of the printing press begins"
THREADS = 2
N_CTX = 2048


def direct_run(llama, max_tokens: int) -> tuple[float, float, int]:
    started = time.perf_counter()
    first = None
    tokens = 0
    for chunk in llama.create_completion(
        PROMPT, max_tokens=max_tokens, temperature=0.0, top_p=1.0, stream=True, seed=1
    ):
        if chunk["choices"][0]["text"]:
            tokens += 1  # llama-cpp-python streams one chunk per token (text may be held back at a stop)
            first = first or time.perf_counter()
    done = time.perf_counter()
    return (first - started) * 1000, done - first, tokens


def gateway_run(client: httpx.Client, url: str, max_tokens: int) -> tuple[float, float, int]:
    body = {"model": "local", "prompt": PROMPT, "max_tokens": max_tokens, "temperature": 0, "seed": 1,
            "stream": True, "stream_options": {"include_usage": True}}  # fmt: skip
    started = time.perf_counter()
    first = None
    usage = 0
    with client.stream("POST", url, json=body, headers={"cache-control": "no-store, no-cache"}) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if chunk.get("usage"):
                usage = chunk["usage"]["completion_tokens"]
            elif chunk["choices"] and chunk["choices"][0]["text"]:
                first = first or time.perf_counter()
    done = time.perf_counter()
    return (first - started) * 1000, done - first, usage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=6)
    parser.add_argument("--max-tokens", type=int, default=128)
    args = parser.parse_args()
    from llama_cpp import Llama

    gguf = default_gguf_path(Settings().model_dir)
    llama = Llama(model_path=str(gguf), n_ctx=N_CTX, n_threads=THREADS, n_batch=512, verbose=False)
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "router.yaml"
        config.write_text(json.dumps({
            "models": {"gemma-3-270m": {"engine": "llama-cpp", "model_path": str(gguf), "n_ctx": N_CTX,
                                        "n_threads": THREADS, "max_queue_wait_s": 600}},
            "routes": {"local": "gemma-3-270m", "cloud": []},
            "cache": {"enabled": False},
            "ledger": {"path": f"{tmp}/ledger.sqlite"},
        }))  # fmt: skip
        port = free_port()
        args_ = [sys.executable, "-m", "router", "serve", "--port", str(port), "--config", str(config),
                 "--log-level", "warning"]  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        with running(args_, f"{url}/readyz", Path(tmp) / "gw.log"), httpx.Client(timeout=600) as client:
            direct_run(llama, 16)  # warm-up both
            gateway_run(client, f"{url}/v1/completions", 16)
            direct, gateway = [], []
            for _ in range(args.runs):  # interleaved, so both see the same machine
                direct.append(direct_run(llama, args.max_tokens))
                gateway.append(gateway_run(client, f"{url}/v1/completions", args.max_tokens))

    def summary(runs: list[tuple[float, float, int]]) -> tuple[float, float, int]:
        return (statistics.median(r[0] for r in runs), statistics.median(r[2] / r[1] for r in runs),
                int(statistics.median(r[2] for r in runs)))  # fmt: skip

    d_ttft, d_tps, d_tokens = summary(direct)
    g_ttft, g_tps, g_tokens = summary(gateway)
    print(f"Model {gguf.name}, {THREADS} threads, prompt {PROMPT!r}, up to {args.max_tokens} tokens, "
          f"{args.runs} runs each, interleaved.\n")  # fmt: skip
    print("| path | tokens | TTFT p50 ms | tokens/s p50 | tokens/s vs direct |")
    print("| --- | ---: | ---: | ---: | ---: |")
    print(f"| llama-cpp-python direct (baseline) | {d_tokens} | {d_ttft:.1f} | {d_tps:.1f} | 1.000 |")
    print(f"| through the gateway | {g_tokens} | {g_ttft:.1f} | {g_tps:.1f} | {g_tps / d_tps:.3f} |")


if __name__ == "__main__":
    main()
