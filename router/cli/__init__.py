"""The `router` command, one module per group of commands (serving, policy, admin, learning, calibrating, labelling)."""

from __future__ import annotations

import sys

from router.cli import admin, calibrating, labelling, learning, policy, serving  # noqa: F401  (each registers its commands on `app`)
from router.cli._common import app

__all__ = ["app", "main"]


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
