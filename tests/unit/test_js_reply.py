"""The cheap stream-sequence read agrees with nats-py's own metadata parser."""

from __future__ import annotations

import pytest
from nats.aio.msg import Msg

from voxbus_common.js_reply import stream_sequence

V1 = "$JS.ACK.VB_AUDIO.abc123.1.4711.17.1733580000000000000.0"
V2 = "$JS.ACK.hub.ACCHASH.VB_AUDIO.abc123.2.90210.33.1733580000000000000.5.rnd"
V2_NO_TOKEN = "$JS.ACK._.ACCHASH.VB_AUDIO.abc123.1.77.3.1733580000000000000.0"


@pytest.mark.parametrize("reply", [V1, V2, V2_NO_TOKEN])
def test_matches_nats_py(reply: str) -> None:
    expected = Msg.Metadata._from_reply(reply).sequence.stream
    assert stream_sequence(reply) == expected
    assert expected > 0


@pytest.mark.parametrize("reply", [None, "", "_INBOX.abc.def", "$JS.ACK.too.short",
                                   "$JS.ACK.S.C.1.notanumber.1.2.0"])
def test_not_a_jetstream_delivery_is_zero(reply: str | None) -> None:
    assert stream_sequence(reply) == 0
