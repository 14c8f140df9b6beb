"""A sequence's sampler chain in llama.cpp's own sampler API: what the batched engine samples each
sequence's next token with (temperature, top-k/top-p/min-p, penalties, logit bias, a grammar, a seed)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Sampling:
    temperature: float = 0.7
    top_p: float = 1.0
    top_k: int = 40
    """0: no limit (llama.cpp's own meaning)."""
    seed: int | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logit_bias: dict[int, float] = field(default_factory=dict)
    grammar: str | None = None
    """GBNF text (root rule `root`), e.g. a JSON schema's grammar."""


def sampler_chain(ll: Any, vocab: Any, n_vocab: int, s: Sampling) -> Any:
    """A new chain for one sequence (`ll` is llama_cpp's low-level module); the caller frees it."""
    chain = ll.llama_sampler_chain_init(ll.llama_sampler_chain_default_params())
    if s.logit_bias:
        pairs = [ll.llama_logit_bias(token, bias) for token, bias in s.logit_bias.items()]
        biases = (ll.llama_logit_bias * len(pairs))(*pairs)
        ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_logit_bias(n_vocab, len(pairs), biases))
    if s.presence_penalty or s.frequency_penalty:
        ll.llama_sampler_chain_add(
            chain, ll.llama_sampler_init_penalties(64, 1.0, s.frequency_penalty, s.presence_penalty)
        )
    if s.grammar is not None:
        ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_grammar(vocab, s.grammar.encode(), b"root"))
    if s.temperature <= 0:
        ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_greedy())
    else:
        ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_top_k(s.top_k))
        ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_top_p(s.top_p, 1))
        ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_min_p(0.05, 1))
        ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_temp(s.temperature))
        seed = s.seed if s.seed is not None else ll.LLAMA_DEFAULT_SEED
        ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_dist(seed & 0xFFFFFFFF))
    return chain
