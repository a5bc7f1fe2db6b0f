"""The turn-taking policy (services/gateway/voxbus_gateway/policy.py), driven by fake events
with fake senses: every rule in microseconds, no services, no clock."""

from __future__ import annotations

from dataclasses import dataclass, field

from voxbus_gateway.policy import (
    Action,
    Answer,
    CancelAgent,
    ConfirmPreemptive,
    DropPreemptive,
    EchoIgnored,
    Interrupted,
    PauseAgent,
    RecordUserTurn,
    ResumeAgent,
    SkipUtterance,
    StartConfirmTimer,
    TurnTaking,
    WaitUntilInterruptible,
)
from voxbus_gateway.turn import Backchannels

BACKCHANNELS = "mhm,okay,yeah,uh huh,right"


@dataclass
class FakeSenses:
    audible: bool = True
    interruptible: bool = True
    correlation: float = 0.1
    echo_texts: set[str] = field(default_factory=set)
    routed: set[str] = field(default_factory=set)

    def agent_audible(self) -> bool:
        return self.audible

    def agent_interruptible(self) -> bool:
        return self.interruptible

    def echo_correlation(self, utterance_id: int, onset_offset_ms: int) -> float:
        return self.correlation

    def is_echo(self, utterance_id: int, text: str) -> bool:
        return text in self.echo_texts

    def has_route(self, text: str) -> bool:
        return text in self.routed


def policy(**senses: object) -> tuple[TurnTaking, FakeSenses]:
    fake = FakeSenses(**senses)  # type: ignore[arg-type]
    return TurnTaking(Backchannels(BACKCHANNELS), fake), fake


def kinds(actions: list[Action]) -> list[type]:
    return [type(a) for a in actions]


def answering(p: TurnTaking, text: str = "what time do you open", uid: int = 1) -> int:
    """The caller said `text`; the agent's answer is playing. Returns its turn id."""
    p.speech_start(uid, 0)
    actions = p.final(uid, text, 1000)
    answer = next(a for a in actions if isinstance(a, Answer))
    return answer.turn_id


# -- answering -------------------------------------------------------------------------------


def test_a_final_is_recorded_and_answered() -> None:
    p, _ = policy()
    p.speech_start(1, 0)
    actions = p.final(1, " a table for two tonight ", 1800)
    assert kinds(actions) == [RecordUserTurn, Answer]
    record, answer = actions
    assert isinstance(record, RecordUserTurn) and record.text == "a table for two tonight"
    assert isinstance(answer, Answer) and not answer.preemptive and answer.speech_end_ms == 1800
    assert p.agent is not None and p.agent.answers_caller and p.busy


def test_a_stable_partial_is_answered_preemptively_and_confirmed_by_the_same_final() -> None:
    p, _ = policy()
    p.speech_start(1, 0)
    opened = p.partial(1, "A table for two, please.", stable=True, speech_end_ms=900)
    assert kinds(opened) == [Answer] and isinstance(opened[0], Answer) and opened[0].preemptive
    actions = p.final(1, "a table for two please", 900)
    assert kinds(actions) == [RecordUserTurn, ConfirmPreemptive]
    assert isinstance(actions[0], RecordUserTurn) and actions[0].confirmed
    assert isinstance(actions[1], ConfirmPreemptive)
    assert actions[1].turn_id == opened[0].turn_id  # the same turn plays: no second request
    # now audible, it can be interrupted like any answer
    assert kinds(p.onset(2, 2500)) == [PauseAgent, StartConfirmTimer]


def test_a_different_final_replaces_the_preemptive_answer() -> None:
    p, _ = policy()
    p.partial(1, "a table for two", stable=True, speech_end_ms=900)
    actions = p.final(1, "a table for two tomorrow", 1900)
    assert kinds(actions) == [DropPreemptive, RecordUserTurn, Answer]


