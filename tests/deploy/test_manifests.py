"""Deployment files, validated offline: the image recipe, the compose stack, the Kubernetes manifests.

No Docker engine or cluster runs here: compose files are parsed by `docker-compose config` (Debian's
package), kustomizations rendered by `kubectl kustomize`, and every rendered object is checked against
the Kubernetes schemas by kubernetes-validate; the gateway configs and policies they carry are loaded
by the gateway's own validators.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from router.config import GatewayConfig, ServerConfig
from router.policy import parse_policy

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
K8S_VERSION = "1.32.0"


def render(path: Path) -> list[dict]:
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl is needed to render the kustomizations (it ships kustomize)"
    out = subprocess.run([kubectl, "kustomize", str(path)], capture_output=True, text=True, check=True).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def by_kind(objects: list[dict]) -> dict[str, list[dict]]:
    kinds: dict[str, list[dict]] = {}
    for obj in objects:
        kinds.setdefault(obj["kind"], []).append(obj)
    return kinds


@pytest.mark.parametrize("kustomization", [K8S / "base", K8S / "overlays" / "example"])
def test_kustomizations_render_to_valid_kubernetes_objects(kustomization: Path) -> None:
    objects = render(kustomization)
    assert len(objects) >= 11
    for obj in objects:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def _gateway(objects: list[dict]) -> dict:
    return next(d for d in by_kind(objects)["Deployment"] if d["metadata"]["name"] == "hybrid-router")


def _config_map(objects: list[dict], name: str) -> dict:
    return next(c for c in by_kind(objects)["ConfigMap"] if c["metadata"]["name"] == name)


def test_gateway_deployment_probes_resources_scaling_and_shutdown() -> None:
    objects = render(K8S / "overlays" / "example")
    kinds = by_kind(objects)
    gateway = _gateway(objects)
    spec = gateway["spec"]["template"]["spec"]
    container = spec["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["resources"]["requests"]["cpu"] and container["resources"]["requests"]["memory"]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert gateway["spec"]["replicas"] == 5 and gateway["metadata"]["namespace"] == "hybrid-router"
    assert container["image"] == "your-registry/hybrid-router:0.1.0"
    hpa = kinds["HorizontalPodAutoscaler"][0]
    assert hpa["spec"]["scaleTargetRef"]["name"] == "hybrid-router" and hpa["spec"]["minReplicas"] >= 2
    assert kinds["PodDisruptionBudget"][0]["spec"]["selector"] == gateway["spec"]["selector"]
    assert kinds["StatefulSet"][0]["metadata"]["name"] == "hybrid-router-redis"
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["ROUTER_REDIS_URL"].startswith("redis://hybrid-router-redis:")
    assert container["envFrom"][0]["secretRef"]["name"] == kinds["Secret"][0]["metadata"]["name"]
    # The gateway drains within its own grace; the pod's grace covers that plus the preStop pause.
    config = GatewayConfig.model_validate(
        yaml.safe_load(_config_map(objects, "hybrid-router-config")["data"]["router.yaml"])
    )
    pre_stop = int(container["lifecycle"]["preStop"]["exec"]["command"][-1])
    assert spec["terminationGracePeriodSeconds"] > config.server.shutdown_grace_s + pre_stop
    assert config.server.shutdown_grace_s < ServerConfig().shutdown_grace_s + 1


def test_gateway_uses_the_local_model_service_as_its_openai_compatible_local_tier() -> None:
    objects = render(K8S / "base")
    config = GatewayConfig.model_validate(
        yaml.safe_load(_config_map(objects, "hybrid-router-config")["data"]["router.yaml"])
    )
    local = config.models[config.routes.local]
    assert local.engine == "openai-compatible" and local.tier == "local"
    service = next(s for s in by_kind(objects)["Service"] if s["metadata"]["name"] == "hybrid-router-local-model")
    port = service["spec"]["ports"][0]["port"]
    assert local.api_base == [f"http://hybrid-router-local-model:{port}/v1"]
    model = next(d for d in by_kind(objects)["Deployment"] if d["metadata"]["name"] == "hybrid-router-local-model")
    args = model["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--model_alias") + 1] == local.model


def _without_schema_line(path: Path) -> str:
    return "".join(line for line in path.read_text().splitlines(keepends=True) if "yaml-language-server" not in line)


@pytest.mark.parametrize(
    ("kustomization", "source"),
    [(K8S / "base", "default.yaml"), (K8S / "overlays" / "example", "privacy-first.yaml")],
)
def test_policy_config_map_is_the_repository_policy_and_hot_reloadable(kustomization: Path, source: str) -> None:
    objects = render(kustomization)
    policy_map = _config_map(objects, "hybrid-router-policy")
    text = policy_map["data"]["policy.yaml"]
    assert text == _without_schema_line(REPO / "policies" / source), "copy policies/ into deploy/k8s again"
    parse_policy(text, "configmap", GatewayConfig().models)
    # Mounted as a directory (not subPath), so the kubelet's swap reaches the file the gateway watches.
    spec = _gateway(objects)["spec"]["template"]["spec"]
    mount = next(m for m in spec["containers"][0]["volumeMounts"] if m["name"] == "policy")
    assert "subPath" not in mount
    env = {e["name"]: e.get("value") for e in spec["containers"][0]["env"]}
    assert env["ROUTER_POLICY"] == f"{mount['mountPath']}/policy.yaml"


def compose_config(*args: str) -> dict:
    compose = shutil.which("docker-compose")
    assert compose, "docker-compose (Debian's package) is needed to validate the compose file"
    out = subprocess.run(
        [compose, "-f", str(REPO / "docker-compose.yml"), *args, "config"],
        capture_output=True, text=True, check=True, cwd=REPO,
    ).stdout  # fmt: skip
    return yaml.safe_load(out)


def test_compose_stack_parses_with_and_without_the_local_pool_profile() -> None:
    plain = compose_config()["services"]
    assert {"gateway", "redis", "prometheus", "grafana"} <= set(plain)
    pooled = compose_config("--profile", "local-pool")["services"]
    assert {"llama-1", "llama-2"} <= set(pooled)
    assert pooled["llama-1"]["profiles"] == pooled["llama-2"]["profiles"] == ["local-pool"]  # off by default
    gateway = plain["gateway"]
    assert gateway["environment"]["ROUTER_REDIS_URL"] == "redis://redis:6379/0"
    assert f"{REPO / 'policies'}:/etc/hybrid-router/policies:ro" in gateway["volumes"]  # hot-reloaded when edited
    pool = GatewayConfig.model_validate(yaml.safe_load((REPO / "deploy" / "compose-local-pool.yaml").read_text()))
    bases = pool.models[pool.routes.local].api_base  # type: ignore[union-attr]
    assert bases == [f"http://{name}:8000/v1" for name in ("llama-1", "llama-2")]
    assert "--port" in pooled["llama-1"]["command"] and "8000" in pooled["llama-1"]["command"]


def test_dockerfile_is_multi_stage_non_root_healthchecked_and_offline() -> None:
    text = (REPO / "deploy" / "Dockerfile").read_text()
    stages = re.findall(r"^FROM ", text, re.MULTILINE)
    assert len(stages) == 2
    runtime = text[text.rindex("\nFROM ") :]
    assert "build-essential" not in runtime and "torch" not in runtime  # compilers and torch stay behind
    assert re.search(r"^USER router$", runtime, re.MULTILINE)
    assert re.search(r"^HEALTHCHECK .*127\.0\.0\.1:8080/readyz", runtime, re.MULTILINE)
    assert "COPY --from=build --chown=router /opt/models" in runtime
    assert "COPY --from=build --chown=router /opt/embedders" in runtime
    assert "HF_HUB_OFFLINE=1" in runtime and "LITELLM_LOCAL_MODEL_COST_MAP=True" in runtime
    assert re.search(r'^ENTRYPOINT \["router", "serve"\]$', runtime, re.MULTILINE)  # exec form: PID 1 gets SIGTERM
