"""`router policy check|test|diff|schema`: validate a policy, run its tests, compare two on a sample."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from router.cli._common import ConfigOpt, _fail, _settings, policy_app
from router.cli._judgements import stored_judgements
from router.config import load_gateway_config
from router.errors import ConfigError

if TYPE_CHECKING:
    from router.components import Components
    from router.deciding import Assumed
    from router.policy import PolicyEngine
    from router.policy.testing import CaseResult, Explain
    from router.quality import Judgement
    from router.types import RequestContext


def _components_for(file: Path, config: Path | None) -> Components:
    from router.app import build_components

    try:
        return build_components(_settings(config, file), dry_run=True)
    except ConfigError as error:
        _fail(error)
        raise  # unreachable: _fail exits


def _print_results(results: list[CaseResult], source: str) -> None:
    from router.policy.testing import explanation_lines

    for result in results:
        if result.passed:
            typer.echo(f"  ok    {result.case.label}")
            continue
        typer.secho(f"  FAIL  {result.case.label}", fg=typer.colors.RED)
        for failure in result.failures:
            typer.echo(f"          {failure}")
        for line in explanation_lines(result.explanation):
            typer.echo(f"          {line}")
    failed = sum(not r.passed for r in results)
    summary = f"{source}: {len(results) - failed} passed, {failed} failed"
    typer.secho(summary, fg=typer.colors.RED if failed else typer.colors.GREEN)


def _run_tests(components: Components, cases_file: Path | None) -> list[CaseResult]:
    from router.cli._decide import with_explainer
    from router.policy.testing import read_cases, run_cases

    engine = components.pipeline.router.policy
    cases = read_cases(cases_file) if cases_file is not None else engine.policy.tests
    return with_explainer(components, lambda explain: run_cases(cases, explain, components.config.ledger.tenant_header))


@policy_app.command("check")
def policy_check(
    file: Annotated[Path, typer.Argument(help="The policy YAML to validate.")],
    config: ConfigOpt = None,
) -> None:
    """Validate a policy file and run its own `tests:`; exit 0 if all is well, 1 if a test fails, 2 if invalid.

    Warns when an intent has too few examples or two intents' examples are closer than the threshold."""
    from router.policy import load_policy

    try:
        gateway = load_gateway_config(config)
        engine = load_policy(file, gateway.models)
    except ConfigError as error:
        _fail(error)
    rules = engine.policy.rules
    typer.echo(
        f"{file}: OK, {len(rules)} rule(s), {len(engine.policy.intents)} intent(s), {len(engine.policy.tests)} "
        f"test(s), default route `{engine.policy.default.route}`, version {engine.version}"
    )
    if not engine.policy.intents and not engine.policy.tests:
        return
    components = _components_for(file, config)
    results = _run_tests(components, None)  # embeds the intents' examples first, tests or not
    _intent_warnings(components)
    if results:
        _print_results(results, f"{file} tests")
        if not all(r.passed for r in results):
            raise typer.Exit(code=1)


def _intent_warnings(components: Components) -> None:
    """Thin or overlapping intents, once their examples are embedded (by deciding: `_run_tests`)."""
    engine = components.pipeline.router.policy
    if not engine.policy.intents:
        return
    if engine.intents is None:
        error = components.pipeline.embeddings.error if components.pipeline.embeddings else None
        typer.secho(f"warning: cannot embed the intents' examples ({error or 'the embedder did not load'})",
                    fg=typer.colors.YELLOW, err=True)  # fmt: skip
    for warning in engine.intents.warnings() if engine.intents else []:
        typer.secho(f"warning: {warning}", fg=typer.colors.YELLOW, err=True)


