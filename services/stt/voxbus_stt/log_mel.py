"""Whisper-style 80-bin log-mel features of a fixed window, in numpy (no torch, no transformers).

The end-of-turn model (smart_turn.py) was trained on these features of the last 8 s of a
turn at 16 kHz: the waveform left-padded with zeros to the window, normalised to zero mean
and unit variance over the whole window, a 400-point periodic Hann STFT every 160 samples
(centre-padded by reflection), the power spectrum through Slaney-scaled mel filters up to
8 kHz, log10, floored 8 decades below the peak, then scaled as (x + 4) / 4.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

RATE = 16000
N_FFT = 400
HOP = 160
N_MELS = 80


@lru_cache(maxsize=2)
def mel_filters(n_mels: int = N_MELS, n_fft: int = N_FFT, rate: int = RATE) -> np.ndarray:
    """Slaney mel filterbank (librosa's default `htk=False, norm='slaney'`), [n_mels, bins]."""
    def hz_to_mel(hz: np.ndarray) -> np.ndarray:
        linear = hz / (200.0 / 3)
        log_part = 15.0 + np.log(np.maximum(hz, 1e-10) / 1000.0) / (np.log(6.4) / 27.0)
        return np.where(hz >= 1000.0, log_part, linear)

    def mel_to_hz(mel: np.ndarray) -> np.ndarray:
        linear = mel * (200.0 / 3)
        log_part = 1000.0 * np.exp((np.log(6.4) / 27.0) * (mel - 15.0))
        return np.where(mel >= 15.0, log_part, linear)

    bins = np.fft.rfftfreq(n_fft, d=1.0 / rate)
    edges = mel_to_hz(np.linspace(0.0, float(hz_to_mel(np.array(rate / 2.0))), n_mels + 2))
    widths = np.diff(edges)
    ramps = edges[:, None] - bins[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (edges[2:] - edges[:-2]))[:, None]  # equal area per band
    return np.asarray(weights, dtype=np.float32)


@lru_cache(maxsize=1)
def _window() -> np.ndarray:
    n = np.arange(N_FFT)
    return (0.5 - 0.5 * np.cos(2.0 * np.pi * n / N_FFT)).astype(np.float32)  # periodic


def window_audio(samples: np.ndarray, seconds: float) -> np.ndarray:
    """The last `seconds` of float audio at 16 kHz, left-padded with zeros to that length."""
    size = int(seconds * RATE)
    tail = samples[-size:] if len(samples) else samples
    out = np.zeros(size, dtype=np.float32)
    if len(tail):
        out[size - len(tail):] = tail
    return out


def log_mel(window: np.ndarray) -> np.ndarray:
    """[80, frames] features of a fixed-length window (frames = len // 160)."""
    x = window.astype(np.float32)
    x = (x - x.mean()) / np.sqrt(x.var() + 1e-7)
    padded = np.pad(x, N_FFT // 2, mode="reflect")
    count = 1 + (len(padded) - N_FFT) // HOP
    frames = np.lib.stride_tricks.as_strided(
        padded, shape=(count, N_FFT), strides=(padded.strides[0] * HOP, padded.strides[0]))
    spectrum = np.fft.rfft(frames * _window(), axis=1)
    power = (spectrum.real ** 2 + spectrum.imag ** 2).astype(np.float32)[:-1]  # drop the last
    mel = mel_filters() @ power.T
    logs = np.log10(np.maximum(mel, 1e-10))
    logs = np.maximum(logs, logs.max() - 8.0)
    return np.asarray((logs + 4.0) / 4.0, dtype=np.float32)
