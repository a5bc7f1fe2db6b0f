"""The subject and stream table of the bus (mirrors docs/architecture.md).

Per-call subjects put the call id at a fixed position so that a gateway can subscribe to
everything addressed to one of its calls with a single wildcard, and streams can capture a
kind of message for all calls without overlapping each other.
"""

from __future__ import annotations

from dataclasses import dataclass

from nats.js.api import RetentionPolicy, StorageType

from voxbus_common.ids import validate_call_id

PREFIX = "vb"


def _call(call_id: str, tail: str) -> str:
    return f"{PREFIX}.call.{validate_call_id(call_id)}.{tail}"


def audio_in(call_id: str) -> str:
    """Caller audio frames (gateway -> STT owner)."""
    return _call(call_id, "in.audio")


def audio_out(call_id: str) -> str:
    """Synthesized agent audio chunks (TTS -> gateway)."""
    return _call(call_id, "out.audio")


def vad(call_id: str) -> str:
    """Voice activity events (STT -> gateway)."""
    return _call(call_id, "out.vad")


# header of a final transcript said a second time (voxbus_stt.session): the gateway takes
# the first copy it gets; a repeat that is the first one says the original was lost
REPEAT_HEADER = "Vb-Repeat"


def transcript(call_id: str) -> str:
    """Partial and final transcripts (STT -> gateway)."""
    return _call(call_id, "out.transcript")


def llm_out(call_id: str) -> str:
    """Streamed LLM token deltas (LLM -> gateway)."""
    return _call(call_id, "out.llm")


def audio_resend(call_id: str) -> str:
    """Caller frames the audio stream missed, asked again (STT -> gateway; core NATS)."""
    return _call(call_id, "out.resend")


def call_out_all(call_id: str) -> str:
    """Everything addressed to the gateway that owns the call."""
    return _call(call_id, "out.>")


def control(call_id: str) -> str:
    """Lifecycle and turn records published by the owning gateway."""
    return _call(call_id, "ctl")


CONTROL_ALL = f"{PREFIX}.call.*.ctl"


def watch(call_id: str) -> str:
    """Live events of a call for control API watchers (JSON, core NATS, not stored)."""
    return _call(call_id, "watch")


WATCH_ALL = f"{PREFIX}.call.*.watch"


def rpc_call(call_id: str) -> str:
    """Commands for a call, answered by the gateway that owns it (request/reply)."""
    return f"{PREFIX}.rpc.call.{validate_call_id(call_id)}"


RPC_GATEWAY_CALLS = f"{PREFIX}.rpc.gateway.calls"  # every gateway answers with its live calls

WORK_CALLS = f"{PREFIX}.work.calls"


def work_llm(call_id: str) -> str:
    """One LLM turn request; any LLM replica serves it."""
    return f"{PREFIX}.work.llm.{validate_call_id(call_id)}"


def work_tts(call_id: str) -> str:
    """One clause to synthesize; any TTS replica serves it."""
    return f"{PREFIX}.work.tts.{validate_call_id(call_id)}"


def direct_work(work_subject: str) -> str:
    """Where a work item goes straight to any replica when its queue has not acknowledged it
    in time (`vb.work.llm.<id>` -> `vb.direct.llm.<id>`; core NATS, no stream:
    direct_work.py)."""
    prefix = f"{PREFIX}.work."
    if not work_subject.startswith(prefix):
        raise ValueError(f"not a work subject: {work_subject}")
    return f"{PREFIX}.direct.{work_subject.removeprefix(prefix)}"


LLM_POOL = "llm-workers"  # the durable consumer LLM replicas share (VB_LLM_WORK)
TTS_POOL = "tts-workers"  # the durable consumer TTS replicas share (VB_TTS_WORK)
_POOLS = {"llm": LLM_POOL, "tts": TTS_POOL}


