"""`voxbus deploy status`: Kubernetes objects (in their JSON wire shape) to a status model.

Pure functions only, so every rule is unit-tested without a cluster; deploy_kube.py does the
API calls and deploy_render.py the table. Objects are plain dicts as the API server returns
them (camelCase keys): the same shape for built-in kinds and KEDA's ScaledObjects.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

COMPONENTS = ("gateway", "stt", "llm", "tts", "memory")
NAME_LABEL = "app.kubernetes.io/name"
INSTANCE_LABEL = "app.kubernetes.io/instance"
COMPONENT_LABEL = "app.kubernetes.io/component"
# Waiting reasons every starting container goes through: not worth reporting.
ROUTINE_WAITING = frozenset({"ContainerCreating", "PodInitializing"})

Obj = Mapping[str, Any]


@dataclass(frozen=True)
class Rollout:
    """Replica counts and conditions of a Deployment, as `kubectl rollout status` reads them."""

    desired: int
    updated: int
    ready: int
    available: int
    total: int
    generation: int
    observed_generation: int
    progressing: str | None  # the Progressing condition's reason, e.g. NewReplicaSetAvailable
    available_condition: str | None  # "True" / "False" / "Unknown"


@dataclass(frozen=True)
class Metric:
    """One autoscaling metric: its current value next to its target (None: not measured yet)."""

    name: str
    current: str | None
    target: str | None


@dataclass(frozen=True)
class Autoscaling:
    """The HPA that scales a Deployment and, when KEDA drives it, the ScaledObject behind it."""

    hpa: str | None
    min_replicas: int | None
    max_replicas: int | None
    current_replicas: int | None
    desired_replicas: int | None
    metrics: list[Metric] = field(default_factory=list)
    scaled_object: str | None = None
    triggers: list[str] = field(default_factory=list)
    keda_ready: str | None = None  # the ScaledObject's Ready condition status
    keda_active: str | None = None  # its Active condition status (triggers above threshold)


@dataclass(frozen=True)
class Pods:
    """Pods of one component: count by phase (Terminating for pods being deleted)."""

    total: int = 0
    phases: dict[str, int] = field(default_factory=dict)
    restarts: int = 0
    waiting: list[str] = field(default_factory=list)  # e.g. CrashLoopBackOff, ImagePullBackOff


@dataclass(frozen=True)
class ComponentStatus:
    """What an operator asks first about one service: is it serving, updating or broken."""

    component: str
    release: str | None
    deployment: str | None
    state: str  # ready | rolling out | degraded | missing
    reason: str
    rollout: Rollout | None
    autoscaling: Autoscaling | None
    pods: Pods


@dataclass(frozen=True)
class DeployStatus:
    namespace: str
    release: str | None
    server: str
    components: list[ComponentStatus]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _labels(obj: Obj) -> Mapping[str, str]:
    return obj.get("metadata", {}).get("labels") or {}


def _name(obj: Obj) -> str:
    return str(obj.get("metadata", {}).get("name", ""))


def _conditions(obj: Obj) -> dict[str, Obj]:
    return {str(c.get("type")): c for c in obj.get("status", {}).get("conditions") or []}


def label_selector(release: str | None) -> str:
    """The selector the chart's labels answer to; without a release, every voxbus release."""
    selector = f"{NAME_LABEL}=voxbus"
    return f"{selector},{INSTANCE_LABEL}={release}" if release else selector


def rollout_of(deployment: Obj) -> Rollout:
    spec, status = deployment.get("spec", {}), deployment.get("status", {})
    conditions = _conditions(deployment)
    return Rollout(
        desired=int(spec.get("replicas", 1)),  # the API defaults an absent replicas to 1
        updated=int(status.get("updatedReplicas", 0)),
        ready=int(status.get("readyReplicas", 0)),
        available=int(status.get("availableReplicas", 0)),
        total=int(status.get("replicas", 0)),
        generation=int(deployment.get("metadata", {}).get("generation", 0)),
        observed_generation=int(status.get("observedGeneration", 0)),
        progressing=conditions.get("Progressing", {}).get("reason"),
        available_condition=conditions.get("Available", {}).get("status"))


