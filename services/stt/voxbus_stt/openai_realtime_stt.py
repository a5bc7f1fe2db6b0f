"""OpenAI Realtime transcription (`intent=transcription`), streaming.

One WebSocket session per utterance, opened when the caller starts speaking; the audio is
appended as it arrives (resampled to the 24 kHz the API takes), so nothing is uploaded after
the endpoint. The server's own turn detection is off: voxbus's endpointer decides. The
input buffer is committed when the caller pauses (the pause's text, also read for the turn
cues) and at the end if the caller spoke since; a tail of silence is cleared instead. The
final text is the committed segments' transcripts in commit order. Transcript deltas are
the interims: live-transcription models send them while the caller speaks, the others once
a segment is committed.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import openai

from voxbus_common.audio import StreamResampler
from voxbus_common.cloud_speech import OpenAIAudioError, openai_client_settings
from voxbus_common.providers import Recognition, SttCapabilities

log = logging.getLogger(__name__)

API_RATE = 24000  # the only PCM rate the Realtime API accepts
_event_ids = itertools.count(1)


def session_config(model: str, language: str) -> dict[str, Any]:
    """A transcription session whose buffer only voxbus commits."""
    transcription: dict[str, Any] = {"model": model}
    if language:
        transcription["language"] = language
    return {"type": "transcription",
            "audio": {"input": {"format": {"type": "audio/pcm", "rate": API_RATE},
                                "transcription": transcription, "turn_detection": None}}}


class OpenAIRealtimeSpeechToText:
    """StreamingSpeechToText over the Realtime API (or any server speaking its protocol)."""

    capabilities = SttCapabilities(streaming=True, interim_results=True, word_timings=False)

    def __init__(self, base_url: str = "", api_key: str = "",
                 model: str = "gpt-4o-mini-transcribe", language: str = "en", *,
                 timeout_s: float = 30.0) -> None:
        self._base_url, key = openai_client_settings("VOXBUS_STT_PROVIDER", base_url, api_key)
        self._client = openai.AsyncOpenAI(base_url=self._base_url, api_key=key,
                                          timeout=timeout_s, max_retries=1)
        self._session = session_config(model, language)
        self._timeout_s = timeout_s
        self.name = f"openai-realtime-{model}"
        log.info("openai realtime stt configured",
                 extra={"base_url": self._base_url, "model": model})

    def open_stream(self, sample_rate: int,
                    on_interim: Callable[[str], None]) -> RealtimeStream:
        return RealtimeStream(self._client, self._session, sample_rate, on_interim,
                              self._timeout_s, self._base_url)


@dataclass
class _Segment:
    """One commit of the input buffer and its transcript."""

    commit_event: str
    text: asyncio.Future[str]
    item_id: str = ""
    delta: str = ""


class RealtimeStream:
    """One utterance over one Realtime session."""

    def __init__(self, client: openai.AsyncOpenAI, session: dict[str, Any], sample_rate: int,
                 on_interim: Callable[[str], None], timeout_s: float, base_url: str) -> None:
        self._on_interim = on_interim
        self._timeout_s = timeout_s
        self._where = base_url
        self._resampler = StreamResampler(sample_rate, API_RATE)
        self._outbox: asyncio.Queue[str] = asyncio.Queue()  # client events, as JSON
        self._segments: list[_Segment] = []
        self._uncommitted: deque[_Segment] = deque()  # commits sent, not acknowledged yet
        self._spoke = False  # voiced audio since the last commit
        self._error: Exception | None = None
        self._done = False
        self._task = asyncio.create_task(self._run(client, session))

    def push(self, pcm: bytes, speaking: bool) -> None:
        if self._done:
            return
        self._spoke = self._spoke or speaking
        self._append(self._resampler.process(pcm))

    async def pause(self) -> str:
        if self._spoke:
            self._commit()
        return await self._text()

    async def finish(self) -> Recognition:
        self._done = True
        self._append(self._resampler.process(b"", last=True))  # what the resampler held
        if self._spoke or not self._segments:
            self._commit()
        else:  # only silence since the pause's commit
            self._send_event({"type": "input_audio_buffer.clear"})
        try:
            return Recognition(await asyncio.wait_for(self._text(), self._timeout_s))
        except TimeoutError:
            raise OpenAIAudioError(f"OpenAI realtime transcription at {self._where} gave no "
                                   f"transcript within {self._timeout_s:.0f} s") from None
        finally:
            self._task.cancel()

    def cancel(self) -> None:
        self._done = True
        self._task.cancel()
        for segment in self._segments:
            segment.text.cancel()

    def _append(self, audio: bytes) -> None:
        if audio:
            self._send_event({"type": "input_audio_buffer.append",
                              "audio": base64.b64encode(audio).decode()})

    def _send_event(self, event: dict[str, Any]) -> None:
        """Queue a client event. Sent as plain JSON (`send_raw`): the client's typed
        `send` validates every event against its schema, ~80 µs per audio chunk here."""
        self._outbox.put_nowait(json.dumps(event))

    def _commit(self) -> None:
        self._spoke = False
        segment = _Segment(f"voxbus_commit_{next(_event_ids)}",
                           asyncio.get_running_loop().create_future())
        segment.text.add_done_callback(_retrieved)
        self._segments.append(segment)
        if self._error is not None:
            segment.text.set_exception(self._error)
            return
        self._uncommitted.append(segment)
        self._send_event({"type": "input_audio_buffer.commit", "event_id": segment.commit_event})

    async def _text(self) -> str:
        """The segments' transcripts joined; an error only when every segment failed."""
        results = await asyncio.gather(*(s.text for s in self._segments),
                                       return_exceptions=True)
        texts = [r for r in results if isinstance(r, str)]
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors and not texts:
            raise errors[0]  # every segment failed
        return " ".join(t for t in texts if t)

    async def _run(self, client: openai.AsyncOpenAI, session: dict[str, Any]) -> None:
        try:
            async with client.realtime.connect(extra_query={"intent": "transcription"}) as conn:
                await conn.send({"type": "session.update", "session": session})  # type: ignore[arg-type,typeddict-item]
                sender = asyncio.create_task(self._send(conn))
                try:
                    while True:
                        self._on_event(json.loads(await conn.recv_bytes()))
                finally:
                    sender.cancel()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._fail(OpenAIAudioError(f"OpenAI realtime transcription at {self._where} "
                                        f"failed: {type(exc).__name__}: {exc}"))

    async def _send(self, conn: Any) -> None:
        while True:
            await conn.send_raw(await self._outbox.get())

    def _on_event(self, event: dict[str, Any]) -> None:
        kind = event.get("type", "")
        if kind == "input_audio_buffer.committed" and self._uncommitted:
            self._uncommitted.popleft().item_id = str(event.get("item_id", ""))
        elif kind == "conversation.item.input_audio_transcription.delta":
            segment = self._segment(event)
            if segment is not None and not self._done:
                segment.delta += str(event.get("delta", ""))
                self._report()
        elif kind == "conversation.item.input_audio_transcription.completed":
            segment = self._segment(event)
            if segment is not None and not segment.text.done():
                segment.text.set_result(str(event.get("transcript", "")).strip())
        elif kind == "conversation.item.input_audio_transcription.failed":
            segment = self._segment(event)
            message = (event.get("error") or {}).get("message", "transcription failed")
            if segment is not None and not segment.text.done():
                segment.text.set_exception(OpenAIAudioError(
                    f"OpenAI realtime transcription failed: {message}"))
        elif kind == "error":
            self._on_error(event.get("error") or {})

    def _on_error(self, error: dict[str, Any]) -> None:
        """A refused commit (too little audio) leaves its audio in the buffer for the next
        one: that segment is empty. Any other error fails the stream."""
        message = f"OpenAI realtime transcription: {error.get('message', 'error')}"
        for segment in self._uncommitted:
            if segment.commit_event == error.get("event_id"):
                self._uncommitted.remove(segment)
                log.info("commit refused, its audio goes with the next: %s", message)
                segment.text.set_result("")
                if self._done:  # (no next commit: the buffer is dropped)
                    self._send_event({"type": "input_audio_buffer.clear"})
                return
        self._fail(OpenAIAudioError(message))

    def _segment(self, event: dict[str, Any]) -> _Segment | None:
        item = event.get("item_id")
        return next((s for s in self._segments if s.item_id and s.item_id == item), None)

    def _report(self) -> None:
        parts = [(s.text.result() if s.text.done() and not s.text.exception() else s.delta)
                 for s in self._segments if not s.text.cancelled()]
        text = " ".join(p.strip() for p in parts if p.strip())
        if text:
            self._on_interim(text)

    def _fail(self, error: Exception) -> None:
        log.warning("%s", error)
        self._error = error
        for segment in self._segments:
            if not segment.text.done():
                segment.text.set_exception(error)


def _retrieved(future: asyncio.Future[str]) -> None:
    if not future.cancelled():
        future.exception()
