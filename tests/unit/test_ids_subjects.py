import pytest

from voxbus_common import subjects
from voxbus_common.ids import InvalidCallId, new_call_id, validate_call_id


@pytest.mark.parametrize("good", ["abc", "CA123_x-9", "a" * 64, new_call_id()])
def test_valid_call_ids(good: str) -> None:
    assert validate_call_id(good) == good


@pytest.mark.parametrize("bad", ["", "a.b", "a*", ">", "with space", "a" * 65, "é", "a\n"])
def test_invalid_call_ids_are_refused_with_reason(bad: str) -> None:
    with pytest.raises(InvalidCallId, match="one NATS subject token"):
        validate_call_id(bad)


def test_subjects_put_the_call_id_in_one_token() -> None:
    assert subjects.audio_in("c1") == "vb.call.c1.in.audio"
    assert subjects.call_id_of(subjects.transcript("c1")) == "c1"
    assert subjects.call_id_of(subjects.work_tts("c2")) == "c2"
    with pytest.raises(InvalidCallId):
        subjects.llm_out("x.y")


def test_streams_do_not_overlap() -> None:
    specs = subjects.stream_specs(30, 3600)
    seen: set[str] = set()
    for spec in specs:
        for subject in spec.subjects:
            assert subject not in seen
            seen.add(subject)
    audio = next(s for s in specs if s.name == "VB_AUDIO")
    assert audio.max_age_s == 30
    assert subjects.CONTROL_ALL in next(s for s in specs if s.name == "VB_EVENTS").subjects


def test_stream_limits_are_consistent_and_the_raw_live_path_is_short_lived() -> None:
    specs = {s.name: s for s in subjects.stream_specs(30.0, 3600.0, 60.0)}
    for spec in specs.values():  # JetStream refuses a duplicates window beyond max age
        assert not spec.max_age_s or spec.duplicate_window_s <= spec.max_age_s, spec.name
    assert specs["VB_EVENTS"].subjects == [subjects.CONTROL_ALL]  # redacted call events only
    live = specs["VB_LIVE"]
    assert live.max_age_s == 60.0 and live.storage.value == "memory"
    assert subjects.transcript("c1") in [s.replace("*", "c1") for s in live.subjects]
    names = [s.name for s in subjects.stream_specs(30.0, 3600.0)]
    assert names.index("VB_EVENTS") < names.index("VB_LIVE")  # upgrades move subjects first
