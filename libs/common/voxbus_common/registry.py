"""The subject registry: every subject of the bus, once, with what travels on it.

One row per subject pattern: its message type (a protobuf class of `proto/voxbus/v1`, or
JSON), the stream that captures it, who publishes and who consumes it, and how. From the
rows come the concrete subjects (subjects.py), the streams' subject lists
(`subjects.stream_specs`), the typed dispatch of a service's subscriptions (`Dispatch`),
the subject table of docs/architecture.md (`markdown_table`), and the checks that the
NATS permissions (nats_permissions.py) grant every row and nothing else of the data
subjects; tests/integration/test_bus_contract.py checks the running services'
subscriptions against the rows. A new bus message is a proto message plus one row here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from google.protobuf.message import Message
from nats.aio.msg import Msg
from nats.js.api import RetentionPolicy, StorageType

from voxbus.v1.audio_pb2 import AudioChunk, AudioFrame, AudioResend
from voxbus.v1.call_pb2 import CallAnnounce, CallEvent, CallTakeReply
from voxbus.v1.control_pb2 import CallCommand, CallCommandReply, GatewayCalls
from voxbus.v1.llm_pb2 import (
    ContextReply,
    ContextRequest,
    LlmPrefill,
    LlmRequest,
    SummarizeReply,
    SummarizeRequest,
    TokenDelta,
    TtsRequest,
)
from voxbus.v1.memory_pb2 import ForgetCallerReply, ForgetCallerRequest
from voxbus.v1.meta_pb2 import WorkTaken
from voxbus.v1.speech_pb2 import Transcript, VadEvent
from voxbus_common.codec import decode
from voxbus_common.doc_blocks import write_block
from voxbus_common.ids import validate_call_id

PREFIX = "vb"
CALL = "{call}"  # the call id's token in a pattern (one subject token)
REPLICA = "{replica}"  # an STT replica's name as a token (its heartbeat key's)
M = TypeVar("M", bound=Message)


@dataclass(frozen=True)
class Row(Generic[M]):
    """One subject pattern of the bus."""

    name: str
    pattern: str  # the token `{call}` stands for the call id
    payload: type[M] | None  # None: JSON
    publishers: tuple[str, ...]
    consumers: tuple[str, ...]
    delivery: str  # how consumers get it (docs/architecture.md's last column)
    stream: str = ""  # the stream capturing it ("" for core NATS only)
    reply: type[Message] | None = None  # request/reply: the answer's type
    about: str = ""  # what it carries, beyond its type (docs)
    pull: tuple[str, str] | None = None  # (role, durable): a role reading a durable consumer
    ordered: tuple[str, ...] = ()  # roles reading it through ordered consumers
    no_core: tuple[str, ...] = ()  # consumers that read it only through JetStream

    @property
    def wildcard(self) -> str:
        """The pattern with every variable token as `*` (streams, permissions)."""
        return ".".join("*" if t.startswith("{") else t for t in self.pattern.split("."))

    def subject(self, call_id: str = "") -> str:
        """The concrete subject; a call id is validated (one token, [A-Za-z0-9_-])."""
        if CALL not in self.pattern:
            return self.pattern
        return self.pattern.replace(CALL, validate_call_id(call_id))

    def matches(self, subject: str) -> bool:
        return subject_matches(self.wildcard, subject)

    @property
    def type_name(self) -> str:
        return self.payload.__name__ if self.payload is not None else "JSON"


GATEWAY, STT, LLM, TTS, MEMORY, ADMIN = "gateway", "stt", "llm", "tts", "memory", "admin"
LLM_POOL = "llm-workers"  # the durable consumer LLM replicas share (VB_LLM_WORK)
TTS_POOL = "tts-workers"  # the durable consumer TTS replicas share (VB_TTS_WORK)


def _call(tail: str) -> str:
    return f"{PREFIX}.call.{CALL}.{tail}"


WORK_CALLS = Row("work_calls", f"{PREFIX}.work.calls", CallAnnounce, (GATEWAY, STT), (STT,),
                 "durable pull `stt-workers`, acked", stream="VB_CALLS",
                 about="a new call; STT re-announces a dead replica's calls",
                 pull=(STT, "stt-workers"), no_core=(STT,))
STT_TAKE = Row("stt_take", f"{PREFIX}.stt.take.{REPLICA}", CallAnnounce, (GATEWAY,), (STT,),
               "core request/reply to one replica, answered once the replay caught up; "
               "unanswered or refused: `vb.work.calls`", reply=CallTakeReply,
               about="a dead replica's call, given by heartbeat load (`failover_plan.py`); "
                     "empty: a liveness probe of a replica whose beats stopped")
AUDIO_IN = Row("audio_in", _call("in.audio"), AudioFrame, (GATEWAY,), (STT,),
               "core publish; ordered consumer, and a core sub while the stream is silent "
               "for 0.3 s (`direct_audio.py`)", stream="VB_AUDIO",
               about="20 ms PCM16 16 kHz", ordered=(STT,))
VAD = Row("vad", _call("out.vad"), VadEvent, (STT,), (GATEWAY,), "core sub per call",
          stream="VB_LIVE")
TRANSCRIPT = Row("transcript", _call("out.transcript"), Transcript, (STT,), (GATEWAY,),
                 "core sub per call; each final is published again 0.5 s later with header "
                 "`Vb-Repeat` (the gateway takes the first copy)", stream="VB_LIVE",
                 about="partial/final")
AUDIO_RESEND = Row("audio_resend", _call("out.resend"), AudioResend, (STT,), (GATEWAY,),
                   "core; the gateway publishes those caller frames again (the audio "
                   "stream missed them while its leader was elected)",
                   about="frames `from_seq`..`to_seq`")
WORK_LLM = Row("work_llm", f"{PREFIX}.work.llm.{CALL}", LlmRequest, (GATEWAY,), (LLM,),
               "durable pull `llm-workers`, acked; read directly while fetches fail",
               stream="VB_LLM_WORK", pull=(LLM, LLM_POOL))
PREFILL_LLM = Row("prefill_llm", f"{PREFIX}.hint.llm.{CALL}", LlmPrefill, (GATEWAY,), (LLM,),
                  "core publish, queue group `llm-prefill`; lost hints cost only latency",
                  about="the caller's words so far")
LLM_OUT = Row("llm_out", _call("out.llm"), TokenDelta, (LLM,), (GATEWAY,), "core sub per call",
              stream="VB_LIVE",
              about="`tool_started` when a tool runs; the turn's tool action with `done`")
WORK_TTS = Row("work_tts", f"{PREFIX}.work.tts.{CALL}", TtsRequest, (GATEWAY, LLM), (TTS,),
               "durable pull `tts-workers`, acked; read directly while fetches fail",
               stream="VB_TTS_WORK", about="one clause", pull=(TTS, TTS_POOL))
DIRECT_LLM = Row("direct_llm", f"{PREFIX}.direct.llm.{CALL}", LlmRequest, (GATEWAY,), (LLM,),
                 "core, queue group `llm-workers-direct`: an item its stream did not "
                 "acknowledge within 0.25 s, or stored but taken by no replica within 0.5 s "
                 "([cluster.md](cluster.md))")
DIRECT_TTS = Row("direct_tts", f"{PREFIX}.direct.tts.{CALL}", TtsRequest, (GATEWAY, LLM),
                 (TTS,), "core, queue group `tts-workers-direct`: as `vb.direct.llm.ID`")
TAKEN_LLM = Row("taken_llm", f"{PREFIX}.taken.{LLM_POOL}", WorkTaken, (LLM,), (GATEWAY, LLM),
                "core pub/sub: every item taken is announced to its pool (a second copy is "
                "acked unworked) and its publishers (`take_watch.py`)",
                about="the item's Nats-Msg-Id")
TAKEN_TTS = Row("taken_tts", f"{PREFIX}.taken.{TTS_POOL}", WorkTaken, (TTS,), (GATEWAY, LLM, TTS),
                "core pub/sub: as `vb.taken.llm-workers`", about="the item's Nats-Msg-Id")
AUDIO_OUT = Row("audio_out", _call("out.audio"), AudioChunk, (TTS,), (GATEWAY,),
                "core sub per call", stream="VB_AUDIO")
CONTROL = Row("control", _call("ctl"), CallEvent, (GATEWAY,), (STT, LLM, TTS, MEMORY),
              "core subs (STT/LLM/TTS), durable pull `memory-recorder`", stream="VB_EVENTS",
              about="started, user_turn, agent_turn, cancel_turn, barge_in, dtmf, transfer, "
                    "system_note, ending, ended; turn texts redacted",
              pull=(MEMORY, "memory-recorder"), no_core=(MEMORY,))
WATCH: Row[Message] = Row("watch", _call("watch"), None, (GATEWAY,), (GATEWAY, ADMIN),
            "core pub/sub", about="live events for control API watchers")
RPC_MEMORY_CONTEXT = Row("rpc_memory_context", f"{PREFIX}.rpc.memory.context", ContextRequest,
                         (LLM,), (MEMORY,), "core request/reply, queue group `memory`",
                         reply=ContextReply)
RPC_LLM_SUMMARIZE = Row("rpc_llm_summarize", f"{PREFIX}.rpc.llm.summarize", SummarizeRequest,
                        (MEMORY,), (LLM,), "core request/reply, queue group `llm`",
                        reply=SummarizeReply)
RPC_MEMORY_FORGET = Row("rpc_memory_forget", f"{PREFIX}.rpc.memory.forget",
                        ForgetCallerRequest, (ADMIN,), (MEMORY,),
                        "core request/reply, queue group `memory`", reply=ForgetCallerReply)
RPC_PING: Row[Message] = Row("rpc_ping", f"{PREFIX}.rpc.ping", None, (ADMIN,),
               (GATEWAY, STT, LLM, TTS, MEMORY), "core request, many replies")
RPC_CALL = Row("rpc_call", f"{PREFIX}.rpc.call.{CALL}", CallCommand, (GATEWAY, ADMIN),
               (GATEWAY,), "core request/reply to the owning gateway ([control.md](control.md))",
               reply=CallCommandReply)
RPC_GATEWAY_CALLS: Row[Message] = Row("rpc_gateway_calls", f"{PREFIX}.rpc.gateway.calls", None,
                        (GATEWAY, ADMIN), (GATEWAY,), "scatter-gather", reply=GatewayCalls,
                        about="an empty request")

# the gateway's one subscription per call: every row under it is addressed to the gateway
CALL_OUT_ALL = _call("out.>")

ROWS: tuple[Row[Any], ...] = (
    WORK_CALLS, STT_TAKE, AUDIO_IN, VAD, TRANSCRIPT, AUDIO_RESEND, WORK_LLM, PREFILL_LLM, LLM_OUT,
    WORK_TTS, DIRECT_LLM, DIRECT_TTS, TAKEN_LLM, TAKEN_TTS, AUDIO_OUT, CONTROL, WATCH,
    RPC_MEMORY_CONTEXT, RPC_LLM_SUMMARIZE, RPC_MEMORY_FORGET, RPC_PING, RPC_CALL,
    RPC_GATEWAY_CALLS,
)


def subscribes(row: Row[Any], role: str) -> bool:
    """Whether `role` holds a core subscription to the row's subject."""
    return role in row.consumers and role not in row.no_core


