"""Replace personal data with stable placeholders before a cloud model sees it; put it back in the answer.

One `Redaction` per request: the same value gets the same placeholder everywhere in the conversation
(`<EMAIL_1>` twice for the same address), so the cloud model can still refer to it, and the answer's
placeholders are swapped back for the originals. Placeholders that already occur in the original text
are skipped, which makes `restore(redact(text)) == text` hold for every text: a placeholder has a
single `<`, so no occurrence of one can straddle an inserted placeholder and the original around it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from router.pii.detector import find_pii

_LONGEST_PLACEHOLDER = 32


class Redaction:
    def __init__(self, kinds: Iterable[str] | None = None, avoid: str = "") -> None:
        self._kinds = tuple(kinds) if kinds is not None else None
        self._avoid = avoid
        """Text whose own placeholder-like strings must not be reused (the whole original request)."""
        self._by_value: dict[tuple[str, str], str] = {}
        self.originals: dict[str, str] = {}
        """placeholder → the value it stands for."""
        self._counts: dict[str, int] = {}
        self._restore_re: re.Pattern[str] | None = None

    def _placeholder(self, kind: str, value: str) -> str:
        key = (kind, value)
        if key not in self._by_value:
            n = self._counts.get(kind, 0)
            while True:
                n += 1
                placeholder = f"<{kind.upper()}_{n}>"
                if placeholder not in self._avoid:
                    break
            self._counts[kind] = n
            self._by_value[key] = placeholder
            self.originals[placeholder] = value
            self._restore_re = None
        return self._by_value[key]

    def redact(self, text: str) -> str:
        matches = find_pii(text, self._kinds)
        if not matches:
            return text
        parts: list[str] = []
        at = 0
        for m in matches:
            parts += [text[at : m.start], self._placeholder(m.kind, m.text)]
            at = m.end
        parts.append(text[at:])
        return "".join(parts)

    @property
    def active(self) -> bool:
        return bool(self.originals)

    def restore(self, text: str) -> str:
        """Swap every placeholder of ours for its value in one pass (a value is never re-read)."""
        if not self.originals or not text:
            return text
        if self._restore_re is None:
            self._restore_re = re.compile("|".join(re.escape(p) for p in self.originals))
        return self._restore_re.sub(lambda m: self.originals[m.group()], text)

    def redact_content(self, content: Any) -> Any:
        """A message's content, string or list of OpenAI parts; only text is touched."""
        if isinstance(content, str):
            return self.redact(content)
        if isinstance(content, list):
            return [
                {**part, "text": self.redact(part["text"])}
                if isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str)
                else part
                for part in content
            ]
        return content

    def redact_messages(self, messages: Iterable[Mapping[str, Any]]) -> tuple[dict[str, Any], ...]:
        return tuple({**m, "content": self.redact_content(m.get("content"))} for m in messages)

    def restore_extra(self, extra: Mapping[str, Any]) -> dict[str, Any]:
        """Tool-call arguments can quote the placeholders too (a `send_mail(to=<EMAIL_1>)` call)."""
        out = dict(extra)
        calls = out.get("tool_calls")
        if isinstance(calls, list):
            out["tool_calls"] = [_restore_call(self, call) for call in calls]
        return out

    def stream_restorer(self) -> StreamRestorer:
        return StreamRestorer(self)


def _restore_call(redaction: Redaction, call: Any) -> Any:
    function = call.get("function") if isinstance(call, dict) else None
    if not isinstance(function, dict) or not isinstance(function.get("arguments"), str):
        return call
    return {**call, "function": {**function, "arguments": redaction.restore(function["arguments"])}}


class StreamRestorer:
    """Restores a streamed answer piece by piece; a placeholder split across pieces is held back until whole."""

    def __init__(self, redaction: Redaction) -> None:
        self._redaction = redaction
        self._held = ""

    def feed(self, piece: str) -> str:
        text = self._held + piece
        cut = text.rfind("<")
        if cut != -1 and ">" not in text[cut:] and len(text) - cut < _LONGEST_PLACEHOLDER:
            text, self._held = text[:cut], text[cut:]
        else:
            self._held = ""
        return self._redaction.restore(text)

    def flush(self) -> str:
        text, self._held = self._held, ""
        return self._redaction.restore(text)
