"""The response cache: hit latency through the gateway, semantic lookup time by index size, and the
precision and hit rate of the semantic cache on a paraphrase set.

    python -m bench.cache [--requests 200] [--sizes 1000,10000,100000]

1. Hit latency: a gateway on 127.0.0.1 (embedded local model, memory cache). Baseline in the same run:
   the same questions answered by the local model (`Cache-Control: no-cache`), then exact and semantic
   hits. p50/p99 ms and the ratio to the baseline's p50.
2. Lookup time: the in-gateway index at each size, filled with vectors shaped like real questions
   (normalised mixtures of two embedded template questions plus noise, so neighbourhoods are as
   crowded as a support bot's), queried with near-repeats (cos 0.92: hits) and unrelated questions
   (misses). Baseline in the same run: a brute-force numpy scan of the same vectors.
3. Precision and hit rate on bench/data/paraphrases.jsonl (30 paraphrase pairs, 30 look-alike pairs
   that must not match) at three thresholds, with and without the lexical guard.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import numpy as np

from router.cache.guard import semantic_mismatch
from router.cache.index import VectorIndex
from router.classify.embedder import Embedder
from tests.servers import free_port, running
from tests.vectors import near

HERE = Path(__file__).parent
PARAPHRASES = HERE / "data" / "paraphrases.jsonl"
THRESHOLDS = (0.85, 0.88, 0.92)


def pcts(samples_ms: list[float]) -> tuple[float, float]:
    ordered = sorted(samples_ms)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


def row(label: str, samples: list[float], base_p50: float) -> str:
    p50, p99 = pcts(samples)
    return f"| {label} | {p50:.3f} | {p99:.3f} | {p50 / base_p50:.3f} |"


# --- 1. hit latency through the gateway ---------------------------------------------------------


def hit_latency(n: int) -> list[str]:
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "router.yaml"
        config.write_text(f"ledger: {{path: {tmp}/ledger.sqlite}}\nroutes: {{cloud: []}}\n")
        args = [
            sys.executable, "-m", "router", "serve", "--host", "127.0.0.1", "--port", str(port), "--config", str(config)
        ]  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        with running(args, f"{url}/readyz", Path(tmp) / "gateway.log"), httpx.Client(timeout=120) as client:
            team = {"x-team": uuid.uuid4().hex}

            def ask(text: str, headers: dict[str, str]) -> tuple[float, str]:
                body = {"model": "auto", "messages": [{"role": "user", "content": text}], "temperature": 0}
                started = time.perf_counter()
                response = client.post(f"{url}/v1/chat/completions", json={**body, "max_tokens": 16}, headers=headers)
                response.raise_for_status()
                return (time.perf_counter() - started) * 1000, response.headers["x-router-cache"]

            pairs = [json.loads(line) for line in PARAPHRASES.read_text().splitlines()]
            originals = [p["a"] for p in pairs if p["same"]]
            hits = [p["b"] for p in pairs if p["same"] and p["b"]]
            local, exact, semantic = [], [], []
            for text in originals:  # the baseline, and it fills the cache
                local.append(ask(text, {**team, "cache-control": "no-cache"})[0])
            for i in range(n):
                exact.append(ask(originals[i % len(originals)], team)[0])
            for text in hits:
                ms, status = ask(text, team)
                if status == "hit-semantic":
                    semantic.append(ms)
    base = pcts(local)[0]
    lines = [
        "| request | p50 ms | p99 ms | p50 / local p50 |",
        "| --- | ---: | ---: | ---: |",
        row(f"answered by the local model (baseline, n={len(local)})", local, base),
        row(f"exact hit (n={len(exact)})", exact, base),
        row(f"semantic hit (n={len(semantic)} of {len(hits)} paraphrases)", semantic, base),
    ]
    return lines


# --- 2. lookup time by index size -----------------------------------------------------------------

SUBJECTS = [
    "password",
    "account",
    "order",
    "invoice",
    "subscription",
    "refund",
    "delivery",
    "email address",
    "username",
    "payment method",
    "profile picture",
    "notifications",
    "data export",
    "API key",
    "plan",
]
ACTIONS = ["reset", "change", "cancel", "find", "delete", "update", "recover", "download", "verify", "share"]
FRAMES = ["How do I {a} my {s}?", "Can I {a} my {s} on mobile?", "Why can't I {a} my {s}?",
          "Where do I {a} my {s}?", "Is it possible to {a} my {s} twice?", "Who can {a} my {s}?"]  # fmt: skip


def question_pool(embedder: Embedder) -> np.ndarray:
    """900 real, crowded, same-domain question embeddings."""
    return embedder.embed([f.format(a=a, s=s) for f, a, s in itertools.product(FRAMES, ACTIONS, SUBJECTS)])


def realistic_vectors(pool: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    i, j = rng.integers(0, len(pool), n), rng.integers(0, len(pool), n)
    w = rng.uniform(0.5, 1.0, (n, 1)).astype(np.float32)
    v = w * pool[i] + (1 - w) * pool[j] + rng.standard_normal((n, pool.shape[1])).astype(np.float32) * 0.02
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def lookup_time(embedder: Embedder, sizes: list[int], queries: int) -> list[str]:
    rng = np.random.default_rng(7)
    pool = question_pool(embedder)
    lines = [
        "| entries | index p50 ms | index p99 ms | full scan p50 ms (baseline) | p50 / scan | hits found |",
        "| ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for size in sizes:
        vectors = realistic_vectors(pool, size, rng)
        index = VectorIndex()
        for k, v in enumerate(vectors):
            index.add(f"k{k}", "p", v, float("inf"))
        picks = rng.integers(0, size, queries)
        probes = [near(rng, vectors[k], 0.92) for k in picks[: queries // 2]]  # near-repeats: hits
        probes += list(realistic_vectors(pool, queries - len(probes), rng))  # new questions: mostly misses
        timed, scans, found, truth = [], [], 0, 0
        for query in probes:
            started = time.perf_counter()
            match = index.search("p", query, 0.88)
            timed.append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            sims = vectors @ query
            best = int(np.argmax(sims))
            scans.append((time.perf_counter() - started) * 1000)
            if sims[best] >= 0.88:  # the scan's answer is the truth; the index must agree
                truth += 1
                found += match is not None and match.key == f"k{best}"
            else:
                assert match is None
        p50, p99 = pcts(timed)
        scan50 = pcts(scans)[0]
        lines.append(f"| {size:,} | {p50:.3f} | {p99:.3f} | {scan50:.3f} | {p50 / scan50:.2f} | {found}/{truth} |")
    return lines


# --- 3. precision and hit rate on the paraphrase set ----------------------------------------------


def paraphrase_quality(embedder: Embedder) -> list[str]:
    pairs = [json.loads(line) for line in PARAPHRASES.read_text().splitlines()]
    a = embedder.embed([p["a"] for p in pairs])
    b = embedder.embed([p["b"] for p in pairs])
    sims = (a * b).sum(axis=1)
    same = np.array([p["same"] for p in pairs])
    guarded = np.array([semantic_mismatch(p["b"], p["a"]) is None for p in pairs])
    lines = [
        "| threshold | guard | hit rate on paraphrases | precision of hits | false hits |",
        "| ---: | --- | ---: | ---: | ---: |",
    ]
    for threshold in THRESHOLDS:
        for use_guard in (False, True):
            hit = (sims >= threshold) & (guarded if use_guard else True)
            true_hits = int((hit & same).sum())
            precision = true_hits / hit.sum() if hit.sum() else 1.0
            lines.append(
                f"| {threshold:.2f} | {'on' if use_guard else 'off'} | {true_hits}/{int(same.sum())} "
                f"({true_hits / same.sum():.0%}) | {precision:.0%} | {int((hit & ~same).sum())} |"
            )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=200, help="exact hits to time through the gateway")
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--queries", type=int, default=400)
    parser.add_argument("--only-gateway", action="store_true", help="just part 1 (hit latency)")
    args = parser.parse_args()
    if args.only_gateway:
        print("\n".join(hit_latency(args.requests)))
        return
    embedder = Embedder()
    print("## Semantic precision and hit rate (bench/data/paraphrases.jsonl)\n")
    print("\n".join(paraphrase_quality(embedder)))
    print("\n## Semantic lookup time by index size (threshold 0.88)\n")
    print("\n".join(lookup_time(embedder, [int(s) for s in args.sizes.split(",")], args.queries)))
    print("\n## Hit latency through the gateway (memory store)\n")
    print("\n".join(hit_latency(args.requests)))


if __name__ == "__main__":
    main()