def test_speech_resuming_in_the_pause_drops_the_preemptive_answer() -> None:
    """The end-of-turn model held the turn ("four one five ..."), the caller went on."""
    p, _ = policy()
    p.speech_start(1, 0)
    p.partial(1, "my number is four one five", stable=True, speech_end_ms=1500)
    assert kinds(p.speech_resumed(1)) == [DropPreemptive]
    assert p.agent is None and p.caller_speaking
    # the final, later, is answered afresh
    assert kinds(p.final(1, "my number is four one five five five five", 4000)) == [
        RecordUserTurn, Answer]


def test_a_new_onset_drops_the_preemptive_answer() -> None:
    p, _ = policy()
    p.partial(1, "hello there", stable=True, speech_end_ms=900)
    assert kinds(p.onset(2, 1500)) == [DropPreemptive]


def test_backchannels_routes_and_muting_are_not_preempted() -> None:
    p, _ = policy(routed={"opening hours"})
    assert p.partial(1, "mhm", stable=True, speech_end_ms=500) == []
    assert p.partial(1, "opening hours", stable=True, speech_end_ms=500) == []
    p.muted = True
    assert p.partial(1, "hello there", stable=True, speech_end_ms=500) == []


def test_a_muted_agent_records_but_does_not_answer() -> None:
    p, _ = policy()
    p.muted = True
    assert kinds(p.final(1, "hello there", 900)) == [RecordUserTurn]
    assert p.agent is None


def test_replayed_and_repeated_events_of_a_decided_utterance_are_ignored() -> None:
    p, _ = policy()
    answering(p, uid=3)
    assert p.final(3, "again", 100) == []
    assert p.partial(2, "older words", stable=True, speech_end_ms=50) == []
    assert p.onset(3, 0) == [] and p.speech_resumed(2) == []


# -- barge-in --------------------------------------------------------------------------------


def test_an_onset_over_the_agent_pauses_it_then_words_interrupt() -> None:
    p, _ = policy()
    turn = answering(p)
    actions = p.onset(2, 3000)
    assert kinds(actions) == [PauseAgent, StartConfirmTimer]
    assert isinstance(actions[0], PauseAgent) and actions[0].audible
    assert p.speech_start(2, 3000) == []  # confirms speech, not yet the interruption
    actions = p.partial(2, "no wait I meant Friday", stable=False, speech_end_ms=0)
    assert kinds(actions) == [Interrupted, CancelAgent]
    assert p.agent is None
    final = p.final(2, "no wait I meant Friday", 4200)
    assert kinds(final) == [RecordUserTurn, Answer]
    assert isinstance(final[1], Answer) and final[1].turn_id == turn + 1


def test_an_onset_nobody_confirms_resumes_the_agent() -> None:
    p, _ = policy()
    answering(p)
    p.onset(2, 3000)
    assert kinds(p.confirm_timeout(2)) == [ResumeAgent]
    assert p.agent is not None and not p.agent.paused and p.interrupt is None


def test_confirmed_speech_outlives_the_timer() -> None:
    p, _ = policy()
    answering(p)
    p.onset(2, 3000)
    p.speech_start(2, 3000)
    assert p.confirm_timeout(2) == []  # the words will decide


def test_a_backchannel_over_the_agent_resumes_it_and_is_no_turn() -> None:
    p, _ = policy()
    answering(p)
    p.onset(2, 3000)
    p.speech_start(2, 3000)
    assert p.partial(2, "mhm", stable=False, speech_end_ms=0) == []
    actions = p.final(2, "Mhm.", 3400)
    assert kinds(actions) == [ResumeAgent, SkipUtterance]
    assert isinstance(actions[1], SkipUtterance) and actions[1].reason == "backchannel"
    assert p.agent is not None


def test_a_late_backchannel_final_never_cuts_the_agent_off() -> None:
    p, _ = policy()
    answering(p)
    p.onset(2, 3000)
    p.confirm_timeout(2)  # resumed already: a loaded STT was late
    assert kinds(p.final(2, "okay", 3400)) == [SkipUtterance]
    assert p.agent is not None


def test_the_agents_echo_is_ignored() -> None:
    p, senses = policy(correlation=0.9)
    answering(p)
    actions = p.onset(2, 3000)
    assert kinds(actions) == [EchoIgnored]
    assert p.agent is not None and not p.agent.paused
    senses.echo_texts.add("we open at noon")
    assert kinds(p.final(2, "we open at noon", 3400)) == [SkipUtterance]


