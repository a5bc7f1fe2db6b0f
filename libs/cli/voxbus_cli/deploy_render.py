"""`voxbus deploy status` as a compact table: one row per service, the state word first."""

from __future__ import annotations

import re

from rich.console import Group
from rich.table import Table
from rich.text import Text

from voxbus_cli.deploy_status import Autoscaling, ComponentStatus, DeployStatus, Pods

STATE_STYLES = {"ready": "green", "rolling out": "yellow", "degraded": "bold red",
                "missing": "red"}


def _n(value: int | None) -> str:
    return "?" if value is None else str(value)


def replicas_text(row: ComponentStatus) -> str:
    """ready/desired, and the updated count while it lags."""
    r = row.rollout
    if r is None:
        return "-"
    text = f"{r.ready}/{r.desired} ready"
    return text if r.updated >= r.desired else f"{text}\n{r.updated} updated"


def metric_label(name: str, triggers: list[str]) -> str:
    """KEDA names trigger i's metric `s<i>-…`: show the trigger type instead, shorter."""
    match = re.match(r"s(\d+)-", name)
    if match and int(match.group(1)) < len(triggers):
        return triggers[int(match.group(1))]
    return name


def autoscaling_text(a: Autoscaling | None) -> str:
    """`KEDA 3→4 [1-8] ready, active` or `HPA 2→2 [2-10]`, then a line per metric:
    current/target."""
    if a is None:
        return "-"
    head = ["KEDA" if a.scaled_object is not None else "HPA"]
    if a.hpa is not None:
        head.append(f"{_n(a.current_replicas)}→{_n(a.desired_replicas)}")
    head.append(f"[{_n(a.min_replicas)}-{_n(a.max_replicas)}]")
    if a.scaled_object is not None:
        head.append(("ready" if a.keda_ready == "True" else "NOT ready") + ", "
                    + ("active" if a.keda_active == "True" else "inactive"))
    lines = [" ".join(head)]
    lines += [f"{metric_label(m.name, a.triggers)} {m.current or '?'}/{m.target or '?'}"
              for m in a.metrics]
    if a.scaled_object is not None and not a.metrics:  # no HPA yet: at least the triggers
        lines.append(", ".join(a.triggers) or "no triggers")
    return "\n".join(lines)


def pods_text(p: Pods) -> str:
    if p.total == 0:
        return "none"
    lines = [", ".join(f"{n} {phase}" for phase, n in p.phases.items())]
    if p.restarts:
        lines.append(f"{p.restarts} restart{'s' if p.restarts > 1 else ''}")
    return "\n".join(lines + p.waiting)


def render(status: DeployStatus) -> Group:
    """A header line (where we looked) and the table."""
    table = Table(box=None, pad_edge=False, header_style="bold")
    releases = {row.release for row in status.components}
    show_release = len(releases) > 1
    columns = ["SERVICE", *(["RELEASE"] if show_release else []), "STATE", "REPLICAS",
               "PODS", "AUTOSCALING"]
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in status.components:
        state = Text(row.state, style=STATE_STYLES.get(row.state, ""))
        state.append(f"\n{row.reason}", style="dim")
        release_cell = [row.release or "-"] if show_release else []
        cells: list[str | Text] = [row.component, *release_cell, state, replicas_text(row),
                                   pods_text(row.pods), autoscaling_text(row.autoscaling)]
        table.add_row(*cells)
    release = status.release or (None if show_release else next(iter(releases), None))
    header = Text(f"namespace {status.namespace}"
                  + (f", release {release}" if release else "")
                  + f" on {status.server}", style="dim")
    return Group(header, table)
