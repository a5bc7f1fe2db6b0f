"""Everything derived from the subject registry agrees with it: subjects, streams, NATS
permissions, the docs' table, the typed dispatch. A new bus message is a proto plus a row;
forgetting to derive something from the row fails here."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from nats.aio.msg import Msg

from voxbus.v1.audio_pb2 import AudioChunk
from voxbus.v1.speech_pb2 import Transcript
from voxbus_common import registry, subjects
from voxbus_common.codec import BadMessage
from voxbus_common.nats_permissions import ROLES, SERVICES, permissions, subject_matches
from voxbus_common.registry import ROWS, Dispatch, subscribes

ROOT = Path(__file__).resolve().parents[2]
C = "c42"


def test_every_row_is_unique_and_named_like_its_constant() -> None:
    assert len({row.name for row in ROWS}) == len(ROWS)
    assert len({row.wildcard for row in ROWS}) == len(ROWS)
    for row in ROWS:
        assert getattr(registry, row.name.upper()) is row
        assert set(row.publishers) <= set(ROLES) and set(row.consumers) <= set(ROLES)
        assert set(row.no_core) <= set(row.consumers)
        assert set(row.ordered) <= set(row.consumers)


def test_no_two_rows_share_a_subject() -> None:
    for row in ROWS:
        concrete = row.subject(C)
        assert [r.name for r in ROWS if r.matches(concrete)] == [row.name]


def test_the_subject_helpers_build_the_rows_subjects() -> None:
    assert subjects.audio_in(C) == registry.AUDIO_IN.subject(C) == "vb.call.c42.in.audio"
    assert subjects.work_llm(C) == registry.WORK_LLM.subject(C)
    assert subjects.direct_work(subjects.work_tts(C)) == registry.DIRECT_TTS.subject(C)
    assert subjects.work_taken(subjects.TTS_POOL) == registry.TAKEN_TTS.subject()
    assert registry.CONTROL.wildcard == subjects.CONTROL_ALL
    with pytest.raises(ValueError):
        registry.AUDIO_IN.subject("a.b")
    with pytest.raises(ValueError):
        subjects.work_taken("some-other-pool")


def test_streams_capture_exactly_their_rows() -> None:
    specs = subjects.stream_specs(30.0, 3600.0)
    for spec in specs:
        assert spec.subjects == registry.captured_by(spec.name), spec.name
    assert {row.stream for row in ROWS if row.stream} == {spec.name for spec in specs}


def data_grants(role: str, grants: tuple[str, ...]) -> list[str]:
    """A role's grants on data subjects (not the JetStream API, KV or its inbox)."""
    return [g for g in grants if g.startswith(f"{registry.PREFIX}.")]


@pytest.mark.parametrize("role", ROLES)
def test_permissions_grant_every_row_and_no_other_data_subject(role: str) -> None:
    perms = permissions(role)
    for row in ROWS:
        may_pub = any(subject_matches(g, row.wildcard) for g in perms.publish)
        may_sub = any(subject_matches(g, row.wildcard) for g in perms.subscribe)
        assert may_pub == (role in row.publishers), (role, row.name, "publish")
        assert may_sub == subscribes(row, role), (role, row.name, "subscribe")
    for grant in data_grants(role, perms.publish):
        assert any(role in r.publishers and subject_matches(grant, r.wildcard) for r in ROWS), grant
    for grant in data_grants(role, perms.subscribe):
        assert any(subscribes(r, role) and subject_matches(grant, r.wildcard) for r in ROWS), grant


@pytest.mark.parametrize("role", SERVICES)
def test_a_pulling_role_may_use_its_durable_consumer(role: str) -> None:
    publish = permissions(role).publish
    for row in ROWS:
        if row.pull is not None and row.pull[0] == role:
            durable = row.pull[1]
            assert f"$JS.API.CONSUMER.MSG.NEXT.{row.stream}.{durable}" in publish
            assert f"$JS.ACK.{row.stream}.{durable}.>" in publish


def test_the_docs_table_is_the_registry() -> None:
    text = (ROOT / "docs" / "architecture.md").read_text()
    found = re.search(re.escape(registry.TABLE_BEGIN) + ".*?" + re.escape(registry.TABLE_END),
                      text, re.S)
    assert found, "docs/architecture.md lost its generated subject table"
    assert found.group(0) == registry.markdown_table(), (
        "the subject table is stale: python -m voxbus_common.registry")


def msg(subject: str, data: bytes) -> Msg:
    return Msg(None, subject=subject, data=data)  # type: ignore[arg-type]


async def test_dispatch_gives_each_handler_its_decoded_type() -> None:
    got: list[object] = []

    async def on_audio(chunk: AudioChunk, raw: Msg) -> None:
        got.append(chunk)

    async def on_transcript(transcript: Transcript, raw: Msg) -> None:
        got.append(transcript)

    dispatch = Dispatch().on(registry.AUDIO_OUT, on_audio).on(registry.TRANSCRIPT, on_transcript)
    await dispatch(msg(subjects.audio_out(C), AudioChunk(pcm=b"\x00\x01").SerializeToString()))
    await dispatch(msg(subjects.transcript(C), Transcript(text="hi").SerializeToString()))
    assert isinstance(got[0], AudioChunk) and got[0].pcm == b"\x00\x01"
    assert isinstance(got[1], Transcript) and got[1].text == "hi"
    with pytest.raises(BadMessage):
        await dispatch(msg(subjects.transcript(C), b"\xff\xff not protobuf"))
    with pytest.raises(LookupError):
        await dispatch(msg(subjects.vad(C), b""))
    with pytest.raises(ValueError):
        Dispatch().on(registry.WATCH, on_audio)  # type: ignore[arg-type]