def rollout_state(deployment: Obj) -> tuple[str, str]:
    """(state, reason): degraded when nothing serves or the rollout is stuck, then the
    `kubectl rollout status` checks in its order, else ready."""
    r = rollout_of(deployment)
    failure = _conditions(deployment).get("ReplicaFailure", {})
    if r.progressing == "ProgressDeadlineExceeded":
        return "degraded", f"{r.available}/{r.desired} available, progress deadline exceeded"
    if failure.get("status") == "True":
        return "degraded", f"replica failure: {failure.get('message') or failure.get('reason')}"
    if r.desired > 0 and r.available == 0:
        return "degraded", f"0/{r.desired} available"
    if r.available_condition == "False":
        return "degraded", f"{r.available}/{r.desired} available, below the minimum"
    if r.observed_generation < r.generation:
        return "rolling out", "spec change not yet observed by the controller"
    if r.updated < r.desired:
        return "rolling out", f"{r.updated}/{r.desired} updated"
    if r.total > r.updated:
        return "rolling out", f"{r.total - r.updated} old replicas terminating"
    if r.available < r.updated:
        return "rolling out", f"{r.available}/{r.updated} updated replicas available"
    if r.desired == 0:
        return "ready", "scaled to 0"
    return "ready", f"{r.available}/{r.desired} available"


def _targets(obj: Obj, deployment: str) -> bool:
    """Whether an HPA or ScaledObject scales this Deployment (KEDA's kind defaults to it)."""
    ref = obj.get("spec", {}).get("scaleTargetRef") or {}
    return ref.get("name") == deployment and ref.get("kind", "Deployment") == "Deployment"


def _quantity(value: Mapping[str, Any] | None) -> str | None:
    if not value:
        return None
    if value.get("averageUtilization") is not None:
        return f"{value['averageUtilization']}%"
    for key in ("averageValue", "value"):
        if value.get(key) is not None:
            return str(value[key])
    return None


def _metric_key(metric: Obj) -> tuple[str, str]:
    kind = str(metric.get("type", ""))
    body = metric.get(kind[:1].lower() + kind[1:], {}) or {}  # "ContainerResource" → key
    if kind == "Resource":
        return kind, str(body.get("name"))
    if kind == "ContainerResource":
        return kind, f"{body.get('container')}/{body.get('name')}"
    return kind, str((body.get("metric") or {}).get("name"))


def _metric_value(metric: Obj, part: str) -> str | None:
    kind = str(metric.get("type", ""))
    body = metric.get(kind[:1].lower() + kind[1:], {}) or {}
    return _quantity(body.get(part))


def hpa_metrics(hpa: Obj) -> list[Metric]:
    """Each target metric with its current value, paired by (type, name): the API does not
    promise the same order in spec and status."""
    current = {_metric_key(m): _metric_value(m, "current")
               for m in hpa.get("status", {}).get("currentMetrics") or []}
    return [Metric(name=_metric_key(m)[1], current=current.get(_metric_key(m)),
                   target=_metric_value(m, "target"))
            for m in hpa.get("spec", {}).get("metrics") or []]


