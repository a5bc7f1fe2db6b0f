"""Prometheus histogram helpers for the benchmarks: parse `_bucket` series from a /metrics
page and estimate quantiles the way PromQL's histogram_quantile does (linear in a bucket)."""

from __future__ import annotations

import math

from prometheus_client.parser import text_string_to_metric_families


def parse_histogram(text: str, name: str, label: str) -> dict[str, dict[float, float]]:
    """{label value: {upper bound: cumulative count}} for histogram `name`."""
    out: dict[str, dict[float, float]] = {}
    for family in text_string_to_metric_families(text):
        if family.name != name:
            continue
        for s in family.samples:
            if s.name == f"{name}_bucket":
                out.setdefault(s.labels.get(label, ""), {})[float(s.labels["le"])] = s.value
    return out


def histogram_quantiles(buckets: dict[float, float], qs: tuple[float, ...]
                        ) -> dict[str, float | None]:
    """p<q> in milliseconds (None without observations; the top finite bound if beyond it)."""
    bounds = sorted(buckets)
    total = buckets[bounds[-1]] if bounds else 0.0
    result: dict[str, float | None] = {"n": total}
    for q in qs:
        if total <= 0:
            result[f"p{q:g}"] = None
            continue
        rank = q / 100 * total
        lower, below = 0.0, 0.0
        value = bounds[-2] if len(bounds) > 1 else 0.0
        for le in bounds:
            count = buckets[le]
            if count >= rank:
                if math.isinf(le):
                    value = lower
                else:
                    share = (rank - below) / (count - below) if count > below else 1.0
                    value = lower + (le - lower) * share
                break
            lower, below = le, count
        result[f"p{q:g}"] = round(value * 1000, 2)
    return result
