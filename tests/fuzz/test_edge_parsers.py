"""The carrier edges' pure parsers, driven directly with arbitrary text, bytes and JSON-like
values: only the documented exceptions may escape, and what comes out is well-formed."""

from __future__ import annotations

import base64
import contextlib
import json
from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st

from tests.fuzz.budget import examples, run_bounded
from tests.fuzz.fake_ws import FakeWs, RecordingCall
from tests.fuzz.strategies import json_values, nested_json, payloads
from voxbus_common.ids import validate_call_id
from voxbus_gateway.edges.asterisk import parse_fields
from voxbus_gateway.edges.base import (
    ProtocolViolation,
    carrier_call_id,
    close_message,
    decode_b64,
    parse_json_object,
)
from voxbus_gateway.edges.jitter import ReorderBuffer
from voxbus_gateway.edges.pcm_ws import InvalidAudio, check_pcm_payload
from voxbus_gateway.edges.transcode import (
    ENCODINGS,
    Transcoder,
    UnsupportedFormat,
    encoding_from_mime,
)
from voxbus_gateway.edges.twilio import TwilioEdge
from voxbus_gateway.edges.twilio_like import ExotelEdge, PlivoEdge, TelnyxEdge

RATES = (8000, 16000, 24000, 48000)
TWILIO_FAMILY = (TwilioEdge, TelnyxEdge, ExotelEdge, PlivoEdge)
any_json = json_values(["event", "start", "media", "mark", "name", "payload", "encoding",
                        "sampleRate", "sample_rate", "mediaFormat", "media_format", "chunk",
                        "track", "callSid", "streamSid", "call_control_id", "callId"],
                       st.sampled_from([8000, 16000, float("inf"), "audio/x-mulaw", "PCMU",
                                        "start", "mark", "media", "inbound"]))

# -- base.py ------------------------------------------------------------------------------------


@examples(800)
@given(st.one_of(st.text(), any_json.map(json.dumps),
                 st.sampled_from([10, 500, 990, 2000, 100_000]).map(nested_json),
                 st.integers(1, 6000).map(lambda n: "1" * n),
                 st.text(max_size=5).map(lambda s: '{"a": ' + s)))
@example("[" * 100_000)  # a RecursionError escaped before the fix
def test_parse_json_object(text: str) -> None:
    try:
        doc = parse_json_object(text)
    except ValueError as exc:
        assert str(exc)
        return
    assert isinstance(doc, dict)


@examples(800)
@given(st.one_of(payloads(2000), any_json), st.integers(1, 1000))
def test_decode_b64(value: Any, limit: int) -> None:
    try:
        data = decode_b64(value, limit)
    except ValueError as exc:
        assert str(exc)
        return
    assert isinstance(data, bytes) and 0 < len(data) <= limit


@examples(300)
@given(st.binary(min_size=1, max_size=300))
def test_decode_b64_round_trip(data: bytes) -> None:
    assert decode_b64(base64.b64encode(data).decode(), 300) == data


@examples(800)
@given(st.text())
def test_carrier_call_id_is_always_a_subject_token(raw: str) -> None:
    assert validate_call_id(carrier_call_id(raw))


@examples(400)
@given(st.text(st.characters(exclude_categories=())))  # lone surrogates included
def test_close_message(reason: str) -> None:
    out = close_message(reason)
    assert len(out) <= 120
    assert reason.encode("utf-8", "replace").startswith(out)  # a prefix, never a torn char
    out.decode("utf-8")


# -- transcode.py, pcm_ws.py, jitter.py ----------------------------------------------------------

MIMES = ["audio/x-mulaw", "audio/PCMU", "audio/basic", "ulaw", "audio/x-alaw", "PCMA",
         "audio/l16", "audio/x-l16", "L16", "audio/pcm", "linear16", "audio/raw"]


@examples(600)
@given(st.one_of(st.text(), st.tuples(st.sampled_from(MIMES), st.text(max_size=20)).map(
    lambda t: f" {t[0].upper()} ;{t[1]}")))
def test_encoding_from_mime(mime: str) -> None:
    try:
        assert encoding_from_mime(mime) in ENCODINGS
    except UnsupportedFormat as exc:
        assert "unsupported audio encoding" in str(exc)


@examples(150)
@given(st.sampled_from(ENCODINGS) | st.text(max_size=8),
       st.sampled_from(RATES) | st.integers(-10, 100_000),
       st.sampled_from(RATES),
       st.lists(st.binary(max_size=500), max_size=6),
       st.lists(st.integers(0, 300).map(lambda n: n * 2), max_size=6))
