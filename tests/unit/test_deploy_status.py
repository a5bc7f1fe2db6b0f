"""`voxbus deploy status` rules without a cluster: rollout states, autoscaler matching, pod
counts, error wording and the table text."""

from __future__ import annotations

import copy
import io
import json
from pathlib import Path
from typing import Any

import pytest
import urllib3
from kubernetes import client
from rich.console import Console
from urllib3.connection import HTTPConnection

from tests.fake_kube_api import FIXTURES, select
from voxbus_cli.deploy_kube import (
    api_error_message,
    context_namespace,
    kubeconfig_files,
    unreachable_message,
)
from voxbus_cli.deploy_render import autoscaling_text, metric_label, pods_text, render
from voxbus_cli.deploy_status import (
    Autoscaling,
    DeployStatus,
    Metric,
    Pods,
    autoscaling_of,
    build_status,
    component_status,
    hpa_metrics,
    label_selector,
    pods_of,
    rollout_state,
)

SELECTOR = label_selector(None)


def items(name: str) -> list[dict[str, Any]]:
    doc: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return list(doc["items"])


def fixture_status(release: str | None = None) -> dict[str, Any]:
    status = build_status(
        namespace="voice", release=release, server="https://k8s.example:6443",
        deployments=select(items("deployments.json"), label_selector(release)),
        hpas=items("horizontalpodautoscalers.json"),
        scaled_objects=items("scaledobjects.json"),
        pods=select(items("pods.json"), label_selector(release)))
    return status.to_dict()


def test_fixtures_have_the_shape_of_the_official_models() -> None:
    """The client deserializes the same files into its models: they are real API shapes."""
    for name, model in (("deployments.json", client.V1DeploymentList),
                        ("horizontalpodautoscalers.json", client.V2HorizontalPodAutoscalerList),
                        ("pods.json", client.V1PodList)):
        parsed: Any = model.from_dict(json.loads((FIXTURES / name).read_text()))
        assert len(parsed.items) == len(items(name))
    assert {s["kind"] for s in items("scaledobjects.json")} == {"ScaledObject"}


def deployment(desired: int = 3, *, status: dict[str, Any] | None = None,
               generation: int = 2, **conditions: tuple[str, str]) -> dict[str, Any]:
    """A Deployment with `status` over a settled default; conditions as type=(status, reason)."""
    full = {"observedGeneration": 2, "replicas": desired, "updatedReplicas": desired,
            "readyReplicas": desired, "availableReplicas": desired} | (status or {})
    full["conditions"] = [{"type": t, "status": s, "reason": r}
                          for t, (s, r) in conditions.items()]
    return {"metadata": {"name": "prod-voxbus-llm", "generation": generation},
            "spec": {"replicas": desired}, "status": full}


@pytest.mark.parametrize(("dep", "state", "reason"), [
    (deployment(), "ready", "3/3 available"),
    (deployment(0, status={"replicas": 0}), "ready", "scaled to 0"),
    (deployment(generation=3), "rolling out", "spec change not yet observed by the controller"),
    (deployment(status={"updatedReplicas": 1, "replicas": 4}), "rolling out", "1/3 updated"),
    (deployment(status={"replicas": 4}), "rolling out", "1 old replicas terminating"),
    (deployment(status={"availableReplicas": 2}), "rolling out",
     "2/3 updated replicas available"),
    (deployment(status={"availableReplicas": 0, "readyReplicas": 0}), "degraded",
     "0/3 available"),
    (deployment(status={"availableReplicas": 1}, Available=("False", "MinimumReplicasUnavailable")),
     "degraded", "1/3 available, below the minimum"),
    (deployment(status={"updatedReplicas": 1}, Progressing=("False", "ProgressDeadlineExceeded")),
     "degraded", "3/3 available, progress deadline exceeded"),
    (deployment(ReplicaFailure=("True", "FailedCreate")), "degraded",
     "replica failure: FailedCreate"),
])
def test_rollout_state(dep: dict[str, Any], state: str, reason: str) -> None:
    assert rollout_state(dep) == (state, reason)


def test_absent_counts_are_zero_and_absent_replicas_is_one() -> None:
    """The API leaves zero counts out, and defaults spec.replicas to 1."""
    dep = {"metadata": {"name": "x", "generation": 1},
           "spec": {}, "status": {"observedGeneration": 1, "replicas": 1}}
    assert rollout_state(dep) == ("degraded", "0/1 available")


def hpa(name: str, target: str, kind: str = "Deployment") -> dict[str, Any]:
    return {"metadata": {"name": name},
            "spec": {"scaleTargetRef": {"kind": kind, "name": target}, "maxReplicas": 5},
            "status": {"currentReplicas": 2, "desiredReplicas": 3}}


