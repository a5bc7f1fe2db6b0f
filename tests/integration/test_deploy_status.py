"""`voxbus deploy status` end to end: the real command (official Kubernetes client, kubeconfig
with a bearer token) against a fake API server answering recorded-shape list responses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fake_kube_api import FakeKubeAPI
from voxbus_cli.embedded import free_port

TOKEN = "eyJhbGciOiJSUzI1NiIsImtpZCI6ImZha2UifQ.status-reader.sig"


@pytest.fixture
def api() -> Iterator[FakeKubeAPI]:
    with FakeKubeAPI(namespace="voice", token=TOKEN) as server:
        yield server


def voxbus(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The command as a user runs it: its own process, no proxy, no ~/.kube of this machine."""
    env = {k: v for k, v in os.environ.items()
           if k.lower() not in ("http_proxy", "https_proxy", "all_proxy", "kubeconfig")}
    env["HOME"] = str(tmp_path)
    return subprocess.run([sys.executable, "-m", "voxbus_cli", "deploy", "status", *args],
                          capture_output=True, text=True, env=env, timeout=120, check=False)


def status_json(tmp_path: Path, api: FakeKubeAPI) -> dict[str, Any]:
    config = api.kubeconfig(tmp_path / "kubeconfig")
    done = voxbus(tmp_path, "--kubeconfig", str(config), "--namespace", "voice", "--json")
    assert done.returncode == 0, done.stderr
    doc: dict[str, Any] = json.loads(done.stdout)
    return doc


def test_reports_each_service_of_the_release(tmp_path: Path, api: FakeKubeAPI) -> None:
    doc = status_json(tmp_path, api)
    assert doc["namespace"] == "voice" and doc["server"] == api.url
    rows = {row["component"]: row for row in doc["components"]}
    assert list(rows) == ["gateway", "stt", "llm", "tts", "memory"]  # nats-box left out
    assert {row["release"] for row in rows.values()} == {"prod"}

    gateway = rows["gateway"]
    assert (gateway["state"], gateway["deployment"]) == ("ready", "prod-voxbus-gateway")
    assert gateway["rollout"]["ready"] == gateway["rollout"]["desired"] == 2
    assert gateway["autoscaling"]["hpa"] == "prod-voxbus-gateway"
    assert gateway["autoscaling"]["scaled_object"] is None
    assert gateway["autoscaling"]["metrics"] == [{"name": "cpu", "current": "41%",
                                                  "target": "70%"}]
    assert gateway["pods"] == {"total": 2, "phases": {"Running": 2}, "restarts": 1,
                               "waiting": []}

    llm = rows["llm"]
    assert llm["state"] == "rolling out" and llm["reason"] == "2/4 updated"
    assert (llm["rollout"]["updated"], llm["rollout"]["desired"]) == (2, 4)
    scaling = llm["autoscaling"]
    assert scaling["hpa"] == "keda-hpa-prod-voxbus-llm"
    assert (scaling["current_replicas"], scaling["desired_replicas"]) == (3, 4)
    assert (scaling["min_replicas"], scaling["max_replicas"]) == (1, 8)
    assert scaling["scaled_object"] == "prod-voxbus-llm"
    assert scaling["triggers"] == ["nats-jetstream", "prometheus"]
    assert (scaling["keda_ready"], scaling["keda_active"]) == ("True", "True")
    assert {m["name"]: m["current"] for m in scaling["metrics"]} == {
        "s0-nats-jetstream-VOXBUS_WORK": "7", "s1-prometheus": "850m"}
    assert llm["pods"]["phases"] == {"Pending": 1, "Running": 4}

    stt = rows["stt"]
    assert stt["state"] == "ready"
    assert stt["autoscaling"]["triggers"] == ["nats-jetstream"]
    assert stt["autoscaling"]["keda_active"] == "False"

    tts = rows["tts"]
    assert tts["state"] == "degraded" and tts["rollout"]["available"] == 0
    assert "progress deadline" in tts["reason"]
    assert tts["pods"]["waiting"] == ["CrashLoopBackOff"] and tts["pods"]["restarts"] == 14
    assert tts["autoscaling"]["metrics"] == [{"name": "cpu", "current": None, "target": "75%"}]

    memory = rows["memory"]
    assert (memory["state"], memory["deployment"], memory["rollout"]) == ("missing", None, None)
    assert memory["pods"]["total"] == 0