@policy_app.command("test")
def policy_test(
    file: Annotated[Path, typer.Argument(help="The policy YAML to test.")],
    cases: Annotated[
        Path | None, typer.Argument(help="A YAML file of cases (a list, or `tests:`); default: the policy's own.")
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Run test cases against a policy: each request is decided as the gateway would, with no model called.

    Prints every failing case with what happened instead and why; exits 1 if any fails (for CI), 2 if the
    policy or the cases file is invalid."""
    components = _components_for(file, config)
    try:
        results = _run_tests(components, cases)
    except ConfigError as error:
        _fail(error)
    if not results:
        typer.secho(f"{cases or file}: no test cases (add `tests:` to the policy)", fg=typer.colors.YELLOW)
        raise typer.Exit(code=1)
    _print_results(results, str(cases or file))
    if not all(r.passed for r in results):
        raise typer.Exit(code=1)


@policy_app.command("diff")
def policy_diff(
    old: Annotated[Path, typer.Argument(help="The policy in force.")],
    new: Annotated[Path, typer.Argument(help="The policy you would put in its place.")],
    sample: Annotated[
        Path | None,
        typer.Option(
            help="Requests, one JSON object a line: a chat request body, or `{request, usage, headers, tenant}`; "
            "default with --judged: the judged requests themselves."
        ),
    ] = None,
    judged: Annotated[
        bool,
        typer.Option(
            "--judged",
            help="Also estimate quality retained under each policy from the gateway's shadow judgements "
            "(those stored with their prompt: `shadow.store_prompts`).",
        ),
    ] = False,
    window: Annotated[str, typer.Option(help="With --judged: judgements of this window.")] = "7d",
    as_json: Annotated[bool, typer.Option("--json", help="Print the comparison as JSON.")] = False,
    config: ConfigOpt = None,
) -> None:
    """What replacing OLD by NEW would do to these requests: how many change route, from which rule to
    which, and the cost at today's prices (prompt tokens counted; completion tokens as recorded, else the
    request's max_tokens, else none). With --judged, the quality each would keep, from judged traffic."""
    from router.backends.litellm_backend import import_litellm
    from router.cli._decide import use_policy, with_explainer
    from router.ledger.pricing import Pricer
    from router.policy import load_policy
    from router.policy.testing import diff, read_sample
    from router.types import Usage

    if sample is None and not judged:
        _fail(ConfigError("give --sample FILE (requests), --judged (the judged traffic), or both"))
    components = _components_for(old, config)
    try:
        judgements = [j for j in stored_judgements(config, window) if j.prompt] if judged else []
        requests = read_sample(sample) if sample is not None else [(_judged_request(j), 0) for j in judgements]
        new_engine: PolicyEngine = load_policy(new, components.config.models)
    except ConfigError as error:
        _fail(error)
    old_engine = components.pipeline.router.policy
    pricer = Pricer(components.config, import_litellm)

    def cost(model: str, prompt_tokens: int, completion_tokens: int) -> float:
        return pricer.cost(model, Usage(prompt_tokens, completion_tokens))

    async def compare(explain: Explain) -> dict[str, Any]:
        await use_policy(components, new_engine)  # examples both policies share are embedded once
        await use_policy(components, old_engine)

        def under(engine: PolicyEngine) -> Explain:
            async def decide(ctx: RequestContext, assumed: Assumed | None) -> dict[str, Any]:
                components.pipeline.router.use_policy(engine)
                return await explain(ctx, assumed)

            return decide

        result = await diff(requests, under(old_engine), under(new_engine), cost)
        if judged:
            result["quality"] = await _judged_quality(judgements, under(old_engine), under(new_engine))
        return result

    result = with_explainer(components, compare)
    result |= {"old": str(old), "new": str(new), "sample": str(sample or f"judged traffic, last {window}")}
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    for line in _diff_lines(result, old, new):
        typer.echo(line)


def _diff_lines(result: dict[str, Any], old: Path, new: Path) -> list[str]:
    """What `policy diff` prints: the requests that move, the cost, and the quality each policy keeps."""
    lines = [
        f"{result['changed']} of {result['requests']} requests change route ({old} -> {new}, sample {result['sample']})"
    ]
    if result["moves"]:
        lines.append(f"  {'requests':>8}  {'from rule':<20} {'from':<36} -> {'to rule':<20} to")
        for move in result["moves"]:
            moved = f"{move['from_rule']:<20} {move['from']:<36} -> {move['to_rule']:<20} {move['to']}"
            lines.append(f"  {move['requests']:>8}  {moved}")
    c = result["cost_usd"]
    lines.append(f"cost at today's prices: ${c['old']:.6f} -> ${c['new']:.6f} ({c['change']:+.6f})")
    quality = result.get("quality")
    if quality is None:
        lines.append("quality: not estimated (--judged estimates it from the gateway's shadow judgements)")
    elif "note" in quality:
        lines.append(f"quality: {quality['note']}")
    else:
        o, n, q = quality["old"], quality["new"], quality["change"]
        lines.append(
            f"quality retained on {quality['judged']} judged requests: {o['quality_retained']:.3f} "
            f"[{o['low']:.3f}, {o['high']:.3f}] -> {n['quality_retained']:.3f} [{n['low']:.3f}, {n['high']:.3f}]; "
            f"change {q['estimate']:+.3f} [{q['low']:+.3f}, {q['high']:+.3f}] (paired)"
        )
    return lines


def _judged_request(judgement: Judgement) -> RequestContext:
    """A judged request as the policy sees it: its last user message (what a judgement keeps) and tenant."""
    from router.types import RequestContext

    tenant = None if judgement.tenant in ("-", "other") else judgement.tenant
    messages = ({"role": "user", "content": judgement.prompt or ""},)
    return RequestContext(judgement.request_id, "chat", "auto", messages, tenant=tenant)


async def _judged_quality(judgements: list[Judgement], old: Explain, new: Explain) -> dict[str, Any]:
    """Quality retained of the judged requests under each policy: the reference's score where a policy
    sends one to the cloud, the local answer's where it keeps it local (denied ones are left out)."""
    from router.quality.estimate import compare_routings

    if not judgements:
        return {"judged": 0, "note": "no judgement with its prompt in the window: set `shadow.store_prompts: true`"}
    routed = [(j, await old(_judged_request(j), None), await new(_judged_request(j), None)) for j in judgements]
    kept = [(j, a, b) for j, a, b in routed if a["deny"] is None and b["deny"] is None]
    if not kept:
        return {"judged": 0, "note": "every judged request is denied by one of the policies"}
    found = compare_routings([j for j, _, _ in kept], [a["route"] == "cloud" for _, a, _ in kept],
                             [b["route"] == "cloud" for _, _, b in kept])  # fmt: skip
    as_served = sum((a["route"] == "cloud") == (j.stratum == "cloud") for j, a, _ in kept)
    return {
        "judged": len(kept),
        "denied": len(routed) - len(kept),
        "old": found.old.as_dict(),
        "new": found.new.as_dict(),
        "change": {
            "estimate": round(found.change, 4),
            "low": round(found.change_low, 4),
            "high": round(found.change_high, 4),
        },
        "old_matches_served": as_served,
    }


@policy_app.command("schema")
def policy_schema(
    out: Annotated[Path | None, typer.Option(help="Write it to this file instead of printing it.")] = None,
) -> None:
    """Print the policy file's JSON Schema (for editors: `# yaml-language-server: $schema=...`)."""
    from router.policy.jsonschema import policy_json_schema

    text = policy_json_schema()
    if out is None:
        typer.echo(text, nl=False)
    else:
        out.write_text(text)
        typer.echo(f"wrote {out}")
