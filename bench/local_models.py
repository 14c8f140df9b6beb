"""Which packaged GGUF answers best here: everyday prompts, GSM8K, tokens/s, peak RSS, and the cascade's signal.

    python -m bench.local_models [--models a,b] [--gsm8k 40] [--answers bench/.work/answers.jsonl]

Every model runs in its own process (so that its peak RSS is its own), through the gateway's own
llama.cpp backend: the same chat template, system prompt and confidence meter as a served request, at
temperature 0 on 2 threads. "Everyday" is `bench/data/everyday.jsonl` (30 short prompts, each checked by
keyword: a whole-word match of one expected answer and none of the rejected phrases), max 48 tokens;
GSM8K is the first N questions of `gsm8k/gpt3_6b_175b_solutions.jsonl` from the shared routing data,
checked by the last number of the answer against the ground truth, max 320 tokens. Every answer with its
confidence is written to `--answers` for the cascade analysis (`python -m bench.cascade`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import resource
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from router.backends.model_files import PACKAGED_MODELS

HERE = Path(__file__).parent
EVERYDAY = HERE / "data" / "everyday.jsonl"
EVERYDAY_DEV = HERE / "data" / "everyday-dev.jsonl"
SHARED = HERE.parent.parent / "shared" / "data" / "routing"
GSM8K = SHARED / "gsm8k" / "gpt3_6b_175b_solutions.jsonl"
NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def everyday_right(answer: str, expect: list[str], reject: list[str]) -> bool:
    text = answer.lower()
    if any(re.search(phrase, text) for phrase in reject):
        return False
    return any(re.search(rf"(?<![\w.]){re.escape(word)}(?![\w])", text) for word in expect)


def last_number(text: str) -> float | None:
    found = NUMBER.findall(text.replace("$", ""))
    if not found:
        return None
    try:
        return float(found[-1].replace(",", "").rstrip("."))
    except ValueError:
        return None


def gsm8k_right(answer: str, truth: str) -> bool:
    expected, got = last_number(truth), last_number(answer)
    return expected is not None and got is not None and abs(expected - got) < 1e-6


def load_sets(gsm8k_count: int, dev: bool = False) -> list[dict[str, Any]]:
    """The report sets, or with `dev` the ones for choosing a system prompt: other everyday prompts
    (`everyday-dev.jsonl`) and the GSM8K questions after the reported ones."""
    everyday = EVERYDAY_DEV if dev else EVERYDAY
    cases = [{"set": "everyday", "max_tokens": 48, **json.loads(line)} for line in everyday.read_text().splitlines()]
    first = gsm8k_count if dev else 0
    with GSM8K.open() as rows:
        for i, line in enumerate(rows):
            if i < first:
                continue
            if i >= first + gsm8k_count:
                break
            row = json.loads(line)
            cases.append({"set": "gsm8k", "max_tokens": 320, "prompt": row["question"], "truth": row["ground_truth"]})
    return cases


async def run_one(package: str, gsm8k_count: int, system_prompt: str | None, dev: bool = False) -> dict[str, Any]:
    from router.backends.llama_cpp import LlamaCppBackend
    from router.config import LlamaCppModel, Settings
    from router.types import RequestContext

    spec: dict[str, Any] = {"package": package, "n_ctx": 2048, "n_threads": 2, "instances": 1}
    if system_prompt is not None:
        spec["system_prompt"] = system_prompt
    backend = LlamaCppBackend(package, LlamaCppModel(**spec), Settings().model_dir)
    started = time.perf_counter()
    await backend.start()
    load_s = time.perf_counter() - started
    if not backend.ready:
        raise SystemExit(f"{package}: {backend.unavailable_reason()}")
    answers, tokens, busy_s = [], 0, 0.0
    for case in load_sets(gsm8k_count, dev):
        ctx = RequestContext(
            request_id=uuid.uuid4().hex,
            kind="chat",
            requested_model=package,
            messages=({"role": "user", "content": case["prompt"]},),
            params={"temperature": 0.0},
        )
        began = time.perf_counter()
        completion = await backend.complete(ctx, case["max_tokens"], confidence=True)
        busy_s += time.perf_counter() - began
        tokens += completion.usage.completion_tokens
        if case["set"] == "everyday":
            right = everyday_right(completion.content, case["expect"], case.get("reject", []))
        else:
            right = gsm8k_right(completion.content, case["truth"])
        confidence = completion.confidence
        answers.append(
            {
                "model": package,
                "set": case["set"],
                "prompt": case["prompt"],
                "answer": completion.content,
                "right": right,
                "tokens": completion.usage.completion_tokens,
                "mean_logprob": confidence.mean_logprob if confidence else None,
                "min_logprob": confidence.min_logprob if confidence else None,
                "mean_entropy": confidence.mean_entropy if confidence else None,
            }
        )
    await backend.close()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "model": package,
        "file_mb": (backend.model_path.stat().st_size / 1e6) if backend.model_path else None,
        "load_s": load_s,
        "tokens_per_s": tokens / busy_s if busy_s else 0.0,
        "peak_rss_mb": peak_mb,
        "answers": answers,
    }


def _table(results: list[dict[str, Any]], gsm8k_count: int, dev: bool) -> str:
    everyday_total = sum(1 for _ in (EVERYDAY_DEV if dev else EVERYDAY).read_text().splitlines())
    lines = [
        f"| model | file MB | everyday ({everyday_total}) | GSM8K ({gsm8k_count}) | tokens/s | load s | peak RSS MB |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for result in results:
        by_set = {
            name: sum(a["right"] for a in result["answers"] if a["set"] == name) for name in ("everyday", "gsm8k")
        }
        lines.append(
            f"| {result['model']} | {result['file_mb']:.0f} | {by_set['everyday']}/{everyday_total} | "
            f"{by_set['gsm8k']}/{gsm8k_count} | {result['tokens_per_s']:.1f} | {result['load_s']:.2f} | "
            f"{result['peak_rss_mb']:.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(PACKAGED_MODELS), help="packaged model names, comma-separated")
    parser.add_argument("--gsm8k", type=int, default=40, help="how many GSM8K questions (from the first)")
    parser.add_argument("--system-prompt", default=None, help="override the packaged models' system prompt")
    parser.add_argument("--answers", type=Path, default=HERE / ".work" / "answers.jsonl")
    parser.add_argument("--dev", action="store_true", help="the sets for choosing a system prompt, not the report")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # the child process: one model, JSON on stdout
    args = parser.parse_args()
    if args.one:
        print(json.dumps(asyncio.run(run_one(args.one, args.gsm8k, args.system_prompt, args.dev))))
        return
    results = []
    for name in args.models.split(","):
        command = [sys.executable, "-m", "bench.local_models", "--one", name, "--gsm8k", str(args.gsm8k)]
        if args.system_prompt is not None:
            command += ["--system-prompt", args.system_prompt]
        if args.dev:
            command.append("--dev")
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"{name} failed:\n{done.stderr[-3000:]}")
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(f"{name}: done", file=sys.stderr, flush=True)
    args.answers.parent.mkdir(parents=True, exist_ok=True)
    with args.answers.open("w") as out:
        for result in results:
            for answer in result["answers"]:
                out.write(json.dumps(answer) + "\n")
    print("Local models, each loaded by the gateway's llama.cpp backend (temperature 0, 2 threads, n_ctx 2048)\n")
    print(_table(results, args.gsm8k, args.dev))
    print(f"\nEvery answer and its confidence: {args.answers}")


if __name__ == "__main__":
    main()
