"""Load while the cloud is killed and restarted and Redis is stopped and restarted: nothing is lost.

A shorter run of `python -m bench.resilience_load` (which prints the same counts for a 30 s run).
"""

from __future__ import annotations

from bench.resilience_load import run


def test_every_request_is_answered_or_gets_a_clear_error_while_cloud_and_redis_die() -> None:
    result = run(duration_s=15.0, concurrency=16, deadline_s=10.0)
    print(result)
    assert result["lost"] == 0, result["outcomes"]
    assert result["total"] > 50
    assert len(result["events"]) == 4  # the cloud was killed and restarted, Redis stopped and restarted
    answered = sum(n for kind, n in result["outcomes"].items() if kind.startswith("answered"))
    assert answered > result["total"] / 2
