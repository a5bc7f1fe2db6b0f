"""Carriers that copied Twilio's Media Streams protocol with their own names.

- Telnyx: snake_case, `stream_id`, `call_control_id`; PCMU/PCMA/L16 (big-endian); frames may
  arrive out of order (the reorder buffer handles it); media/mark/clear out.
- Exotel AgentStream: snake_case (`stream_sid`, `call_sid`); raw 16-bit LE PCM at 8 kHz
  (declared as encoding "base64"); outbound chunks are 20 ms = 320 bytes.
- Plivo audio streams: camelCase `callId`/`streamId`; `audio/x-l16` (little-endian here);
  out: `playAudio`, `checkpoint` (echoed as `playedStream`), `clearAudio`.
Verified against the simulators in tests/ only (see docs/edges.md).
"""

from __future__ import annotations

import base64
from typing import Any

from voxbus_gateway.edges.transcode import encoding_from_mime
from voxbus_gateway.edges.twilio import TwilioEdge


class TelnyxEdge(TwilioEdge):
    name = "telnyx"
    snake_case = True
    stream_key = "stream_id"
    call_keys = ("call_control_id", "call_session_id", "stream_id")
    default_encoding = "PCMU"
    strict_call_id = False
    ignored_events = ("connected", "error")


class ExotelEdge(TwilioEdge):
    name = "exotel"
    snake_case = True
    stream_key = "stream_sid"
    call_keys = ("call_sid", "stream_sid")
    default_encoding = "base64"
    strict_call_id = False
    ignored_events = ("connected",)

    def encoding(self, declared: str) -> str:
        return "pcm16le" if declared.lower() in ("base64", "raw", "slin") else (
            encoding_from_mime(declared))


class PlivoEdge(TwilioEdge):
    name = "plivo"
    stream_key = "streamId"
    call_keys = ("callId", "streamId")
    default_encoding = "audio/x-l16"
    strict_call_id = False
    ignored_events = ("clearedAudio",)

    def encoding(self, declared: str) -> str:
        enc = encoding_from_mime(declared)
        return "pcm16le" if enc == "l16be" else enc

    def mark_name(self, doc: dict[str, Any]) -> str | None:
        name = doc.get("name")
        return name if doc.get("event") == "playedStream" and isinstance(name, str) else None

    async def send_audio(self, pcm16: bytes) -> None:
        mime = {"mulaw": "audio/x-mulaw", "alaw": "audio/x-alaw"}.get(self.codec.encoding,
                                                                      "audio/x-l16")
        await self.send_json({"event": "playAudio", "media": {
            "contentType": mime, "sampleRate": self.codec.rate,
            "payload": base64.b64encode(self.codec.from_bus(pcm16)).decode()}})

    async def send_mark(self, name: str) -> None:
        await self.send_json({"event": "checkpoint", "streamId": self.stream_sid, "name": name})

    async def clear(self) -> None:
        await self.send_json({"event": "clearAudio", "streamId": self.stream_sid})
