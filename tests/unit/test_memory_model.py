from voxbus.v1.call_pb2 import CallEvent
from voxbus.v1.memory_pb2 import Session
from voxbus.v1.meta_pb2 import Meta
from voxbus_memory.recorder import apply_event, context_messages


def ev(turn: int, **kind: object) -> CallEvent:
    return CallEvent(meta=Meta(call_id="c", turn_id=turn, sent_unix_ns=turn + 1), **kind)  # type: ignore[arg-type]


def test_turns_are_ordered_and_idempotent() -> None:
    s = Session(call_id="c")
    agent = CallEvent.AgentTurn(heard_text="Hi there.", full_text="Hi there. Bye.",
                                interrupted=True)
    assert apply_event(s, ev(1, agent_turn=agent))
    assert apply_event(s, ev(1, user_turn=CallEvent.UserTurn(text="hello")))
    assert not apply_event(s, ev(1, user_turn=CallEvent.UserTurn(text="hello")))
    assert [(t.turn_id, t.role, t.text) for t in s.turns] == [
        (1, "user", "hello"), (1, "assistant", "Hi there.")]
    assert s.turns[1].interrupted


def test_lifecycle_is_recorded_once() -> None:
    s = Session(call_id="c")
    assert apply_event(s, ev(0, started=CallEvent.Started(edge="pcm-ws")))
    assert not apply_event(s, ev(0, started=CallEvent.Started(edge="other")))
    assert apply_event(s, ev(2, ended=CallEvent.Ended(reason="caller hung up")))
    assert s.edge == "pcm-ws" and s.ended_reason == "caller hung up"


def test_context_is_what_came_before_the_turn() -> None:
    s = Session(call_id="c")
    for turn in (1, 2, 3):
        apply_event(s, ev(turn, user_turn=CallEvent.UserTurn(text=f"u{turn}")))
        apply_event(s, ev(turn, agent_turn=CallEvent.AgentTurn(heard_text=f"a{turn}")))
    msgs = context_messages(s, before_turn=3, limit=3)
    assert [(m.role, m.content) for m in msgs] == [
        ("assistant", "a1"), ("user", "u2"), ("assistant", "a2")]
    assert context_messages(None, 5, 10) == []
