"""The fuzz suites run against `instant_gateway` (tests/conftest.py): the default policy, instant upstreams."""

from __future__ import annotations

import pytest

from tests.conftest import Gateway


@pytest.fixture(scope="session")
def fuzz_gateway(instant_gateway: Gateway) -> Gateway:
    return instant_gateway
