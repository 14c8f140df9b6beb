"""Shadow evaluation, proved on recorded answers: does the estimated quality retained contain the true
value, and does a threshold calibrated on judged traffic keep its target on traffic it never saw?

RouteLLM's GSM8K file holds Mixtral-8x7B's and GPT-4's full answers to 1,319 questions and whether each
was right. A stand-in server (`bench/replay_standin.py`) answers as the local model with Mixtral's
recorded answer, as the cloud with GPT-4's, and as the judge by those labels. A real gateway (`router
serve`, the general head routing `auto`, shadowing and exploration on) replays:
  1. the first half at the untuned default threshold; its judgements are all `router calibrate` sees;
  2. the second half at the default threshold, into the same store: the estimate now covers all 1,319;
  3. the second half again, on a fresh store, at the threshold `router calibrate --quality-target` chose;
  4. learning from traffic: `router train --from-traffic` on the first quarter's judgements, the new head
     calibrated on the second quarter's judgements of its own routing, then the second half.
True quality retained = Σ right answers as served / Σ GPT-4 right answers, from the labels.

    python -m bench.shadow_replay [--target 0.9] [--share 1] [--explore 1] [--confidence 0.9] [--seeds 1]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import yaml

from bench.replay_standin import ROWS
from tests.servers import free_port, gateway_args, running

KEY_ENV = "HYBRID_ROUTER_REPLAY_KEY"
DEFAULT_THRESHOLD = 0.7  # the shipped default policy's `route: auto` threshold


def config(
    standin_v1: str, ledger: Path, share: float, explore: float, checks: bool, head: Path | None = None,
    seed: int | None = None,
) -> dict[str, Any]:  # fmt: skip
    cloud = {"engine": "litellm", "api_base": standin_v1, "api_key_env": KEY_ENV}
    return {
        **({"classifier": {"head": str(head)}} if head else {}),
        "models": {
            "mixtral": {"engine": "openai-compatible", "model": "mixtral", "api_base": [standin_v1]},
            "gpt-4": {**cloud, "model": "openai/gpt-4", "price": {"input_per_1k_usd": 0.01, "output_per_1k_usd": 0.03}},
            "judge": {**cloud, "model": "openai/judge",
                      "price": {"input_per_1k_usd": 0.00015, "output_per_1k_usd": 0.0006}},
        },
        "routes": {"local": "mixtral", "cloud": "gpt-4"},
        "cache": {"enabled": False},
        "ledger": {"path": str(ledger)},
        "shadow": {"share": share, "explore": explore, "judge": "judge", "checks": checks, "max_usd_per_day": 1000,
                   "queue_size": 5000, "concurrency": 4, "seed": seed},
    }  # fmt: skip


@contextmanager
def gateway(work: Path, name: str, body: dict[str, Any], threshold: float) -> Iterator[str]:
    (work / f"{name}.yaml").write_text(yaml.safe_dump(body))
    (work / f"{name}-policy.yaml").write_text(yaml.safe_dump({"version": 1, "default": {"route": "auto",
                                                              "threshold": threshold}}))  # fmt: skip
    port = free_port()
    args = gateway_args(port, work / f"{name}.yaml", work / f"{name}-policy.yaml")
    with running(args, f"http://127.0.0.1:{port}/readyz", work / f"{name}.log", env={KEY_ENV: "sk-replay"}):
        yield f"http://127.0.0.1:{port}"


async def replay(url: str, rows: list[dict[str, Any]], concurrency: int) -> list[str]:
    """Send each prompt as a client would; the route each one was served by."""
    routes = [""] * len(rows)
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(len(rows)):
        queue.put_nowait(i)
    async with httpx.AsyncClient(timeout=120) as client:

        async def worker() -> None:
            while not queue.empty():
                i = queue.get_nowait()
                body = {"model": "auto", "messages": [{"role": "user", "content": rows[i]["prompt"]}]}
                response = await client.post(f"{url}/v1/chat/completions", json=body)
                response.raise_for_status()
                routes[i] = response.headers["x-router-route"]

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return routes


def settled_stats(url: str, timeout_s: float = 600) -> dict[str, Any]:
    """The stats once every shadow job is done."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        stats = httpx.get(f"{url}/v1/router/stats", params={"window": "1d"}, timeout=30).json()
        if stats["quality"]["shadow"]["pending"] == 0:
            return stats
        time.sleep(0.5)
    raise RuntimeError("shadow jobs did not finish")


