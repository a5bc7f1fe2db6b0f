"""Turn-taking as one small state machine: who has the floor, and what to do when that
changes. Pure and synchronous: events in, actions out, no clock, no I/O, so every rule is
unit-tested in microseconds with fake events (tests/unit/test_turn_policy.py). The
conversation (conversation.py) feeds it the STT's and the player's events and carries out
the actions; the policy asks it only what it cannot know itself (`Senses`).

The rules (docs/conversation.md):
- onset over the agent: pause it (clear the carrier's buffer) unless it is the agent's own
  echo or the agent says something that may not be interrupted; a pause nobody confirms
  resumes after the confirm timer;
- words that are not a backchannel confirm the interruption; a backchannel, noise or echo
  resumes the agent where the caller stopped hearing it;
- a stable partial opens a preemptive answer (held silent); the final confirms it when its
  words agree; speech resuming in the pause, or a different final, drops it;
- a final heard over uninterruptible speech waits until that speech has played.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from voxbus_gateway.turn import Backchannels, has_words, normalized

# -- actions (what the conversation does) ----------------------------------------------------


@dataclass(frozen=True)
class PauseAgent:
    """Stop the agent's audio now and clear what the carrier buffered (a possible barge-in);
    `audible`: the caller was hearing it (a barge-in reaction to measure)."""

    utterance_id: int
    onset_offset_ms: int
    audible: bool


@dataclass(frozen=True)
class ResumeAgent:
    utterance_id: int
    reason: str


@dataclass(frozen=True)
class StartConfirmTimer:
    """Call `confirm_timeout(utterance_id)` after the barge-in confirm time."""

    utterance_id: int


@dataclass(frozen=True)
class Interrupted:
    """The caller really interrupted: record the barge-in, then cancel the agent's turn."""

    utterance_id: int


@dataclass(frozen=True)
class CancelAgent:
    reason: str


@dataclass(frozen=True)
class DropPreemptive:
    reason: str


@dataclass(frozen=True)
class EchoIgnored:
    utterance_id: int
    correlation: float


@dataclass(frozen=True)
class SkipUtterance:
    utterance_id: int
    reason: str
    text: str = ""


@dataclass(frozen=True)
class Answer:
    """Open the agent's answer to `text` as turn `turn_id` (preemptive: held silent until
    the final confirms it). `utterance_id` 0: not from speech (a keypad entry)."""

    turn_id: int
    text: str
    speech_end_ms: int
    preemptive: bool
    utterance_id: int = 0


@dataclass(frozen=True)
class RecordUserTurn:
    """The caller's words are final: record them as turn `turn_id` (`confirmed`: the
    preemptive answer already running is theirs)."""

    turn_id: int
    text: str
    utterance_id: int
    confirmed: bool


@dataclass(frozen=True)
class ConfirmPreemptive:
    turn_id: int
    speech_end_ms: int


@dataclass(frozen=True)
class WaitUntilInterruptible:
    """A final came in over speech that may not be interrupted: call `interruptible()` once
    the agent has played that part (or finished)."""


Action = (PauseAgent | ResumeAgent | StartConfirmTimer | Interrupted | CancelAgent
          | DropPreemptive | EchoIgnored | SkipUtterance | Answer | RecordUserTurn
          | ConfirmPreemptive | WaitUntilInterruptible)

# -- what the policy asks the conversation ---------------------------------------------------


class Senses(Protocol):
    def agent_audible(self) -> bool:
        """The caller has been sent some of the agent's current turn."""
        ...

    def agent_interruptible(self) -> bool:
        """What the agent is saying now may be interrupted (allow_interruptions)."""
        ...

    def echo_correlation(self, utterance_id: int, onset_offset_ms: int) -> float:
        """How much the caller's audio at this onset is the agent's own voice (echo.py)."""
        ...

    def is_echo(self, utterance_id: int, text: str) -> bool:
        """The utterance's words are the agent's own voice coming back."""
        ...

    def has_route(self, text: str) -> bool:
        """A routing rule answers these words (they wait for their final: no preemption)."""
        ...


ECHO_CORRELATION = 0.6  # (echo.py measures; at or above, an onset is the agent's echo)


@dataclass
class AgentFloor:
    """The agent's current turn as the policy sees it."""

    turn_id: int
    answers_caller: bool  # an answer to the caller (not a greeting, re-prompt or Say)
    preemptive: bool = False
    paused: bool = False
    stable_text: str = ""  # normalized words a preemptive answer was opened on


