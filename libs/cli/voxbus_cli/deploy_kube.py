"""`voxbus deploy status`: the Kubernetes API calls, and their failures as one-line errors.

The official client does the talking (kubeconfig, auth, TLS); its objects are turned into
their JSON wire shape at once so deploy_status.py reads built-in kinds and KEDA's CRD alike.
The client's API is kept behind `Any`: this module is the boundary.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from voxbus_cli.deploy_status import DeployStatus, Obj, build_status, label_selector

REQUEST_TIMEOUT = (5.0, 30.0)  # (connect, read) seconds per call: a dead server fails fast
IN_CLUSTER_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


class KubeError(Exception):
    """A failure the user can act on, already worded as one line."""


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def kubeconfig_files(explicit: Path | None) -> list[Path]:
    """Where kubectl would look: --kubeconfig, else every file in KUBECONFIG, else ~/.kube."""
    if explicit is not None:
        return [explicit]
    env = os.environ.get("KUBECONFIG", "")
    if env:
        return [Path(p).expanduser() for p in env.split(os.pathsep) if p]
    return [Path("~/.kube/config").expanduser()]


def context_namespace(contexts: list[Any], current: Any, context: str | None) -> str:
    """The namespace kubectl would use: the chosen context's, else "default"."""
    chosen = next((c for c in contexts if c.get("name") == context), None) if context \
        else current
    return str(((chosen or {}).get("context") or {}).get("namespace") or "default")


def connect(kubeconfig: Path | None, context: str | None) -> tuple[Any, str]:
    """(ApiClient, default namespace) from a kubeconfig, or in-cluster credentials in a pod."""
    from kubernetes import client, config

    cfg: Any = client.Configuration()
    k8s_config: Any = config
    files = kubeconfig_files(kubeconfig)
    found = [f for f in files if f.is_file()]
    if kubeconfig is not None and not found:
        problem = "is not a file" if kubeconfig.exists() else "does not exist"
        raise KubeError(f"kubeconfig {kubeconfig} {problem}")
    try:
        if found:
            paths = os.pathsep.join(str(f) for f in found)
            k8s_config.load_kube_config(config_file=paths, context=context or None,
                                        client_configuration=cfg, persist_config=False)
            contexts, current = k8s_config.list_kube_config_contexts(paths)
            namespace = context_namespace(contexts, current, context)
        elif os.environ.get("KUBERNETES_SERVICE_HOST"):  # running in a pod
            k8s_config.load_incluster_config(client_configuration=cfg)
            namespace = IN_CLUSTER_NAMESPACE.read_text().strip() or "default"
        else:
            raise KubeError(f"no kubeconfig: {', '.join(map(str, files))} does not exist "
                            "(pass --kubeconfig or set KUBECONFIG)")
    except KubeError:
        raise
    except Exception as exc:  # any unreadable or inconsistent kubeconfig: say which, no trace
        where = ", ".join(map(str, found)) or "in-cluster config"
        raise KubeError(f"cannot use kubeconfig {where}: {_one_line(exc)}") from None
    cfg.retries = 1  # urllib3 retries a refused connection 3 times by default
    return client.ApiClient(cfg), namespace


def api_error_message(status: int | None, reason: str | None, body: str | None, *,
                      what: str, namespace: str, server: str) -> str:
    """One line for an error answer, quoting the Status message the server sent."""
    try:
        detail = str(json.loads(body or "").get("message") or "")
    except (ValueError, AttributeError):
        detail = ""
    if status == 0:  # the client's own wrapper around TLS failures
        return f"TLS error talking to {server}: {_one_line(reason)}"
    if status == 401:
        return f"unauthorized: {server} rejected the kubeconfig's credentials"
    if status == 403:
        return f"forbidden: {_one_line(detail) or f'cannot list {what} in {namespace}'}"
    return (f"{server} answered {status} {reason or ''} listing {what} in namespace "
            f"{namespace}" + (f": {_one_line(detail)}" if detail else ""))


def unreachable_message(exc: Exception, server: str) -> str:
    """One line for a connection failure: the server and the socket error, not urllib3's
    retry wrapper."""
    cause = getattr(exc, "reason", None) or exc
    text = _one_line(cause)
    if text.startswith(("HTTPConnection", "HTTPSConnection")) and ": " in text:
        text = text.split(": ", 1)[1]
    return f"cannot reach the Kubernetes API server at {server}: {text}"


def _items(api: Any, what: str, namespace: str, call: Callable[[], Any], *,
           optional: bool = False) -> list[Obj]:
    """The items of one list call; `optional`: a 404 (API not installed) is an empty list."""
    import urllib3
    from kubernetes.client.exceptions import ApiException

    server = str(api.configuration.host)
    try:
        result = call()
    except ApiException as exc:
        if optional and exc.status == 404:
            return []
        raise KubeError(api_error_message(exc.status, exc.reason, exc.body, what=what,
                                          namespace=namespace, server=server)) from None
    except urllib3.exceptions.HTTPError as exc:
        raise KubeError(unreachable_message(exc, server)) from None
    except ValueError as exc:  # the answer did not parse as the documented kind
        raise KubeError(f"unexpected answer from {server} listing {what}: "
                        f"{_one_line(exc)[:200]}") from None
    doc = api.sanitize_for_serialization(result) or {}
    return list(doc.get("items") or [])


def read_status(kubeconfig: Path | None, context: str | None, namespace: str | None,
                release: str | None) -> DeployStatus:
    """Read the voxbus Deployments, autoscalers and pods of a namespace; raises KubeError."""
    from kubernetes import client

    api, default_namespace = connect(kubeconfig, context)
    ns = namespace or default_namespace
    selector = label_selector(release)
    apps: Any = client.AppsV1Api(api)
    autoscaling: Any = client.AutoscalingV2Api(api)
    custom: Any = client.CustomObjectsApi(api)
    core: Any = client.CoreV1Api(api)
    try:
        deployments = _items(api, "deployments.apps", ns, lambda: apps.list_namespaced_deployment(
            ns, label_selector=selector, _request_timeout=REQUEST_TIMEOUT))
        hpas = _items(api, "horizontalpodautoscalers.autoscaling", ns,
                      lambda: autoscaling.list_namespaced_horizontal_pod_autoscaler(
                          ns, _request_timeout=REQUEST_TIMEOUT), optional=True)
        scaled = _items(api, "scaledobjects.keda.sh", ns,
                        lambda: custom.list_namespaced_custom_object(
                            "keda.sh", "v1alpha1", ns, "scaledobjects",
                            _request_timeout=REQUEST_TIMEOUT), optional=True)
        pods = _items(api, "pods", ns, lambda: core.list_namespaced_pod(
            ns, label_selector=selector, _request_timeout=REQUEST_TIMEOUT))
    finally:
        api.close()
    return build_status(namespace=ns, release=release, server=str(api.configuration.host),
                        deployments=deployments, hpas=hpas, scaled_objects=scaled, pods=pods)
