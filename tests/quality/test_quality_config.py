"""What `shadow:`, `auto_calibrate:` and a rule's `shadow:` accept, and the errors for what they do not."""

from __future__ import annotations

from pathlib import Path

import pytest

from router.config import GatewayConfig, load_gateway_config
from router.errors import ConfigError, PolicyError
from router.policy import parse_policy


def test_a_bad_share_names_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "router.yaml"
    path.write_text("shadow:\n  judge: gpt-4o-mini\n  share: 2\n")
    with pytest.raises(ConfigError) as error:
        load_gateway_config(path)
    assert "router.yaml:3" in str(error.value) and "less than or equal to 1" in str(error.value)


def test_shadow_models_must_be_configured(tmp_path: Path) -> None:
    path = tmp_path / "router.yaml"
    path.write_text("shadow:\n  share: 0.1\n  judge: no-such-model\n")
    with pytest.raises(ConfigError, match=r"shadow\.judge names `no-such-model`"):
        load_gateway_config(path)


def test_auto_calibrate_needs_a_target_and_a_window(tmp_path: Path) -> None:
    path = tmp_path / "router.yaml"
    path.write_text("auto_calibrate:\n  min_samples: 100\n  window: forever\n")
    with pytest.raises(ConfigError) as error:
        load_gateway_config(path)
    assert "quality_target" in str(error.value) and "window" in str(error.value)


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ("route: local\n    shadow: true", "takes a share"),
        ("route: local\n    pin: true\n    shadow: 0.5", "never shadowed"),
        ("deny: not here\n    shadow: 0.5", "would do nothing"),
    ],
)
def test_a_rules_shadow_is_checked(rule: str, message: str) -> None:
    text = f"version: 1\nrules:\n  - name: r\n    when: {{keywords: [x]}}\n    {rule}\n"
    with pytest.raises(PolicyError, match=message):
        parse_policy(text, "p.yaml", GatewayConfig().models)


def test_shadow_false_means_never() -> None:
    text = "version: 1\nrules:\n  - name: r\n    when: {keywords: [x]}\n    route: local\n    shadow: false\n"
    assert parse_policy(text, "p.yaml", GatewayConfig().models).policy.rules[0].shadow == 0.0
