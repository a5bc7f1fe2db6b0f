"""Is the caller's "speech" the agent's own voice coming back (no or weak echo cancellation
on the caller's side)?

Two cheap checks, run only when caller speech starts while the agent is audible:
- acoustic: the normalized cross-correlation of the caller's audio around the onset with
  the agent audio sent in the last second, over every lag (FFT); an echo correlates at
  0.6-0.99 even through μ-law and gain changes, another voice stays near 0.1-0.3;
- textual, only for a suspicious onset (0.5-0.6): the final transcript's words are
  (almost all) words the agent was just saying.
"""

from __future__ import annotations

import numpy as np

from voxbus_gateway.turn import normalized

# Measured on the speech clips (100-300 ms windows, pre-emphasised): another voice peaks at
# 0.2-0.4 over all lags, an attenuated μ-law echo at 0.8-1.0.
ECHO_CORRELATION = 0.6  # at or above: the agent's own voice
ECHO_SUSPECT = 0.5  # between this and ECHO_CORRELATION: let the words decide
ECHO_WORD_OVERLAP = 0.8


def echo_correlation(inbound: bytes, reference: bytes) -> float:
    """Max normalized cross-correlation of `inbound` against `reference` at any lag >= 0."""
    x = _pre_emphasis(np.frombuffer(inbound, dtype="<i2").astype(np.float64))
    r = _pre_emphasis(np.frombuffer(reference, dtype="<i2").astype(np.float64))
    n = len(x)
    if n < 800 or len(r) < n:  # under 50 ms at 16 kHz: too little to tell
        return 0.0
    x = x - x.mean()
    x_norm = float(np.sqrt(np.dot(x, x)))
    if x_norm < 1e-6:
        return 0.0
    size = 1 << int(np.ceil(np.log2(len(r) + n)))
    corr = np.fft.irfft(np.fft.rfft(r, size) * np.conj(np.fft.rfft(x, size)), size)
    corr = corr[: len(r) - n + 1]
    c1 = np.concatenate([[0.0], np.cumsum(r)])
    c2 = np.concatenate([[0.0], np.cumsum(r * r)])
    sums = c1[n:] - c1[:-n]
    energy = np.maximum((c2[n:] - c2[:-n]) - sums * sums / n, 0.0)  # mean-removed
    # windows of (near) silence say nothing, and their tiny energies would only amplify
    # floating-point noise: require some signal in the reference window
    audible = energy > n * 10.0**2
    if not np.any(audible):
        return 0.0
    ncc = corr[audible] / (x_norm * np.sqrt(energy[audible]))
    return float(min(1.0, np.max(ncc)))


def onset_echo_correlation(caller_since_onset: bytes, sent_recently: bytes) -> float:
    """Echo score at a caller onset; silence goes in front of the reference so that an
    echo of the turn's very first frames still lines up."""
    return echo_correlation(caller_since_onset, b"\x00" * 9600 + sent_recently)


def _pre_emphasis(x: np.ndarray) -> np.ndarray:
    """Whiten speech a little (y[n] = x[n] - 0.97 x[n-1]): voiced low frequencies make
    unrelated voices correlate by chance; the echo keeps its fine structure."""
    y = x.copy()
    y[1:] -= 0.97 * x[:-1]
    return y


def is_echo_transcript(heard: str, onset_correlation: float, agent_said: str | None) -> bool:
    """Is a caller utterance the agent's own voice? `agent_said`: what the agent has made
    audible in its current turn (None: nothing)."""
    if onset_correlation >= ECHO_CORRELATION:
        return True
    # words alone are no proof (callers repeat the agent, small LLMs repeat callers):
    # they only decide when the audio at the onset already looked like the agent's
    if agent_said is None or onset_correlation < ECHO_SUSPECT:
        return False
    return is_echo_text(heard, agent_said)


def is_echo_text(heard: str, agent_said: str) -> bool:
    """True when (nearly) every word the caller 'said' is a word the agent was saying."""
    caller = normalized(heard).split()
    agent = set(normalized(agent_said).split())
    if not caller or not agent:
        return False
    return sum(w in agent for w in caller) / len(caller) >= ECHO_WORD_OVERLAP
