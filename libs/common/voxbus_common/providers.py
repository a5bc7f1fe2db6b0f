"""One small interface per provider kind. Choosing an implementation is configuration.

Implementations live in the service that uses them (services/stt, llm, tts); fakes for
tests live under tests/. All audio is PCM16 LE mono.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable


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


class EndOfTurnDetector(Protocol):
    """Is the caller's turn complete? Asked at a pause in the caller's speech.

    `window_s` declares how much of the latest audio it judges (the caller passes at least
    that much when it has it); `uses_text` whether the transcript so far informs it."""

    name: str
    window_s: float
    uses_text: bool

    def completion_probability(self, pcm: bytes, sample_rate: int, text: str = "") -> float:
        """0..1 that the turn is over. Blocking; services run it in a worker thread."""
        ...


@dataclass(frozen=True)
class ToolCall:
    """The model asks for a tool: `arguments` is the JSON text the model wrote."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class ChatTurn:
    role: str  # system | user | assistant | tool
    content: str
    tool_calls: tuple[ToolCall, ...] = ()  # assistant turns that asked for tools
    tool_call_id: str = ""  # tool turns: which call this result answers


class ChatModel(Protocol):
    """Streaming chat completion with optional OpenAI-style function calling."""

    name: str

    def stream(self, messages: list[ChatTurn],
               tools: list[dict[str, Any]] | None = None) -> AsyncIterator[str | ToolCall]:
        """Yield text deltas as they are generated, then any tool calls the model made
        (complete, after the text). `tools` are OpenAI tool definitions."""
        ...


@runtime_checkable
class PromptCaching(Protocol):
    """A chat model whose server caches evaluated prompts per call (a local llama.cpp server
    with pinned slots): it can evaluate a prompt ahead of the turn that needs it."""

    async def warm(self, messages: list[ChatTurn],
                   tools: list[dict[str, Any]] | None) -> None:
        """Evaluate the prompt prefix every call shares (system prompt, tools) in all slots."""
        ...

    async def prefill(self, messages: list[ChatTurn],
                      tools: list[dict[str, Any]] | None) -> None:
        """Evaluate this call's prompt so far (the caller is still speaking)."""
        ...


class TextToSpeech(Protocol):
    """Synthesis of one clause, streamed as PCM16 chunks at `sample_rate`."""

    name: str
    sample_rate: int

    def synthesize(self, text: str) -> Iterator[bytes]:
        """Blocking generator; services drive it from a worker thread."""
        ...
