"""The policy watcher: a half-saved file is never read, and a write during a read is never missed."""

from __future__ import annotations

from pathlib import Path

import pytest

import router.policy.reload as reload
from router.config import GatewayConfig
from router.policy import PolicyEngine, load_policy

MODELS = list(GatewayConfig().models)
GOOD = "rules:\n  - name: a\n    when: {keywords: [a]}\n    route: cloud\n"
OTHER = "rules:\n  - name: b\n    when: {keywords: [b]}\n    route: cloud\n"
BROKEN = "rules:\n  - name: x\n    when: {keywordz: [a]}\n    route: cloud\n"


@pytest.fixture
def watched(tmp_path: Path) -> tuple[Path, reload.PolicyWatcher, list[PolicyEngine]]:
    path = tmp_path / "policy.yaml"
    path.write_text(GOOD)
    applied: list[PolicyEngine] = []
    watcher = reload.PolicyWatcher(path, load_policy(path, MODELS), applied.append, MODELS)
    return path, watcher, applied


async def test_an_edit_is_read_once_it_holds_still(watched: tuple[Path, reload.PolicyWatcher, list]) -> None:
    path, watcher, applied = watched
    path.write_text("")  # an editor that truncates first: this state must never be applied
    assert await watcher.check() is False
    path.write_text(OTHER)  # ...and then writes
    assert await watcher.check() is False  # changed since the last poll: wait for it to settle
    assert await watcher.check() is True
    assert [engine.policy.rules[0].name for engine in applied] == ["b"]


async def test_a_write_that_lands_while_the_file_is_parsed_is_picked_up(
    watched: tuple[Path, reload.PolicyWatcher, list], monkeypatch: pytest.MonkeyPatch
) -> None:
    path, watcher, applied = watched
    real = reload.load_policy

    def load_then_overwritten(file: Path, names: list[str]) -> PolicyEngine:
        engine = real(file, names)  # reads OTHER...
        path.write_text(BROKEN)  # ...and the next save lands before the watcher is done with it
        return engine

    path.write_text(OTHER)
    await watcher.check()
    monkeypatch.setattr(reload, "load_policy", load_then_overwritten)
    assert await watcher.check() is True
    monkeypatch.setattr(reload, "load_policy", real)
    await watcher.check()
    await watcher.check()
    status = watcher.status
    assert status.last_error is not None and "keywordz" in status.last_error  # the later save was read
    assert [engine.policy.rules[0].name for engine in applied] == ["b"]  # and refused; b stays in force
