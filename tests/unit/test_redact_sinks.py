"""Every operator-facing sink redacts (issue 15): live watch events and GetCall's turns,
call events' free text, memory's ended reason, log lines with exceptions, exported spans.
The caller's own client still gets what the caller said."""

from __future__ import annotations

import json
import logging
import sys
from typing import Any, cast

from google.protobuf.message import Message
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

from voxbus.v1.call_pb2 import CallEvent
from voxbus.v1.control_pb2 import TurnInfo
from voxbus.v1.llm_pb2 import TokenDelta
from voxbus.v1.memory_pb2 import Session
from voxbus.v1.meta_pb2 import Meta
from voxbus_common.bus import Bus
from voxbus_common.config import Settings
from voxbus_common.logs import TextFormatter, _RedactingFilter
from voxbus_common.redact import Redactor
from voxbus_common.telemetry import RedactingSpanExporter
from voxbus_gateway.call import Call
from voxbus_memory.recorder import apply_event

CARD = "4,111,111,111,111,111"  # how Whisper writes a spoken 4111 1111 1111 1111


class _Nats:
    def __init__(self) -> None:
        self.published: list[tuple[str, dict[str, Any]]] = []

    async def publish(self, subject: str, data: bytes) -> None:
        self.published.append((subject, json.loads(data)))


class _Bus:
    def __init__(self) -> None:
        self.nc = _Nats()
        self.acked: list[Message] = []

    def meta(self, call_id: str, turn_id: int, subject: str) -> Meta:
        return Meta(call_id=call_id, turn_id=turn_id)

    async def publish_acked(self, subject: str, msg: Message, msg_id: str = "",
                            retry_s: float = 0.0, direct: bool = False) -> None:
        self.acked.append(msg)


class _Edge:
    name = "pcm-ws"
    supports_marks = False
    caller = ""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    async def send_event(self, event: dict[str, Any]) -> None:
        self.events.append(event)


class _Msg:
    def __init__(self, subject: str, data: bytes) -> None:
        self.subject, self.data = subject, data


def _call() -> tuple[Call, _Bus, _Edge]:
    bus, edge = _Bus(), _Edge()
    settings = Settings().model_copy(update={"redact_pii": "card,ssn,email,phone"})
    return Call(cast(Bus, bus), settings, "c1", cast(Any, edge), "gw"), bus, edge


def _watched(bus: _Bus) -> list[dict[str, Any]]:
    return [event for subject, event in bus.nc.published if subject.endswith(".c1.watch")]


async def test_watchers_see_redacted_transcripts_the_caller_sees_its_own() -> None:
    call, bus, edge = _call()
    await call.emit({"type": "transcript", "final": False, "text": "my card is 4,111,111",
                     "utterance": 1, "stable": ""})
    await call.emit({"type": "transcript", "final": True, "text": f"my card is {CARD}.",
                     "utterance": 1, "turn": 1})
    shown = _watched(bus)
    assert [e["text"] for e in shown] == ["my card is [number]", "my card is [card]."]
    assert shown[1]["utterance"] == 1 and shown[1]["final"] is True
    assert [e["text"] for e in edge.events] == ["my card is 4,111,111", f"my card is {CARD}."]


async def test_streamed_agent_text_is_redacted_and_complete_for_watchers() -> None:
    """Deltas split the number; what watchers get joins to the redacted reply, the held
    end arriving when the reply is done."""
    call, bus, edge = _call()
    reply = "I have 4111 1111 1111 1111 on file, or mail jane.doe@example.com"
    for i in range(0, len(reply), 3):
        await call.emit({"type": "agent_text", "turn": 2, "delta": reply[i:i + 3]})
    done = TokenDelta(meta=Meta(call_id="c1", turn_id=2), done=True)
    await call.on_bus(cast(Any, _Msg("vb.call.c1.out.llm", done.SerializeToString())))
    shown = [e["delta"] for e in _watched(bus) if e["type"] == "agent_text"]
    assert "".join(shown) == "I have [card] on file, or mail [email]"
    assert "".join(e["delta"] for e in edge.events) == reply


