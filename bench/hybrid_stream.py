"""Time to first token in the hybrid mode: the default policy with a cloud configured, against none.

    python -m bench.hybrid_stream [--prompts bench/data/hybrid-mix.jsonl] [--max-tokens 200] [--expected-gain]

Starts `router serve` on the shipped defaults (the default local model, memory cache, default policy)
three or four times:
  no-cloud  no cloud model configured: the cascade stands aside (the baseline)
  early     a cloud model configured (an instant stand-in, `tests/agent_cloud.py`), the default policy
            as shipped (its cascade decides after the answer's first tokens; `letter_gain`: a
            multiple-choice question is first asked aside for its letter, one token)
  whole     the same, with the cascade judging whole answers (`decide_after_tokens` removed): what
            the gateway did before the early rule
  first-tokens  (with `--expected-gain`) the default policy with its cascade's metric set to
            `expected_gain`: every request judged on its answer's first tokens, none asked aside
Every prompt is streamed through each in turn (interleaved) with the official `openai` client, as
a chat client would (no temperature sent: the gateway's default, 0.7; `--temperature` to set one).
Prints, per gateway: time to first token p50 / p90 overall and per kind of prompt (short answer,
paragraph or list, maths, code, exam), the ratio to the baseline, how many prompts the cloud answered and
why, and the first-token time of the escalated ones and of those the cascade kept.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import openai
import yaml

from router.config import DEFAULT_LOCAL_MODEL, DEFAULT_POLICY_FILE
from tests.servers import free_port, gateway_args, running

HERE = Path(__file__).parent
KEY_ENV = "HYBRID_BENCH_CLOUD_KEY"
NO_CACHE = {"cache-control": "no-cache, no-store"}


def _configs(tmp: Path, cloud: str, first_tokens: bool = False) -> dict[str, tuple[Path | None, Path]]:
    """Gateway name -> (config file or None for the embedded defaults, policy file)."""
    with_cloud = {
        "models": {
            DEFAULT_LOCAL_MODEL: {"engine": "llama-cpp"},  # the shipped default, as `router serve` runs it
            "gpt-4o-mini": {"engine": "litellm", "model": "openai/gpt-4o-mini", "api_base": cloud,
                            "api_key_env": KEY_ENV},
        },
        "routes": {"cloud": ["gpt-4o-mini"]},
    }  # fmt: skip
    config = tmp / "cloud.yaml"
    config.write_text(yaml.safe_dump(with_cloud))
    policy = yaml.safe_load(DEFAULT_POLICY_FILE.read_text())
    for action in [policy["default"], *policy.get("rules", [])]:
        if isinstance(action.get("cascade"), dict):
            action["cascade"].pop("decide_after_tokens", None)
    whole = tmp / "whole-answer-policy.yaml"
    whole.write_text(yaml.safe_dump(policy, sort_keys=False))
    configs = {
        "no-cloud": (None, DEFAULT_POLICY_FILE), "early": (config, DEFAULT_POLICY_FILE), "whole": (config, whole)
    }  # fmt: skip
    if first_tokens:
        policy = yaml.safe_load(DEFAULT_POLICY_FILE.read_text())
        for action in [policy["default"], *policy.get("rules", [])]:
            if isinstance(action.get("cascade"), dict) and action["cascade"].get("metric") == "letter_gain":
                action["cascade"]["metric"] = "expected_gain"
        judged = tmp / "expected-gain-policy.yaml"
        judged.write_text(yaml.safe_dump(policy, sort_keys=False))
        configs["first-tokens"] = (config, judged)
    return configs


def _serve(stack: ExitStack, tmp: Path, name: str, config: Path | None, policy: Path) -> str:
    port = free_port()
    args = gateway_args(port, config or tmp / "none.yaml", policy)
    if config is None:
        (tmp / "none.yaml").write_text("{}\n")  # the embedded defaults
    stack.enter_context(running(args, f"http://127.0.0.1:{port}/readyz", tmp / f"{name}.log", env={KEY_ENV: "sk-x"}))
    return f"http://127.0.0.1:{port}/v1"


def stream_one(base: str, prompt: str, max_tokens: int, temperature: float | None = None) -> dict[str, Any]:
    client = openai.OpenAI(base_url=base, api_key="unused", max_retries=0, timeout=600)
    started = time.perf_counter()
    sampling = {} if temperature is None else {"temperature": temperature}
    raw = client.chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": prompt}], max_tokens=max_tokens, stream=True,
        extra_headers=NO_CACHE, **sampling,
    )  # fmt: skip
    first, parts = None, []
    for chunk in raw.parse():
        if chunk.choices and chunk.choices[0].delta.content:
            if first is None:
                first = time.perf_counter() - started
            parts.append(chunk.choices[0].delta.content)
    headers = raw.headers
    return {
        "ttft_s": first if first is not None else time.perf_counter() - started,
        "total_s": time.perf_counter() - started,
        "route": headers.get("x-router-route"),
        "reason": headers.get("x-router-reason"),
        "cascade": headers.get("x-router-cascade"),
        "confidence": headers.get("x-router-confidence"),
        "answer": "".join(parts),
    }


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def report(rows: list[dict[str, Any]], gateways: list[str]) -> None:
    kinds = sorted({r["kind"] for r in rows}, key=["short", "paragraph", "maths", "code", "exam"].index)
    base = [r for r in rows if r["gateway"] == "no-cloud"]
    print("\n| gateway | TTFT p50 | TTFT p90 | p50 / no-cloud | p90 / no-cloud | " + " | ".join(
        f"{k} p50 / p90" for k in kinds) + " |")  # fmt: skip
    print("| --- | ---: | ---: | ---: | ---: |" + " ---: |" * len(kinds))
    for name in gateways:
        mine = [r["ttft_s"] for r in rows if r["gateway"] == name]
        ref = [r["ttft_s"] for r in base]
        by_kind = [[r["ttft_s"] for r in rows if r["gateway"] == name and r["kind"] == k] for k in kinds]
        print(f"| {name} | {statistics.median(mine):.2f} s | {_p(mine, 0.9):.2f} s | "
              f"{statistics.median(mine) / statistics.median(ref):.2f} | {_p(mine, 0.9) / _p(ref, 0.9):.2f} | "
              + " | ".join(f"{statistics.median(v):.2f} / {_p(v, 0.9):.2f} s" for v in by_kind) + " |")  # fmt: skip
    header = " | ".join(f"{k}: to the cloud" for k in kinds)
    print(f"\n| gateway | {header} | cascade escalated | escalated TTFT p50 | kept by the cascade: TTFT p50 |")
    print("| --- |" + " ---: |" * (len(kinds) + 3))
    for name in gateways:
        mine = [r for r in rows if r["gateway"] == name]
        shares = []
        for kind in kinds:
            of_kind = [r for r in mine if r["kind"] == kind]
            shares.append(f"{sum(r['route'] == 'cloud' for r in of_kind)}/{len(of_kind)}")
        escalated = [r["ttft_s"] for r in mine if r["cascade"] == "escalated"]
        kept = [r["ttft_s"] for r in mine if r["cascade"] == "kept"]
        ttft = f"{statistics.median(escalated):.2f} s" if escalated else "-"
        kept_ttft = f"{statistics.median(kept):.2f} s ({len(kept)})" if kept else "-"
        print(f"| {name} | " + " | ".join(shares) + f" | {len(escalated)} | {ttft} | {kept_ttft} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=Path, default=HERE / "data" / "hybrid-mix.jsonl")
    parser.add_argument("--max-tokens", type=int, default=200)
    parser.add_argument("--temperature", type=float, default=None, help="Default: unset, as a chat client sends.")
    parser.add_argument("--out", type=Path, default=HERE / ".work" / "hybrid_stream.jsonl")
    parser.add_argument(
        "--expected-gain", action="store_true", help="Also a gateway whose cascade is `expected_gain` throughout."
    )
    args = parser.parse_args()
    prompts = [json.loads(line) for line in args.prompts.read_text().splitlines() if line.strip()]
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmpdir, ExitStack() as stack:
        tmp = Path(tmpdir)
        port = free_port()
        cloud = f"http://127.0.0.1:{port}/v1"
        stand_in = [sys.executable, "-m", "tests.agent_cloud", "--port", str(port)]
        stack.enter_context(running(stand_in, f"{cloud}/models", tmp / "cloud.log"))
        configs = _configs(tmp, cloud, args.expected_gain)
        bases = {name: _serve(stack, tmp, name, *spec) for name, spec in configs.items()}
        for base in bases.values():  # warm-up: the model's first call pays for its lazy set-up
            stream_one(base, "Say hello.", 8)
        for n, item in enumerate(prompts, 1):
            for name, base in bases.items():
                row = {"gateway": name, **item, **stream_one(base, item["prompt"], args.max_tokens, args.temperature)}
                rows.append(row)
                print(f"[{n}/{len(prompts)}] {name:<8} {item['kind']:<9} ttft {row['ttft_s']:.2f}s "
                      f"total {row['total_s']:.1f}s {row['route']}/{row['reason']} {row['cascade'] or ''} "
                      f"{row['confidence'] or ''}", flush=True)  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    report(rows, list(bases))
    print(f"\nrows written to {args.out}")


if __name__ == "__main__":
    main()
