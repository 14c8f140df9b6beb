"""Start-up to ready on the embedded defaults, against llama.cpp's own server loading the same GGUF.

    python -m bench.startup [--runs 5]

hybrid-router: `router serve` with no model configuration (the default packaged GGUF, the default
policy with the classifier and the cascade, the ONNX embedder), timed from the process start to the
first 200 from `/readyz` (every model loaded, the embedder and the head ready). The baseline, measured
in the same run and interleaved: llama-cpp-python's own OpenAI server (`python -m llama_cpp.server`)
on the same file, timed to its first 200 from `/v1/models`. Both after one warm-up run (files in the
page cache, the ONNX graph built), medians of `--runs`.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.overhead import wait_ready
from router.backends.model_files import packaged_gguf_path
from router.config import DEFAULT_LOCAL_PACKAGE, DEFAULT_POLICY_FILE, Settings
from tests.servers import free_port


def time_to_ready(args: list[str], url: str, env: dict[str, str] | None = None) -> float:
    process = subprocess.Popen(
        args,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
        start_new_session=True,
    )
    try:
        return wait_ready(url, process, timeout_s=120)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


def ours(work: Path) -> float:
    port = free_port()
    config = work / "router.yaml"
    config.write_text(f"ledger: {{path: {work / 'ledger.sqlite'}}}\n")
    args = [sys.executable, "-m", "router", "serve", "--port", str(port), "--config", str(config),
            "--policy", str(DEFAULT_POLICY_FILE), "--log-level", "warning"]  # fmt: skip
    return time_to_ready(args, f"http://127.0.0.1:{port}/readyz", {"OPENAI_API_KEY": ""})


def llama_server(gguf: Path) -> float:
    port = free_port()
    args = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--port", str(port),
            "--n_ctx", "4096", "--n_threads", "2"]  # fmt: skip
    return time_to_ready(args, f"http://127.0.0.1:{port}/v1/models")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    gguf = packaged_gguf_path(DEFAULT_LOCAL_PACKAGE, Settings().model_dir)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        ours(work), llama_server(gguf)  # warm-up: page cache, the ONNX graph
        mine, theirs = [], []
        for _ in range(args.runs):
            mine.append(ours(work))
            theirs.append(llama_server(gguf))
    ours_s, theirs_s = statistics.median(mine), statistics.median(theirs)
    print(f"Start-up to ready, median of {args.runs} (model: {DEFAULT_LOCAL_PACKAGE})\n")
    print("| process | ready s (median) | min | max | ratio to llama.cpp's server |")
    print("| --- | ---: | ---: | ---: | ---: |")
    print(
        f"| llama-cpp-python server, same GGUF (baseline) | {theirs_s:.2f} | {min(theirs):.2f} | "
        f"{max(theirs):.2f} | 1.00 |"
    )
    print(
        f"| hybrid-router, embedded defaults (model, embedder, head, policy) | {ours_s:.2f} | {min(mine):.2f} | "
        f"{max(mine):.2f} | {ours_s / theirs_s:.2f} |"
    )


if __name__ == "__main__":
    main()