def captured_by(stream: str) -> list[str]:
    """The subjects a stream captures: the wildcards of its rows."""
    return [row.wildcard for row in ROWS if row.stream == stream]


def row_of(subject: str, rows: Iterable[Row[Any]] = ROWS) -> Row[Any] | None:
    return next((row for row in rows if row.matches(subject)), None)


def subject_matches(pattern: str, subject: str) -> bool:
    """Whether `pattern` (with `*` and `>` wildcards) covers the literal `subject`."""
    p, s = pattern.split("."), subject.split(".")
    for i, token in enumerate(p):
        if token == ">":
            return len(s) > i
        if i >= len(s) or (token != "*" and token != s[i]):
            return False
    return len(p) == len(s)


# -- streams ---------------------------------------------------------------------------------



@dataclass(frozen=True)
class StreamSpec:
    """A JetStream stream the platform relies on."""

    name: str
    subjects: list[str]
    retention: RetentionPolicy = RetentionPolicy.LIMITS
    storage: StorageType = StorageType.FILE
    max_age_s: float = 0.0
    max_bytes: int = -1
    duplicate_window_s: float = 120.0
    description: str = ""


def stream_specs(audio_max_age_s: float, events_max_age_s: float,
                 live_max_age_s: float = 60.0) -> list[StreamSpec]:
    """All streams. Audio and the raw live path (transcripts, tokens) live in memory for a
    short replay window; only redacted call events are kept longer (docs/privacy.md)."""
    return [
        StreamSpec(
            name="VB_AUDIO",
            subjects=captured_by("VB_AUDIO"),
            storage=StorageType.MEMORY,
            max_age_s=audio_max_age_s,
            max_bytes=512 * 1024 * 1024,
            duplicate_window_s=min(10.0, audio_max_age_s),
            description="caller and agent audio; short replay window for worker takeover",
        ),
        StreamSpec(  # before VB_LIVE: an upgrade moves the live subjects out of it first
            name="VB_EVENTS",
            subjects=captured_by("VB_EVENTS"),
            max_age_s=events_max_age_s,
            description="call lifecycle events and turn records (texts redacted by the gateway)",
        ),
        StreamSpec(
            name="VB_LIVE",
            subjects=captured_by("VB_LIVE"),
            storage=StorageType.MEMORY,
            max_age_s=live_max_age_s,
            duplicate_window_s=min(10.0, live_max_age_s),
            description="VAD, transcripts and tokens: the raw live path, kept in memory briefly",
        ),
        StreamSpec(
            name="VB_CALLS",
            subjects=captured_by("VB_CALLS"),
            retention=RetentionPolicy.WORK_QUEUE,
            max_age_s=600.0,
            description="new calls; each lands on exactly one STT worker",
        ),
        StreamSpec(
            name="VB_LLM_WORK",
            subjects=captured_by("VB_LLM_WORK"),
            retention=RetentionPolicy.WORK_QUEUE,
            max_age_s=120.0,
            description="LLM turn requests for any stateless LLM replica",
        ),
        StreamSpec(
            name="VB_TTS_WORK",
            subjects=captured_by("VB_TTS_WORK"),
            retention=RetentionPolicy.WORK_QUEUE,
            max_age_s=120.0,
            description="clauses to synthesize for any stateless TTS replica",
        ),
    ]


