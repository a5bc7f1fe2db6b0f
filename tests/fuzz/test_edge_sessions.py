"""Whole carrier sessions against every WebSocket edge: a handshake then a stream of frames,
valid, mutated or garbage, text or binary, with socket errors and early closes. Whatever
arrives, the edge must end with a call id or a ProtocolViolation from the handshake, then a
(reason, close code) or a ProtocolViolation from the pump: never another exception, never a
hang, an odd-sized PCM16 chunk or an unreadable close frame. Each example also runs a clean
call on a twin edge at the same time, which must come out exactly as it does alone."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest
from aiohttp import WSMessage, WSMsgType
from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz.budget import examples, run_bounded
from tests.fuzz.fake_ws import FakeWs, Outcome, check_close, drive
from tests.fuzz.strategies import b64, json_values, keyed, mutated, payloads, text_frames
from voxbus_gateway.edges.asterisk import AsteriskWsEdge
from voxbus_gateway.edges.base import MAX_PROTOCOL_ERRORS, WsEdge
from voxbus_gateway.edges.pcm_ws import PcmWebSocketEdge
from voxbus_gateway.edges.teler import TelerEdge
from voxbus_gateway.edges.twilio import TwilioEdge
from voxbus_gateway.edges.twilio_like import ExotelEdge, PlivoEdge, TelnyxEdge
from voxbus_gateway.edges.vonage import VonageEdge

BUS_RATE = 16000
Doc = dict[str, Any]
Strategy = st.SearchStrategy

# -- vocabularies and valid messages ------------------------------------------------------------

TWILIO_KEYS = ["event", "start", "media", "mark", "dtmf", "stop", "streamSid", "callSid",
               "accountSid", "customParameters", "mediaFormat", "encoding", "sampleRate",
               "channels", "payload", "track", "chunk", "name", "digit", "caller", "from",
               "callId", "streamId", "call_control_id", "call_session_id", "stream_id",
               "call_sid", "stream_sid", "sequenceNumber"]
EVENTS = ["connected", "start", "media", "mark", "dtmf", "stop", "playedStream",
          "clearedAudio", "error", "websocket:connected"]
ENCODINGS = ["audio/x-mulaw", "audio/x-alaw", "audio/x-l16", "audio/l16;rate=16000", "PCMU",
             "PCMA", "L16", "base64", "raw", "slin", "audio/pcm", "audio/ogg", ""]
RATES: list[Any] = [8000, 16000, 24000, 48000, 8000.5, "8000", 0, -1, 44100,
                    float("inf"), float("nan"), True, None, [8000]]
CALL_IDS = ["CA0123456789abcdef0123456789abcdef", "v3:abc-DEF_123", "", "a.b*c>",
            "x" * 80, "ünïcode", "MZ42", "\ud800", "日本語の通話" * 8]
TRACKS = ["inbound", "outbound", "inbound_track", "both", 3]
CHUNKS: list[Any] = [1, 2, 3, 5, 60, "4", "x", 0, -7, 2**70, float("inf"), 1.5, None]

# Valid values weigh as much as all the odd ones together: sessions get past the handshake
# often enough to fuzz the media path too.
call_ids = st.sampled_from(["CA0123456789abcdef0123456789abcdef", "MZ42"]) | st.sampled_from(
    CALL_IDS)
encodings = st.sampled_from(["audio/x-mulaw", "audio/x-l16", "PCMU", "audio/x-alaw"]) | (
    st.sampled_from(ENCODINGS))
rates = st.sampled_from([8000, 16000, 24000, 48000]) | st.sampled_from(RATES)
specials = (st.sampled_from(EVENTS + ENCODINGS + CALL_IDS + TRACKS) | st.sampled_from(RATES)
            | st.sampled_from(CHUNKS) | payloads())
twilio_noise = json_values(TWILIO_KEYS, specials, max_leaves=8)


def twilio_start(call_keys: list[str]) -> Strategy[Doc]:
    fmt = st.fixed_dictionaries({"encoding": encodings, "sampleRate": rates,
                                 "channels": st.just(1)})
    start = st.fixed_dictionaries(
        {k: call_ids for k in call_keys},
        optional={"mediaFormat": fmt, "accountSid": call_ids,
                  "customParameters": st.dictionaries(st.sampled_from(["caller", "from", "x"]),
                                                      specials, max_size=2)})
    return st.fixed_dictionaries({"event": st.just("start"), "start": start})


def twilio_pump() -> Strategy[Doc]:
    media = st.fixed_dictionaries(
        {"payload": payloads()},
        optional={"track": st.sampled_from(["inbound", "inbound_track"]) | st.sampled_from(TRACKS),
                  "chunk": st.integers(1, 12) | st.sampled_from(CHUNKS)})
    media_event = st.fixed_dictionaries({"event": st.just("media"), "media": media})
    return st.one_of(
        media_event, media_event, media_event,
        st.fixed_dictionaries({"event": st.just("mark"),
                               "mark": st.fixed_dictionaries({"name": st.text(max_size=8)})}),
        st.fixed_dictionaries({"event": st.just("playedStream"), "name": st.text(max_size=8)}),
        st.fixed_dictionaries({"event": st.just("dtmf"), "dtmf": st.fixed_dictionaries(
            {"digit": st.sampled_from(["1", "#", "*", "", "12", "x"])})}),
        st.fixed_dictionaries({"event": st.sampled_from(["stop", "connected", "clearedAudio",
                                                         "error"])}),
    )


def snake(camel: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in camel)


def twilio_session(keys: Callable[[str], str], call_keys: list[str]) -> Strategy[list[WSMessage]]:
    start = twilio_start(call_keys).map(lambda d: keyed(keys, d))
    pump = twilio_pump().map(lambda d: keyed(keys, d))
    return session(mutated(start, twilio_noise, TWILIO_KEYS),
                   mutated(pump, twilio_noise, TWILIO_KEYS),
                   opener=st.just({"event": "connected"}))


TELER_KEYS = ["type", "data", "call_id", "stream_id", "encoding", "sample_rate", "audio_b64",
              "message_id", "chunk_id"]
teler_noise = json_values(TELER_KEYS, specials, max_leaves=8)
teler_start = st.fixed_dictionaries(
    {"type": st.just("start"), "call_id": call_ids},
    optional={"stream_id": call_ids, "data": st.fixed_dictionaries(
        {}, optional={"encoding": encodings, "sample_rate": rates})})
teler_audio = st.fixed_dictionaries(
    {"type": st.just("audio"), "data": st.fixed_dictionaries({"audio_b64": payloads()})},
    optional={"message_id": st.sampled_from(CHUNKS)})

VONAGE_KEYS = ["event", "content-type", "uuid", "call_id", "conversation_uuid", "payload",
               "mark", "digit", "dtmf"]
vonage_noise = json_values(VONAGE_KEYS, specials, max_leaves=8)
vonage_start = st.fixed_dictionaries(
    {"event": st.just("websocket:connected"),
     "content-type": st.sampled_from(["audio/l16;rate=16000", "audio/l16;rate=8000",
                                      "audio/l16;rate=44100", "audio/l16;rate=" + "9" * 5000,
                                      "audio/l16;rate=١٦٠٠٠", "audio/l16"])},
    optional={"uuid": st.sampled_from(CALL_IDS)})
vonage_control = st.one_of(
    st.fixed_dictionaries({"event": st.just("websocket:notify"),
                           "payload": st.fixed_dictionaries({"mark": st.text(max_size=8)})}),
    st.fixed_dictionaries({"event": st.just("websocket:dtmf")},
                          optional={"digit": specials, "dtmf": specials | st.fixed_dictionaries(
                              {"digit": st.sampled_from(["5", ""])})}),
    st.fixed_dictionaries({"event": st.sampled_from(["websocket:cleared", "other"])}),
)

PCM_KEYS = ["type", "digit", "name"]
pcm_noise = json_values(PCM_KEYS, specials, max_leaves=6)
pcm_command = st.fixed_dictionaries(
    {"type": st.sampled_from(["stop", "dtmf", "mark", "hello"])},
    optional={"digit": specials, "name": specials})

# Asterisk's control is text `COMMAND key:value ...`, not JSON.
ASTERISK_COMMANDS = ["MEDIA_START", "DTMF_END", "DTMF_BEGIN", "MEDIA_XOFF", "MEDIA_XON",
                     "HANGUP", "STATUS", "MEDIA_BUFFERING_COMPLETED", "BOGUS", ""]
ASTERISK_FIELDS = ["format", "optimal_frame_size", "channel_id", "connection_id", "digit",
                   "ptime"]
asterisk_field = st.tuples(st.sampled_from(ASTERISK_FIELDS) | st.text(max_size=6),
                           st.sampled_from(["ulaw", "alaw", "slin", "slin16", "slin48", "g722",
                                            "", "5", "a:b", "abc-123"]) | st.text(max_size=8))


@st.composite
def asterisk_text(draw: st.DrawFn, command: Strategy[str]) -> str:
    parts = [draw(command)] + [f"{k}:{v}" for k, v in draw(st.lists(asterisk_field, max_size=4))]
    sep = draw(st.sampled_from([" ", "  ", "\t", "\n"]))
    return sep.join(parts) if draw(st.integers(0, 9)) else draw(st.text(max_size=40))


# -- frames and sessions ------------------------------------------------------------------------

def text(data: str) -> WSMessage:
    return WSMessage(WSMsgType.TEXT, data, None)


def binary(data: bytes) -> WSMessage:
    return WSMessage(WSMsgType.BINARY, data, None)


ERROR = WSMessage(WSMsgType.ERROR, ConnectionResetError("reset"), None)
CLOSE = WSMessage(WSMsgType.CLOSE, 1000, "")
audio_bytes = st.one_of(
    st.binary(max_size=700),
    st.integers(0, 200).map(lambda n: b"\x00\x01" * n),
    st.sampled_from([b"RIFF" + b"\x00" * 40, b"OggS", b"ID3\x04", b"\x00" * 96002,
                     b"\x00" * 65501]))
stray = audio_bytes.map(binary)
# How a session ends besides running out of frames: a socket error, a close frame. In the
# middle of a session these would cut it short, so they come last (or inside a burst).
endings = st.sampled_from([[], [], [ERROR], [CLOSE]])


def session(first: Strategy[Doc], rest: Strategy[Doc], opener: Strategy[Doc] | None = None,
            frames: Strategy[WSMessage] = stray) -> Strategy[list[WSMessage]]:
    """An opening message (sometimes after an optional `opener`), then up to 12 frames:
    mostly text of mutated valid messages, some binary; now and then one frame repeated
    past the protocol-error limit; maybe a socket error or a close frame at the end."""
    later = st.one_of(*[text_frames(rest).map(text)] * 5, frames)
    head = st.lists((opener if opener is not None else first).map(json.dumps).map(text),
                    max_size=1)
    opening = first.map(json.dumps) | text_frames(first)  # half of the time well-formed
    body = st.lists(later, min_size=2, max_size=12)
    return st.tuples(head, opening.map(text), body, bursts(later), endings).map(
        lambda t: [*t[0], t[1], *t[2], *t[3], *t[4]])


@st.composite
def bursts(draw: st.DrawFn, frames: Strategy[WSMessage]) -> list[WSMessage]:
    """Usually nothing; sometimes one frame sent 55 times (past MAX_PROTOCOL_ERRORS)."""
    if draw(st.integers(0, 5)) < 5:  # (Hypothesis favours 0: make that the common case)
        return []
    return [draw(frames)] * (MAX_PROTOCOL_ERRORS + 5)


def binary_session(first: Strategy[str], later_text: Strategy[str],
                   frames: Strategy[bytes]) -> Strategy[list[WSMessage]]:
    later = st.one_of(later_text.map(text), frames.map(binary), frames.map(binary))
    opening = st.one_of(first.map(text), first.map(text), first.map(text),
                        audio_bytes.map(binary))
    return st.tuples(opening, st.lists(later, min_size=2, max_size=12), bursts(later), endings).map(
        lambda t: [t[0], *t[1], *t[2], *t[3]])


# -- the clean twin -----------------------------------------------------------------------------

def clean_twilio_script(keys: Callable[[str], str], call_key: str) -> list[WSMessage]:
    docs: list[Doc] = [{"event": "connected"},
                       {"event": "start", "start": {call_key: "CAclean0001",
                                                    "mediaFormat": {"encoding": "audio/x-mulaw",
                                                                    "sampleRate": 8000}}},
                       *[{"event": "media", "media": {"payload": b64(bytes([i]) * 160),
                                                      "chunk": str(i + 1)}} for i in range(5)],
                       {"event": "mark", "mark": {"name": "m1"}},
                       {"event": "dtmf", "dtmf": {"digit": "7"}},
                       {"event": "stop"}]
    return [text(json.dumps(keyed(keys, d))) for d in docs]


EdgeFactory = Callable[[FakeWs], WsEdge]
Case = tuple[EdgeFactory, Strategy[list[WSMessage]], list[WSMessage]]


def _cases() -> dict[str, Case]:
    def tw(cls: type[TwilioEdge]) -> EdgeFactory:
        return lambda ws: cls(ws.as_response(), BUS_RATE)

    clean_teler = [text(json.dumps(d)) for d in [
        {"type": "start", "call_id": "t1", "data": {"encoding": "audio/l16",
                                                    "sample_rate": 8000}},
        *[{"type": "audio", "message_id": i + 1,
           "data": {"audio_b64": b64(bytes([i]) * 320)}} for i in range(5)]]]
    clean_vonage = [text(json.dumps({"event": "websocket:connected", "uuid": "v1",
                                     "content-type": "audio/l16;rate=16000"})),
                    *[binary(bytes([i]) * 640) for i in range(5)],
                    text(json.dumps({"event": "websocket:notify", "payload": {"mark": "m"}}))]
    clean_asterisk = [text("MEDIA_START format:slin16 channel_id:a1"),
                      *[binary(bytes([i]) * 640) for i in range(5)],
                      text("DTMF_END digit:3"), text("HANGUP")]
    clean_pcm = [*[binary(bytes([i]) * 640) for i in range(5)],
                 text(json.dumps({"type": "dtmf", "digit": "9"})),
                 text(json.dumps({"type": "stop"}))]
    asterisk_start = asterisk_text(st.just("MEDIA_START") | st.just("MEDIA_START")
                                   | st.sampled_from(ASTERISK_COMMANDS))
    return {
        "twilio": (tw(TwilioEdge), twilio_session(str, ["callSid", "streamSid"]),
                   clean_twilio_script(str, "callSid")),
        "telnyx": (tw(TelnyxEdge), twilio_session(snake, ["call_control_id", "stream_id"]),
                   clean_twilio_script(snake, "call_control_id")),
        "exotel": (tw(ExotelEdge), twilio_session(snake, ["call_sid", "stream_sid"]),
                   clean_twilio_script(snake, "call_sid")),
        "plivo": (tw(PlivoEdge), twilio_session(str, ["callId", "streamId"]),
                  clean_twilio_script(str, "callId")),
        "teler": (lambda ws: TelerEdge(ws.as_response(), BUS_RATE),
                  session(mutated(teler_start, teler_noise, TELER_KEYS),
                          mutated(teler_audio, teler_noise, TELER_KEYS)), clean_teler),
        "vonage": (lambda ws: VonageEdge(ws.as_response(), BUS_RATE),
                   session(mutated(vonage_start, vonage_noise, VONAGE_KEYS),
                           mutated(vonage_control, vonage_noise, VONAGE_KEYS),
                           frames=stray), clean_vonage),
        "asterisk": (lambda ws: AsteriskWsEdge(ws.as_response(), BUS_RATE),
                     binary_session(asterisk_start,
                                    asterisk_text(st.sampled_from(ASTERISK_COMMANDS)),
                                    audio_bytes), clean_asterisk),
        "pcm-ws": (lambda ws: PcmWebSocketEdge(ws.as_response(), "pcm1", 16000, BUS_RATE),
                   binary_session(text_frames(mutated(pcm_command, pcm_noise, PCM_KEYS)),
                                  text_frames(mutated(pcm_command, pcm_noise, PCM_KEYS)),
                                  audio_bytes), clean_pcm),
    }


CASES = _cases()
_BASELINES: dict[str, tuple[Any, ...]] = {}


async def _run(factory: EdgeFactory, script: list[WSMessage]) -> Outcome:
    ws = FakeWs(script)
    return await drive(factory(ws), ws)


def baseline(name: str) -> tuple[Any, ...]:
    """The clean call's outcome when it runs alone (computed once per edge)."""
    if name not in _BASELINES:
        factory, _, clean = CASES[name]
        _BASELINES[name] = run_bounded(_run(factory, clean)).summary()
    return _BASELINES[name]


