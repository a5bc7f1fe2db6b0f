"""A call as the gateway owns it: life cycle, caller audio onto the bus, bus messages in.

The turn state machine (turns, barge-in, DTMF, idle) lives in conversation.py; this class
is its plumbing. The gateway is the single writer of the call's control subject.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from opentelemetry import trace

from voxbus.v1.audio_pb2 import AudioFrame, AudioResend
from voxbus.v1.call_pb2 import CallAnnounce, CallEvent
from voxbus.v1.llm_pb2 import LlmPrefill, LlmRequest, TtsRequest
from voxbus_common import subjects
from voxbus_common.audio import Framer, frame_bytes
from voxbus_common.bus import ACKED_RETRY_S, Bus
from voxbus_common.clauses import split_text
from voxbus_common.config import GatewayService
from voxbus_common.logs import call_id_var
from voxbus_common.redact import Redactor, StreamRedactor
from voxbus_common.telemetry import tracer
from voxbus_gateway.clock import AudioClock
from voxbus_gateway.commands import CallCommands, turn_record
from voxbus_gateway.conversation import Conversation
from voxbus_gateway.edge import EdgeSink
from voxbus_gateway.event_outbox import EventOutbox
from voxbus_gateway.inbox import CallInbox
from voxbus_gateway.keypad import DTMF_DIGITS, KeypadCollector
from voxbus_gateway.turn import Turn

log = logging.getLogger(__name__)
TURN_LOG_SIZE = 50  # turns of a live call GetCall returns (docs/control.md)
# Caller audio kept for STT to ask again (15 s: a stream leader election after losing a
# node takes 4-9 s, then STT must see frames again to ask; ~500 KB per call) and the echo
# checks' window (2 s)
RESEND_MS = 15_000
ECHO_MS = 2_000
# free text of call events, redacted before publishing (Transfer.target is not: it is the
# agent file's or the operator's destination, which the edge acts on)
_EVENT_TEXT = {"user_turn": ("text",), "agent_turn": ("heard_text", "full_text"),
               "system_note": ("text",), "ending": ("reason",), "ended": ("reason",),
               "cancel_turn": ("reason",)}
_SHOWN_AS_IS = frozenset({"type", "target"})  # live-event fields operators see unredacted
_FLUSHES = frozenset({"turn", "error", "tools", "call_ended"})  # the agent's text is complete


class Call:
    def __init__(self, bus: Bus, settings: GatewayService, call_id: str, edge: EdgeSink,
                 gateway_id: str) -> None:
        self.bus = bus
        self.settings = settings
        self.call_id = call_id
        self.edge = edge
        self.gateway_id = gateway_id
        self.caller = str(getattr(edge, "caller", ""))  # "" = anonymous (no long-term memory)
        self.redact = Redactor.from_setting(settings.redact_pii)
        self.rate = settings.bus_sample_rate
        self.frame_ms = settings.bus_frame_ms
        self.clock = AudioClock(frame_ms=self.frame_ms)
        self._framer = Framer(frame_bytes(self.rate, self.frame_ms))
        self._audio_subject = subjects.audio_in(call_id)
        self._sub: Subscription | None = None
        self.conversation = Conversation(self)
        self.keypad = KeypadCollector(settings.dtmf_timeout_s, self._keypad_entry)
        self.ending = False
        self.stream_closed = asyncio.Event()
        self.inbox = CallInbox(self)  # the call's vb.call.ID.out.> subscription
        self.ended = asyncio.Event()
        self.hangup_requested: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.last_audio_seq = 0
        self.started_unix_ns = time.time_ns()
        self.started = False  # set once the bus took the call's first records (start)
        # GetCall's turns of a live call: the last ones (the whole call is in memory's record)
        self.turn_log: deque[bytes] = deque(maxlen=TURN_LOG_SIZE)
        self._watch_subject = subjects.watch(call_id)
        self._agent_text: tuple[int, StreamRedactor] | None = None  # watchers' view of a reply
        self.commands = CallCommands(self)
        self._cmd_sub: Subscription | None = None
        # the caller's last frames as published: STT asks for frames the audio stream missed
        # (AudioResend), and echo checks read the last 2 s
        self._sent: deque[AudioFrame] = deque(maxlen=RESEND_MS // self.frame_ms)
        self.bus_retry_s = ACKED_RETRY_S  # how long an event waits for a stream leader
        self.outbox = EventOutbox(self._publish_event)
        self._hinted = ""  # the caller's words last sent to the LLM replicas (prefill_reply)
        self.span = tracer().start_span("call", attributes={
            "voxbus.call_id": call_id, "voxbus.edge": edge.name})

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        call_id_var.set(self.call_id)
        # everything the call starts (bus callbacks, turns, the STT owner) is under this span
        with trace.use_span(self.span, end_on_exit=False):
            self._sub = await self.bus.subscribe(subjects.call_out_all(self.call_id),
                                                 self.on_bus)
            await self.control(0, wait=True, started=CallEvent.Started(
                sample_rate=self.rate, edge=self.edge.name, caller=self.caller))
            announce = CallAnnounce(meta=self.bus.meta(self.call_id, 0, subjects.WORK_CALLS),
                                    sample_rate=self.rate, edge=self.edge.name,
                                    gateway_id=self.gateway_id)
            await self.bus.publish_acked(subjects.WORK_CALLS, announce,
                                         msg_id=f"announce-{self.call_id}")
            self._cmd_sub = await self.bus.subscribe(subjects.rpc_call(self.call_id),
                                                     self.commands.on_command)
            await self.bus.nc.flush()  # the server knows the owner before anyone learns the id
            await self.watch({"type": "call_started", "edge": self.edge.name,
                              "gateway": self.gateway_id})
            self.conversation.start()
        self.started = True
        log.info("call started", extra={"edge": self.edge.name})

    async def greet(self) -> None:
        """The agent file's greeting, as a turn of this call's trace."""
        with trace.use_span(self.span, end_on_exit=False):
            await self.conversation.greet()

    def request_hangup(self, reason: str) -> None:
        """The agent side ends the call (idle timeout, end_call tool or route, transfer)."""
        if not self.hangup_requested.done():
            self.hangup_requested.set_result(reason)

    async def transfer(self, turn_id: int, target: str) -> None:
        """Hand the caller to `target` (transfer_call tool): recorded on the bus, offered to
        the edge (a carrier adapter redirects the call; the PCM/browser client gets a
        `transfer` event), then this leg of the call ends."""
        await self.control(turn_id, transfer=CallEvent.Transfer(target=target,
                                                                reason="transfer_call"))
        await self.emit({"type": "transfer", "target": target})
        transfer = getattr(self.edge, "transfer", None)
        try:
            by_carrier = bool(transfer is not None and await transfer(target))
        except Exception as exc:  # the caller is not left hanging: this leg still ends
            log.error("carrier transfer failed: %s", exc)
            await self.emit({"type": "error", "message": f"transfer failed: {exc}"})
            self.request_hangup(f"transfer to {target} failed")
            return
        log.info("call transferred", extra={"target": self.redact(target),
                                            "by_carrier": by_carrier})
        self.request_hangup(f"transferred to {target}")

    async def hangup(self, reason: str, flush_timeout_s: float = 15.0) -> None:
        """End the call: flush what the caller said, record it, then publish Ended."""
        if self.ending:
            await self.ended.wait()
            return
        self.ending = True
        try:
            turn_id = await self._record_end(reason, flush_timeout_s)
        except Exception as exc:  # no bus (quorum lost): the caller still hears the reason
            turn_id = self.conversation.turn_counter
            log.error("the end of the call could not be recorded on the bus (%s: %s); "
                      "caller audio up to frame %d was sent", type(exc).__name__, exc,
                      self.last_audio_seq)
        finally:
            await self.outbox.close()  # (all stored, unless the bus failed us)
            for sub in (self._sub, self._cmd_sub):
                if sub is not None:
                    with contextlib.suppress(Exception):
                        await sub.unsubscribe()
            self.bus.forget_subjects(self.call_id)
            self.span.set_attribute("voxbus.turns", self.conversation.turn_counter)
            self.span.set_attribute("voxbus.end_reason", self.redact(reason))
            self.span.end()
            self.ended.set()
        log.info("call ended", extra={"reason": reason, "turns": turn_id})

    async def _record_end(self, reason: str, flush_timeout_s: float) -> int:
        """Flush what the caller said, stop the conversation, publish Ending, wait for STT
        to close the stream, publish Ended; returns the last turn id."""
        tail = self._framer.flush()
        if tail:
            await self._publish_frame(tail)
        self.keypad.cancel()
        await self.conversation.stop()
        turn_id = self.conversation.turn_counter
        await self.control(turn_id, wait=True, ending=CallEvent.Ending(
            reason=reason, last_audio_seq=self.last_audio_seq))
        try:
            await asyncio.wait_for(self.stream_closed.wait(), timeout=flush_timeout_s)
        except TimeoutError:
            log.warning("STT did not confirm the end of the stream in time")
        await self.control(self.conversation.turn_counter, wait=True,
                           ended=CallEvent.Ended(reason=reason))
        await self.watch({"type": "call_ended", "reason": reason})
        return turn_id

    # -- caller side --------------------------------------------------------------------------

    async def on_caller_audio(self, pcm16: bytes) -> None:
        """PCM16 at the bus rate, any chunking; published as `bus_frame_ms` frames (core
        publish)."""
        if self.ending:
            return
        for frame in self._framer.push(pcm16):
            await self._publish_frame(frame)

    async def _publish_frame(self, pcm: bytes) -> None:
        offset = self.clock.stamp_frame()
        meta = self.bus.meta(self.call_id, self.conversation.turn_counter, self._audio_subject)
        self.last_audio_seq = meta.seq
        msg = AudioFrame(meta=meta, sample_rate=self.rate, pcm=pcm, stream_offset_ms=offset)
        self._sent.append(msg)
        await self.bus.publish(self._audio_subject, msg, traced=False)

    async def resend_audio(self, ask: AudioResend) -> None:
        """Publish frames again that the audio stream missed (same Meta, so STT places them)."""
        frames = [f for f in self._sent if ask.from_seq <= f.meta.seq <= ask.to_seq]
        for frame in frames:
            await self.bus.publish(self._audio_subject, frame, traced=False)
        wanted = ask.to_seq - ask.from_seq + 1
        if len(frames) < wanted:
            log.warning("STT asked for caller frames %d to %d again; %d were no longer kept",
                        ask.from_seq, ask.to_seq, wanted - len(frames))
        else:
            log.info("caller frames %d to %d published again (the audio stream missed them)",
                     ask.from_seq, ask.to_seq)

    def caller_audio_since(self, offset_ms: int) -> bytes:
        """The caller's audio from `offset_ms` (audio time) to now, within the last 2 s."""
        frames = min(ECHO_MS, max(0, self.clock.offset_ms - offset_ms)) // self.frame_ms
        recent = list(self._sent)[-frames:] if frames else []
        return b"".join(f.pcm for f in recent)

    async def on_mark(self, name: str) -> None:
        """The edge played everything before mark `name`."""
        self.conversation.on_mark(name)

    async def on_dtmf(self, digit: str) -> None:
        """Recorded and shown at once; the conversation collects presses into an entry."""
        if len(digit) != 1 or digit not in DTMF_DIGITS:
            log.warning("ignoring DTMF %r", digit[:8])
            return
        await self.control(self.conversation.turn_counter, dtmf=CallEvent.Dtmf(digit=digit))
        await self.emit({"type": "dtmf", "digit": digit})
        self.conversation.touch()
        await self.keypad.add(digit)

    async def _keypad_entry(self, digits: list[str]) -> None:
        """A keypad entry is a user turn; a route may answer its digits."""
        if not self.ending:
            text = f"(the caller pressed {' '.join(digits)} on the keypad)"
            await self.conversation.keypad_turn(
                text, self.conversation.router.match_digits("".join(digits)))

    # -- messages from the services ---------------------------------------------------------

    async def on_bus(self, msg: Msg) -> None:
        await self.inbox(msg)

    async def reply_done(self, turn_id: int) -> None:
        """The agent's reply is complete: watchers get what was held back."""
        for shown in self._flush_agent_text(turn_id):
            await self._publish_watch(shown)

    # -- helpers for the conversation ---------------------------------------------------------

    async def request_reply(self, turn: Turn, text: str, speech_end_ns: int, say: str) -> None:
        """Ask any LLM replica for the turn's reply, or any TTS replica to say `say` as is."""
        turn_id = turn.turn_id
        if say:  # the agent speaks fixed text: straight to TTS, no LLM, a clause at a time
            subject = subjects.work_tts(self.call_id)
            clauses = split_text(say) or [say]
            for index, clause in enumerate(clauses):
                await self.bus.publish_acked(subject, TtsRequest(
                    meta=self.bus.meta(self.call_id, turn_id, subject), text=clause,
                    clause_index=index, sample_rate=self.rate, voice=self.settings.tts_voice),
                    msg_id=f"{self.call_id}-{turn_id}-{index}", direct=True)
            turn.agent_text = say
            turn.timings.first_token = time.time_ns()
            turn.player.set_clause_count(len(clauses))
            return
        subject = subjects.work_llm(self.call_id)
        await self.bus.publish_acked(subject, LlmRequest(
            meta=self.bus.meta(self.call_id, turn_id, subject), user_text=text,
            speech_end_unix_ns=speech_end_ns, sample_rate=self.rate, preemptive=turn.preemptive),
            msg_id=f"{self.call_id}-llm-{turn_id}", direct=True)

    async def prefill_reply(self, turn_id: int, text: str) -> None:
        """Tell any LLM replica what the caller has said so far (a hint: core NATS, not
        stored; a replica may let its model server evaluate it before the turn starts).
        The same words are sent once."""
        if text == self._hinted:
            return
        self._hinted = text
        subject = subjects.prefill_llm(self.call_id)
        await self.bus.publish(subject, LlmPrefill(
            meta=self.bus.meta(self.call_id, turn_id, subject), user_text=text), traced=False)

    async def control(self, turn_id: int, *, wait: bool = False, **kind: Any) -> None:
        """Publish a call event, in order, without waiting for the stream to store it unless
        `wait` (event_outbox.py). Its free text (turns, notes, reasons) is redacted first
        (the event stream is stored in JetStream and read by every service: privacy.md)."""
        subject = subjects.control(self.call_id)
        event = CallEvent(meta=self.bus.meta(self.call_id, turn_id, subject), **kind)
        name = event.WhichOneof("kind")
        if name in _EVENT_TEXT:
            part = getattr(event, name)
            for field in _EVENT_TEXT[name]:
                setattr(part, field, self.redact(getattr(part, field)))
        if wait:
            await asyncio.shield(self.outbox.put(event))
        else:
            self.outbox.put_unwaited(event)

    async def _publish_event(self, event: CallEvent) -> None:
        await self.bus.publish_acked(subjects.control(self.call_id), event,
                                     retry_s=self.bus_retry_s)

    async def emit(self, event: dict[str, Any]) -> None:
        """An event for the caller's client, as is (the caller sees what they said), and
        redacted for operators: control API watchers and GetCall's turns."""
        for shown in self._for_operators(event):
            if shown.get("type") == "turn":
                self.turn_log.append(turn_record(shown))
            await self._publish_watch(shown)
        try:
            await self.edge.send_event(event)
        except Exception as exc:
            log.debug("edge event not delivered: %s", exc)

    async def watch(self, event: dict[str, Any]) -> None:
        """An event for control API watchers only (redacted like emit's)."""
        for shown in self._for_operators(event):
            await self._publish_watch(shown)

    def _for_operators(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        """What watchers see of `event` (maybe nothing yet, maybe held text first)."""
        kind = event.get("type")
        if kind == "agent_text":
            return self._push_agent_text(int(event["turn"]), str(event.get("delta") or ""))
        shown = self._flush_agent_text(event.get("turn")) if kind in _FLUSHES else []
        partial = kind == "transcript" and not event.get("final")
        redact = self.redact.partial if partial else self.redact
        shown.append({k: v if k in _SHOWN_AS_IS else _redacted(v, redact)
                      for k, v in event.items()})
        return shown

    def _push_agent_text(self, turn_id: int, delta: str) -> list[dict[str, Any]]:
        """LLM deltas split numbers and addresses: a StreamRedactor holds back what may
        still become PII, so watchers get the reply redacted as a whole would be."""
        shown: list[dict[str, Any]] = []
        if self._agent_text is None or self._agent_text[0] != turn_id:
            shown = self._flush_agent_text()
            self._agent_text = (turn_id, StreamRedactor(self.redact))
        text = self._agent_text[1].push(delta)
        if text:
            shown.append({"type": "agent_text", "turn": turn_id, "delta": text})
        return shown

    def _flush_agent_text(self, turn_id: Any = None) -> list[dict[str, Any]]:
        """The held end of a reply (of `turn_id`, or of any turn when None)."""
        held = self._agent_text
        if held is None or (turn_id is not None and held[0] != turn_id):
            return []
        self._agent_text = None
        text = held[1].flush()
        return [{"type": "agent_text", "turn": held[0], "delta": text}] if text else []

    async def _publish_watch(self, event: dict[str, Any]) -> None:
        """Publish for WatchCall/WatchCalls (core NATS: nobody listening costs nothing)."""
        try:
            await self.bus.nc.publish(self._watch_subject, json.dumps(event).encode())
        except Exception as exc:
            log.debug("watch event not published: %s", exc)


def _redacted(value: Any, redact: Callable[[str], str]) -> Any:
    """Strings, and strings in lists, redacted; numbers, flags and nested maps as they are."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, list):
        return [redact(v) if isinstance(v, str) else v for v in value]
    return value
