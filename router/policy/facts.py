"""Facts about a request that conditions test: personal data, language, code, tools, images.

Each is computed at most once per request, and only when a rule asks (the memo lives on the request
context), so a policy that never mentions `language:` never loads the language model.
"""

from __future__ import annotations

import re
from typing import Any

from router.pii import PiiMatch, find_pii
from router.types import RequestContext

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


def _memo(ctx: RequestContext, key: tuple[str, str], compute: Any) -> Any:
    if key not in ctx.memo:
        ctx.memo[key] = compute()
    return ctx.memo[key]


def pii(ctx: RequestContext, scope: str) -> list[PiiMatch]:
    return _memo(ctx, ("pii", scope), lambda: find_pii(text_for(ctx, scope)))


def code(ctx: RequestContext, scope: str) -> str | None:
    """The snippet that shows the text holds code, or None."""

    def detect() -> str | None:
        text = text_for(ctx, scope)
        if m := _CODE_STRONG.search(text):
            return m.group().strip()[:40]
        lines = _CODE_LINE.findall(text)
        return lines[0].strip()[:40] if len(lines) >= 2 else None

    return _memo(ctx, ("code", scope), detect)


def language(ctx: RequestContext, scope: str) -> tuple[str, float] | None:
    """(ISO 639-1 code, probability) of the text's language, or None for text too short to tell."""

    def detect() -> tuple[str, float] | None:
        text = text_for(ctx, scope)
        if len(re.findall(r"\w+", text)) < 2:
            return None
        from py3langid.langid import MODEL_FILE, LanguageIdentifier

        global _identifier
        if _identifier is None:  # loaded on first use (~0.3 s); the model ships inside the wheel
            _identifier = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
        lang, prob = _identifier.classify(text[:2000])
        return str(lang), float(prob)

    return _memo(ctx, ("language", scope), detect)


_identifier: Any = None


def tools(ctx: RequestContext) -> bool:
    return bool(ctx.passthrough.get("tools") or ctx.passthrough.get("functions"))


def images(ctx: RequestContext) -> bool:
    return any(
        isinstance(part, dict) and part.get("type") in IMAGE_PART_TYPES
        for message in ctx.messages
        if isinstance(message.get("content"), list)
        for part in message["content"]
    )


def metadata(ctx: RequestContext) -> dict[str, Any]:
    value = ctx.passthrough.get("metadata")
    return value if isinstance(value, dict) else {}
