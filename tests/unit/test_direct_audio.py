"""The direct way in for caller audio: taken when the stream stalls, dropped once it caught up."""

from __future__ import annotations

from nats.aio.msg import Msg

from voxbus_stt.direct_audio import DirectAudio


class FakeSub:
    def __init__(self) -> None:
        self.unsubscribed = False

    async def unsubscribe(self, limit: int = 0) -> None:
        self.unsubscribed = True


class Subscriber:
    def __init__(self, fail: int = 0) -> None:
        self.subs: list[FakeSub] = []
        self.fail = fail  # this many tries fail first (no connection)

    async def __call__(self, handler: object) -> FakeSub:
        if self.fail:
            self.fail -= 1
            raise ConnectionError("disconnected")
        self.subs.append(FakeSub())
        return self.subs[-1]


async def handler(msg: Msg) -> None:
    raise AssertionError("frames are not delivered in these tests")


def direct(subscriber: Subscriber) -> DirectAudio:
    audio = DirectAudio(subscriber, handler, stall_s=0.3)
    audio.from_stream(1, now=100.0)
    return audio


async def test_a_flowing_stream_is_never_bypassed() -> None:
    subscriber = Subscriber()
    audio = direct(subscriber)
    audio.from_stream(2, now=100.2)
    await audio.check(100.4)
    assert not audio.active and subscriber.subs == []


async def test_a_silent_stream_is_bypassed_until_it_delivers_the_newest_frame() -> None:
    subscriber = Subscriber()
    audio = direct(subscriber)
    await audio.check(100.35)
    assert audio.active and len(subscriber.subs) == 1
    audio.from_direct(40)
    audio.from_stream(2, now=104.0)  # the elected stream delivers what it stored before
    assert audio.active
    audio.from_stream(40, now=104.1)  # and now a frame as new as the direct ones
    assert not audio.active
    assert audio._dropping is not None
    await audio._dropping
    assert subscriber.subs[0].unsubscribed
    await audio.check(104.2)  # flowing again: no second subscription
    assert len(subscriber.subs) == 1


async def test_a_failed_subscription_is_tried_again_at_the_next_check() -> None:
    subscriber = Subscriber(fail=1)
    audio = direct(subscriber)
    await audio.check(100.35)
    assert not audio.active
    await audio.check(100.5)
    assert audio.active and len(subscriber.subs) == 1


async def test_closing_drops_the_direct_subscription_and_takes_no_new_one() -> None:
    subscriber = Subscriber()
    audio = direct(subscriber)
    await audio.check(100.35)
    await audio.close()
    assert subscriber.subs[0].unsubscribed and not audio.active
    await audio.check(200.0)
    assert len(subscriber.subs) == 1


async def test_frames_waiting_to_be_read_are_not_a_stall() -> None:
    """A busy worker that has not read the stream's frames yet is behind, not cut off:
    subscribing directly (and asking the gateway for the gap) would only add work."""
    subscriber = Subscriber()
    backlog = [12]
    audio = DirectAudio(subscriber, handler, stall_s=0.3, backlog=lambda: backlog[0])
    audio.from_stream(1, now=100.0)
    await audio.check(101.0)
    assert not audio.active and subscriber.subs == []
    backlog[0] = 0  # read them all, and still nothing new: now the stream stalls
    await audio.check(101.1)
    assert audio.active and len(subscriber.subs) == 1