def test_echo_words_resume_a_paused_agent() -> None:
    p, senses = policy(correlation=0.55)
    answering(p)
    p.onset(2, 3000)
    senses.echo_texts.add("we open at noon")
    assert kinds(p.final(2, "we open at noon", 3400)) == [ResumeAgent, SkipUtterance]


def test_noise_over_the_agent_resumes_it() -> None:
    p, _ = policy()
    answering(p)
    p.onset(2, 3000)
    actions = p.final(2, "", 3100)
    assert kinds(actions) == [ResumeAgent, SkipUtterance]
    assert isinstance(actions[0], ResumeAgent) and actions[0].reason == "noise"


def test_an_answer_not_yet_audible_waits_for_the_caller() -> None:
    """The caller speaks again before the answer's first audio: it does not start over them."""
    p, _ = policy(audible=False)
    answering(p)
    actions = p.onset(2, 3000)
    assert kinds(actions) == [PauseAgent, StartConfirmTimer]
    assert isinstance(actions[0], PauseAgent) and not actions[0].audible


# -- greeting and uninterruptible speech -------------------------------------------------------


def test_the_greeting_is_interrupted_like_any_turn() -> None:
    p, _ = policy()
    greeting = p.say()
    assert greeting == 1 and p.say() is None  # one agent turn at a time
    assert not p.busy  # a greeting is not conversation: the idle timer runs
    assert kinds(p.onset(1, 500)) == [PauseAgent, StartConfirmTimer]
    p.speech_start(1, 500)
    assert kinds(p.partial(1, "hi I'd like a table", stable=False, speech_end_ms=0)) == [
        Interrupted, CancelAgent]


def test_uninterruptible_speech_is_heard_out_and_the_words_answered_after_it() -> None:
    p, senses = policy(interruptible=False)
    greeting = p.say()
    assert greeting is not None
    assert p.onset(1, 500) == []
    p.speech_start(1, 500)
    assert p.partial(1, "a table for two", stable=True, speech_end_ms=1500) == []
    assert kinds(p.final(1, "a table for two", 1500)) == [WaitUntilInterruptible]
    senses.interruptible = True
    actions = p.agent_done(greeting)
    assert kinds(actions) == [RecordUserTurn, Answer]


def test_words_held_over_an_uninterruptible_filler_cut_the_rest_once_it_played() -> None:
    p, senses = policy()
    answering(p)
    senses.interruptible = False  # the filler clause is playing
    assert p.onset(2, 3000) == []
    assert kinds(p.final(2, "actually make it three people", 4000)) == [
        WaitUntilInterruptible]
    senses.interruptible = True
    assert kinds(p.interruptible()) == [RecordUserTurn, CancelAgent, Answer]


# -- keypad, idle, cancellation -------------------------------------------------------------------


def test_a_keypad_entry_is_a_turn() -> None:
    p, _ = policy()
    actions = p.keypad("(the caller pressed 1 on the keypad)")
    assert kinds(actions) == [RecordUserTurn, Answer]
    assert isinstance(actions[1], Answer) and actions[1].utterance_id == 0


def test_busy_while_someone_has_the_floor() -> None:
    p, _ = policy()
    assert not p.busy
    p.speech_start(1, 0)
    assert p.busy
    p.speech_end(1)
    assert not p.busy
    turn = answering(p, uid=2)
    assert p.busy
    p.agent_done(turn)
    assert not p.busy


def test_a_cancelled_turn_frees_the_floor() -> None:
    p, _ = policy()
    answering(p)
    p.onset(2, 3000)
    p.cancelled()
    assert p.agent is None and p.interrupt is None and p.say() is not None


def test_an_ending_call_records_the_words_without_answering() -> None:
    p, _ = policy()
    p.ending = True
    assert kinds(p.final(1, "bye then", 500)) == [RecordUserTurn]
    assert p.partial(2, "and one more thing", stable=True, speech_end_ms=900) == []
