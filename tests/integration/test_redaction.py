"""Privacy by default: what the real memory service stores has card numbers, e-mails and
phone numbers replaced, and none of them reach its log."""

from __future__ import annotations

import time

import nats

from tests.integration.conftest import wait_for_session
from voxbus.v1.call_pb2 import CallEvent
from voxbus.v1.meta_pb2 import Meta
from voxbus_cli.stack import Stack
from voxbus_common import subjects

CALL = "redact-0001"
SAID = "my card is 4111 1111 1111 1111 and my email is jane.doe@example.com"
HEARD = "Thanks, I will call you back at 415-555-0132."


async def test_stored_turns_are_redacted(stack: Stack) -> None:
    nc = await nats.connect(stack.nats_url)
    js = nc.jetstream()
    try:
        for seq, kind in enumerate(("user_turn", "agent_turn"), start=1):
            event = CallEvent(meta=Meta(call_id=CALL, turn_id=1, seq=seq,
                                        sent_unix_ns=time.time_ns()))
            if kind == "user_turn":
                event.user_turn.text = SAID
            else:
                event.agent_turn.heard_text = HEARD
                event.agent_turn.full_text = HEARD
            await js.publish(subjects.control(CALL), event.SerializeToString())
    finally:
        await nc.close()
    session = await wait_for_session(stack, CALL, lambda s: len(s.turns) == 2)
    texts = {t.role: t.text for t in session.turns}
    assert texts["user"] == "my card is [card] and my email is [email]"
    assert texts["assistant"] == "Thanks, I will call you back at [phone]."
    assert stack.log_dir is not None
    log = (stack.log_dir / "memory.log").read_text(errors="replace")
    for secret in ("4111 1111", "jane.doe@example.com", "415-555-0132"):
        assert secret not in log