@pytest.mark.parametrize("name", sorted(CASES))
def test_clean_call_works(name: str) -> None:
    """The twin is a real call: it is accepted and delivers audio (so the comparison in the
    fuzz test below means something)."""
    call_id, refused, _, _, _, audio, _, _ = baseline(name)
    assert call_id and refused == "None" and audio


def survives(name: str, script: list[WSMessage]) -> None:
    """One fuzzed session and the clean twin, side by side on one event loop."""
    factory, _, clean = CASES[name]
    expected = baseline(name)

    async def both() -> tuple[Outcome, Outcome]:
        return await asyncio.gather(_run(factory, script), _run(factory, list(clean)))

    _, twin = run_bounded(both())
    assert twin.summary() == expected, "a bad call changed another call's outcome"


@pytest.mark.parametrize("name", sorted(CASES))
def test_edge_survives_any_session(name: str) -> None:
    @examples(120)
    @given(CASES[name][1])
    def check(script: list[WSMessage]) -> None:
        survives(name, script)

    check()


@given(st.sampled_from(sorted(CASES)).flatmap(lambda n: st.tuples(st.just(n), CASES[n][1])))
def fuzz_any_edge_session(case: tuple[str, list[WSMessage]]) -> None:
    """All edges in one target, for coverage-guided campaigns (atheris_driver.py)."""
    survives(*case)


@pytest.mark.parametrize("name", sorted(CASES))
def test_close_reason_is_readable(name: str) -> None:
    """Reasons quote what the peer sent (any text): the close frame still carries at most 123
    bytes of valid UTF-8, so the peer reads our code and reason."""
    factory = CASES[name][0]

    @examples(100)
    @given(st.text(st.characters(exclude_categories=()), min_size=30, max_size=200),
           st.sampled_from([1000, 1003, 1008, 1011]))
    def check(reason: str, code: int) -> None:
        ws = FakeWs([])
        run_bounded(factory(ws).finish(reason, code))
        check_close(ws)

    check()
