"""STT's detectors are reused from call to call (a Silero detector holds ~9 MB of native
memory that an ended session's cycle kept until Python's collector came by)."""

from __future__ import annotations

from voxbus_stt.endpointer import Endpointer, EndpointerConfig
from voxbus_stt.vad_pool import VadPool


class CountingVad:
    sample_rate = 16000
    frame_samples = 512

    def __init__(self) -> None:
        self.resets = 0
        self.fail_reset = False

    def speech_probability(self, frame: bytes) -> float:
        return 1.0

    def reset(self) -> None:
        if self.fail_reset:
            raise RuntimeError("broken")
        self.resets += 1


def test_a_detector_given_back_is_reset_and_handed_to_the_next_call() -> None:
    pool = VadPool(CountingVad)
    first = pool.take()
    pool.give_back(first)
    assert pool.take() is first and isinstance(first, CountingVad) and first.resets == 1
    assert pool.made == 1


def test_detectors_follow_the_calls_held_at_once_not_the_calls_served() -> None:
    pool = VadPool(CountingVad)
    for _ in range(100):
        held = [pool.take() for _ in range(3)]
        for vad in held:
            pool.give_back(vad)
    assert pool.made == 3 and pool.free == 3


def test_a_detector_that_cannot_reset_is_not_handed_on() -> None:
    pool = VadPool(CountingVad)
    vad = pool.take()
    assert isinstance(vad, CountingVad)
    vad.fail_reset = True
    pool.give_back(vad)
    assert pool.free == 0 and pool.take() is not vad


def test_an_endpointer_that_gave_its_detector_back_hears_silence() -> None:
    vad = CountingVad()
    endpointer = Endpointer(vad, EndpointerConfig())
    assert endpointer.release_vad() is vad
    assert endpointer.vad is not vad
    assert endpointer.push(b"\x10\x00" * 16000) == []  # a second of "speech", not heard
