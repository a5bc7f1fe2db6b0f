"""Configuration from the environment (VOXBUS_* variables; NATS_URL and OPENAI_* as well).

One class per section: a small shared core, one per service and one per provider that has
knobs of its own. Each service reads its own combination (`SttService`: core, STT, Whisper,
smart-turn, Azure, OpenAI audio), typed so that mypy rejects a read of another service's
section; `Settings` is all of them together (one environment configures every service, and
`voxbus config` shows every knob). The variable names are VOXBUS_<FIELD>, whatever the
section. Choosing a provider is configuration, not code. docs/configuration.md lists every
field by section (config_docs.py).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class _VoxbusEnv(BaseSettings):
    """Read from VOXBUS_<FIELD> unless a field lists its own variables."""

    model_config = SettingsConfigDict(env_prefix="VOXBUS_", extra="ignore")


class CoreSettings(_VoxbusEnv):
    """The shared core: the bus, logs, metrics, work-queue timing, the agent file, and the
    knobs two services must agree on."""

    nats_url: str = Field(
        default="nats://127.0.0.1:4222",
        validation_alias=AliasChoices("VOXBUS_NATS_URL", "NATS_URL"),
    )
    audio_max_age_s: float = 30.0
    events_max_age_s: float = 3600.0  # call events (turn texts redacted)
    live_max_age_s: float = 60.0  # raw transcripts, tokens, VAD events (memory storage)
    # A clustered NATS (VOXBUS_NATS_URL lists several servers, comma-separated): copies of
    # every stream and KV bucket (3 survives losing any one node; 1 = a single server)
    nats_replicas: int = Field(default=1, ge=1, le=5)
    # JetStream unavailable this long (no quorum, or no server reachable) = the bus is lost:
    # gateways refuse new calls (503) and end live ones with that reason. Longer than a
    # leader election after losing one node (4-9 s in nats-server), so that one is ridden out
    nats_quorum_grace_s: float = Field(default=15.0, gt=0)
    # NATS credentials (docs/security.md): a user (= the service's role) and password, or a
    # .creds file, or a token; never logged. TLS when a CA or client certificate is set (or
    # the URL is tls://): the CA verifies the server, cert + key authenticate this client
    nats_user: str = ""
    nats_password: str = ""
    nats_creds: str = ""
    nats_token: str = ""
    nats_tls_ca: str = ""
    nats_tls_cert: str = ""
    nats_tls_key: str = ""
    instance_id: str = ""
    log_level: str = "INFO"
    log_format: str = "text"  # text | json
    metrics_port: int = 0  # Prometheus /metrics; 0 = off (Kubernetes: 9100 in every pod)
    metrics_host: str = "127.0.0.1"  # loopback by default; the Helm chart sets 0.0.0.0
    event_loop: str = "auto"  # auto (uvloop when installed) | uvloop | asyncio
    # LLM/TTS work items: a replica that dies mid-item loses it to another one after this
    # (a live replica keeps its items claimed, however long they take)
    work_ack_wait_s: float = 1.0
    # TTS items the same, shorter: a clause synthesized twice after a false redelivery only
    # costs CPU (the gateway places chunks by index), a dead replica's clause moves sooner
    tts_ack_wait_s: float = 0.6
    # the agent file (docs/agents.md): its prompt, voice, tools, routes and policies override
    # the matching settings below in every service; "" = the settings alone
    agent_file: str = ""
    agent_language: str = "en"
    # -- read by two or more services (named in brackets) ---------------------------------
    bus_sample_rate: int = 16000  # [gateway frames, STT expects, TTS produces]
    # kinds replaced before storing and in logs; "none" = off [all: logs; gateway, memory]
    redact_pii: str = "card,ssn,email,phone"
    session_ttl_s: float = 7 * 24 * 3600.0  # [the sessions bucket, whoever creates it]
    caller_ttl_s: float = 90 * 24 * 3600.0  # kept this long after the caller's last call [ditto]
    max_call_seconds: float = 3600.0  # [gateway; the calls bucket's TTL]
    tts_voice: str = "joe"  # the voice turn requests name [gateway, LLM]
    # while the caller speaks, the gateway sends the partial transcript and an LLM replica has
    # a local server evaluate the conversation up to it in the call's slot (needs pinned
    # slots): the turn's request then evaluates only the last words [gateway, LLM]
    llm_prefill: bool = True
    memory_summary_max_words: int = 60  # [memory asks, the LLM clamps]
    llm_summarize_timeout_s: float = 20.0  # [the LLM's limit; memory waits 2 s longer]


class GatewaySettings(_VoxbusEnv):
    """The gateway: edges, admission, playout, barge-in, idle, the control API."""

    gateway_host: str = "127.0.0.1"
    gateway_port: int = 8765
    public_url: str = ""  # https://voice.example.com as carriers reach the gateway
    twilio_auth_token: str = Field(
        default="", validation_alias=AliasChoices("VOXBUS_TWILIO_AUTH_TOKEN", "TWILIO_AUTH_TOKEN"))
    # transfers on Twilio calls go through its REST API (the account SID also comes from the
    # stream's `start` message); without a token the transfer ends the stream only
    twilio_account_sid: str = Field(
        default="", validation_alias=AliasChoices("VOXBUS_TWILIO_ACCOUNT_SID",
                                                  "TWILIO_ACCOUNT_SID"))
    twilio_api_base: str = "https://api.twilio.com"
    handshake_timeout_s: float = 10.0
    # the HTTP port against slow clients (http_guard.py): request headers complete within
    # this, a request body read within this, an idle keep-alive connection closed after this
    http_header_timeout_s: float = 10.0
    http_body_timeout_s: float = 30.0
    http_keepalive_timeout_s: float = 75.0
    media_token_keys: str = ""  # kid:secret[,kid:secret]; empty = loopback callers only
    audiosocket_port: int = 0  # Asterisk AudioSocket TCP listener; 0 = off
    # SIP/RTP edge (docs/sip.md): a trunk, PBX or phone calls the gateway directly
    sip_port: int = 0  # SIP over UDP and TCP on this port; 0 = off
    sip_tls_port: int = 0  # SIP over TLS (tls_cert_file/tls_key_file); 0 = off
    sip_media_address: str = ""  # the IP put in SDP (NAT: the public one); "" = the local one
    sip_rtp_port_min: int = 20000  # RTP/RTCP port pairs are taken from this range
    sip_rtp_port_max: int = 20999
    sip_allow: str = "127.0.0.0/8,::1/128"  # peers (CIDRs) allowed to send SIP; "*" = any
    sip_auth_user: str = ""  # digest authentication of INVITEs when set (trunks that need it)
    sip_auth_password: str = ""
    sip_realm: str = "voxbus"
    sip_srtp: str = "optional"  # SDES-SRTP on TLS calls: off | optional | required
    sip_ring_ms: int = 0  # ring (180) this long before answering; 0 = answer at once
    tls_cert_file: str = ""  # with tls_key_file: the gateway serves https/wss itself
    tls_key_file: str = ""
    carrier_allow_loopback_only: bool = True  # carriers without signatures: see docs/edges.md
    gateway_max_calls: int = 0  # admission: calls one gateway takes (0 = no limit)
    # floods (admission.py): new calls per source address (token bucket; 0 = no limit) and
    # calls per edge still being set up (no greeting, no STT session until confirmed)
    gateway_calls_per_source_per_s: float = 50.0
    gateway_calls_per_source_burst: float = 200.0
    gateway_max_unconfirmed: int = 64  # per edge
    gateway_max_unconfirmed_per_source: int = 16  # per source address, all edges together
    gateway_lease_s: float = 3.0  # a gateway silent this long: its calls are ended by the others
    # a gateway probes an STT replica silent this long (beats every 0.1 s) and re-announces
    # its calls when nothing answers: a killed one has no responder, so that is at once
    stt_lease_s: float = 0.4
    # on SIGTERM: no new calls, live ones may finish for this long, then they are hung up
    # (the Helm chart sets it just under terminationGracePeriodSeconds)
    drain_timeout_s: float = 0.0
    playout_lead_ms: int = 60
    # caller audio per bus message: 40 or 60 halves or thirds the audio path's messages
    # (gateway, nats-server and STT work per message) for 10 or 20 ms more on average before
    # STT hears each sound; 20 keeps the edge's own framing (docs/decisions.md)
    bus_frame_ms: int = Field(default=20, ge=20, le=60, multiple_of=20)
    barge_in_confirm_ms: int = 500  # onset without confirmed speech for this long: resume
    backchannels: str = (
        "mhm,mm,mmm,hmm,uh huh,uh-huh,yeah,yes,yep,yup,okay,ok,right,sure,i see,got it,"
        "alright,all right,aha,ah,oh,uh,um,cool,nice,great,wow")
    idle_reprompt_s: float = 12.0
    idle_hangup_s: float = 40.0
    idle_reprompt_text: str = "Are you still there?"
    dtmf_timeout_s: float = 1.5
    routes_file: str = ""  # YAML routing rules answered without the LLM (docs/routing.md)
    greeting: str = ""  # said when a call starts; "" = the caller speaks first
    greeting_allow_interruptions: bool = True  # false: the caller hears the greeting out
    # gRPC control API in every gateway (docs/control.md); 0 = off
    control_port: int = 0
    control_tokens: str = ""  # static bearer tokens (operator scope), comma-separated
    control_admin_tokens: str = ""  # static bearer tokens with the admin scope (IssueMediaToken)
    control_jwt_secret: str = ""  # or HS256 JWTs with aud "voxbus-control" (scope "admin")
    # with no token configured every control request is refused; true = loopback peers are
    # served without a token (operator scope only), for local development
    control_allow_loopback: bool = False


class SttSettings(_VoxbusEnv):
    """STT: provider, VAD, end of turn, partials, capacity and liveness."""

    stt_provider: str = "whisper"  # whisper | azure | openai | openai-realtime | module:factory
    vad_provider: str = "silero"
    vad_threshold: float = 0.5
    vad_onset_ms: int = 64
    vad_min_speech_ms: int = 160
    vad_hangover_ms: int = 320
    vad_pre_roll_ms: int = 200
    # end of turn (docs/conversation.md): "model" asks the end-of-turn model at a pause and
    # holds an incomplete turn up to eot_max_hold_ms; "vad" ends a turn after the hangover
    end_of_turn: str = "model"
    eot_provider: str = "smart-turn"
    eot_ask_after_ms: int = 160
    eot_max_hold_ms: int = 2000  # the words cannot end a turn ("a table for, um")
    eot_hold_ms: int = 1200  # the audio model says "not yet", or a dictation is under way
    eot_threshold: float = 0.5
    # a turn judged complete ends after this much silence (LiveKit: min_endpointing_delay);
    # breaths inside a sentence are mostly shorter, and the answer is prepared meanwhile
    eot_min_silence_ms: int = 300
    stt_partial_interval_ms: int = 700
    stt_speculate_after_ms: int = 96
    stt_max_calls: int = 64
    stt_handover: bool = True  # on SIGTERM, another STT replica carries on each live call
    # STT liveness beat (vb_stt KV), from its own thread (beacon.py): load does not delay it
    stt_heartbeat_s: float = 0.1


class LlmSettings(_VoxbusEnv):
    """The LLM service: model endpoint, local server, tools, fallback, the prompt."""

    llm_provider: str = "openai"
    llm_base_url: str = Field(
        default="",
        validation_alias=AliasChoices("VOXBUS_LLM_BASE_URL", "OPENAI_BASE_URL"),
    )
    llm_api_key: str = Field(
        default="",
        validation_alias=AliasChoices("VOXBUS_LLM_API_KEY", "OPENAI_API_KEY"),
    )
    llm_model: str = "smollm2-135m-instruct"
    # the local llama.cpp server `voxbus run` starts: 1 thread, because 2 threads spin-wait
    # for a core that STT and TTS also want and ran 2-20x slower here under such contention
    llm_server_threads: int = 1
    # threads evaluating a prompt (0 = llm_server_threads): prompts are evaluated while STT
    # and TTS are mostly idle; 2 cut the 1.5B model's first token p50 from 2.1 to 0.8 s
    llm_server_batch_threads: int = 2
    llm_server_slots: int = 4
    # calls pinned to the server's slots (call id hash mod this; 0 = the server picks): a
    # llama.cpp server keeps each slot's prompt cached, so a call's next turn evaluates only
    # its new tokens. `voxbus run` sets it to the embedded server's slot count.
    llm_pin_slots: int = 0
    # how tools reach the model: "native" (the API's tools/tool_calls) or "json": the tools
    # are described in the system prompt and a grammar makes every reply one JSON action,
    # {"say": ...} or {"tool": ..., "arguments": ...}, which small local models follow far
    # better (docs/providers.md). `voxbus run` uses "json" for its embedded model.
    llm_tool_format: Literal["native", "json"] = "native"
    llm_date_in_prompt: bool = True  # "Today is Friday, 4 December 2026." after the instructions
    # background work (call summaries, caller notes) goes here when set: on a one-slot local
    # server it would evict the live turns' cached system prompt (~0.5-1.8 s on the next
    # caller's first turn); "" = the same endpoint as the turns
    llm_background_base_url: str = ""
    llm_max_tokens: int = 80
    llm_temperature: float = 0.3
    llm_timeout_s: float = 30.0
    llm_concurrency: int = 4
    llm_context_messages: int = 12
    memory_rpc_timeout_s: float = 0.5
    # fallback chain: a second OpenAI-compatible endpoint tried when the first fails or has not
    # produced a token within llm_first_token_timeout_s (docs/configuration.md)
    llm_fallback_base_url: str = ""
    llm_fallback_model: str = ""
    llm_fallback_api_key: str = ""
    llm_first_token_timeout_s: float = 5.0
    system_prompt: str = (
        "You are voxbus, a friendly voice assistant on a phone call. "
        "Answer in one or two short spoken sentences. No lists, no markdown."
    )


class TtsSettings(_VoxbusEnv):
    """TTS: provider, concurrency, chunking."""

    tts_provider: str = "piper"  # piper | azure | openai | module:factory
    tts_concurrency: int = 2
    tts_chunk_ms: int = 200


class WhisperSettings(_VoxbusEnv):
    """The `whisper` STT provider (faster-whisper tiny.en, bundled)."""

    whisper_model_path: str = ""
    whisper_threads: int = 1  # per decode; two decodes run at once (partials, finals)
    # encode only the utterance (+1 s), not a 30 s window: ~70 ms instead of ~310 ms for a
    # short utterance at the same WER (voxbus_stt/whisper.py)
    whisper_short_window: bool = True


class SmartTurnSettings(_VoxbusEnv):
    """The `smart-turn` end-of-turn provider."""

    eot_model_path: str = ""  # "" = the model `make install` extracted next to voxbus_stt
    eot_threads: int = 1


class PiperSettings(_VoxbusEnv):
    """The `piper` TTS provider."""

    piper_model_path: str = ""
    tts_threads: int = 1  # per synthesis: the cores are shared with the LLM


class AzureSpeechSettings(_VoxbusEnv):
    """The `azure` STT and TTS providers (docs/providers.md)."""

    azure_speech_key: str = Field(
        default="", validation_alias=AliasChoices("VOXBUS_AZURE_SPEECH_KEY", "AZURE_SPEECH_KEY"))
    azure_speech_region: str = Field(
        default="",
        validation_alias=AliasChoices("VOXBUS_AZURE_SPEECH_REGION", "AZURE_SPEECH_REGION"))
    azure_speech_language: str = "en-US"
    azure_tts_voice: str = "en-US-JennyNeural"


class OpenAIAudioSettings(_VoxbusEnv):
    """The `openai` and `openai-realtime` STT and `openai` TTS providers."""

    openai_audio_base_url: str = ""  # "" = api.openai.com (OPENAI_BASE_URL is the LLM's)
    openai_audio_api_key: str = Field(
        default="",
        validation_alias=AliasChoices("VOXBUS_OPENAI_AUDIO_API_KEY", "OPENAI_API_KEY"))
    openai_stt_model: str = "gpt-4o-mini-transcribe"
    openai_tts_model: str = "gpt-4o-mini-tts"
    openai_tts_voice: str = "alloy"


class MemorySettings(_VoxbusEnv):
    """Memory: summaries and caller memory."""

    # summarize a call once its unsummarized turns exceed this many tokens (~chars/4 or
    # words*1.3, the larger); 0 = never. The newest memory_keep_recent messages stay verbatim.
    memory_summarize_tokens: int = 600
    memory_keep_recent: int = 6
    caller_memory: bool = True  # long-term memory per caller identity (docs/memory.md)
    caller_notes_max: int = 5  # earlier calls remembered per caller (oldest dropped)


# What each service reads: the core, its own section, its providers' sections.
class GatewayService(CoreSettings, GatewaySettings):
    """The gateway's settings."""


