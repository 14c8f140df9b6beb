"""Facts about a request that conditions test: personal data, language, code, tools, images.

The costly ones are computed at most once per decision, and only when a rule asks, so a policy that never
mentions `language:` never loads the language model. They are remembered by `Facts`, the object one
decision reads (the request and what the stages found): it lives as long as that decision, so nothing it
remembers can outlive the messages it was computed from.
"""

from __future__ import annotations

import re
from typing import Any

from router.pii import PiiMatch, find_pii
from router.types import NOTHING_FOUND, Findings, RequestContext

IMAGE_PART_TYPES = frozenset({"image_url", "input_image", "image"})

# One of these is enough to call a text code.
_CODE_STRONG = re.compile(
    r"```"
    r"|^\s*#include\s*[<\"]"
    r"|^\s*(?:async\s+)?def\s+\w+\s*\(.*\)\s*(?:->\s*[^:]+)?:"
    r"|^\s*(?:export\s+)?(?:async\s+)?function\s*\w*\s*\("
    r"|^\s*(?:public|private|protected)\s+(?:static\s+)?[\w<>\[\]]+\s+\w+\s*\("
    r"|^\s*(?:fn|func)\s+\w+\s*\("
    r"|^\s*from\s+[\w.]+\s+import\s+\w"
    r"|^\s*import\s+[\w.{}, *]+\s+from\s+['\"]"
    r"|\bSELECT\s+[\w*,\s.]+\s+FROM\s+\w"
    r"|<\?php|console\.log\(|System\.out\.print",
    re.MULTILINE,
)
# Lines that end like statements or blocks; two or more of them also make code.
_CODE_LINE = re.compile(r"^.*\S.*(?:;|\{|\}|\):)\s*$", re.MULTILINE)


def text_for(ctx: RequestContext, scope: str) -> str:
    if scope == "all":
        return ctx.all_text()
    return ctx.conversation_text() if scope == "conversation" else ctx.last_user_text()


class Facts:
    """A request and what the stages found about it, as the policy and the router read them for one
    decision; facts derived from the messages are computed once, when first asked."""

    __slots__ = ("_derived", "found", "request")

    def __init__(self, request: RequestContext, found: Findings = NOTHING_FOUND) -> None:
        self.request = request
        self.found = found
        self._derived: dict[object, Any] | None = None

    def derived(self, key: object, compute: Any) -> Any:
        if self._derived is None:
            self._derived = {}
        if key not in self._derived:
            self._derived[key] = compute()
        return self._derived[key]


def pii(facts: Facts, scope: str) -> list[PiiMatch]:
    return facts.derived(("pii", scope), lambda: find_pii(text_for(facts.request, scope)))


def code(facts: Facts, scope: str) -> str | None:
    """The snippet that shows the text holds code, or None."""

    def detect() -> str | None:
        text = text_for(facts.request, scope)
        if m := _CODE_STRONG.search(text):
            return m.group().strip()[:40]
        lines = _CODE_LINE.findall(text)
        return lines[0].strip()[:40] if len(lines) >= 2 else None

    return facts.derived(("code", scope), detect)


def language(facts: Facts, scope: str) -> tuple[str, float] | None:
    """(ISO 639-1 code, probability) of the text's language, or None for text too short to tell."""

    def detect() -> tuple[str, float] | None:
        text = text_for(facts.request, scope)
        if len(re.findall(r"\w+", text)) < 2:
            return None
        from py3langid.langid import MODEL_FILE, LanguageIdentifier

        global _identifier
        if _identifier is None:  # loaded on first use (~0.3 s); the model ships inside the wheel
            _identifier = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
        lang, prob = _identifier.classify(text[:2000])
        return str(lang), float(prob)

    return facts.derived(("language", scope), detect)


_identifier: Any = None


def tools(ctx: RequestContext) -> bool:
    return bool(ctx.passthrough.get("tools") or ctx.passthrough.get("functions"))


def part_types(ctx: RequestContext) -> frozenset[str]:
    """The types of the content parts the messages carry (none when every content is a plain string)."""
    kinds = {
        part.get("type")
        for message in ctx.messages
        if isinstance(content := message.get("content"), list)
        for part in content
        if isinstance(part, dict)
    }
    return frozenset(k for k in kinds if isinstance(k, str))


def images(ctx: RequestContext) -> bool:
    return not IMAGE_PART_TYPES.isdisjoint(part_types(ctx))


def metadata(ctx: RequestContext) -> dict[str, Any]:
    value = ctx.passthrough.get("metadata")
    return value if isinstance(value, dict) else {}