def test_transcoder(encoding: str, rate: int, bus_rate: int, inbound: list[bytes],
                    outbound: list[int]) -> None:
    try:
        codec = Transcoder(encoding, rate, bus_rate)
    except UnsupportedFormat:
        assert encoding not in ENCODINGS or rate not in RATES
        return
    assert len(codec.silence()) == codec.frame_bytes and codec.frame_bytes % codec.sample_bytes == 0
    for payload in inbound:  # any carrier bytes: odd tails are dropped, never a crash
        assert len(codec.to_bus(payload)) % 2 == 0
    for n in outbound:  # bus audio is always whole PCM16 samples
        out = codec.from_bus(b"\x10\x20" * (n // 2))
        assert len(out) % codec.sample_bytes == 0


@examples(600)
@given(st.one_of(st.binary(max_size=2000),
                 st.sampled_from([b"RIFF", b"OggS", b"fLaC", b"ID3"]).map(lambda h: h + b"\0" * 8),
                 st.integers(0, 50_000).map(lambda n: b"\0" * n)),
       st.sampled_from(RATES))
def test_check_pcm_payload(data: bytes, rate: int) -> None:
    try:
        check_pcm_payload(data, rate)
    except InvalidAudio as exc:
        assert str(exc)
        return
    assert len(data) % 2 == 0 and len(data) <= rate * 2


@examples(600)
@given(st.lists(st.integers(-5, 80) | st.integers(-(2**64), 2**64), max_size=60),
       st.integers(1, 6), st.integers(1, 60))
def test_reorder_buffer(seqs: list[int], depth: int, max_gap: int) -> None:
    buf = ReorderBuffer(depth=depth, max_gap=max_gap)
    silence = b"<silence>"
    released: list[bytes] = []
    for i, seq in enumerate(seqs):
        out = buf.push(seq, f"{i}:{seq}".encode(), silence)
        assert len(buf._held) <= depth  # memory stays bounded whatever the carrier sends
        released += out
    frames = [f for f in released if f != silence]
    assert len(frames) == len(set(frames))  # each frame at most once
    assert released.count(silence) == buf.lost
    assert len(frames) + buf.late + len(buf._held) == len(seqs)  # every push accounted for


@examples(200)
@given(st.permutations(list(range(1, 21))), st.integers(0, 3))
def test_reorder_buffer_restores_order(order: list[int], shuffle_window: int) -> None:
    """Frames that arrive within the buffer's depth of their place come out in order."""
    arrivals = sorted(range(1, 21), key=lambda s: (s + order[s - 1] % (shuffle_window + 1)))
    buf = ReorderBuffer()
    out: list[bytes] = []
    for seq in arrivals:
        out += buf.push(seq, seq.to_bytes(2, "big"), b"")
    got = [int.from_bytes(f, "big") for f in out if f]
    assert got == sorted(got)


# -- asterisk.py --------------------------------------------------------------------------------

@examples(600)
@given(st.text() | st.lists(st.text(max_size=8) | st.just(":"), max_size=8).map(" ".join))
def test_asterisk_parse_fields(text: str) -> None:
    command, fields = parse_fields(text)
    assert command == "" or (command and not any(c.isspace() for c in command))
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in fields.items())


# -- twilio.py and the carriers that copied it ---------------------------------------------------

@examples(250)
@given(st.sampled_from(TWILIO_FAMILY), any_json, any_json)
@example(TwilioEdge, {"mediaFormat": {"sampleRate": float("inf")}}, {})
@example(TelnyxEdge, {"media_format": {"sample_rate": float("inf")}}, {})
def test_twilio_start_parsers(cls: type[TwilioEdge], start: Any, doc: Any) -> None:
    """What the handshake makes of a `start` message: a transcoder (or an error the handshake
    turns into a ProtocolViolation), a call id, a mark name; for all four carriers."""
    edge = cls(FakeWs([]).as_response(), 16000)
    handled = (ProtocolViolation, ValueError, TypeError, OverflowError)  # as handshake does
    start = start if isinstance(start, dict) else {"x": start}
    doc = doc if isinstance(doc, dict) else {"x": doc}
    with contextlib.suppress(*handled):
        assert isinstance(edge.media_format(start), Transcoder)
    try:
        validate_call_id(edge.call_id_from(doc, start))
    except ProtocolViolation as exc:
        assert edge.strict_call_id and str(exc)
    name = edge.mark_name(doc)
    assert name is None or isinstance(name, str)


@examples(400)
@given(st.sampled_from(TWILIO_FAMILY), st.lists(st.one_of(any_json, st.fixed_dictionaries(
    {"payload": payloads(400)},
    optional={"track": st.sampled_from(["inbound", "outbound", "inbound_track"]) | any_json,
              "chunk": st.integers(-3, 70) | any_json})), min_size=1, max_size=4))
@example(TwilioEdge, [{"payload": "AAAA", "chunk": float("inf")}])  # OverflowError before
def test_twilio_media(cls: type[TwilioEdge], messages: list[Any]) -> None:
    """`media` messages of any shape: audio for the call (whole PCM16 samples) or a protocol
    error each, nothing else."""
    edge = cls(FakeWs([]).as_response(), 16000)
    call = RecordingCall()
    for media in messages:
        run_bounded(edge._media(call.as_call(), media))
    assert edge.errors <= len(messages)