class SttService(CoreSettings, SttSettings, WhisperSettings, SmartTurnSettings,
                 AzureSpeechSettings, OpenAIAudioSettings):
    """The STT service's settings."""


class LlmService(CoreSettings, LlmSettings):
    """The LLM service's settings."""


class TtsService(CoreSettings, TtsSettings, PiperSettings, AzureSpeechSettings,
                 OpenAIAudioSettings):
    """The TTS service's settings."""


class MemoryService(CoreSettings, MemorySettings):
    """The memory service's settings."""


class Settings(GatewayService, SttService, LlmService, TtsService, MemoryService):
    """All voxbus settings: the sections together (a process started by `voxbus run` or the
    Helm chart gets one environment for every service); env var = VOXBUS_<FIELD> unless an
    alias is listed."""


SERVICES: dict[str, type[CoreSettings]] = {
    "gateway": GatewayService, "stt": SttService, "llm": LlmService, "tts": TtsService,
    "memory": MemoryService}
SECTIONS: tuple[type[BaseSettings], ...] = (  # every field in exactly one (a test checks)
    CoreSettings, GatewaySettings, SttSettings, LlmSettings, TtsSettings, MemorySettings,
    WhisperSettings, SmartTurnSettings, PiperSettings, AzureSpeechSettings,
    OpenAIAudioSettings)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Process-wide settings, read once, with the agent file's choices on top.

    Raises voxbus_common.agent.AgentError (a located message) for a bad agent file."""
    settings = Settings()
    if not settings.agent_file:
        return settings
    from voxbus_common.agent import load_agent

    return load_agent(settings.agent_file).overlay(settings)
