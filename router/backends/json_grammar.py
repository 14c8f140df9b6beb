"""JSON output for the in-process model: `response_format` turned into a llama.cpp grammar.

`{"type": "json_object"}` constrains sampling to JSON's own grammar; `{"type": "json_schema",
"json_schema": {"schema": ...}}` to the schema (llama.cpp's JSON-schema-to-GBNF converter). Every token
the model samples then keeps the answer a prefix of valid JSON, so a finished answer parses; one cut
off by `max_tokens` ends with `finish_reason: length`, as at OpenAI. Grammars are compiled once per
schema and kept.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from typing import Any

from router.errors import InvalidRequest


@functools.lru_cache(maxsize=64)
def _compiled(kind: str, schema: str | None) -> Any:
    from llama_cpp.llama_grammar import JSON_GBNF, LlamaGrammar

    if kind == "json_object":
        return LlamaGrammar.from_string(JSON_GBNF, verbose=False)
    return LlamaGrammar.from_json_schema(schema or "{}", verbose=False)


def grammar_for(response_format: Any) -> Any | None:
    """The grammar a `response_format` asks for, or None for plain text."""
    if not isinstance(response_format, Mapping) or response_format.get("type") in (None, "text"):
        return None
    kind = response_format["type"]
    if kind == "json_object":
        return _compiled(kind, None)
    if kind != "json_schema":
        raise InvalidRequest(
            f"Invalid value for 'response_format.type': `{kind}`; expected text, json_object or json_schema.",
            param="response_format.type",
        )
    spec = response_format.get("json_schema")
    schema = spec.get("schema") if isinstance(spec, Mapping) else None
    if not isinstance(schema, Mapping):
        raise InvalidRequest(
            "response_format json_schema needs `json_schema.schema`, a JSON schema object.",
            param="response_format.json_schema.schema",
        )
    try:
        return _compiled(kind, json.dumps(schema, sort_keys=True))
    except (ValueError, KeyError, TypeError, RuntimeError) as exc:
        raise InvalidRequest(
            f"The local model cannot constrain its answer to this JSON schema: {exc}",
            param="response_format.json_schema.schema",
        ) from None
