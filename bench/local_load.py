"""The local tier under load: many streams on one box, batched, against one sequence at a time.

    python -m bench.local_load [--package qwen2.5-coder-1.5b-instruct] [--tokens 48] [--levels 1,2,4,8,16] [--exact]

At each level of concurrent streams, every stream sends one text completion (a ~40-token prompt,
`--tokens` tokens generated, end-of-sequence suppressed so every answer is the same length, temperature
0) and the run measures aggregate tokens/s, time to first token (p50, p99) and per-stream tokens/s:

- **batched**: the gateway's in-process backend with `parallel` = the level (one context, continuous
  batching: `router/backends/llama_batch.py`);
- **direct (baseline)**: llama-cpp-python's `Llama.create_completion` used directly, one sequence at a
  time, requests served in arrival order (what one context can do without batching);
- **the limit**: llama.cpp alone, `llama_decode` with one row per sequence (what llama.cpp's
  batched-bench reports as S_TG), through the same library: no batching on top of it can do better.

Both load the same GGUF with the same threads, in this process, one after the other.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import threading
import time
from dataclasses import dataclass

from router.backends.llama_cpp import LlamaCppBackend
from router.backends.model_files import packaged_gguf_path
from router.config import LlamaCppModel, Settings
from router.types import RequestContext

TOPICS = ["the sea", "a lighthouse", "bread", "mountains", "a train journey", "winter", "a library", "bees"]


def prompt(i: int) -> str:
    """Distinct prompts that share their first words (as requests sharing a system prompt do)."""
    return f"Write a long, detailed story about {TOPICS[i % len(TOPICS)]}, with many characters. Story {i}:"


@dataclass
class Level:
    streams: int
    wall_s: float
    tokens: int
    ttft_s: list[float]
    stream_rates: list[float]

    @property
    def aggregate(self) -> float:
        return self.tokens / self.wall_s

    def ttft(self, q: float) -> float:
        ordered = sorted(self.ttft_s)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _ctx(i: int, never_stop: dict[str, float]) -> RequestContext:
    text = prompt(i)
    params = {"temperature": 0, "logit_bias": never_stop}
    return RequestContext(str(i), "text", "local", ({"role": "user", "content": text},), prompt=text, params=params)


async def batched_level(
    backend: LlamaCppBackend, streams: int, tokens: int, never_stop: dict, offset: int = 0
) -> Level:
    ttft: list[float] = []
    rates: list[float] = []
    produced = 0

    async def one(i: int) -> None:
        nonlocal produced
        started = time.perf_counter()
        first = None
        async for delta in backend.stream(_ctx(offset + i, never_stop), tokens):
            if delta.content and first is None:
                first = time.perf_counter()
            if delta.usage is not None:
                produced += delta.usage.completion_tokens
        end = time.perf_counter()
        assert first is not None
        ttft.append(first - started)
        rates.append((tokens - 1) / max(end - first, 1e-9))

    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(streams)))
    return Level(streams, time.perf_counter() - started, produced, ttft, rates)


def direct_level(llama: object, streams: int, tokens: int, never_stop: dict, offset: int = 0) -> Level:
    """One sequence at a time, in arrival order: stream k's first token waits for streams 0..k-1."""
    ttft: list[float] = []
    rates: list[float] = []
    lock = threading.Lock()
    started = time.perf_counter()
    for i in range(streams):
        first = None
        with lock:
            for chunk in llama.create_completion(  # type: ignore[attr-defined]
                prompt(offset + i), max_tokens=tokens, temperature=0, stream=True,
                logit_bias={int(k): v for k, v in never_stop.items()},
            ):  # fmt: skip
                if chunk["choices"][0]["text"] and first is None:
                    first = time.perf_counter()
        end = time.perf_counter()
        assert first is not None
        ttft.append(first - started)  # everyone arrived at the start
        rates.append((tokens - 1) / max(end - first, 1e-9))
    return Level(streams, time.perf_counter() - started, streams * tokens, ttft, rates)


