"""A team of eight on the shipped defaults: 8 simultaneous chat streams against `router serve`.

    python -m bench.team_load [--streams 8] [--max-tokens 96] [--rounds 2] [--compare parallel=4]

Starts `router serve` with no configuration at all (the embedded defaults: the default local model,
`parallel: auto`) and, for comparison in the same run, the same with one setting of the local model
changed (`--compare`; default `parallel=4`, the old default). Each round, on each gateway in turn: one
stream alone (the baseline: its tokens per second), then `--streams` streams at once, every prompt
distinct (so no answer comes from the cache), each asking for a long answer capped at `--max-tokens`.
Prints, per gateway: one stream's tok/s and first-token time, the aggregate tok/s of the simultaneous
streams and its ratio to one stream, their first-token time p50 and last.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import openai
import yaml

from router.config import DEFAULT_LOCAL_MODEL, DEFAULT_POLICY_FILE
from tests.servers import free_port, gateway_args, running

TOPICS = [
    "a lighthouse keeper", "a city garden", "the first day of school", "a storm at sea", "a lost dog",
    "a bakery at dawn", "a mountain village", "a night train", "an old library", "a market in spring",
    "a robot learning to paint", "a desert crossing", "a winter festival", "a river journey", "a chess match",
    "a forgotten letter", "a busy airport", "a beekeeper", "a summer storm", "an island school",
]  # fmt: skip
NO_CACHE = {"cache-control": "no-cache, no-store"}


def _prompt(n: int) -> str:
    return f"Write a long, detailed story about {TOPICS[n % len(TOPICS)]} (variation {n})."


def stream_one(base: str, prompt: str, max_tokens: int, started: float) -> dict[str, Any]:
    client = openai.OpenAI(base_url=base, api_key="unused", max_retries=0, timeout=900)
    stream = client.chat.completions.create(
        model="auto", messages=[{"role": "user", "content": prompt}], max_tokens=max_tokens, temperature=0.7,
        stream=True, stream_options={"include_usage": True}, extra_headers=NO_CACHE,
    )  # fmt: skip
    first, tokens, chunks = None, None, 0
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            chunks += 1
            if first is None:
                first = time.perf_counter() - started
        if chunk.usage is not None:
            tokens = chunk.usage.completion_tokens
    return {"ttft_s": first, "end_s": time.perf_counter() - started, "tokens": tokens or chunks}


def at_once(base: str, prompts: list[str], max_tokens: int) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = [{} for _ in prompts]
    started = time.perf_counter()

    def run(i: int) -> None:
        results[i] = stream_one(base, prompts[i], max_tokens, started)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(prompts))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=96)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--policy", type=Path, default=DEFAULT_POLICY_FILE, help="Default: the shipped policy.")
    parser.add_argument(
        "--compare",
        default="parallel=4",
        help="KEY=VALUE of the local model's settings to "
        "compare with the shipped defaults (default: parallel=4, the old default)",
    )
    args = parser.parse_args()
    serial = iter(range(10_000))
    with tempfile.TemporaryDirectory() as tmpdir, ExitStack() as stack:
        tmp = Path(tmpdir)
        gateways: dict[str, str] = {}
        key, value = args.compare.split("=", 1)
        fixed = {"models": {  # the embedded defaults, one setting changed
            DEFAULT_LOCAL_MODEL: {"engine": "llama-cpp", key: yaml.safe_load(value)},
            "gpt-4o-mini": {"engine": "litellm", "model": "openai/gpt-4o-mini", "api_key_env": "OPENAI_API_KEY"},
        }}  # fmt: skip
        for name, config in (("shipped defaults", {}), (f"{key}: {value}", fixed)):
            path = tmp / f"{len(gateways)}.yaml"
            path.write_text(yaml.safe_dump(config) if config else "{}\n")
            port = free_port()
            stack.enter_context(running(gateway_args(port, path, args.policy), f"http://127.0.0.1:{port}/readyz",
                                        tmp / f"{len(gateways)}.log"))  # fmt: skip
            base = f"http://127.0.0.1:{port}/v1"
            stream_one(base, "Say hello.", 8, time.perf_counter())  # the model's lazy set-up
            sequences = httpx.get(f"http://127.0.0.1:{port}/readyz").json()["local_model"]["parallel"]
            gateways[f"{name} ({sequences} sequences)"] = base
        results: dict[str, dict[str, list[Any]]] = {name: {"one": [], "many": []} for name in gateways}
        for round_ in range(args.rounds):
            for name, base in gateways.items():
                one = stream_one(base, _prompt(next(serial)), args.max_tokens, time.perf_counter())
                many = at_once(base, [_prompt(next(serial)) for _ in range(args.streams)], args.max_tokens)
                results[name]["one"].append(one)
                results[name]["many"].append(many)
                agg = sum(r["tokens"] for r in many) / max(r["end_s"] for r in many)
                print(f"round {round_ + 1} {name}: one stream {one['tokens'] / one['end_s']:.1f} tok/s, "
                      f"{args.streams} streams {agg:.1f} tok/s, TTFT p50 "
                      f"{statistics.median(r['ttft_s'] for r in many):.2f} s", flush=True)  # fmt: skip
    print(f"\n| gateway | one stream tok/s | one stream TTFT | {args.streams} streams agg tok/s | x one stream | "
          f"TTFT p50 | TTFT last |")  # fmt: skip
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, got in results.items():
        one_rate = statistics.median(r["tokens"] / r["end_s"] for r in got["one"])
        one_ttft = statistics.median(r["ttft_s"] for r in got["one"])
        aggs = [sum(r["tokens"] for r in many) / max(r["end_s"] for r in many) for many in got["many"]]
        ttfts = [r["ttft_s"] for many in got["many"] for r in many]
        last = statistics.median(max(r["ttft_s"] for r in many) for many in got["many"])
        agg = statistics.median(aggs)
        print(f"| {name} | {one_rate:.1f} | {one_ttft:.2f} s | {agg:.1f} | {agg / one_rate:.2f} | "
              f"{statistics.median(ttfts):.2f} s | {last:.2f} s |")  # fmt: skip


if __name__ == "__main__":
    main()