def truth(rows: list[dict[str, Any]], routes: list[str]) -> tuple[float, float]:
    """(true quality retained, cloud share) of these routes, from the labels."""
    pairs = zip(rows, routes, strict=True)
    served = sum(bool(r["strong_right"] if route == "cloud" else r["weak_right"]) for r, route in pairs)
    cloud = sum(route == "cloud" for route in routes)
    return served / sum(bool(r["strong_right"]) for r in rows), cloud / len(routes)


def head_scores(head: Path, rows: list[dict[str, Any]]) -> np.ndarray:
    from router.classify.embedding_service import MAX_TEXT_CHARS, load_embedder
    from router.classify.head import Head
    from router.config import EmbedderConfig, Settings

    embedder = load_embedder(EmbedderConfig(), Settings().model_dir.parent / "embedders")
    texts = [str(r["prompt"])[:MAX_TEXT_CHARS] for r in rows]
    return Head.load(head).score(embedder.embed(texts), texts)


def apgr_with_interval(rows: list[dict[str, Any]], scores: np.ndarray) -> str:
    from router.classify.evaluation import bootstrap, curve

    weak = np.array([float(r["weak_right"]) for r in rows])
    strong = np.array([float(r["strong_right"]) for r in rows])
    low, high = bootstrap(scores, weak, strong)["apgr"]
    return f"{curve(scores, weak, strong).apgr:.3f} [{low:.3f}, {high:.3f}]"


def escalation_scores(rows: list[dict[str, Any]]) -> np.ndarray:
    """The scores the gateway's classifier gives these prompts (the general head, the same embedder), so any
    threshold's routes can be read off without replaying it."""
    from router.classify.embedding_service import MAX_TEXT_CHARS, load_embedder
    from router.classify.head import SHIPPED_HEAD, Head
    from router.config import EmbedderConfig, Settings

    embedder = load_embedder(EmbedderConfig(), Settings().model_dir.parent / "embedders")
    texts = [str(r["prompt"])[:MAX_TEXT_CHARS] for r in rows]
    return Head.load(SHIPPED_HEAD).score(embedder.embed(texts), texts)


def at_threshold(rows: list[dict[str, Any]], scores: np.ndarray, threshold: float) -> tuple[float, float]:
    return truth(rows, ["cloud" if s >= threshold else "local" for s in scores])


def random_share(rows: list[dict[str, Any]], target: float) -> float:
    """The cloud share at which routing at random reaches the target, in expectation."""
    kept = sum(bool(r["weak_right"]) for r in rows) / sum(bool(r["strong_right"]) for r in rows)
    return max(0.0, (target - kept) / (1 - kept))


def hindsight_share(rows: list[dict[str, Any]], scores: np.ndarray, target: float) -> tuple[float, float]:
    """The best this head could have done on these rows: the highest threshold meeting the target on them."""
    for threshold in sorted(set(scores.tolist()), reverse=True):
        quality, share = at_threshold(rows, scores, threshold)
        if quality >= target:
            return threshold, share
    return 0.0, 1.0


def router_cli(*args: str) -> str:
    return subprocess.run([sys.executable, "-m", "router", *args], capture_output=True, text=True, check=True).stdout


def calibrated_threshold(config_path: Path, target: float, confidence: float) -> tuple[float, str]:
    out = router_cli("calibrate", "--quality-target", str(target), "--config", str(config_path), "--window", "1d",
                     "--confidence", str(confidence))  # fmt: skip
    return float(re.search(r"threshold (\d\.\d+):", out).group(1)), out.strip()  # type: ignore[union-attr]


def share_threshold(work: Path, rows: list[dict[str, Any]], head: Path, share: float) -> float:
    """`router calibrate PROMPTS --target-cloud-share`: a provisional threshold for a new head."""
    prompts = work / "prompts.jsonl"
    prompts.write_text("\n".join(json.dumps({"prompt": r["prompt"]}) for r in rows))
    out = router_cli("calibrate", str(prompts), "--target-cloud-share", str(share), "--head", str(head))
    return float(re.search(r"threshold (\d\.\d+):", out).group(1))  # type: ignore[union-attr]


def describe(quality: dict[str, Any]) -> str:
    o = quality["overall"]
    if "quality_retained" not in o:
        return f"no estimate ({o.get('note')})"
    return f"{o['quality_retained']:.3f} [{o['low']:.3f}, {o['high']:.3f}] from {o['judged']} judgements"