def decode_limit(path: str, threads: int, widths: list[int], steps: int = 24) -> dict[int, float]:
    """llama.cpp alone: tokens/s of `llama_decode` with one row per sequence for `width` sequences, after a
    short prompt each: what llama.cpp's batched-bench reports as S_TG, through the same library and
    kernels the engine uses, with no scheduling, sampling or text around it. The ceiling for any
    batching on top of llama.cpp on this machine."""
    import llama_cpp as ll

    model = ll.llama_model_load_from_file(path.encode(), ll.llama_model_default_params())
    cparams = ll.llama_context_default_params()
    top = max(widths)
    cparams.n_ctx, cparams.n_seq_max, cparams.kv_unified = 256 * top, top, False
    cparams.n_batch = cparams.n_ubatch = max(128, top)
    cparams.n_threads = cparams.n_threads_batch = threads
    cparams.flash_attn_type = ll.LLAMA_FLASH_ATTN_TYPE_DISABLED
    ctx = ll.llama_init_from_model(model, cparams)
    batch = ll.llama_batch_init(cparams.n_batch, 0, 1)

    def decode(rows: list[tuple[int, int, int]]) -> None:
        for n, (token, pos, seq) in enumerate(rows):
            batch.token[n], batch.pos[n], batch.n_seq_id[n], batch.seq_id[n][0], batch.logits[n] = token, pos, 1, seq, 1
        batch.n_tokens = len(rows)
        assert ll.llama_decode(ctx, batch) == 0

    rates = {}
    for width in widths:
        ll.llama_memory_clear(ll.llama_get_memory(ctx), True)
        for seq in range(width):
            decode([(100 + i, i, seq) for i in range(16)])
        started = time.perf_counter()
        for step in range(steps):
            decode([(200 + step, 16 + step, seq) for seq in range(width)])
        rates[width] = width * steps / (time.perf_counter() - started)
    ll.llama_batch_free(batch)
    ll.llama_free(ctx)
    ll.llama_model_free(model)
    return rates


def report(label: str, levels: list[Level], single: float) -> None:
    print(f"\n{label}")
    head = f"{'streams':>7} {'agg tok/s':>10} {'x 1 stream':>10} {'TTFT p50 s':>11} {'TTFT p99 s':>11}"
    print(f"{head} {'per-stream tok/s':>17}")
    for lv in levels:
        print(
            f"{lv.streams:>7} {lv.aggregate:>10.1f} {lv.aggregate / single:>10.2f} {lv.ttft(0.5):>11.2f} "
            f"{lv.ttft(0.99):>11.2f} {statistics.median(lv.stream_rates):>17.1f}"
        )


async def main_async(args: argparse.Namespace) -> None:
    levels = [int(x) for x in args.levels.split(",")]
    path = packaged_gguf_path(args.package, Settings().model_dir)
    from router.tokens import load_vocab

    vocab = load_vocab(str(path))
    never_stop = {str(t): -100.0 for t in {vocab.token_eos(), *args.eos}}
    spec = LlamaCppModel(package=args.package, n_ctx=1024, n_threads=args.threads, parallel=max(levels),
                         step_tokens=args.step_tokens, max_queue=64, exact_batching=args.exact)  # fmt: skip
    backend = LlamaCppBackend("local", spec, Settings().model_dir)
    await backend.start()
    # Every level's prompts are new ones (no level finds its own prompts cached by an earlier one).
    await batched_level(backend, 1, 8, never_stop, offset=999)  # warm-up
    batched = [await batched_level(backend, n, args.tokens, never_stop, offset=100 * n) for n in levels]
    await backend.close()

    if args.skip_direct:
        report("batched", batched, batched[0].aggregate)
        return
    from llama_cpp import Llama

    llama = Llama(model_path=str(path), n_ctx=1024, n_threads=args.threads, verbose=False)
    direct_level(llama, 1, 8, never_stop, offset=999)  # warm-up
    direct = [direct_level(llama, n, args.tokens, never_stop, offset=100 * n) for n in levels]

    limit = decode_limit(str(path), args.threads, levels)
    single = direct[0].aggregate
    print(
        f"model {args.package}, {args.threads} threads, {args.tokens} tokens a stream, step_tokens {args.step_tokens}"
    )
    report("direct: llama-cpp-python, one sequence at a time (baseline)", direct, single)
    report(f"batched: the gateway's backend, parallel={max(levels)}", batched, single)
    print("\nllama.cpp alone (llama_decode, one row per sequence; batched-bench's S_TG): the limit")
    for width, rate in limit.items():
        got = next(lv for lv in batched if lv.streams == width).aggregate
        print(f"{width:>7} {rate:>10.1f} {rate / limit[levels[0]]:>10.2f}   batched backend at {got / rate:.0%} of it")
    by = {lv.streams: lv for lv in batched}
    if 8 in by and 1 in by:
        print(
            f"\naggregate at 8 streams / single direct stream: {by[8].aggregate / single:.2f}x (goal >= 2.5); "
            f"single batched stream / direct: {by[1].aggregate / single:.2f} (goal >= 0.95); "
            f"TTFT p99 at 8 / at 1: {by[8].ttft(0.99) / by[1].ttft(0.99):.2f} (goal <= 3)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--package", default="qwen2.5-coder-1.5b-instruct")
    parser.add_argument("--tokens", type=int, default=48)
    parser.add_argument("--levels", default="1,2,4,8,16")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--step-tokens", type=int, default=128)
    parser.add_argument("--exact", action="store_true", help="batched with `exact_batching: true`")
    parser.add_argument("--skip-direct", action="store_true", help="only the batched backend")
    parser.add_argument("--eos", type=int, nargs="*", default=[151643, 151645], help="more token ids to suppress")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
