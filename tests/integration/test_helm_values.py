"""`helm lint`, bad values (rejected with a message that names the field: values.schema.json
or a `fail` in the templates) and how Helm 4 treats the undownloadable NATS dependency."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.helm import (
    CHART,
    HELM,
    KEDA,
    KUBE_VERSION,
    MONITORING,
    ROOT,
    chart_without_missing_nats,
    dependency_vendored,
    helm,
    template,
)

pytestmark = pytest.mark.skipif(not HELM.exists(), reason="helm missing: run `make tools`")

EXTERNAL = ("nats.enabled=false", "externalNats.url=nats://nats.messaging.svc:4222")

# (--set values, --api-versions, text the error must contain)
BAD_VALUES = [
    (("stt.replicas=-1",), (), "at '/stt/replicas': minimum"),
    (("autoscaling.mode=bogus",), (), "at '/autoscaling/mode'"),
    (("gateway.image.repository=",), (), "at '/gateway/image/repository'"),
    (("llm.image=null",), (), "missing property 'image'"),
    (("gateway.replica=3",), (), "at '/gateway': additional properties 'replica'"),
    (("stt.resources.requests.cpu=null",), (), "at '/stt/resources/requests': missing property"),
    (("stt.provider=whisperx",), (), "at '/stt/provider'"),
    (("llm.baseUrl=api.openai.com",), (), "at '/llm/baseUrl'"),
    (("externalNats.url=localhost:4222",), (), "at '/externalNats/url'"),
    (("gateway.pdb.maxUnavailable=0",), (), "at '/gateway/pdb/maxUnavailable'"),
    (("nats.enabled=false",), (), "externalNats.url"),
    ((*EXTERNAL, "llmServer.enabled=false"), (), "llm.baseUrl is required"),
    (("autoscaling.mode=keda",), (), "no keda.sh/v1alpha1 API"),
    (EXTERNAL, (KEDA,), "externalNats.monitoringEndpoint is required"),
    (("gateway.drain.timeoutSeconds=7200",), (), "gateway.terminationGracePeriodSeconds"),
    (("natsAuth.enabled=true", "natsAuth.serviceSecrets.gateway=nats-gateway"), (),
     "natsAuth.serviceSecrets.stt is required when natsAuth.enabled"),
    (("natsAuth.serviceSecrets.admin=x",), (), "at '/natsAuth/serviceSecrets'"),
    (("gateway.sip.enabled=true", "gateway.sip.tlsPort=5061"), (),
     "gateway.sip.tlsPort needs gateway.tls.secretName"),
    (("gateway.sip.srtp=maybe",), (), "at '/gateway/sip/srtp'"),
    (("gateway.sip.enabled=true", "gateway.sip.rtpPortMin=30000", "gateway.sip.rtpPortMax=20000"),
     (), "gateway.sip.rtpPortMin (30000) must be below gateway.sip.rtpPortMax (20000)"),
    (("stt.autoscaling.minReplicas=5", "stt.autoscaling.maxReplicas=2"), (),
     "stt.autoscaling.minReplicas (5) is greater than stt.autoscaling.maxReplicas (2)"),
    (("bus.streamReplicas=0",), (), "at '/bus/streamReplicas': minimum"),
    (("bus.streamReplicas=3",), (),
     "bus.streamReplicas (3) is more than the bundled NATS has nodes (1)"),
    (("nats.config.cluster.enabled=true", "nats.config.cluster.replicas=2"), (),
     "nats.config.cluster.replicas (2) must be at least 3"),
]
CLUSTERED = ("nats.config.cluster.enabled=true", "nats.config.cluster.replicas=3",
             "bus.streamReplicas=3")


@pytest.fixture(scope="module")
def chart(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return chart_without_missing_nats(tmp_path_factory.mktemp("chart"))


@pytest.mark.parametrize(("sets", "apis", "message"), BAD_VALUES,
                         ids=[" ".join(s) for s, _, _ in BAD_VALUES])
def test_bad_values_are_rejected_by_name(chart: Path, sets: tuple[str, ...],
                                         apis: tuple[str, ...], message: str) -> None:
    result = template(chart, sets=sets, api_versions=apis)
    assert result.returncode != 0, f"{sets} rendered"
    assert message in result.stderr, result.stderr


@pytest.mark.parametrize("sets", [(), (*EXTERNAL, "autoscaling.mode=hpa"), CLUSTERED],
                         ids=["defaults", "external-nats", "clustered-nats"])
def test_lint_strict(chart: Path, sets: tuple[str, ...]) -> None:
    args = ["lint", str(chart), "--strict", "--kube-version", KUBE_VERSION]
    for s in sets:
        args += ["--set", s]
    result = helm(*args)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


@pytest.mark.skipif(dependency_vendored(), reason="charts/ holds the NATS chart")
def test_helm4_refuses_a_declared_but_missing_dependency() -> None:
    """Why the renders use a copy without the dependency entry: Helm 4 will not template the
    chart while charts/ lacks the NATS chart, even with nats.enabled=false; lint only warns."""
    result = template(CHART, sets=EXTERNAL)
    assert result.returncode != 0
    assert "missing in charts/ directory: nats" in result.stderr
    lint = helm("lint", str(CHART))
    assert lint.returncode == 0
    assert "missing these dependencies: nats" in lint.stdout
    meta = yaml.safe_load((CHART / "Chart.yaml").read_text())
    (dep,) = meta["dependencies"]
    assert dep["name"] == "nats" and dep["condition"] == "nats.enabled"
    assert dep["repository"] == "https://nats-io.github.io/k8s/helm/charts/"


def test_dashboard_configmap_carries_the_dashboard(chart: Path) -> None:
    result = template(chart, api_versions=(MONITORING,))
    assert result.returncode == 0, result.stderr
    (cm,) = [d for d in result.docs if d["kind"] == "ConfigMap"
             and d["metadata"]["name"].endswith("-dashboard")]
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    original = json.loads((ROOT / "deploy" / "grafana" / "voxbus-latency.json").read_text())
    assert json.loads(cm["data"]["voxbus-latency.json"]) == original


def test_monitoring_objects_need_the_operator_api(chart: Path) -> None:
    kinds = {d["kind"] for d in template(chart).docs}
    assert not kinds & {"ServiceMonitor", "PrometheusRule", "ScaledObject"}
    kinds = {d["kind"] for d in template(chart, api_versions=(MONITORING, KEDA)).docs}
    assert {"ServiceMonitor", "PrometheusRule", "ScaledObject"} <= kinds
    assert "HorizontalPodAutoscaler" not in kinds


def test_skaffold_dev_profile_values_render(chart: Path) -> None:
    """skaffold.yaml's dev profile passes the schema and the chart's own checks."""
    doc = yaml.safe_load((ROOT / "skaffold.yaml").read_text())
    profile = next(p for p in doc["profiles"] if p["name"] == "dev")
    values = next(p["value"] for p in profile["patches"]
                  if p["path"] == "/deploy/helm/releases/0/setValues")
    result = template(chart, sets=tuple(f"{k}={v}" for k, v in values.items()))
    assert result.returncode == 0, result.stderr
    kinds = {d["kind"] for d in result.docs}
    assert not kinds & {"HorizontalPodAutoscaler", "ScaledObject", "NetworkPolicy"}


def test_a_clustered_nats_gives_every_service_three_copies(chart: Path) -> None:
    """The official chart's cluster settings with 3 stream replicas: every voxbus service
    is told to keep 3 copies of each stream and bucket (docs/cluster.md)."""
    result = template(chart, sets=(*CLUSTERED, "bus.quorumGraceSeconds=20"))
    assert result.returncode == 0, result.stderr
    deployments = [d for d in result.docs if d["kind"] == "Deployment"
                   and d["metadata"]["name"] != "voxbus-llm-server"]
    assert len(deployments) == 5
    for deployment in deployments:
        (container,) = [c for c in deployment["spec"]["template"]["spec"]["containers"]
                        if c["name"] != "istio-proxy"]
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["VOXBUS_NATS_REPLICAS"] == "3", deployment["metadata"]["name"]
        assert env["VOXBUS_NATS_QUORUM_GRACE_S"] == "20"