def replay_once(args: argparse.Namespace, seed: int, say: Callable[[str], None]) -> dict[str, Any]:
    """One whole replay with the shadow sampling seeded; what it found, for the summary."""
    rows = ROWS
    half, quarter = len(rows) // 2, len(rows) // 4
    first, second = rows[:half], rows[half:]

    def run(url: str, part: list[dict[str, Any]]) -> list[str]:
        return asyncio.run(replay(url, part, args.concurrency))

    def shadowed(name: str, head: Path | None = None) -> dict[str, Any]:
        body = config(v1, work / f"{name}.sqlite", args.share, args.explore, not args.no_checks, head, seed)
        (work / f"{name}.yaml").write_text(yaml.safe_dump(body))
        return body

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        port = free_port()
        standin = [sys.executable, "-m", "bench.replay_standin", "--port", str(port)]
        with running(standin, f"http://127.0.0.1:{port}/v1/models", work / "standin.log"):
            v1 = f"http://127.0.0.1:{port}/v1"
            with gateway(work, "default", shadowed("default"), DEFAULT_THRESHOLD) as url:
                started = time.perf_counter()
                routes_first = run(url, first[:quarter])
                settled_stats(url)
                # The first quarter's judgements are what `train --from-traffic` learns from (section 4).
                trained = router_cli("train", "--from-traffic", "--config", str(work / "default.yaml"),
                                     "--window", "1d", "--out", str(work / "traffic-head.npz"))  # fmt: skip
                routes_first += run(url, first[quarter:])
                stats_first = settled_stats(url)
                say(f"1. first half ({len(first)} prompts, general head, threshold {DEFAULT_THRESHOLD}) in "
                    f"{time.perf_counter() - started:.0f} s")  # fmt: skip
                true_q, share = truth(first, routes_first)
                say(f"   true quality retained {true_q:.3f} at {100 * share:.1f}% cloud; estimated "
                    f"{describe(stats_first['quality'])}")  # fmt: skip
                threshold, calibrate_out = calibrated_threshold(work / "default.yaml", args.target, args.confidence)
                say(f"   router calibrate --quality-target {args.target}: " + calibrate_out.replace("\n", " | "))
                routes_second = run(url, second)
                stats_all = settled_stats(url)
                true_all, share_all = truth(rows, routes_first + routes_second)
                q = stats_all["quality"]["overall"]
                inside = "quality_retained" in q and q["low"] <= true_all <= q["high"]
                say(f"2. both halves ({len(rows)} prompts) at the default: true {true_all:.3f} at "
                    f"{100 * share_all:.1f}% cloud; estimated {describe(stats_all['quality'])}: "
                    f"{'contains' if inside else 'MISSES'} the true value")  # fmt: skip
                say(f"   judged by method: {json.dumps(stats_all['quality']['methods'])}; shadow jobs: "
                    f"{json.dumps(stats_all['quality']['shadow']['jobs'])}; shadow spend "
                    f"${stats_all['quality']['shadow']['spent_usd_today']:.4f}")  # fmt: skip
            default_q, default_share = truth(second, routes_second)
            with gateway(work, "tuned", shadowed("tuned"), threshold) as url:
                tuned_q, tuned_share = truth(second, run(url, second))
            say(f"3. second half ({len(second)} prompts, never seen by calibrate): default threshold "
                f"{DEFAULT_THRESHOLD}: quality {default_q:.3f} at {100 * default_share:.1f}% cloud; calibrated "
                f"{threshold:.4f}: quality {tuned_q:.3f} at {100 * tuned_share:.1f}% cloud "
                f"(target {args.target}: {'met' if tuned_q >= args.target else 'NOT met'})")  # fmt: skip
            # 4. Learning from traffic: a head fitted on the first quarter's judgements, put in at a provisional
            # threshold (half its training prompts to the cloud), calibrated on the second quarter's judgements
            # of its own routing, then run on the second half.
            head = work / "traffic-head.npz"
            say(
                "4. router train --from-traffic on the first quarter's judgements: "
                + " | ".join(line for line in trained.strip().splitlines() if "chose" in line or "judged" in line)
            )
            provisional = share_threshold(work, first[:quarter], head, 0.5)
            with gateway(work, "learning", shadowed("learning", head), provisional) as url:
                run(url, first[quarter:])
                settled_stats(url)
            learned, learned_out = calibrated_threshold(work / "learning.yaml", args.target, args.confidence)
            say(
                f"   provisional threshold {provisional:.4f}; calibrated on the second quarter: "
                + learned_out.replace("\n", " | ")
            )
            with gateway(work, "learned", shadowed("learned", head), learned) as url:
                learned_q, learned_share = truth(second, run(url, second))
            say(f"   second half with the traffic head at {learned:.4f}: quality {learned_q:.3f} at "
                f"{100 * learned_share:.1f}% cloud (target {args.target}: "
                f"{'met' if learned_q >= args.target else 'NOT met'})")  # fmt: skip
            traffic_scores = head_scores(head, rows)
    scores = escalation_scores(rows)
    agree = sum((s >= DEFAULT_THRESHOLD) == (route == "cloud") for s, route in zip(scores, routes_first + routes_second,
                                                                                    strict=True))  # fmt: skip
    say(f"   offline scores (same head and embedder) agree with the gateway's routes on {agree} of {len(rows)}")
    say(f"   {'general head, threshold':<26} {'first half':>22} {'second half':>22}")
    for label, t in [*((f"{t:.2f}", t) for t in (0.3, 0.4, 0.5, 0.6, DEFAULT_THRESHOLD)), ("calibrated", threshold)]:
        a, b = at_threshold(first, scores[:half], t), at_threshold(second, scores[half:], t)
        say(f"   {label + (f' {t:.4f}' if label == 'calibrated' else ''):<26} {a[0]:>8.3f} at {100 * a[1]:>5.1f}% "
            f"{b[0]:>8.3f} at {100 * b[1]:>5.1f}%")  # fmt: skip
    _, best_share = hindsight_share(second, scores[half:], args.target)
    _, best_lshare = hindsight_share(second, traffic_scores[half:], args.target)
    say(f"   cloud share that reaches {args.target} on the second half: general head calibrated "
        f"{100 * tuned_share:.1f}% (in hindsight {100 * best_share:.1f}%); traffic head calibrated "
        f"{100 * learned_share:.1f}% (in hindsight {100 * best_lshare:.1f}%); random routing "
        f"{100 * random_share(second, args.target):.1f}%; all to the cloud 100%")  # fmt: skip
    apgr_general, apgr_traffic = (
        apgr_with_interval(second, scores[half:]),
        apgr_with_interval(second, traffic_scores[half:]),
    )
    say(f"   APGR on the second half (95% bootstrap): general head {apgr_general}; traffic head {apgr_traffic}")
    return {
        "seed": seed,
        "first_half_inside": stats_first["quality"]["overall"].get("low", 2)
        <= true_q
        <= stats_first["quality"]["overall"].get("high", -1),
        "all_inside": inside,
        "general": (tuned_q, tuned_share),
        "traffic": (learned_q, learned_share),
        "default": (default_q, default_share),
        "hindsight": (best_share, best_lshare),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", type=float, default=0.9, help="Quality target for `router calibrate`.")
    parser.add_argument("--share", type=float, default=1.0, help="shadow.share (local answers judged).")
    parser.add_argument("--explore", type=float, default=1.0, help="shadow.explore (cloud answers judged).")
    parser.add_argument("--confidence", type=float, default=0.9, help="`router calibrate --confidence`.")
    parser.add_argument("--no-checks", action="store_true", help="Judge every pair (no deterministic checks).")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument(
        "--seeds", default="1", help="Shadow sampling seeds, one whole replay each (with shares below 1: 1,2,3)."
    )
    args = parser.parse_args()
    lines: list[str] = []

    def say(line: str) -> None:
        print(line, flush=True)
        lines.append(line)

    found = []
    for seed in (int(x) for x in args.seeds.split(",")):
        say(f"== seed {seed}")
        found.append(replay_once(args, seed, say))
    say(f"== summary over {len(found)} replays (target {args.target} on the second half)")
    for f in found:
        (gq, gs), (tq, ts), (dq, ds) = f["general"], f["traffic"], f["default"]
        say(f"   seed {f['seed']}: estimate contains the truth: first half {f['first_half_inside']}, all "
            f"{f['all_inside']}; default {dq:.3f} at {100 * ds:.1f}%; general head calibrated {gq:.3f} at "
            f"{100 * gs:.1f}% ({'met' if gq >= args.target else 'missed'}); traffic head calibrated {tq:.3f} at "
            f"{100 * ts:.1f}% ({'met' if tq >= args.target else 'missed'})")  # fmt: skip
    out = Path("bench/.work/shadow_replay.txt")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
