"""What translating a request from its client's API into a chat request leaves behind.

Anthropic's Messages and OpenAI's Responses carry things chat completions cannot: thinking settings,
context management, server tools, documents, encrypted reasoning. A translation never drops them
silently. A hint the answer can do without (thinking, `output_config`, a server tool offered) is
*omitted*: a model of the client's own API gets the request whole, any other answers without it and
says so in `x-router-omitted`. Content only that API can carry (a document block, a server tool's
result in the history) is *native only*: the request needs a model of its API (routing moves it along
its chain to one, or refuses it with 400 `capability_unavailable` naming the API).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from router.types import NativeAPI, NativeRequest


@dataclass
class Leftovers:
    omitted: list[str] = field(default_factory=list)
    native_only: list[str] = field(default_factory=list)

    def omit(self, what: str) -> None:
        if what not in self.omitted:
            self.omitted.append(what)

    def need(self, what: str) -> None:
        if what not in self.native_only:
            self.native_only.append(what)


def native_request(api: NativeAPI, body: Mapping[str, Any], headers: Mapping[str, str], left: Leftovers,
                   forward: tuple[str, ...], query: str = "") -> NativeRequest:  # fmt: skip
    """The client's request kept whole, with the provider headers named in `forward`."""
    kept = {name: value for name, value in headers.items() if name in forward}
    return NativeRequest(api, dict(body), kept, query=query, requires=tuple(left.native_only))
