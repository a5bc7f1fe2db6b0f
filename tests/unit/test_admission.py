"""Admission under floods: a call-attempt rate per source, caps on calls still being set up
per edge and per source (so one flooding address cannot fill an edge for everyone)."""

from __future__ import annotations

from voxbus_gateway.admission import Admission, TokenBuckets


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_source_gets_its_burst_then_its_rate() -> None:
    clock = Clock()
    buckets = TokenBuckets(rate_per_s=2.0, burst=3.0, clock=clock)
    assert [buckets.take("a") for _ in range(4)] == [True, True, True, False]
    assert buckets.take("b")  # another source has its own bucket
    clock.now = 0.5  # one token back
    assert buckets.take("a") and not buckets.take("a")
    assert all(TokenBuckets(0, 1).take("a") for _ in range(100))  # rate 0: no limit


def test_unconfirmed_calls_are_capped_per_edge_and_per_source() -> None:
    admission = Admission(rate_per_s=0, burst=1, max_unconfirmed=3,
                          max_unconfirmed_per_source=2)
    assert admission.enter("sip", "10.0.0.9") and admission.enter("sip", "10.0.0.9")
    assert admission.full("sip", "10.0.0.9")  # that address has its two
    assert not admission.enter("twilio", "10.0.0.9")  # on any edge
    assert admission.enter("sip", "10.0.0.1")  # another caller still gets in
    assert admission.full("sip", "10.0.0.2")  # the edge has its three
    assert admission.enter("twilio", "10.0.0.2")  # other edges are not affected
    admission.leave("sip", "10.0.0.9")
    assert admission.enter("sip", "10.0.0.2")
    for edge, source in (("sip", "10.0.0.9"), ("sip", "10.0.0.1"), ("twilio", "10.0.0.2"),
                         ("sip", "10.0.0.2")):
        admission.leave(edge, source)
    assert not admission.unconfirmed and not admission.by_source


def test_source_refusal_says_why() -> None:
    admission = Admission(rate_per_s=1.0, burst=1.0, max_unconfirmed=0, clock=Clock())
    assert admission.source_refusal("10.0.0.9") == ""
    assert "too many call attempts" in admission.source_refusal("10.0.0.9")