async def test_turn_summaries_and_get_call_turns_are_redacted() -> None:
    call, bus, edge = _call()
    await call.emit({"type": "agent_text", "turn": 3, "delta": "Card 4111 1111 1111"})
    await call.emit({"type": "turn", "turn": 3, "user_text": f"it is {CARD}",
                     "agent_text": "Card 4111 1111 1111 1111", "heard_text": "Card",
                     "interrupted": True, "latency_ms": {"total": 800.0}})
    shown = _watched(bus)
    deltas = [e["delta"] for e in shown if e["type"] == "agent_text"]
    assert deltas == ["Card ", "[phone]"]  # (the cut reply's held end, before its summary)
    assert shown[-1]["user_text"] == "it is [card]" and shown[-1]["agent_text"] == "Card [card]"
    info = TurnInfo.FromString(call.turn_log[-1])
    assert (info.user_text, info.agent_text) == ("it is [card]", "Card [card]")
    assert edge.events[-1]["user_text"] == f"it is {CARD}"


async def test_lifecycle_and_command_events_are_redacted() -> None:
    call, bus, _ = _call()
    await call.watch({"type": "control", "command": "end", "detail": "call 415-555-0132"})
    await call.watch({"type": "call_ended", "reason": "transferred to +1 415 555 0132"})
    await call.emit({"type": "transfer", "target": "+15550100100"})
    shown = _watched(bus)
    assert shown[0]["detail"] == "call [phone]"
    assert shown[1]["reason"] == "transferred to [phone]"
    assert shown[2]["target"] == "+15550100100"  # the configured destination


async def test_call_event_reasons_are_redacted_before_publishing() -> None:
    call, bus, _ = _call()
    await call.control(1, ending=CallEvent.Ending(reason="ended: card 4111-1111-1111-1111"))
    await call.control(1, ended=CallEvent.Ended(reason="transferred to 415 555 0132"))
    await call.control(1, cancel_turn=CallEvent.CancelTurn(reason=f"caller said {CARD}"))
    await call.outbox.flush()
    ending, ended, cancel = (cast(CallEvent, m) for m in bus.acked)
    assert ending.ending.reason == "ended: card [card]"
    assert ended.ended.reason == "transferred to [phone]"
    assert cancel.cancel_turn.reason == "caller said [card]"


def test_memory_redacts_the_ended_reason() -> None:
    session = Session()
    event = CallEvent(meta=Meta(call_id="c1"), ended=CallEvent.Ended(reason="card " + CARD))
    assert apply_event(session, event, Redactor())
    assert session.ended_reason == "card [card]"


def test_log_exceptions_are_redacted() -> None:
    try:
        raise ValueError(f"transfer to {CARD} failed")
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, "f", 1, "failed for %s", ("a@b.io",),
                                   sys.exc_info())
    assert _RedactingFilter(Redactor()).filter(record)
    line = TextFormatter("test").format(record)
    assert "failed for [email]" in line and "transfer to [card] failed" in line
    assert "4,111" not in line


def test_log_lines_without_pii_are_untouched() -> None:
    record = logging.LogRecord("x", logging.INFO, "f", 1, "call started", (), None)
    record.edge = "pcm-ws"
    assert _RedactingFilter(Redactor()).filter(record)
    assert record.getMessage() == "call started" and getattr(record, "edge") == "pcm-ws"  # noqa: B009


class _Keep(SpanExporter):
    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []

    def export(self, spans: Any) -> SpanExportResult:
        self.spans.extend(spans)
        return SpanExportResult.SUCCESS


def test_exported_spans_are_redacted() -> None:
    keep = _Keep()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(RedactingSpanExporter(keep, Redactor())))
    tracer = provider.get_tracer("test")
    try:
        with tracer.start_as_current_span("turn", attributes={
                "voxbus.end_reason": f"caller said {CARD}", "voxbus.call_id": "c-4155550132",
                "voxbus.turn_id": 3}):
            raise RuntimeError("mail jane@example.com")
    except RuntimeError:
        pass
    (span,) = keep.spans
    assert span.attributes == {"voxbus.end_reason": "caller said [card]",
                               "voxbus.call_id": "c-4155550132", "voxbus.turn_id": 3}
    (event,) = span.events
    assert event.attributes is not None
    assert event.attributes["exception.message"] == "mail [email]"
    assert "jane@" not in str(event.attributes["exception.stacktrace"])
    assert span.status.description is not None and "jane@" not in span.status.description
