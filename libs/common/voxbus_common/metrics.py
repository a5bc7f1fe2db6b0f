"""Prometheus metrics, one registry per process, served on /metrics by every service.

Names and labels are documented in docs/metrics.md. No per-call labels (cardinality):
calls are counted and timed, never labelled by id.
"""

from __future__ import annotations

import logging

from prometheus_client import Counter, Gauge, Histogram, start_http_server

log = logging.getLogger(__name__)

# Latency buckets around what a caller notices: 10 ms .. 5 s.
LATENCY = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 1.0,
           1.25, 1.5, 2.0, 3.0, 5.0)
HOP = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25)

VOICE_TO_VOICE = Histogram(
    "voxbus_voice_to_voice_seconds",
    "End of caller speech to the first agent audio sent to the caller.", buckets=LATENCY)
TURN_STAGE = Histogram(
    "voxbus_turn_stage_seconds", "Per-stage latency of a turn.", ["stage"], buckets=LATENCY)
BARGE_IN_REACTION = Histogram(
    "voxbus_barge_in_reaction_seconds",
    "Caller speech onset to the agent's buffered audio cleared.", buckets=LATENCY)
CALLS = Counter("voxbus_calls_total", "Calls taken, by edge.", ["edge"])
CALLS_REFUSED = Counter("voxbus_calls_refused_total",
                        "New calls refused by admission control, by reason.", ["reason"])
REPLICAS_LOST = Counter(
    "voxbus_replicas_lost_total",
    "Replicas that stopped beating without a clean exit, as this gateway saw them, by kind "
    "(replica = STT, gateway).", ["kind"])
LATE_BEATS = Counter(
    "voxbus_late_heartbeats_total",
    "Replicas that seemed silent for a lease but had beaten: this gateway read the beats "
    "late (a starved event loop) and did not declare them dead, by kind.", ["kind"])
SIP_DROPPED = Counter(
    "voxbus_sip_dropped_total",
    "SIP messages refused or dropped at the SIP edge (not_allowed, rate, malformed).",
    ["reason"])
ACTIVE_CALLS = Gauge("voxbus_active_calls", "Calls this replica owns right now.")
TURNS = Counter("voxbus_turns_total", "Agent turns by outcome.", ["outcome"])
INTERRUPTIONS = Counter(
    "voxbus_interruptions_total", "Caller speech over the agent, by what it turned out to be.",
    ["kind"])
STALE_DROPPED = Counter(
    "voxbus_stale_dropped_total", "Messages dropped because their turn was cancelled.",
    ["service"])
ROUTED = Counter("voxbus_routed_turns_total", "Turns answered by a routing rule, not the LLM.",
                 ["route"])
ERRORS = Counter("voxbus_errors_total", "Errors by service and kind.", ["service", "kind"])
BUS_HOP = Histogram(
    "voxbus_bus_hop_seconds", "Publish to receive time of bus messages.", ["message"],
    buckets=HOP)
STT_DECODE = Histogram(
    "voxbus_stt_decode_seconds", "Speech-to-text model time per decode.", ["kind"],
    buckets=LATENCY)
STT_SESSIONS = Gauge("voxbus_stt_sessions", "Calls whose recognition this replica owns.")
LLM_FIRST_TOKEN = Histogram(
    "voxbus_llm_time_to_first_token_seconds", "LLM request to first streamed token.",
    buckets=LATENCY)
TTS_FIRST_BYTE = Histogram(
    "voxbus_tts_time_to_first_byte_seconds", "TTS request published to first audio chunk.",
    buckets=LATENCY)
TOOL_CALLS = Counter(
    "voxbus_tool_calls_total", "Tool calls the model made, by tool and outcome.",
    ["tool", "outcome"])
TOOL_SECONDS = Histogram(
    "voxbus_tool_seconds", "Time a tool took to answer the model.", ["tool"], buckets=LATENCY)
MCP_SERVER_EVENTS = Counter(
    "voxbus_mcp_server_events_total", "MCP server lifecycle: connected, failed, disabled.",
    ["server", "event"])
WORK_IN_FLIGHT = Gauge(
    "voxbus_work_in_flight", "Work items being processed by this replica.", ["queue"])
QUEUE_DEPTH = Gauge(
    "voxbus_queue_depth", "Work items waiting in the queue's consumer (JetStream num_pending, "
    "as this replica last saw it).", ["queue"])


STAGES = ("end_of_speech_to_final_transcript", "final_transcript_to_first_token",
          "first_token_to_first_audio_chunk", "first_audio_chunk_to_first_audio_played")
WORK_ERRORS = ("bad_work_item", "work_item_failed")
# The labelled series each service can produce, created at 0 when it starts: a counter's
# first increment then shows up in rate() and ratios, and dashboards show 0, not "no data".
SERIES: dict[str, list[tuple[Counter | Histogram, tuple[str, ...]]]] = {
    "gateway": [*((TURNS, (o,)) for o in ("completed", "interrupted", "stalled")),
                *((INTERRUPTIONS, (k,)) for k in ("confirmed", "false")),
                (STALE_DROPPED, ("gateway",)), (ERRORS, ("gateway", "bad_bus_message")),
                *((REPLICAS_LOST, (k,)) for k in ("replica", "gateway")),
                *((LATE_BEATS, (k,)) for k in ("replica", "gateway")),
                *((TURN_STAGE, (stage,)) for stage in STAGES),
                *((BUS_HOP, (m,)) for m in ("audio_chunk", "token_delta", "transcript"))],
    "stt": [(STT_DECODE, ("utterance",)), *((ERRORS, ("stt", k)) for k in WORK_ERRORS)],
    "llm": [(STALE_DROPPED, ("llm",)), (ERRORS, ("llm", "generation_failed")),
            (ERRORS, ("llm", "summary_failed")),
            (BUS_HOP, ("llm_request",)), *((ERRORS, ("llm", k)) for k in WORK_ERRORS)],
    "tts": [(STALE_DROPPED, ("tts",)), (ERRORS, ("tts", "synthesis_failed")),
            *((ERRORS, ("tts", k)) for k in WORK_ERRORS)],
    "memory": [(BUS_HOP, ("call_event",)), (ERRORS, ("memory", "summary_failed")),
               *((ERRORS, ("memory", k)) for k in WORK_ERRORS)],
}


def init_series(service: str) -> None:
    for metric, labels in SERIES.get(service, []):
        metric.labels(*labels)


def serve_metrics(port: int, service: str = "", host: str = "127.0.0.1") -> None:
    """Expose /metrics on `host:port` (0 = off), with the service's series created at 0.
    Loopback unless configured: the metrics name calls' edges and counts, not for anyone."""
    init_series(service)
    if port:
        start_http_server(port, addr=host)
        log.info("metrics on %s:%d/metrics", host, port)


def observe_hop(message: str, sent_unix_ns: int, now_ns: int) -> None:
    if sent_unix_ns and now_ns >= sent_unix_ns:
        BUS_HOP.labels(message).observe((now_ns - sent_unix_ns) / 1e9)