def test_calls_the_list_paths_with_the_token_and_selector(tmp_path: Path,
                                                          api: FakeKubeAPI) -> None:
    status_json(tmp_path, api)
    paths = {seen.path: seen.label_selector for seen in api.seen}
    assert paths == {
        "/apis/apps/v1/namespaces/voice/deployments": "app.kubernetes.io/name=voxbus",
        "/apis/autoscaling/v2/namespaces/voice/horizontalpodautoscalers": None,
        "/apis/keda.sh/v1alpha1/namespaces/voice/scaledobjects": None,
        "/api/v1/namespaces/voice/pods": "app.kubernetes.io/name=voxbus"}
    assert {seen.authorization for seen in api.seen} == {f"Bearer {TOKEN}"}


def test_release_narrows_the_selector(tmp_path: Path, api: FakeKubeAPI) -> None:
    config = api.kubeconfig(tmp_path / "kubeconfig")
    done = voxbus(tmp_path, "--kubeconfig", str(config), "--release", "staging", "--json")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["namespace"] == "voice"  # from the kubeconfig context
    assert {row["state"] for row in doc["components"]} == {"missing"}
    assert {row["release"] for row in doc["components"]} == {"staging"}
    assert api.seen[0].label_selector == ("app.kubernetes.io/name=voxbus,"
                                          "app.kubernetes.io/instance=staging")


def test_table_names_every_state(tmp_path: Path, api: FakeKubeAPI) -> None:
    config = api.kubeconfig(tmp_path / "kubeconfig")
    done = voxbus(tmp_path, "--kubeconfig", str(config))
    assert done.returncode == 0, done.stderr
    for word in ("namespace voice, release prod", "gateway", "rolling out", "degraded",
                 "missing", "nats-jetstream", "CrashLoopBackOff"):
        assert word in done.stdout, done.stdout


def test_unreachable_server_is_one_line_naming_it(tmp_path: Path, api: FakeKubeAPI) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    config = api.kubeconfig(tmp_path / "kubeconfig", server=dead)
    done = voxbus(tmp_path, "--kubeconfig", str(config), "--namespace", "voice")
    assert done.returncode == 2
    assert done.stderr.startswith(f"error: cannot reach the Kubernetes API server at {dead}")
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_forbidden_is_one_line(tmp_path: Path) -> None:
    with FakeKubeAPI(namespace="voice", token=TOKEN, forbidden={"deployments.json"}) as api:
        config = api.kubeconfig(tmp_path / "kubeconfig")
        done = voxbus(tmp_path, "--kubeconfig", str(config), "--namespace", "voice", "--json")
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith("error: forbidden: deployments.apps is forbidden: User "
                                  '"system:serviceaccount:voice:status-reader"')
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert {seen.authorization for seen in api.seen} == {f"Bearer {TOKEN}"}


def test_wrong_token_is_unauthorized(tmp_path: Path, api: FakeKubeAPI) -> None:
    config = api.kubeconfig(tmp_path / "kubeconfig")
    config.write_text(config.read_text().replace(TOKEN, "expired"))
    done = voxbus(tmp_path, "--kubeconfig", str(config), "--namespace", "voice")
    assert done.returncode == 2
    assert done.stderr.strip() == (f"error: unauthorized: {api.url} rejected the "
                                   "kubeconfig's credentials")


def test_bad_kubeconfig_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "kubeconfig"
    done = voxbus(tmp_path, "--kubeconfig", str(missing))
    assert done.returncode == 2
    assert done.stderr.strip() == f"error: kubeconfig {missing} does not exist"


def test_no_kubeconfig_at_all(tmp_path: Path) -> None:
    done = voxbus(tmp_path)  # HOME without .kube, no KUBECONFIG, not in a pod
    assert done.returncode == 2
    assert done.stderr.startswith("error: no kubeconfig:")
    assert "--kubeconfig" in done.stderr and "Traceback" not in done.stderr


def test_unknown_context(tmp_path: Path, api: FakeKubeAPI) -> None:
    config = api.kubeconfig(tmp_path / "kubeconfig")
    done = voxbus(tmp_path, "--kubeconfig", str(config), "--context", "prod-eu")
    assert done.returncode == 2
    assert done.stderr.startswith(f"error: cannot use kubeconfig {config}:")
    assert "prod-eu" in done.stderr and "Traceback" not in done.stderr
