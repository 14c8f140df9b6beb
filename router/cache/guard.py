"""A lexical check on semantic matches: sentence embeddings are blind to a few small, decisive edits.

all-MiniLM-L6-v2 puts "Convert 10 kilometres to miles" and "Convert 10 miles to kilometres" at cosine
0.994, and "enable two-factor authentication" next to "disable ..." at 0.88: no threshold separates
those from true paraphrases (0.85-0.95). So a match above the threshold is still refused when the two
questions differ in a number, in a negation, in one of a pair of opposite words, or only in word order
(the same words rearranged usually swap roles: from/to, who did what to whom). Cheap (a few set
operations on short strings) and conservative: it can only turn a hit into a miss.
"""

from __future__ import annotations

import re

_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
_NUMBER = re.compile(r"\b\d+(?:[.,]\d+)?\b")  # standalone numbers: the 2 in "2FA" is part of a name
_NEGATIONS = frozenset({"not", "no", "never", "without", "cannot", "can't", "don't", "doesn't", "isn't", "won't"})
_OPPOSITES = (
    ("on", "off"), ("enable", "disable"), ("enabled", "disabled"), ("import", "export"), ("upgrade", "downgrade"),
    ("increase", "decrease"), ("add", "remove"), ("open", "close"), ("start", "stop"), ("buy", "sell"),
    ("before", "after"), ("min", "max"), ("minimum", "maximum"), ("true", "false"), ("yes", "no"), ("in", "out"),
    ("up", "down"), ("encrypt", "decrypt"), ("lock", "unlock"), ("with", "without"), ("login", "logout"),
    ("subscribe", "unsubscribe"), ("install", "uninstall"), ("show", "hide"), ("allow", "block"), ("more", "less"),
    ("first", "last"), ("upload", "download"), ("input", "output"), ("send", "receive"), ("left", "right"),
)  # fmt: skip
_OPPOSITE = {a: b for a, b in _OPPOSITES} | {b: a for a, b in _OPPOSITES}


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def semantic_mismatch(question: str, stored: str) -> str | None:
    """Why `stored`'s answer must not serve `question` although their embeddings are close, or None."""
    a, b = _words(question), _words(stored)
    if a == b:
        return None
    if sorted(_NUMBER.findall(question)) != sorted(_NUMBER.findall(stored)):
        return "different numbers"
    set_a, set_b = set(a), set(b)
    if bool(set_a & _NEGATIONS) != bool(set_b & _NEGATIONS):
        return "negated in one only"
    only_a, only_b = set_a - set_b, set_b - set_a
    if any(_OPPOSITE.get(word) in only_b for word in only_a):
        return "opposite words"
    if sorted(a) == sorted(b):
        return "same words in another order"
    return None