def test_hpa_is_matched_by_its_target_not_its_name() -> None:
    hpas = [hpa("prod-voxbus-llm", "web"), hpa("scaler", "prod-voxbus-llm", "StatefulSet"),
            hpa("llm-cpu", "prod-voxbus-llm")]
    found = autoscaling_of("prod-voxbus-llm", hpas, [])
    assert found == Autoscaling(hpa="llm-cpu", min_replicas=1, max_replicas=5,
                                current_replicas=2, desired_replicas=3)
    assert autoscaling_of("prod-voxbus-tts", hpas, []) is None


def test_keda_bounds_and_its_own_hpa_win() -> None:
    so = {"metadata": {"name": "llm"},
          "spec": {"scaleTargetRef": {"name": "prod-voxbus-llm"},
                   "triggers": [{"type": "nats-jetstream"}, {"type": "cpu"}]},
          "status": {"hpaName": "keda-hpa-llm",
                     "conditions": [{"type": "Ready", "status": "False"}]}}
    hpas = [hpa("manual", "prod-voxbus-llm"), hpa("keda-hpa-llm", "prod-voxbus-llm")]
    found = autoscaling_of("prod-voxbus-llm", hpas, [so])
    assert found is not None
    assert (found.hpa, found.min_replicas, found.max_replicas) == ("keda-hpa-llm", 0, 100)
    assert (found.triggers, found.keda_ready, found.keda_active) == (
        ["nats-jetstream", "cpu"], "False", None)
    no_hpa_yet = autoscaling_of("prod-voxbus-llm", [], [so])
    assert no_hpa_yet is not None and no_hpa_yet.hpa is None
    assert no_hpa_yet.current_replicas is None and no_hpa_yet.metrics == []


def test_hpa_metrics_pair_spec_and_status_by_name() -> None:
    def m(kind: str, part: str, value: dict[str, Any], **ident: Any) -> dict[str, Any]:
        return {"type": kind, kind[0].lower() + kind[1:]: ident | {part: value}}

    obj = {"describedObject": {"kind": "Service", "name": "gw"}, "metric": {"name": "rps"}}
    spec = [m("Resource", "target", {"averageUtilization": 70}, name="cpu"),
            m("Pods", "target", {"averageValue": "20"}, metric={"name": "calls"}),
            m("Object", "target", {"value": "100"}, **obj),
            m("ContainerResource", "target", {"averageValue": "1Gi"}, name="memory",
              container="llm")]
    status = [m("Object", "current", {"value": "87"}, **obj),
              m("Pods", "current", {"averageValue": "12500m"}, metric={"name": "calls"}),
              m("Resource", "current", {"averageValue": "310m", "averageUtilization": 62},
                name="cpu")]
    got = hpa_metrics({"spec": {"metrics": spec}, "status": {"currentMetrics": status}})
    assert got == [Metric("cpu", "62%", "70%"), Metric("calls", "12500m", "20"),
                   Metric("rps", "87", "100"), Metric("llm/memory", None, "1Gi")]


def test_pods_count_phases_restarts_and_unusual_waits() -> None:
    def pod(phase: str, *statuses: tuple[int, str | None], deleting: bool = False,
            init: bool = False) -> dict[str, Any]:
        cs: list[dict[str, Any]] = [
            {"restartCount": n, "state": {"waiting": {"reason": w}} if w else {"running": {}}}
            for n, w in statuses]
        key = "initContainerStatuses" if init else "containerStatuses"
        meta = {"deletionTimestamp": "2025-11-03T11:00:00Z"} if deleting else {}
        return {"metadata": meta, "status": {"phase": phase, key: cs}}

    got = pods_of([pod("Running", (2, None), (1, "CrashLoopBackOff")),
                   pod("Pending", (0, "ContainerCreating")),
                   pod("Pending", (3, "ImagePullBackOff"), init=True),
                   pod("Running", (0, None), deleting=True), {"status": {}}])
    assert got == Pods(total=5, phases={"Pending": 2, "Running": 1, "Terminating": 1,
                                        "Unknown": 1},
                       restarts=6, waiting=["CrashLoopBackOff", "ImagePullBackOff"])
    assert pods_of([]) == Pods()


def test_fixture_namespace_reads_as_the_table_promises() -> None:
    rows = {r["component"]: r for r in fixture_status()["components"]}
    assert {c: r["state"] for c, r in rows.items()} == {
        "gateway": "ready", "stt": "ready", "llm": "rolling out", "tts": "degraded",
        "memory": "missing"}
    assert rows["llm"]["autoscaling"]["desired_replicas"] == 4
    assert rows["llm"]["pods"]["total"] == 5


