"""Redis URLs: one server, Sentinel and Cluster each get the redis-py client that speaks to them."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from router.redis_client import _split, connect


def test_one_server() -> None:
    assert type(connect("redis://127.0.0.1:6379/0")) is Redis


def test_sentinel_names_its_master_and_database() -> None:
    client = connect("redis+sentinel://:secret@10.0.0.1:26379,10.0.0.2/mymaster/2")
    pool = client.connection_pool
    assert pool.service_name == "mymaster"
    assert pool.connection_kwargs["db"] == 2 and pool.connection_kwargs["password"] == "secret"
    assert [(s.connection_pool.connection_kwargs["host"], s.connection_pool.connection_kwargs["port"])
            for s in pool.sentinel_manager.sentinels] == [("10.0.0.1", 26379), ("10.0.0.2", 26379)]  # fmt: skip


def test_sentinel_without_a_master_name_is_refused() -> None:
    with pytest.raises(ValueError, match="needs the master's name"):
        connect("redis+sentinel://10.0.0.1:26379")


def test_cluster_gets_every_startup_node() -> None:
    client = connect("redis+cluster://10.0.0.1:7000,10.0.0.2")
    assert isinstance(client, RedisCluster)
    assert _split("10.0.0.1:7000,10.0.0.2", default_port=6379)[1] == [("10.0.0.1", 7000), ("10.0.0.2", 6379)]
