"""Quantiles from Prometheus buckets, as histogram_quantile computes them."""

from bench.hist import histogram_quantiles, parse_histogram

PAGE = """# HELP h_seconds x
# TYPE h_seconds histogram
h_seconds_bucket{le="0.001",message="a"} 0.0
h_seconds_bucket{le="0.002",message="a"} 50.0
h_seconds_bucket{le="0.005",message="a"} 100.0
h_seconds_bucket{le="+Inf",message="a"} 100.0
h_seconds_count{message="a"} 100.0
h_seconds_sum{message="a"} 0.2
"""


def test_parse_and_interpolate() -> None:
    buckets = parse_histogram(PAGE, "h_seconds", "message")
    assert set(buckets) == {"a"}
    q = histogram_quantiles(buckets["a"], (50, 99))
    assert q["n"] == 100.0
    assert q["p50"] == 2.0  # the 50th of 100 sits at the top of the 1..2 ms bucket
    assert q["p99"] == 4.94  # 49 of 50 through the 2..5 ms bucket


def test_no_observations() -> None:
    assert histogram_quantiles({1.0: 0.0, float("inf"): 0.0}, (50,))["p50"] is None
