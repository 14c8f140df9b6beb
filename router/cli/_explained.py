"""`router route`'s words for an explanation (the JSON `/v1/router/explain` and `router route --json` give)."""

from __future__ import annotations

from typing import Any

from router.cascade_rule import LOW_IS_UNSURE, STRONG_CHANCE_UNKNOWN


def decision_lines(result: dict[str, Any]) -> list[str]:
    """Where the request goes, why, and what applies to it on the way."""
    lines = [
        f"denied:  {result['deny']['status']} {result['deny']['message']}"
        if result["deny"]
        else f"route:   {result['route']}  (model {result['model']})",
        f"reason:  {result['reason']}",
        f"tokens:  {result['prompt_tokens']} prompt tokens",
    ]
    if result["scores"]:
        lines.append(f"score:   {result['scores']['escalation']:.4f} (threshold {result['scores']['threshold']:.4f})")
    if head := result.get("classifier"):
        lines.append(f"head:    {head['head']} ({head['family']}; trained on {head['trained_on']})")
    for scope, found in result["intents"].items():
        said = f"`{found['intent']}`" if found["intent"] else f"none ({found['why_not']})"
        runner_up = (
            f", runner-up `{found['runner_up']}` at {found['runner_up_similarity']:.3f}" if found["runner_up"] else ""
        )
        lines.append(
            f"intent:  {said} on {scope}; nearest example of `{found['nearest']}`: {found['example']!r} "
            f"at {found['similarity']:.3f} (needs {found['threshold']:g}){runner_up}"
        )
    if cascade := result.get("cascade"):
        side = "below" if cascade["metric"] in LOW_IS_UNSURE else "above"
        after = cascade.get("decide_after_tokens")
        when = (
            "once the local model has read the prompt, before its first token"
            if after == 0
            else f"on its first {after} tokens (streams on live if kept)"
            if after
            else "on the whole answer (a stream waits for it)"
        )
        what = cascade["metric"]
        if what == "prompt_gain":
            what = (
                "P(strong right) - P(local right), as the local model's state at the end of the prompt gives "
                "them (its state probe; without one, the expected gain below),"
            )
            lines.append(f"cascade: to the cloud if {what} {side} {cascade['threshold']:g}, {when}")
            what = "expected_gain"
            side, when = "above", "where the local model has no state probe"
        if what == "letter_gain" and cascade.get("asks_letter"):
            what = (
                "P(strong right) from the letter probe (the classifier's without one) minus the letter's "
                'probability, the question asked aside as served with its answer started "The correct answer '
                'is",'
            )
            when = "before the served answer starts (one local token aside, its prompt then cached)"
        elif what == "letter_gain":
            lines.append("cascade: letter_gain asks a multiple-choice question aside; this is none, so:")
            what = "expected_gain"
        if what == "expected_gain":
            chance = cascade.get("strong_chance")
            said = "unknown, taken as" if chance is None else f"from {head['strong_chance']}" if head else "given"
            chance = STRONG_CHANCE_UNKNOWN if chance is None else chance
            what = f"P(strong right) {chance:.3f} ({said}) minus the answer's probability"
        lines.append(f"cascade: to the cloud if {what} {side} {cascade['threshold']:g}, {when}")
    if result["fallbacks"]:
        lines.append(f"fallback: {', '.join(result['fallbacks'])}")
    if not result["allow_cloud"]:
        lines.append("pinned:  never leaves the local model")
    if result["redact"]:
        lines.append(f"redact:  {', '.join(result['redact'])} (before any cloud model sees it)")
    if result["budget"]:
        lines.append(f"budget:  {result['budget']['state']} ({result['budget']['summary']})")
    if result["session"]["escalated_before"]:
        lines.append("session: an earlier turn of this conversation was answered by the cloud")
    lines.append(f"cache:   {result['cache']['not_cacheable'] or 'eligible'}")
    return lines


def rule_lines(result: dict[str, Any], policy_path: str) -> list[str]:
    """Every rule tried, what matched and why the others did not."""
    lines = [f"policy:  {policy_path} (version {result['policy']})"]
    for trace in result["rules"]:
        mark = "MATCH" if trace["matched"] else "skip "
        lines.append(f"  {mark} {trace['rule']}" + ("" if trace["matched"] else f"  ({trace['why_not']})"))
        lines += [f"          {'because' if trace['matched'] else 'held:  '} {e}" for e in trace["evidence"]]
    if result["reason"] != (result["rule"] or ""):
        lines.append(f"  -> {result['reason']}: requested model `{result['requested_model']}`")
    return lines
