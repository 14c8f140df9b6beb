"""Redaction: stable placeholders, an exact round trip for any text, and restoring a stream split anywhere."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from router.pii import Redaction, find_pii

PII_VALUES = [
    "jane@example.com",
    "4111 1111 1111 1111",
    "DE89 3704 0044 0532 0130 00",
    "123-45-6789",
    "10.1.2.3",
    "+44 20 7946 0958",
    "sk-proj-abcdefghijklmnopqrstuvwxyz123456",
]
filler = st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=30)
texts = st.lists(st.one_of(filler, st.sampled_from(PII_VALUES), st.just("<EMAIL_1>")), max_size=12).map(" ".join)


def test_same_value_same_placeholder_across_messages() -> None:
    r = Redaction()
    messages = r.redact_messages(
        [
            {"role": "system", "content": "You write mails."},
            {"role": "user", "content": "Mail jane@example.com about card 4111 1111 1111 1111."},
            {"role": "user", "content": [{"type": "text", "text": "Again: jane@example.com"}]},
        ]
    )
    assert messages[1]["content"] == "Mail <EMAIL_1> about card <CREDIT_CARD_1>."
    assert messages[2]["content"] == [{"type": "text", "text": "Again: <EMAIL_1>"}]
    assert messages[0]["content"] == "You write mails."
    assert r.restore("Sent to <EMAIL_1>.") == "Sent to jane@example.com."


def test_placeholders_already_in_the_text_are_not_reused() -> None:
    original = "Template says <EMAIL_1>; the real one is jane@example.com"
    r = Redaction(avoid=original)
    redacted = r.redact(original)
    assert redacted == "Template says <EMAIL_1>; the real one is <EMAIL_2>"
    assert r.restore(redacted) == original


def test_only_the_kinds_asked_for() -> None:
    r = Redaction(kinds=["email"])
    assert r.redact("jane@example.com at 10.1.2.3") == "<EMAIL_1> at 10.1.2.3"


@settings(max_examples=400, deadline=None)
@given(texts)
def test_round_trip_is_exact_and_nothing_detected_survives(text: str) -> None:
    r = Redaction(avoid=text)
    redacted = r.redact(text)
    assert r.restore(redacted) == text
    assert not [m for m in find_pii(redacted) if m.text in r.originals.values()]


@settings(max_examples=300, deadline=None)
@given(texts, st.lists(st.integers(min_value=0, max_value=400), max_size=8))
def test_stream_restore_equals_whole_restore_wherever_the_pieces_split(text: str, cuts: list[int]) -> None:
    r = Redaction(avoid=text)
    redacted = r.redact(text)
    points = sorted({min(c, len(redacted)) for c in cuts})
    pieces = [redacted[a:b] for a, b in zip([0, *points], [*points, len(redacted)], strict=True)]
    restorer = r.stream_restorer()
    out = "".join(restorer.feed(piece) for piece in pieces) + restorer.flush()
    assert out == text


def test_tool_call_arguments_are_restored() -> None:
    r = Redaction()
    r.redact("mail jane@example.com")
    extra = {
        "tool_calls": [
            {"id": "1", "type": "function", "function": {"name": "send", "arguments": '{"to": "<EMAIL_1>"}'}}
        ]
    }
    assert r.restore_extra(extra)["tool_calls"][0]["function"]["arguments"] == '{"to": "jane@example.com"}'
