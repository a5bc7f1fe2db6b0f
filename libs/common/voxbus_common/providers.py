"""One small interface per provider kind. Choosing an implementation is configuration.

Implementations live in the service that uses them (services/stt, llm, tts); fakes for
tests live under tests/. All audio is PCM16 LE mono.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
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


@dataclass(frozen=True)
class SttCapabilities:
    """What a speech-to-text provider does by itself (LiveKit's STTCapabilities, plus word
    timings). A batch provider is driven through an adapter that re-decodes for interims."""

    streaming: bool = False  # recognizes while the audio arrives
    interim_results: bool = False  # reports hypotheses before the final text
    word_timings: bool = False  # the final text carries per-word times


@dataclass(frozen=True)
class Word:
    """One recognized word; times in ms from the start of the audio pushed to its stream."""

    text: str
    start_ms: int
    end_ms: int


@dataclass(frozen=True)
class Recognition:
    """Text recognized in one utterance; `words` only from providers with word timings."""

    text: str
    words: tuple[Word, ...] = ()


class SpeechToText(Protocol):
    """Batch transcription of one utterance (called for partials and for the final)."""

    name: str

    def transcribe(self, pcm: bytes, sample_rate: int) -> str:
        """Blocking; services run it in a worker thread."""
        ...


class RecognitionStream(Protocol):
    """Recognition of one utterance while it is spoken. The session pushes the utterance's
    audio in order (`speaking`: the caller is voicing it, not pausing) and reads hypotheses
    through the `on_interim` callback it opened the stream with."""

    def push(self, pcm: bytes, speaking: bool) -> None:
        """Never blocks: the audio is queued or handed to the provider."""
        ...

    async def pause(self) -> str:
        """The caller paused (it may be the end of the turn): the text so far, as final as
        the provider can make it now. Read for the turn cues and as a stable partial."""
        ...

    async def finish(self) -> Recognition:
        """The utterance is over (all its audio pushed): its final text."""
        ...

    def cancel(self) -> None:
        """Drop the stream without a result (the session hands the call over)."""
        ...


@runtime_checkable
class StreamingSpeechToText(Protocol):
    """A provider that recognizes while audio arrives: one stream per utterance."""

    name: str
    capabilities: SttCapabilities

    def open_stream(self, sample_rate: int,
                    on_interim: Callable[[str], None]) -> RecognitionStream:
        """Start recognizing an utterance; `on_interim` is called on the event loop."""
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