@dataclass
class PendingInterrupt:
    utterance_id: int
    confirmed_speech: bool = False  # SPEECH_START followed the onset


@dataclass
class Final:
    utterance_id: int
    text: str
    speech_end_ms: int


@dataclass
class TurnTaking:
    backchannels: Backchannels
    senses: Senses
    turn_counter: int = 0
    agent: AgentFloor | None = None
    interrupt: PendingInterrupt | None = None
    caller_speaking: bool = False
    muted: bool = False  # the agent listens but does not answer (control API)
    ending: bool = False
    finalized_utterance: int = 0
    deferred: list[Final] = field(default_factory=list)

    # -- the agent side ------------------------------------------------------------------

    def say(self) -> int | None:
        """The agent wants to speak unasked (greeting, re-prompt, Say): its turn id, or None
        while it already has the floor."""
        if self.agent is not None:
            return None
        self.turn_counter += 1
        self.agent = AgentFloor(self.turn_counter, answers_caller=False)
        return self.turn_counter

    def agent_done(self, turn_id: int) -> list[Action]:
        """The agent's turn played to its end (or was cancelled by the conversation)."""
        if self.agent is not None and self.agent.turn_id == turn_id:
            self.agent = None
            self.interrupt = None
        return self.interruptible()

    def interruptible(self) -> list[Action]:
        """Uninterruptible speech is over: finals heard over it are taken now."""
        waiting, self.deferred = self.deferred, []
        actions: list[Action] = []
        for final in waiting:
            actions += self._final(final)
        return actions

    def cancelled(self) -> None:
        """The conversation cancelled the agent's turn on its own (control API, hang-up)."""
        self.agent = None
        self.interrupt = None

    # -- the caller side -----------------------------------------------------------------

    def onset(self, uid: int, offset_ms: int) -> list[Action]:
        """First voiced audio of a new utterance (the barge-in trigger)."""
        if uid <= self.finalized_utterance:
            return []  # replayed by an STT replica that took the call over
        agent = self.agent
        if agent is not None and agent.preemptive:
            self.agent = None
            return [DropPreemptive("the caller went on speaking")]
        if agent is None or self.interrupt is not None or agent.paused:
            return []
        if not self.senses.agent_interruptible():
            return []  # heard out; the words are taken once it has played
        audible = self.senses.agent_audible()
        if audible:
            correlation = self.senses.echo_correlation(uid, offset_ms)
            if correlation >= ECHO_CORRELATION:
                return [EchoIgnored(uid, correlation)]
        agent.paused = True  # (also before it is audible: it does not start over the caller)
        self.interrupt = PendingInterrupt(uid)
        return [PauseAgent(uid, offset_ms, audible), StartConfirmTimer(uid)]

    def speech_start(self, uid: int, offset_ms: int) -> list[Action]:
        if uid <= self.finalized_utterance:
            return []
        self.caller_speaking = True
        if self.interrupt is not None and self.interrupt.utterance_id == uid:
            self.interrupt.confirmed_speech = True
            return []
        return self.onset(uid, offset_ms)

    def speech_end(self, uid: int) -> None:
        if uid > self.finalized_utterance:
            self.caller_speaking = False

    def speech_resumed(self, uid: int) -> list[Action]:
        """The caller went on after a pause inside the utterance: a preemptive answer to
        the words before the pause is void."""
        if uid <= self.finalized_utterance:
            return []
        self.caller_speaking = True
        if self.agent is not None and self.agent.preemptive:
            self.agent = None
            return [DropPreemptive("the caller went on after a pause")]
        return []

    def confirm_timeout(self, uid: int) -> list[Action]:
        pending = self.interrupt
        if pending is not None and pending.utterance_id == uid and not pending.confirmed_speech:
            return self._resume("no speech followed the onset")
        return []

    def partial(self, uid: int, text: str, stable: bool, speech_end_ms: int) -> list[Action]:
        if uid <= self.finalized_utterance:
            return []
        pending = self.interrupt
        if (pending is not None and pending.utterance_id == uid
                and not self.backchannels.matches(text) and not self.senses.is_echo(uid, text)):
            return self._interrupted()
        if not stable or pending is not None or self.ending:
            return []
        return self._preempt(uid, text, speech_end_ms)

    def final(self, uid: int, text: str, speech_end_ms: int) -> list[Action]:
        if uid <= self.finalized_utterance:
            return []  # a late or repeated final of an utterance already decided
        self.finalized_utterance = uid
        self.caller_speaking = False
        return self._final(Final(uid, text.strip(), speech_end_ms))

    def keypad(self, text: str) -> list[Action]:
        """A keypad entry is a user turn (no speech, nothing to confirm)."""
        return self._user_turn(Final(0, text, 0))

    # -- internals -----------------------------------------------------------------------

    def _final(self, t: Final) -> list[Action]:
        pending = self.interrupt
        interrupting = pending is not None and pending.utterance_id == t.utterance_id
        if self.senses.is_echo(t.utterance_id, t.text):
            actions = self._resume("the agent's own echo") if interrupting else []
            return [*actions, SkipUtterance(t.utterance_id, "echo of the agent", t.text)]
        agent = self.agent
        talking = agent is not None and not agent.preemptive and has_words(t.text)
        if self.backchannels.matches(t.text) and (interrupting or talking):
            why = "backchannel" if has_words(t.text) else "noise"
            actions = self._resume(why) if interrupting else []
            return [*actions, SkipUtterance(t.utterance_id, "backchannel", t.text)]
        if talking and not interrupting and not self.senses.agent_interruptible():
            self.deferred.append(t)  # heard over uninterruptible speech: after it
            return [WaitUntilInterruptible()] if len(self.deferred) == 1 else []
        actions = self._interrupted() if interrupting else []
        if not has_words(t.text):
            actions += self._drop_preemptive("no words recognised")
            return [*actions, SkipUtterance(t.utterance_id, "no words recognised")]
        return actions + self._user_turn(t)

    def _user_turn(self, t: Final) -> list[Action]:
        agent = self.agent
        confirmed = (agent is not None and agent.preemptive
                     and agent.stable_text == normalized(t.text))
        actions: list[Action] = []
        if not confirmed:
            actions += self._drop_preemptive("the final transcript differs")
            self.turn_counter += 1
        turn_id = self.turn_counter
        actions.append(RecordUserTurn(turn_id, t.text, t.utterance_id, confirmed))
        if self.ending or self.muted:
            return actions  # what the caller said is kept; nobody (or a muted agent) answers
        if confirmed and agent is not None:
            agent.preemptive = False
            agent.paused = False  # (held silent until now) it plays: a barge-in may pause it
            return [*actions, ConfirmPreemptive(turn_id, t.speech_end_ms)]
        if self.agent is not None:
            self.agent = None
            self.interrupt = None
            actions.append(CancelAgent("caller spoke again"))
        self.agent = AgentFloor(turn_id, answers_caller=True)
        return [*actions, Answer(turn_id, t.text, t.speech_end_ms, False, t.utterance_id)]

    def _preempt(self, uid: int, text: str, speech_end_ms: int) -> list[Action]:
        if (not has_words(text) or self.backchannels.matches(text) or self.muted
                or self.senses.has_route(text)):
            return []
        if self.agent is not None and not self.agent.preemptive:
            return []  # the agent's current turn is handled by the barge-in rules
        actions = self._drop_preemptive("a newer stable partial")
        self.turn_counter += 1
        self.agent = AgentFloor(self.turn_counter, answers_caller=True, preemptive=True,
                                paused=True, stable_text=normalized(text))
        return [*actions, Answer(self.turn_counter, text.strip(), speech_end_ms, True, uid)]

    def _drop_preemptive(self, why: str) -> list[Action]:
        if self.agent is None or not self.agent.preemptive:
            return []
        self.agent = None
        return [DropPreemptive(why)]

    def _resume(self, why: str) -> list[Action]:
        pending, self.interrupt = self.interrupt, None
        if pending is None or self.agent is None:
            return []
        self.agent.paused = False
        return [ResumeAgent(pending.utterance_id, why)]

    def _interrupted(self) -> list[Action]:
        pending, self.interrupt = self.interrupt, None
        if pending is None or self.agent is None:
            return []
        self.agent = None
        return [Interrupted(pending.utterance_id), CancelAgent("caller barged in")]

    @property
    def busy(self) -> bool:
        """Somebody has the floor (the idle timer waits)."""
        agent_talking = self.agent is not None and self.agent.answers_caller
        return agent_talking or self.caller_speaking or self.interrupt is not None
