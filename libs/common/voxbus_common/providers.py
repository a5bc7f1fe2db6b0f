"""One small interface per provider kind. Choosing an implementation is configuration.

Implementations live in the service that uses them (services/stt, llm, tts); fakes for
tests live under tests/. All audio is PCM16 LE mono.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Protocol


class VoiceActivityDetector(Protocol):
    """Frame-level speech probability."""

    sample_rate: int
    frame_samples: int  # the detector's native window, in samples

    def speech_probability(self, frame: bytes) -> float:
        """Probability that one native-size PCM16 frame contains speech."""
        ...

    def reset(self) -> None: ...


class SpeechToText(Protocol):
    """Batch transcription of one utterance (called for partials and for the final)."""

    name: str

    def transcribe(self, pcm: bytes, sample_rate: int) -> str:
        """Blocking; services run it in a worker thread."""
        ...


@dataclass(frozen=True)
class ChatTurn:
    role: str
    content: str


class ChatModel(Protocol):
    """Streaming chat completion."""

    name: str

    def stream(self, messages: list[ChatTurn]) -> AsyncIterator[str]:
        """Yield text deltas as they are generated."""
        ...


class TextToSpeech(Protocol):
    """Synthesis of one clause, streamed as PCM16 chunks at `sample_rate`."""

    name: str
    sample_rate: int

    def synthesize(self, text: str) -> Iterator[bytes]:
        """Blocking generator; services drive it from a worker thread."""
        ...