def work_pool(work_subject: str) -> str:
    """The pool (durable consumer) whose replicas serve a work subject that may go direct
    (`vb.work.llm.<id>` -> `llm-workers`)."""
    kind = work_subject.removeprefix(f"{PREFIX}.work.").split(".", 1)[0]
    if not work_subject.startswith(f"{PREFIX}.work.") or kind not in _POOLS:
        raise ValueError(f"no replica pool serves {work_subject} directly")
    return _POOLS[kind]


def work_taken(durable: str) -> str:
    """A work item one replica of `durable`'s pool took, from the queue or directly (core
    NATS, every replica of the pool listens: direct_work.py)."""
    return f"{PREFIX}.taken.{durable}"


def prefill_llm(call_id: str) -> str:
    """The caller's words so far, for any LLM replica to pre-evaluate (core NATS, no stream:
    a lost hint costs only latency)."""
    return f"{PREFIX}.hint.llm.{validate_call_id(call_id)}"


PREFILL_LLM_ALL = f"{PREFIX}.hint.llm.*"


RPC_MEMORY_CONTEXT = f"{PREFIX}.rpc.memory.context"
RPC_PING = f"{PREFIX}.rpc.ping"
RPC_MEMORY_FORGET = f"{PREFIX}.rpc.memory.forget"  # delete a caller's long-term memory
RPC_LLM_SUMMARIZE = f"{PREFIX}.rpc.llm.summarize"  # memory asks any LLM replica for a summary

SESSIONS_BUCKET = "vb_sessions"
CALLS_BUCKET = "vb_calls"  # live call id -> owning gateway (one owner across replicas)
STT_BUCKET = "vb_stt"  # STT liveness (replica.<name>) and call checkpoints (call.<call_id>)
CALLERS_BUCKET = "vb_callers"  # long-term memory per caller (key: sha256 of the identity)


def call_id_of(subject: str) -> str:
    """Extract the call id from a per-call or per-call work subject."""
    parts = subject.split(".")
    if len(parts) >= 3 and parts[1] == "call":
        return parts[2]
    if len(parts) == 4 and parts[1] == "work":
        return parts[3]
    raise ValueError(f"subject {subject!r} carries no call id")


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
            subjects=[f"{PREFIX}.call.*.in.audio", f"{PREFIX}.call.*.out.audio"],
            storage=StorageType.MEMORY,
            max_age_s=audio_max_age_s,
            max_bytes=512 * 1024 * 1024,
            duplicate_window_s=min(10.0, audio_max_age_s),
            description="caller and agent audio; short replay window for worker takeover",
        ),
        StreamSpec(  # before VB_LIVE: an upgrade moves the live subjects out of it first
            name="VB_EVENTS",
            subjects=[CONTROL_ALL],
            max_age_s=events_max_age_s,
            description="call lifecycle events and turn records (texts redacted by the gateway)",
        ),
        StreamSpec(
            name="VB_LIVE",
            subjects=[
                f"{PREFIX}.call.*.out.vad",
                f"{PREFIX}.call.*.out.transcript",
                f"{PREFIX}.call.*.out.llm",
            ],
            storage=StorageType.MEMORY,
            max_age_s=live_max_age_s,
            duplicate_window_s=min(10.0, live_max_age_s),
            description="VAD, transcripts and tokens: the raw live path, kept in memory briefly",
        ),
        StreamSpec(
            name="VB_CALLS",
            subjects=[WORK_CALLS],
            retention=RetentionPolicy.WORK_QUEUE,
            max_age_s=600.0,
            description="new calls; each lands on exactly one STT worker",
        ),
        StreamSpec(
            name="VB_LLM_WORK",
            subjects=[f"{PREFIX}.work.llm.*"],
            retention=RetentionPolicy.WORK_QUEUE,
            max_age_s=120.0,
            description="LLM turn requests for any stateless LLM replica",
        ),
        StreamSpec(
            name="VB_TTS_WORK",
            subjects=[f"{PREFIX}.work.tts.*"],
            retention=RetentionPolicy.WORK_QUEUE,
            max_age_s=120.0,
            description="clauses to synthesize for any stateless TTS replica",
        ),
    ]
