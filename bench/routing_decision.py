"""How long the routing decision takes: the policy alone (the baseline), policy + classifier, and
policy + intents at 10 and 100 examples per intent.

    python -m bench.routing_decision [--requests 300] [--concurrency 8]

Prints p50/p99 in milliseconds for each, measured in the same run, and the classifier's cost as a
ratio to the policy-only decision. The classifier path is what `route: auto` adds to a request: one
embedding on the scorer's thread plus the head, awaited from the event loop.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from router.classify.embedding_service import EmbeddingService
from router.classify.scorer import EscalationScorer
from router.config import DEFAULT_POLICY_FILE, GatewayConfig
from router.policy import load_policy, parse_policy
from router.policy.facts import Facts
from router.routing import Router
from router.types import Findings, RequestContext

PROMPTS = [
    "What is the capital of France?",
    "Prove that there are infinitely many primes.",
    "Write a haiku about autumn leaves.",
    "A train leaves at 3pm at 60 km/h; another at 4pm at 80 km/h. When does the second catch up?",
    "Summarise the causes of the First World War in three sentences.",
    "Translate 'good morning' into Spanish.",
]


def ctx(i: int, scores: dict[str, float] | None = None, intents: dict | None = None) -> Facts:
    text = PROMPTS[i % len(PROMPTS)]
    request = RequestContext(str(i), "chat", "auto", ({"role": "user", "content": text},))
    return Facts(request, Findings(scores=scores or {}, intents=intents or {}))


def percentiles(samples_ms: list[float]) -> tuple[float, float]:
    ordered = sorted(samples_ms)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


async def classifier_decisions(router: Router, scorer: EscalationScorer, n: int, concurrency: int) -> list[float]:
    samples: list[float] = []
    semaphore = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with semaphore:
            started = time.perf_counter()
            score = await scorer.score(ctx(i).request.last_user_text())
            router.decide(ctx(i, {"escalation": score or 0.0}))
            samples.append((time.perf_counter() - started) * 1000)

    await asyncio.gather(*(one(i) for i in range(n)))
    return samples


INTENTS = 5
TOPICS = ["billing and invoices", "password and login", "shipping and delivery", "legal contracts", "small talk"]


def intent_policy(examples: int) -> str:
    """INTENTS intents of `examples` distinct utterances each, and a rule per intent."""
    lines = ["intents:"]
    for t, topic in enumerate(TOPICS[:INTENTS]):
        lines.append(f"  topic{t}:\n    examples:")
        lines += [f"      - 'question {k} about {topic}: variant {k * 7 % 13}'" for k in range(examples)]
    lines.append("rules:")
    lines += [f"  - {{name: r{t}, when: {{intent: topic{t}}}, route: cloud}}" for t in range(INTENTS)]
    return "\n".join(lines) + "\n"


async def intent_decisions(
    embeddings: EmbeddingService, config: GatewayConfig, examples: int, n: int
) -> tuple[list[float], list[float]]:
    """Matching the intents and deciding, given the request's vector (what intents add when the cache or
    classifier already embedded the request); and the same with the embedding itself."""
    engine = parse_policy(intent_policy(examples), "bench", config.models)
    await engine.attach_intents(embeddings.embed_many)
    router = Router(config, engine)
    assert engine.intents is not None
    vectors = await embeddings.embed_many(PROMPTS)
    matched, embedded = [], []
    for i in range(n):
        started = time.perf_counter()
        found = engine.intents.match(vectors[i % len(PROMPTS)])
        router.decide(ctx(i, intents={"last_user": found}))
        matched.append((time.perf_counter() - started) * 1000)
    for i in range(n):
        started = time.perf_counter()
        vector = await embeddings.embed(PROMPTS[i % len(PROMPTS)])
        router.decide(ctx(i, intents={"last_user": engine.intents.match(vector)}))
        embedded.append((time.perf_counter() - started) * 1000)
    return matched, embedded


async def main_async(n: int, concurrency: int) -> None:
    config = GatewayConfig()
    policy_router = Router(config, load_policy(DEFAULT_POLICY_FILE, config.models))
    auto_router = Router(config, parse_policy("default: {route: auto, threshold: 0.5}\n", "bench", config.models))

    policy_ms = []
    for i in range(n):
        started = time.perf_counter()
        policy_router.decide(ctx(i))
        policy_ms.append((time.perf_counter() - started) * 1000)

    embeddings = EmbeddingService()
    await embeddings.start()
    scorer = EscalationScorer(embeddings)
    await classifier_decisions(auto_router, scorer, 20, 1)  # warm-up
    single = await classifier_decisions(auto_router, scorer, n, 1)
    loaded = await classifier_decisions(auto_router, scorer, n, concurrency)
    intents = {n_examples: await intent_decisions(embeddings, config, n_examples, n) for n_examples in (10, 100)}
    await embeddings.close()

    base50, base99 = percentiles(policy_ms)
    print(f"{'decision':<44} {'p50 ms':>8} {'p99 ms':>8} {'p50 / policy':>13}")
    print(f"{'policy only (default policy, baseline)':<44} {base50:>8.3f} {base99:>8.3f} {1.0:>13.1f}")
    for label, samples in (("policy + classifier, one at a time", single),
                           (f"policy + classifier, {concurrency} concurrent", loaded)):  # fmt: skip
        p50, p99 = percentiles(samples)
        print(f"{label:<44} {p50:>8.3f} {p99:>8.3f} {p50 / base50:>13.1f}")
    for n_examples, (matched, embedded) in intents.items():
        for label, samples in ((f"policy + {INTENTS} intents x {n_examples} examples", matched),
                               ("  the same, with the request's embedding", embedded)):  # fmt: skip
            p50, p99 = percentiles(samples)
            print(f"{label:<44} {p50:>8.3f} {p99:>8.3f} {p50 / base50:>13.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    asyncio.run(main_async(args.requests, args.concurrency))


if __name__ == "__main__":
    main()