def autoscaling_of(deployment: str, hpas: Iterable[Obj],
                   scaled_objects: Iterable[Obj]) -> Autoscaling | None:
    """The HPA targeting the Deployment (KEDA's own when a ScaledObject owns it); KEDA's
    replica bounds win over its HPA's, which cannot express scale-to-zero."""
    so = next((s for s in scaled_objects if _targets(s, deployment)), None)
    candidates = [h for h in hpas if _targets(h, deployment)]
    keda_hpa = so.get("status", {}).get("hpaName") if so else None
    hpa = next((h for h in candidates if _name(h) == keda_hpa), None) or next(
        iter(candidates), None)
    if hpa is None and so is None:
        return None
    hpa_spec = hpa.get("spec", {}) if hpa else {}
    hpa_status = hpa.get("status", {}) if hpa else {}
    min_r: int | None = hpa_spec.get("minReplicas", 1) if hpa else None
    max_r: int | None = hpa_spec.get("maxReplicas")
    keda: dict[str, Any] = {}
    if so is not None:
        so_spec, conds = so.get("spec", {}), _conditions(so)
        min_r = int(so_spec.get("minReplicaCount", 0))  # KEDA's defaults
        max_r = int(so_spec.get("maxReplicaCount", 100))
        keda = {"scaled_object": _name(so),
                "triggers": [str(t.get("type")) for t in so_spec.get("triggers") or []],
                "keda_ready": conds.get("Ready", {}).get("status"),
                "keda_active": conds.get("Active", {}).get("status")}
    return Autoscaling(hpa=_name(hpa) if hpa else None, min_replicas=min_r, max_replicas=max_r,
                       current_replicas=hpa_status.get("currentReplicas"),
                       desired_replicas=hpa_status.get("desiredReplicas"),
                       metrics=hpa_metrics(hpa) if hpa else [], **keda)


def pods_of(pods: Iterable[Obj]) -> Pods:
    phases: Counter[str] = Counter()
    restarts, waiting = 0, set()
    for pod in pods:
        status = pod.get("status", {})
        deleting = pod.get("metadata", {}).get("deletionTimestamp")
        phases["Terminating" if deleting else str(status.get("phase", "Unknown"))] += 1
        for cs in [*(status.get("initContainerStatuses") or []),
                   *(status.get("containerStatuses") or [])]:
            restarts += int(cs.get("restartCount", 0))
            reason = (cs.get("state", {}).get("waiting") or {}).get("reason")
            if reason and reason not in ROUTINE_WAITING:
                waiting.add(str(reason))
    return Pods(total=sum(phases.values()), phases=dict(sorted(phases.items())),
                restarts=restarts, waiting=sorted(waiting))


def build_status(*, namespace: str, release: str | None, server: str,
                 deployments: Sequence[Obj], hpas: Sequence[Obj],
                 scaled_objects: Sequence[Obj], pods: Sequence[Obj]) -> DeployStatus:
    """One row per (release, component): the five services of every release found (of the
    asked one, or of none when nothing is deployed), then any other voxbus component."""
    found = sorted({_labels(d).get(INSTANCE_LABEL, "") for d in deployments})
    releases: list[str | None] = [*found] or [release]
    by_key = {(_labels(d).get(INSTANCE_LABEL, ""), _labels(d).get(COMPONENT_LABEL, "")): d
              for d in deployments}
    extra = sorted({c for _, c in by_key} - set(COMPONENTS))
    rows = []
    for rel in releases:
        for component in (*COMPONENTS, *extra):
            dep = by_key.get((rel or "", component))
            if dep is None and component in extra:
                continue
            mine = [p for p in pods if _labels(p).get(COMPONENT_LABEL) == component
                    and _labels(p).get(INSTANCE_LABEL, "") == (rel or "")]
            rows.append(component_status(component, rel or None, dep, hpas, scaled_objects,
                                         mine))
    return DeployStatus(namespace=namespace, release=release, server=server, components=rows)


def component_status(component: str, release: str | None, deployment: Obj | None,
                     hpas: Sequence[Obj], scaled_objects: Sequence[Obj],
                     pods: Sequence[Obj]) -> ComponentStatus:
    if deployment is None:
        return ComponentStatus(component=component, release=release, deployment=None,
                               state="missing", reason="no Deployment found",
                               rollout=None, autoscaling=None, pods=pods_of(pods))
    state, reason = rollout_state(deployment)
    name = _name(deployment)
    return ComponentStatus(component=component, release=release, deployment=name,
                           state=state, reason=reason, rollout=rollout_of(deployment),
                           autoscaling=autoscaling_of(name, hpas, scaled_objects),
                           pods=pods_of(pods))