# -- typed dispatch --------------------------------------------------------------------------

Handler = Callable[[M, Msg], Awaitable[None]]


class Dispatch:
    """A subscription's handlers by row: a message is decoded as its row's type (a bad
    payload raises `BadMessage`) and given to that row's handler. Replaces if/elif on
    subject suffixes; a subject no row of this dispatch matches raises `LookupError`.
    Per message: one split of the subject and a token compare per row (audio's path)."""

    def __init__(self) -> None:
        self.rows: list[Row[Any]] = []
        self._routes: list[tuple[list[str], type[Message],
                                 Callable[[Any, Msg], Awaitable[None]]]] = []

    def on(self, row: Row[M], handler: Handler[M]) -> Dispatch:
        if row.payload is None:
            raise ValueError(f"{row.name} carries JSON: subscribe to it directly")
        self.rows.append(row)
        self._routes.append((row.wildcard.split("."), row.payload, handler))
        return self

    async def __call__(self, msg: Msg) -> None:
        tokens = msg.subject.split(".")
        for pattern, payload, handler in self._routes:
            if len(pattern) == len(tokens) and all(
                    p == "*" or p == t for p, t in zip(pattern, tokens, strict=True)):
                await handler(decode(payload, msg.data), msg)
                return
        raise LookupError(f"no handler for {msg.subject}")


