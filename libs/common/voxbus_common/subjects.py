"""Subjects and streams of the bus, built from the registry (registry.py has every row).

Per-call subjects put the call id at a fixed position so that a gateway can subscribe to
everything addressed to one of its calls with a single wildcard, and streams can capture a
kind of message for all calls without overlapping each other. The helpers here are the
registry's rows as the functions and constants the services call.
"""

from __future__ import annotations

from typing import Any

from voxbus_common import registry as r
from voxbus_common.ids import kv_token, validate_call_id
from voxbus_common.registry import (
    CALL,
    LLM_POOL,
    PREFIX,
    TTS_POOL,
    StreamSpec,
    stream_specs,
)

__all__ = ["LLM_POOL", "PREFIX", "TTS_POOL", "StreamSpec", "stream_specs"]


def audio_in(call_id: str) -> str:
    """Caller audio frames (gateway -> STT owner)."""
    return r.AUDIO_IN.subject(call_id)


def audio_out(call_id: str) -> str:
    """Synthesized agent audio chunks (TTS -> gateway)."""
    return r.AUDIO_OUT.subject(call_id)


def vad(call_id: str) -> str:
    """Voice activity events (STT -> gateway)."""
    return r.VAD.subject(call_id)


# header of a final transcript said a second time (voxbus_stt.session): the gateway takes
# the first copy it gets; a repeat that is the first one says the original was lost
REPEAT_HEADER = "Vb-Repeat"


def transcript(call_id: str) -> str:
    """Partial and final transcripts (STT -> gateway)."""
    return r.TRANSCRIPT.subject(call_id)


def llm_out(call_id: str) -> str:
    """Streamed LLM token deltas (LLM -> gateway)."""
    return r.LLM_OUT.subject(call_id)


def audio_resend(call_id: str) -> str:
    """Caller frames the audio stream missed, asked again (STT -> gateway; core NATS)."""
    return r.AUDIO_RESEND.subject(call_id)


def call_out_all(call_id: str) -> str:
    """Everything addressed to the gateway that owns the call (one subscription per call:
    every row under it is the gateway's)."""
    return r.CALL_OUT_ALL.replace(CALL, validate_call_id(call_id))


def control(call_id: str) -> str:
    """Lifecycle and turn records published by the owning gateway."""
    return r.CONTROL.subject(call_id)


CONTROL_ALL = r.CONTROL.wildcard


def watch(call_id: str) -> str:
    """Live events of a call for control API watchers (JSON, core NATS, not stored)."""
    return r.WATCH.subject(call_id)


WATCH_ALL = r.WATCH.wildcard


def rpc_call(call_id: str) -> str:
    """Commands for a call, answered by the gateway that owns it (request/reply)."""
    return r.RPC_CALL.subject(call_id)


RPC_GATEWAY_CALLS = r.RPC_GATEWAY_CALLS.pattern  # every gateway answers with its live calls

WORK_CALLS = r.WORK_CALLS.pattern


def stt_take(replica: str) -> str:
    """One STT replica's own door for a dead replica's calls (stt_watch.py); `replica` is
    its heartbeat name (kv_token of its bus name)."""
    return r.STT_TAKE.pattern.replace(r.REPLICA, kv_token(replica))


def work_llm(call_id: str) -> str:
    """One LLM turn request; any LLM replica serves it."""
    return r.WORK_LLM.subject(call_id)


def work_tts(call_id: str) -> str:
    """One clause to synthesize; any TTS replica serves it."""
    return r.WORK_TTS.subject(call_id)


_DIRECT: dict[str, r.Row[Any]] = {r.WORK_LLM.name: r.DIRECT_LLM, r.WORK_TTS.name: r.DIRECT_TTS}


def _work_row(work_subject: str) -> r.Row[Any]:
    row = r.row_of(work_subject, (r.WORK_LLM, r.WORK_TTS))
    if row is None:
        raise ValueError(f"not a work subject a replica pool serves directly: {work_subject}")
    return row


def direct_work(work_subject: str) -> str:
    """Where a work item goes straight to any replica when its queue has not acknowledged it
    in time (`vb.work.llm.<id>` -> `vb.direct.llm.<id>`; core NATS, no stream:
    direct_work.py). A wildcard work subject gives the wildcard direct subject."""
    row = _work_row(work_subject)
    return _DIRECT[row.name].pattern.replace(CALL, work_subject.rsplit(".", 1)[-1])


def work_pool(work_subject: str) -> str:
    """The pool (durable consumer) whose replicas serve a work subject that may go direct
    (`vb.work.llm.<id>` -> `llm-workers`)."""
    pull = _work_row(work_subject).pull
    assert pull is not None  # (both work rows name their pool)
    return pull[1]


_TAKEN: dict[str, r.Row[Any]] = {LLM_POOL: r.TAKEN_LLM, TTS_POOL: r.TAKEN_TTS}


def work_taken(durable: str) -> str:
    """A work item one replica of `durable`'s pool took, from the queue or directly (core
    NATS, every replica of the pool and the pool's publishers listen: direct_work.py)."""
    if durable not in _TAKEN:
        raise ValueError(f"{durable!r} is not a pool that takes work directly")
    return _TAKEN[durable].pattern


def prefill_llm(call_id: str) -> str:
    """The caller's words so far, for any LLM replica to pre-evaluate (core NATS, no stream:
    a lost hint costs only latency)."""
    return r.PREFILL_LLM.subject(call_id)


PREFILL_LLM_ALL = r.PREFILL_LLM.wildcard

RPC_MEMORY_CONTEXT = r.RPC_MEMORY_CONTEXT.pattern
RPC_PING = r.RPC_PING.pattern
RPC_MEMORY_FORGET = r.RPC_MEMORY_FORGET.pattern  # delete a caller's long-term memory
RPC_LLM_SUMMARIZE = r.RPC_LLM_SUMMARIZE.pattern  # memory asks any LLM replica for a summary

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