def test_rows_per_release_and_extra_components() -> None:
    deps = items("deployments.json")
    staging = copy.deepcopy(select(deps, SELECTOR)[0])
    staging["metadata"]["labels"]["app.kubernetes.io/instance"] = "staging"
    worker = copy.deepcopy(staging)
    worker["metadata"]["labels"]["app.kubernetes.io/component"] = "worker"
    status = build_status(namespace="voice", release=None, server="s",
                          deployments=[*select(deps, SELECTOR), staging, worker], hpas=[],
                          scaled_objects=[], pods=[])
    keys = [(r.release, r.component) for r in status.components]
    assert keys == [(rel, c) for rel in ("prod", "staging")
                    for c in ("gateway", "stt", "llm", "tts", "memory")] + [
                        ("staging", "worker")]
    text = as_text(render(status))
    assert "RELEASE" in text and "staging" in text


def test_nothing_deployed_is_five_missing_rows_of_the_asked_release() -> None:
    rows = fixture_status(release="canary")["components"]
    assert [(r["release"], r["state"]) for r in rows] == [("canary", "missing")] * 5
    assert label_selector("canary") == ("app.kubernetes.io/name=voxbus,"
                                        "app.kubernetes.io/instance=canary")


def test_api_errors_are_one_line() -> None:
    body = (FIXTURES / "forbidden.json").read_text()
    where = {"what": "deployments.apps", "namespace": "voice", "server": "https://k:6443"}
    forbidden = api_error_message(403, "Forbidden", body, **where)
    assert forbidden.startswith("forbidden: deployments.apps is forbidden: User ")
    assert api_error_message(403, "Forbidden", "not json", **where) == (
        "forbidden: cannot list deployments.apps in voice")
    assert api_error_message(401, "Unauthorized", "", **where) == (
        "unauthorized: https://k:6443 rejected the kubeconfig's credentials")
    assert api_error_message(503, "Service Unavailable", '{"message": "etcd\\n down"}',
                             **where) == ("https://k:6443 answered 503 Service Unavailable "
                                          "listing deployments.apps in namespace voice: "
                                          "etcd down")
    assert api_error_message(0, "SSLError\ncertificate verify failed", None, **where) == (
        "TLS error talking to https://k:6443: SSLError certificate verify failed")


def test_unreachable_names_the_server_and_the_socket_error() -> None:
    refused = urllib3.exceptions.NewConnectionError(
        HTTPConnection("10.0.0.1", 6443),
        "Failed to establish a new connection: [Errno 111] Connection refused")
    exc = urllib3.exceptions.MaxRetryError(urllib3.HTTPConnectionPool("10.0.0.1"), "/apis",
                                           refused)
    assert unreachable_message(exc, "https://10.0.0.1:6443") == (
        "cannot reach the Kubernetes API server at https://10.0.0.1:6443: Failed to "
        "establish a new connection: [Errno 111] Connection refused")


def test_namespace_and_kubeconfig_lookup(tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    contexts = [{"name": "a", "context": {"namespace": "voice"}}, {"name": "b", "context": {}}]
    assert context_namespace(contexts, contexts[0], None) == "voice"
    assert context_namespace(contexts, contexts[0], "b") == "default"
    monkeypatch.setenv("KUBECONFIG", f"{tmp_path}/one:{tmp_path}/two")
    assert kubeconfig_files(None) == [tmp_path / "one", tmp_path / "two"]
    assert kubeconfig_files(tmp_path / "x") == [tmp_path / "x"]
    monkeypatch.delenv("KUBECONFIG")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert kubeconfig_files(None) == [tmp_path / ".kube" / "config"]


def test_table_cells() -> None:
    keda = Autoscaling(hpa="keda-hpa-llm", min_replicas=1, max_replicas=8, current_replicas=3,
                       desired_replicas=4, scaled_object="llm",
                       triggers=["nats-jetstream", "prometheus"], keda_ready="True",
                       keda_active="False",
                       metrics=[Metric("s1-prometheus", "850m", "1"), Metric("cpu", None, "70%")])
    assert autoscaling_text(keda) == ("KEDA 3→4 [1-8] ready, inactive\n"
                                      "prometheus 850m/1\ncpu ?/70%")
    pending = Autoscaling(hpa=None, min_replicas=0, max_replicas=100, current_replicas=None,
                          desired_replicas=None, scaled_object="llm", triggers=["kafka"])
    assert autoscaling_text(pending) == "KEDA [0-100] NOT ready, inactive\nkafka"
    assert autoscaling_text(None) == "-"
    assert metric_label("s7-x", ["a"]) == "s7-x"
    assert pods_text(Pods(total=2, phases={"Running": 2}, restarts=1)) == "2 Running\n1 restart"
    assert pods_text(Pods()) == "none"


def as_text(renderable: Any) -> str:
    console = Console(width=120, record=True, file=io.StringIO())
    console.print(renderable)
    return console.export_text()


def test_table_has_a_row_per_service() -> None:
    status = DeployStatus(namespace="voice", release="prod", server="https://k:6443",
                          components=[component_status("memory", "prod", None, [], [], [])])
    text = as_text(render(status))
    assert "namespace voice, release prod on https://k:6443" in text
    assert "memory" in text and "missing" in text and "RELEASE" not in text