# -- the docs' table -------------------------------------------------------------------------

TABLE_BEGIN = "<!-- subjects: generated from libs/common/voxbus_common/registry.py -->"
TABLE_END = "<!-- /subjects -->"


def _stream_summary(spec: StreamSpec) -> str:
    kind = {RetentionPolicy.WORK_QUEUE: "work queue", RetentionPolicy.INTEREST: "interest"}.get(
        spec.retention, "memory" if spec.storage == StorageType.MEMORY else "file")
    age = spec.max_age_s
    shown = f"{age / 3600:g} h" if age >= 3600 else f"{age / 60:g} min" if age >= 60 \
        else f"{age:g} s"
    return f"{spec.name} ({kind}, {shown})"


def markdown_table() -> str:
    """The subject table of docs/architecture.md (streams with their default ages)."""
    streams = {spec.name: _stream_summary(spec) for spec in stream_specs(30.0, 3600.0)}
    lines = ["| subject | type | publisher → consumers | stream | delivery |",
             "|---|---|---|---|---|"]
    for row in ROWS:
        shown = row.pattern.replace(CALL, "ID")
        kind = row.type_name + (f" → {row.reply.__name__}" if row.reply is not None else "")
        if row.about:
            kind += f" ({row.about})"
        who = f"{', '.join(row.publishers)} → {', '.join(row.consumers)}"
        stream = streams[row.stream] if row.stream else "none"
        lines.append(f"| `{shown}` | {kind} | {who} | {stream} | {row.delivery} |")
    return "\n".join([TABLE_BEGIN, *lines, TABLE_END])


def write_docs(path: Path) -> bool:
    """Put the generated table between its markers in `path`; True if it changed."""
    return write_block(path, TABLE_BEGIN, TABLE_END, markdown_table())


if __name__ == "__main__":  # python -m voxbus_common.registry docs/architecture.md
    import sys

    target = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/architecture.md")
    print(f"{target}: {'updated' if write_docs(target) else 'up to date'}")
