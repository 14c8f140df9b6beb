"""Run every benchmark and append what each printed to bench/RESULTS.md, with date, commit and machine.

    python -m bench [--only overhead,local_path] [--no-append]

Each benchmark also runs alone (`python -m bench.<name> --help`); this entry point runs them one after
another (never at once: they would measure each other) with their default settings.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent
RESULTS = HERE / "RESULTS.md"
BENCHMARKS = {
    "local_models": [],
    "cascade": [],
    "startup": [],
    "routing_decision": ["--requests", "300", "--concurrency", "8"],
    "conversation_routing": [],
    "local_load": [],
    "cache": [],
    "overhead": ["--duration", "10"],
    "local_path": [],
    "local_tools": [],
    "hybrid_stream": [],
    "early_rule": [
        "--labels",
        "router/classify/heads/qwen2.5-coder-1.5b-instruct.freeform.labels.jsonl",
        "--group-of",
        "everyday-dev=everyday",
        "--k",
        "3",
        "4",
        "8",
        "16",
        "32",
        "--match",
        "gsm8k:-0.085",
    ],
    "team_load": [],
    "resilience_load": ["--duration", "30", "--concurrency", "32"],
    "soak": ["--duration", "600", "--concurrency", "64"],
}


def machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    system = f"{platform.system()} {platform.release()}"
    return f"{os.cpu_count()} CPUs, {model}, {system}, Python {platform.python_version()}"


def commit() -> str:
    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=HERE)
    return done.stdout.strip() or "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", help="comma-separated names: " + ", ".join(BENCHMARKS))
    parser.add_argument("--no-append", action="store_true", help="print only; leave RESULTS.md alone")
    args = parser.parse_args()
    names = args.only.split(",") if args.only else list(BENCHMARKS)
    sections = []
    for name in names:
        command = [sys.executable, "-m", f"bench.{name}", *BENCHMARKS[name]]
        print(f"== bench.{name}", flush=True)
        done = subprocess.run(command, capture_output=True, text=True)
        output = done.stdout.strip() if done.returncode == 0 else f"FAILED ({done.returncode}):\n{done.stderr[-2000:]}"
        print(output, flush=True)
        shown = " ".join(["python", "-m", f"bench.{name}", *BENCHMARKS[name]])
        sections.append(f"### bench.{name}\n\nCommand: `{shown}`\n\n{output}\n")
    if args.no_append:
        return
    today = datetime.date.today().isoformat()
    entry = f"## All benchmarks — {today}, commit {commit()}\n\nMachine: {machine()}.\n\n" + "\n".join(sections)
    head, _, rest = RESULTS.read_text().partition("\n## ")
    RESULTS.write_text(f"{head.rstrip()}\n\n{entry}\n## {rest}" if rest else f"{head.rstrip()}\n\n{entry}")
    print(f"appended to {RESULTS}")


if __name__ == "__main__":
    main()
