"""The pauses of the scripted callers' speech, judged offline by the very endpointer, end-of-
turn model and word cues the STT service runs (for the eot-bench figures in bench/turns.py).

The case's audio goes through `Endpointer` in `model` mode with a hold long enough never to
end the turn; at each pause it asks (`TurnCheck`, at the configured silence), and the pause
is scored by smart-turn alone and by smart-turn with the cue in the words Whisper hears so
far. Speech coming back makes it a hold of the length the endpointer measured; the silence
after the last part is the true end of the turn.
"""

from __future__ import annotations

from bench.turn_metrics import Pause
from voxbus_common.config import Settings
from voxbus_stt.endpointer import Endpointer, EndpointerConfig, SpeechResumed, TurnCheck
from voxbus_stt.silero import SileroVoiceActivity
from voxbus_stt.smart_turn import SmartTurnDetector
from voxbus_stt.turn_cues import text_cue
from voxbus_stt.whisper import WhisperSpeechToText

RATE = 16000
CUE_SCORE = {"incomplete": 0.0, "dictating": 0.0, "complete": 1.0}


class PauseJudge:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.detector = SmartTurnDetector(settings.eot_model_path)
        self.stt = WhisperSpeechToText(settings.whisper_model_path, settings.whisper_threads)

    def pauses(self, pcm: bytes) -> tuple[list[Pause], list[Pause]]:
        """(scored by the audio model, scored by the model with the word cues)."""
        s = self.settings
        ep = Endpointer(SileroVoiceActivity(RATE), EndpointerConfig(
            threshold=s.vad_threshold, onset_ms=s.vad_onset_ms, min_speech_ms=s.vad_min_speech_ms,
            pre_roll_ms=s.vad_pre_roll_ms, policy="model", ask_after_ms=s.eot_ask_after_ms,
            max_hold_ms=60_000, resume_after_ms=1))
        audio: list[Pause] = []
        words: list[Pause] = []
        pending: tuple[float, float] | None = None
        tail = b"\x00\x00" * RATE * 3
        frame = 640
        stream = pcm + tail
        for i in range(0, len(stream), frame):
            for event in ep.push(stream[i: i + frame]):
                if isinstance(event, TurnCheck):
                    window = event.pcm[-int(self.detector.window_s * RATE) * 2:]
                    p = self.detector.completion_probability(window, RATE)
                    cue = text_cue(self.stt.transcribe(event.pcm, RATE))
                    pending = (p, CUE_SCORE.get(cue or "", p))
                elif isinstance(event, SpeechResumed) and pending is not None:
                    audio.append(Pause("hold", event.paused_ms / 1000, pending[0]))
                    words.append(Pause("hold", event.paused_ms / 1000, pending[1]))
                    pending = None
        if pending is not None:
            audio.append(Pause("eot", 60.0, pending[0]))
            words.append(Pause("eot", 60.0, pending[1]))
        return audio, words
