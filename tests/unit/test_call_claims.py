"""A gateway's claim on a call id (CallClaims over Bus.create_key): it outlasts a leader
election of the bucket, takes a try that was stored but unanswered as its own, and still
refuses a call id that is live elsewhere or already here."""

from __future__ import annotations

from typing import Any, cast

import pytest
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError

from voxbus_common.bus import Bus
from voxbus_common.config import Settings
from voxbus_gateway.claims import CallClaims
from voxbus_gateway.edges.base import ProtocolViolation


class Entry:
    def __init__(self, value: bytes) -> None:
        self.value = value


class ElectingBucket:
    """A KV double whose first `unanswered` creates are stored but time out (the leader
    went down before answering), as in an election."""

    def __init__(self, unanswered: int = 0, held_by: dict[str, bytes] | None = None) -> None:
        self.unanswered = unanswered
        self.data: dict[str, bytes] = dict(held_by or {})
        self.creates = 0

    async def create(self, key: str, value: bytes) -> int:
        self.creates += 1
        if key in self.data:
            raise KeyWrongLastSequenceError()
        self.data[key] = value
        if self.unanswered:
            self.unanswered -= 1
            raise NatsTimeoutError()
        return 1

    async def get(self, key: str) -> Entry:
        if key not in self.data:
            raise KeyNotFoundError()
        return Entry(self.data[key])

    async def delete(self, key: str) -> None:
        self.data.pop(key, None)


class FakeNc:
    def jetstream(self) -> None:
        return None


def claims_over(bucket: ElectingBucket) -> CallClaims:
    bus = Bus(cast(Any, FakeNc()), Settings(), "gateway-a")

    async def calls_kv() -> Any:
        return bucket

    bus.calls_kv = calls_kv  # type: ignore[method-assign]
    return CallClaims(bus, "gateway-a")


async def test_a_claim_stored_but_unanswered_is_taken_as_its_own() -> None:
    bucket = ElectingBucket(unanswered=1)
    await claims_over(bucket).claim("c1")
    assert bucket.creates == 2 and bucket.data == {"c1": b"gateway-a"}


async def test_a_call_live_on_another_gateway_is_refused() -> None:
    bucket = ElectingBucket(unanswered=1, held_by={"c1": b"gateway-b"})
    with pytest.raises(ProtocolViolation, match="already connected"):
        await claims_over(bucket).claim("c1")
    assert bucket.data == {"c1": b"gateway-b"}


async def test_a_second_connection_to_the_same_gateway_is_refused_until_release() -> None:
    bucket = ElectingBucket()
    claims = claims_over(bucket)
    await claims.claim("c1")
    with pytest.raises(ProtocolViolation, match="already connected"):
        await claims.claim("c1")
    assert bucket.creates == 1  # refused here, before the bucket
    await claims.release("c1")
    assert bucket.data == {}
    await claims.claim("c1")


async def test_a_bucket_that_never_answers_fails_the_claim_and_frees_the_id() -> None:
    bucket = ElectingBucket()
    claims = claims_over(bucket)
    answers = 0

    async def never(key: str, value: bytes) -> int:
        nonlocal answers
        answers += 1
        raise NatsTimeoutError()

    with pytest.raises(NatsTimeoutError):
        await claims.bus.create_key(cast(Any, type("Kv", (), {"create": staticmethod(never)})),
                                    "c1", b"gateway-a", retry_s=0.3)
    assert answers >= 2  # retried within the window, then the error

    async def broken(key: str, value: bytes) -> int:
        raise ConnectionResetError("bus gone")

    bucket.create = broken  # type: ignore[method-assign]
    with pytest.raises(ConnectionResetError):
        await claims.claim("c1")
    del bucket.create  # the double's own create again: the id was not left held
    await claims.claim("c1")
    assert bucket.data == {"c1": b"gateway-a"}
