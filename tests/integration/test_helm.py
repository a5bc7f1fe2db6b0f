"""The Helm chart rendered for several value sets with the pinned Helm 4, every manifest
validated against the Kubernetes 1.33 schemas (kubernetes-validate, strict), CRDs checked by
hand, and the invariants docs/deploy.md promises. No cluster: see docs/deploy.md."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.helm import HELM, KEDA, KUBE_VERSION, MONITORING, ROOT, chart_without_missing_nats
from tests.helm import template as helm_template

pytestmark = pytest.mark.skipif(not HELM.exists(), reason="helm missing: run `make tools`")

CRDS = {"ScaledObject", "ServiceMonitor", "PrometheusRule"}
SERVICES = ("gateway", "stt", "llm", "tts", "memory")
WORK_QUEUES = {"stt": ("VB_CALLS", "stt-workers"), "llm": ("VB_LLM_WORK", "llm-workers"),
               "tts": ("VB_TTS_WORK", "tts-workers"), "memory": ("VB_EVENTS", "memory-recorder")}
RESTAURANT = ROOT / "agents" / "restaurant"

PRODUCTION: dict[str, Any] = {
    "image": {"registry": "registry.example.com/voice", "tag": "1.4.2",
              "pullSecrets": ["regcred"]},
    "env": {"VOXBUS_AZURE_SPEECH_REGION": "westeurope", "VOXBUS_LOG_LEVEL": "INFO"},
    "otel": {"endpoint": "http://otel-collector.observability.svc:4317"},
    "agent": {"file": (RESTAURANT / "agent.yaml").read_text(),
              "knowledge": {p.name: p.read_text()
                            for p in sorted((RESTAURANT / "knowledge").glob("*.md"))}},
    "secrets": {"existingSecret": "voxbus-secrets",
                "twilioAuthToken": {"name": "twilio", "key": "auth-token"}},
    "nats": {"enabled": False},
    "externalNats": {"existingSecret": {"name": "voxbus-nats", "key": "url"},
                     "monitoringEndpoint": "nats-headless.messaging.svc.cluster.local:8222",
                     "egress": {"ports": [4222], "to": [{"namespaceSelector": {"matchLabels": {
                         "kubernetes.io/metadata.name": "messaging"}}}]}},
    "natsAuth": {"enabled": True,
                 "serviceSecrets": {c: f"nats-{c}" for c in ("gateway", "stt", "llm", "tts",
                                                             "memory")},
                 "tls": {"caSecret": {"name": "nats-ca", "key": "ca.crt"},
                         "clientSecret": "nats-client-cert"}},
    "gateway": {"publicUrl": "https://voice.example.com", "audiosocket": {"enabled": True},
                "sip": {"enabled": True, "tlsPort": 5061, "authSecret": "sip-trunk",
                        "mediaAddress": "203.0.113.10", "allow": "198.51.100.0/24",
                        "rtpPortMin": 30000, "rtpPortMax": 30999},
                "tls": {"secretName": "voice-tls"},
                "service": {"type": "LoadBalancer",
                            "annotations": {"service.beta.kubernetes.io/aws-load-balancer-type":
                                            "nlb"}},
                "resources": {"requests": {"cpu": "2", "memory": "1Gi"},
                              "limits": {"memory": "2Gi"}},
                "autoscaling": {"minReplicas": 3, "maxReplicas": 40}},
    "stt": {"maxCalls": 32, "resources": {"requests": {"cpu": "2", "memory": "2Gi"},
                                          "limits": {"cpu": "4", "memory": "3Gi"}}},
    "llm": {"baseUrl": "http://vllm.ml.svc:8000/v1", "model": "qwen2.5-7b-instruct",
            "fallback": {"baseUrl": "https://api.openai.com/v1", "model": "gpt-4o-mini"},
            "extraEnv": [{"name": "BOOKING_API_TOKEN", "valueFrom": {
                "secretKeyRef": {"name": "booking", "key": "token"}}}]},
    "tts": {"provider": "azure"},
    "llmServer": {"enabled": False},
    "metrics": {"serviceMonitor": {"labels": {"release": "kube-prometheus-stack"}},
                "grafanaDashboard": {"annotations": {"grafana_folder": "voxbus"}}},
    "networkPolicy": {"metricsFrom": [{"namespaceSelector": {"matchLabels": {
        "kubernetes.io/metadata.name": "monitoring"}}}],
        "extraEgress": [{"ports": [{"port": 8000, "protocol": "TCP"}], "to": [
            {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ml"}}}]}]},
}

# name -> (values, --api-versions, expected autoscaling mode)
VALUE_SETS: dict[str, tuple[dict[str, Any], tuple[str, ...], str]] = {
    "defaults": ({}, (), "hpa"),
    "keda": ({}, (KEDA,), "keda"),
    "external-nats-hpa": ({"nats": {"enabled": False},
                           "externalNats": {"url": "nats://nats.messaging.svc:4222"},
                           "autoscaling": {"mode": "hpa"}, "llmServer": {"enabled": False},
                           "llm": {"baseUrl": "https://api.openai.com/v1",
                                   "model": "gpt-4o-mini"}}, (KEDA,), "hpa"),
    "fixed-replicas": ({"autoscaling": {"mode": "none"}, "networkPolicy": {"enabled": False},
                        "metrics": {"grafanaDashboard": {"enabled": False}},
                        "agent": {"existingConfigMap": "my-agent"}}, (MONITORING,), "none"),
    "production": (PRODUCTION, (KEDA, MONITORING), "keda"),
}


@pytest.fixture(scope="module")
def renders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, Any]]]:
    """Each value set rendered once for the whole module."""
    tmp = tmp_path_factory.mktemp("helm")
    chart = chart_without_missing_nats(tmp)
    out = {}
    for name, (values, apis, _) in VALUE_SETS.items():
        result = helm_template(chart, values, api_versions=apis, values_dir=tmp)
        assert result.returncode == 0, f"{name}: {result.stderr}"
        out[name] = result.docs
    return out


def of_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def component(doc: dict[str, Any]) -> str:
    return str(doc["metadata"]["labels"]["app.kubernetes.io/component"])


def selects(selector: dict[str, str], deployment: dict[str, Any]) -> bool:
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    return all(labels.get(k) == v for k, v in selector.items())


def one_deployment(docs: list[dict[str, Any]], selector: dict[str, str]) -> dict[str, Any]:
    matches = [d for d in of_kind(docs, "Deployment") if selects(selector, d)]
    assert len(matches) == 1, f"selector {selector} matches {len(matches)} Deployments"
    return matches[0]


@pytest.mark.parametrize("name", VALUE_SETS)
def test_manifests_validate_against_kubernetes(renders: dict[str, Any], name: str) -> None:
    kinds = set()
    for doc in renders[name]:
        kinds.add(doc["kind"])
        if doc["kind"] in CRDS:
            continue  # not in kubernetes-validate's schemas: test_custom_resources
        kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)
    assert {"Deployment", "Service"} <= kinds


def test_the_validator_rejects_a_broken_manifest(renders: dict[str, Any]) -> None:
    """The validation above is not vacuous: a misplaced field fails it."""
    deployment = yaml.safe_load(yaml.safe_dump(of_kind(renders["defaults"], "Deployment")[0]))
    deployment["spec"]["template"]["spec"]["containers"][0]["replicas"] = 2
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBE_VERSION, strict=True)


@pytest.mark.parametrize("name", VALUE_SETS)
def test_every_deployment_is_sized_probed_and_unprivileged(renders: dict[str, Any],
                                                           name: str) -> None:
    deployments = of_kind(renders[name], "Deployment")
    expected = set(SERVICES) | ({"llm-server"} if name in ("defaults", "keda",
                                                           "fixed-replicas") else set())
    assert {component(d) for d in deployments} == expected
    for d in deployments:
        pod = d["spec"]["template"]["spec"]
        where = d["metadata"]["name"]
        assert pod["enableServiceLinks"] is False, where  # see _pod.tpl
        assert pod["securityContext"]["runAsNonRoot"] is True, where
        assert pod["securityContext"]["runAsUser"] > 0, where
        for c in pod["containers"]:
            assert {"cpu", "memory"} <= set(c["resources"]["requests"]), where
            assert "memory" in c["resources"]["limits"], where
            ports = {p["name"] for p in c["ports"]}
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                assert c[probe]["httpGet"]["port"] in ports, f"{where} {probe}"
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, where
            assert sc["readOnlyRootFilesystem"] is True, where
            assert "ALL" in sc["capabilities"]["drop"], where
            names = [e["name"] for e in c.get("env", [])]
            assert len(names) == len(set(names)), f"{where}: duplicate env {names}"
            assert ":" in c["image"].rsplit("/", 1)[-1] and not c["image"].endswith(":latest")


@pytest.mark.parametrize("name", VALUE_SETS)
def test_services_select_their_own_deployment(renders: dict[str, Any], name: str) -> None:
    docs = renders[name]
    for svc in of_kind(docs, "Service"):
        deployment = one_deployment(docs, svc["spec"]["selector"])
        assert component(deployment) == component(svc)
        container_ports = {p["name"] for c in deployment["spec"]["template"]["spec"]
                           ["containers"] for p in c["ports"]}
        for port in svc["spec"]["ports"]:
            assert port["targetPort"] in container_ports, f"{svc['metadata']['name']}: {port}"
    for kind in ("PodDisruptionBudget", "NetworkPolicy"):
        for doc in of_kind(docs, kind):
            selector = doc["spec"].get("selector") or doc["spec"]["podSelector"]
            one_deployment(docs, selector["matchLabels"])


@pytest.mark.parametrize("name", VALUE_SETS)
def test_one_autoscaler_per_deployment(renders: dict[str, Any], name: str) -> None:
    docs = renders[name]
    mode = VALUE_SETS[name][2]
    targets: dict[str, list[str]] = {}
    for kind in ("HorizontalPodAutoscaler", "ScaledObject"):
        for doc in of_kind(docs, kind):
            targets.setdefault(doc["spec"]["scaleTargetRef"]["name"], []).append(kind)
    deployments = {d["metadata"]["name"]: d for d in of_kind(docs, "Deployment")}
    assert set(targets) <= set(deployments), "an autoscaler targets no Deployment"
    for target, kinds in targets.items():
        assert len(kinds) == 1, f"{target} has {kinds}"
        assert "replicas" not in deployments[target]["spec"], (
            f"{target}: an autoscaled Deployment must not set replicas (helm upgrade would "
            "reset the autoscaler's choice)")
    wanted = {"keda": "ScaledObject", "hpa": "HorizontalPodAutoscaler"}.get(mode)
    scaled = {d for d in deployments if component(deployments[d]) != "llm-server"}
    if wanted:
        assert {t for t, k in targets.items() if k == [wanted]} >= scaled
    else:
        assert not targets
        assert all("replicas" in d["spec"] for d in deployments.values())


@pytest.mark.parametrize("name", VALUE_SETS)
def test_agent_file_is_mounted_everywhere(renders: dict[str, Any], name: str) -> None:
    docs = renders[name]
    values = VALUE_SETS[name][0]
    configmaps = {c["metadata"]["name"] for c in of_kind(docs, "ConfigMap")}
    existing = values.get("agent", {}).get("existingConfigMap")
    for d in of_kind(docs, "Deployment"):
        if component(d) == "llm-server":
            continue
        pod = d["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        env = {e["name"]: e.get("value") for e in container["env"]}
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        assert mounts["agent"] == "/etc/voxbus/agent"
        assert env["VOXBUS_AGENT_FILE"] == "/etc/voxbus/agent/agent.yaml"
        agent = next(v for v in pod["volumes"] if v["name"] == "agent")
        sources = [s["configMap"]["name"] for s in agent["projected"]["sources"]]
        assert sources[0] == existing if existing else sources[0] in configmaps
        assert all(s in configmaps or s == existing for s in sources)


def test_each_service_connects_to_nats_as_its_own_user(renders: dict[str, Any]) -> None:
    """natsAuth: every service reads its own user from its own Secret (the permission
    contract is per role) and trusts the NATS CA; off by default."""
    for d in of_kind(renders["production"], "Deployment"):
        if component(d) == "llm-server":
            continue
        pod = d["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        env = {e["name"]: e for e in container["env"]}
        for key in ("VOXBUS_NATS_USER", "VOXBUS_NATS_PASSWORD"):
            assert env[key]["valueFrom"]["secretKeyRef"] == {
                "name": f"nats-{component(d)}", "key": key}
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        volumes = {v["name"]: v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
        assert env["VOXBUS_NATS_TLS_CA"]["value"] == mounts["nats-ca"] + "/ca.crt"
        assert env["VOXBUS_NATS_TLS_CERT"]["value"] == mounts["nats-client"] + "/tls.crt"
        assert env["VOXBUS_NATS_TLS_KEY"]["value"] == mounts["nats-client"] + "/tls.key"
        assert volumes["nats-ca"] == "nats-ca" and volumes["nats-client"] == "nats-client-cert"
    for d in of_kind(renders["defaults"], "Deployment"):
        names = {e["name"] for c in d["spec"]["template"]["spec"]["containers"]
                 for e in c.get("env", [])}
        assert not names & {"VOXBUS_NATS_USER", "VOXBUS_NATS_PASSWORD", "VOXBUS_NATS_TLS_CA"}


def test_sip_edge_ports_env_and_policy(renders: dict[str, Any]) -> None:
    """gateway.sip: SIP ports on the pod and the Service, the RTP range open in the
    NetworkPolicy, settings and digest credentials (from a Secret) in the environment."""
    docs = renders["production"]
    gateway = next(d for d in of_kind(docs, "Deployment") if component(d) == "gateway")
    (container,) = gateway["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert env["VOXBUS_SIP_PORT"]["value"] == "5060"
    assert env["VOXBUS_SIP_TLS_PORT"]["value"] == "5061"
    assert env["VOXBUS_SIP_MEDIA_ADDRESS"]["value"] == "203.0.113.10"
    assert env["VOXBUS_SIP_ALLOW"]["value"] == "198.51.100.0/24"
    assert env["VOXBUS_SIP_AUTH_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "sip-trunk", "key": "password"}
    ports = {(p["containerPort"], p["protocol"]) for p in container["ports"]}
    assert {(5060, "UDP"), (5060, "TCP"), (5061, "TCP")} <= ports
    service = next(d for d in of_kind(docs, "Service") if component(d) == "gateway"
                   and d["spec"]["type"] == "LoadBalancer")
    assert {(p["port"], p["protocol"]) for p in service["spec"]["ports"]} >= {
        (5060, "UDP"), (5060, "TCP"), (5061, "TCP")}
    policy = next(d for d in of_kind(docs, "NetworkPolicy") if "gateway" in d["metadata"]["name"])
    opened = [p for rule in policy["spec"]["ingress"] for p in rule["ports"]]
    assert {"port": 30000, "endPort": 30999, "protocol": "UDP"} in opened
    defaults = next(d for d in of_kind(renders["defaults"], "Deployment")
                    if component(d) == "gateway")
    names = {e["name"] for e in defaults["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert "VOXBUS_SIP_PORT" not in names  # off unless enabled


def test_custom_resources(renders: dict[str, Any]) -> None:
    """The CRD kinds kubernetes-validate cannot check, by hand."""
    docs = renders["production"]
    scaled = of_kind(docs, "ScaledObject")
    assert {component(s) for s in scaled} == set(SERVICES)
    for so in scaled:
        assert so["apiVersion"] == "keda.sh/v1alpha1"
        spec = so["spec"]
        assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]
        triggers = {t["type"]: t for t in spec["triggers"]}
        for t in spec["triggers"]:  # KEDA takes metadata as strings only
            assert all(isinstance(v, str) for v in t["metadata"].values()), t
        c = component(so)
        if c in WORK_QUEUES:
            nats = triggers["nats-jetstream"]["metadata"]
            assert (nats["stream"], nats["consumer"]) == WORK_QUEUES[c]
            assert nats["natsServerMonitoringEndpoint"] == (
                "nats-headless.messaging.svc.cluster.local:8222")
            assert nats["account"] == "$G" and int(nats["lagThreshold"]) >= 1
        else:
            assert "nats-jetstream" not in triggers
        if c in ("gateway", "stt"):
            prom = triggers["prometheus"]["metadata"]
            assert prom["query"] == 'sum(voxbus_active_calls{namespace="voice"})'
            assert prom["serverAddress"].startswith("http") and int(prom["threshold"]) >= 1
        assert triggers["cpu"]["metricType"] == "Utilization"
    (monitor,) = of_kind(docs, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    scraped = [s for s in of_kind(docs, "Service")
               if all(s["metadata"]["labels"].get(k) == v
                      for k, v in monitor["spec"]["selector"]["matchLabels"].items())]
    assert {component(s) for s in scraped} == set(SERVICES)
    assert all(any(p["name"] == "metrics" for p in s["spec"]["ports"]) for s in scraped)
    (rule,) = of_kind(docs, "PrometheusRule")
    assert rule["spec"] == yaml.safe_load(
        (ROOT / "deploy" / "grafana" / "voxbus-slo-rules.yml").read_text())


def test_keda_reads_the_bundled_nats(renders: dict[str, Any]) -> None:
    docs = renders["keda"]
    for so in of_kind(docs, "ScaledObject"):
        for t in so["spec"]["triggers"]:
            if t["type"] == "nats-jetstream":
                assert t["metadata"]["natsServerMonitoringEndpoint"] == (
                    "voxbus-nats-headless.voice.svc.cluster.local:8222")
    for d in of_kind(docs, "Deployment"):
        env = {e["name"]: e.get("value") for e in d["spec"]["template"]["spec"]
               ["containers"][0].get("env", [])}
        if component(d) != "llm-server":
            assert env["VOXBUS_NATS_URL"] == "nats://voxbus-nats.voice.svc.cluster.local:4222"


def load_rendered_agent(docs: list[dict[str, Any]], dest: Path) -> Path:
    """Materialize the agent volume as the kubelet would (projected ConfigMap items)."""
    gateway = next(d for d in of_kind(docs, "Deployment") if component(d) == "gateway")
    volume = next(v for v in gateway["spec"]["template"]["spec"]["volumes"]
                  if v["name"] == "agent")
    data = {c["metadata"]["name"]: c["data"] for c in of_kind(docs, "ConfigMap")}
    for source in volume["projected"]["sources"]:
        cm = source["configMap"]
        for item in cm["items"]:
            path = dest / item["path"]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(data[cm["name"]][item["key"]])
    return dest / "agent.yaml"


def test_the_mounted_agent_loads_with_its_knowledge(renders: dict[str, Any],
                                                    tmp_path: Path) -> None:
    from voxbus_common.agent import load_agent

    path = load_rendered_agent(renders["production"], tmp_path)
    agent = load_agent(str(path))  # raises AgentError, located, on any problem
    folder = agent.knowledge_dir()
    assert folder is not None and sorted(p.name for p in folder.iterdir()) == sorted(
        p.name for p in (RESTAURANT / "knowledge").glob("*.md"))
    assert path.read_text() == (RESTAURANT / "agent.yaml").read_text()
