"""How well the default local model calls tools: the right tool, arguments that fit its schema, and no
call when none is needed.

    python -m bench.local_tools [--runs 1]

`router serve` on its shipped defaults (no configuration, no cloud key: everything is answered by the
in-process model) gets each prompt of `bench/data/tool_calls.jsonl` (20 prompts written for this bench:
17 that need one of six tools, 3 that need none) with all six tools offered, `tool_choice: auto`,
temperature 0, through the official `openai` client. A call is right when it names the expected tool
and its arguments validate against that tool's JSON schema and hold the expected value (a substring,
case-insensitive). Baselines in the same run: always calling the first tool, and a uniformly random
tool (expected rate 1/6 on the calls). Wilson 95% intervals beside each rate.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import jsonschema
from openai import OpenAI

from tests.servers import free_port, gateway_args, running

HERE = Path(__file__).parent
FIXTURE = HERE / "data" / "tool_calls.jsonl"
DEFAULT_POLICY = HERE.parent / "policies" / "default.yaml"


def _tool(name: str, description: str, **properties: str) -> dict[str, Any]:
    schema = {"type": "object", "properties": {k: {"type": "string", "description": v} for k, v in properties.items()},
              "required": list(properties)}  # fmt: skip
    return {"type": "function", "function": {"name": name, "description": description, "parameters": schema}}


TOOLS = [
    _tool("get_weather", "The current weather in a city.", city="The city's name."),
    _tool("get_time", "The current local time in a city or time zone.", zone="A city or IANA time zone."),
    _tool("send_email", "Send an email.", to="The recipient's address.", body="What the email says."),
    _tool("read_file", "Read a file from the project.", path="The file's path."),
    _tool("calculate", "Evaluate an arithmetic expression.", expression="The expression, e.g. 2*(3+4)."),
    _tool("search_web", "Search the web.", query="What to search for."),
]
SCHEMAS = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}


def wilson(hits: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return 0.0, 0.0
    p = hits / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def judge(case: dict[str, Any], calls: list[Any]) -> dict[str, bool]:
    if case["tool"] is None:
        return {"right": not calls, "valid": True, "called": bool(calls)}
    if not calls:
        return {"right": False, "valid": False, "called": False}
    call = calls[0].function
    try:
        arguments = json.loads(call.arguments)
        jsonschema.validate(arguments, SCHEMAS.get(call.name, {"type": "object"}))
        valid = True
    except (ValueError, jsonschema.ValidationError):
        arguments, valid = {}, False
    values = all(str(v).lower() in str(arguments.get(k, "")).lower() for k, v in case["args"].items())
    return {"right": call.name == case["tool"] and valid and values, "valid": valid, "called": True}


def run(base: str, cases: list[dict[str, Any]], runs: int) -> list[dict[str, Any]]:
    client = OpenAI(base_url=f"{base}/v1", api_key="unused", max_retries=0, timeout=300)
    results = []
    for _ in range(runs):
        for case in cases:
            started = time.perf_counter()
            answer = client.chat.completions.create(
                model="auto", messages=[{"role": "user", "content": case["prompt"]}], tools=TOOLS,
                tool_choice="auto", temperature=0, max_tokens=96,
            )  # fmt: skip
            seconds = time.perf_counter() - started
            verdict = judge(case, answer.choices[0].message.tool_calls or [])
            results.append({**case, **verdict, "seconds": seconds})
            print(f"{'ok ' if verdict['right'] else 'BAD'} {seconds:5.1f}s {case['prompt'][:60]}", file=sys.stderr)
    return results


def report(results: list[dict[str, Any]]) -> None:
    need = [r for r in results if r["tool"] is not None]
    none = [r for r in results if r["tool"] is None]
    rows = [
        ("right tool, schema-valid, expected value", sum(r["right"] for r in need), len(need)),
        ("arguments valid against the schema", sum(r["valid"] for r in need), len(need)),
        ("no call when none is needed", sum(r["right"] for r in none), len(none)),
        ("baseline: always the first tool", sum(r["tool"] == TOOLS[0]["function"]["name"] for r in need), len(need)),
    ]
    print("| measure | rate | 95% interval | n |\n| --- | --- | --- | --- |")
    for name, hits, n in rows:
        low, high = wilson(hits, n)
        print(f"| {name} | {hits / n:.2f} | [{low:.2f}, {high:.2f}] | {n} |")
    print(f"| baseline: a uniformly random tool (expected) | {1 / len(TOOLS):.2f} | | |")
    print(f"\nmedian seconds per request: {statistics.median(r['seconds'] for r in results):.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    cases = [json.loads(line) for line in FIXTURE.read_text().splitlines() if line.strip()]
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "router.yaml"
        config.write_text(f"ledger: {{path: {tmp}/ledger.sqlite}}\n")
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        with running(gateway_args(port, config, DEFAULT_POLICY), f"{url}/readyz", Path(tmp) / "log",
                     env={"OPENAI_API_KEY": ""}):  # fmt: skip
            report(run(url, cases, args.runs))


if __name__ == "__main__":
    main()
