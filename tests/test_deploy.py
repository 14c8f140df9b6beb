"""The Grafana board, Prometheus config and compose stack parse, agree, and use only exported metrics."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from router.metrics import Metrics

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"


def exported_sample_names() -> set[str]:
    names = set()
    for family in Metrics().registry.collect():
        suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_count", "_sum"], "gauge": [""]}[family.type]
        names.update(family.name + suffix for suffix in suffixes)
    return names


def board() -> dict:
    return json.loads((DEPLOY / "grafana" / "dashboards" / "hybrid-router.json").read_text())


def test_every_grafana_query_uses_only_metrics_the_gateway_exports() -> None:
    exported = exported_sample_names()
    expressions = [t["expr"] for panel in board()["panels"] for t in panel["targets"]]
    assert len(expressions) >= 15
    used = {name for expr in expressions for name in re.findall(r"\brouter_[a-z_]+", expr)}
    assert used, "the board queries no gateway metric"
    assert used <= exported, f"unknown metrics: {sorted(used - exported)}"


def test_the_board_covers_savings_routes_cache_escalations_latency_and_breakers() -> None:
    titles = " ".join(panel["title"].lower() for panel in board()["panels"])
    for topic in ("saved", "route", "cache", "escalations", "latency", "breakers", "fallbacks", "queue"):
        assert topic in titles


def test_datasource_dashboard_provider_and_compose_mounts_agree() -> None:
    datasource = yaml.safe_load((DEPLOY / "grafana/provisioning/datasources/prometheus.yml").read_text())[
        "datasources"
    ][0]
    assert {t["datasource"]["uid"] for p in board()["panels"] for t in p["targets"]} == {datasource["uid"]}
    provider = yaml.safe_load((DEPLOY / "grafana/provisioning/dashboards/hybrid-router.yml").read_text())["providers"][
        0
    ]
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]
    assert set(compose) >= {"gateway", "redis", "prometheus", "grafana"}
    grafana_mounts = dict(volume.split(":")[:2] for volume in compose["grafana"]["volumes"])
    assert grafana_mounts["./deploy/grafana/dashboards"] == provider["options"]["path"]
    assert grafana_mounts["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"
    for source in [*grafana_mounts, *(v.split(":")[0] for v in compose["prometheus"]["volumes"])]:
        assert (REPO / source).exists(), source
    assert datasource["url"] == "http://prometheus:9090"


def test_prometheus_scrapes_the_gateway_metrics_path() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    job = config["scrape_configs"][0]
    assert job["metrics_path"] == "/metrics"
    assert job["static_configs"][0]["targets"] == ["gateway:8080"]
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]
    assert "127.0.0.1:8080:8080" in compose["gateway"]["ports"]  # published on loopback: no keys by default
