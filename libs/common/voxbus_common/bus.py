"""The bus: a thin, typed layer over nats-py that every service uses.

Design facts (measured here, see docs/architecture.md): an awaited JetStream ack per 20 ms
audio frame caps one process near 200 calls, while a core publish into a stream-captured
subject goes two orders of magnitude further. So the hot audio path uses core publishes
(the stream still captures every frame for replay), and acknowledged publishes are kept
for low-rate work items where losing one would lose a turn.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
import uuid
from collections.abc import Awaitable, Callable

import nats
from google.protobuf.message import Message
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy, StreamConfig
from nats.js.errors import (
    BadRequestError,
    KeyDeletedError,
    KeyNotFoundError,
    KeyWrongLastSequenceError,
    NoStreamResponseError,
    ServiceUnavailableError,
)
from nats.js.kv import KeyValue

from voxbus.v1.meta_pb2 import Meta
from voxbus_common.codec import BadMessage as BadMessage  # (re-exported: services' import)
from voxbus_common.codec import decode as decode
from voxbus_common.config import CoreSettings
from voxbus_common.nats_connect import connect_options, server_list
from voxbus_common.nats_permissions import may_update_streams
from voxbus_common.pull_worker import serve_work_queue
from voxbus_common.subjects import (
    CALLERS_BUCKET,
    CALLS_BUCKET,
    SESSIONS_BUCKET,
    STT_BUCKET,
    StreamSpec,
    direct_work,
    stream_specs,
    work_pool,
    work_taken,
)
from voxbus_common.take_watch import TakeWatch
from voxbus_common.telemetry import inject_headers

log = logging.getLogger(__name__)

ORDERED_HEARTBEAT_S = 2.0
ACKED_RETRY_S = 12.0  # longer than a stream leader election after losing a node (4-9 s)
# what a stream without a leader (an election, no quorum) answers an acknowledged publish
RETRIED = (NoRespondersError, NatsTimeoutError, TimeoutError, NoStreamResponseError,
           ServiceUnavailableError)
# a work item whose stream has not acknowledged it by then goes to a replica directly: an
# election takes 4-9 s, and a stored item the queue cannot deliver waits all of it
DIRECT_AFTER_S = 0.25


def now_ns() -> int:
    return time.time_ns()


async def _holds(kv: KeyValue, key: str, value: bytes) -> bool:
    try:
        return (await kv.get(key)).value == value
    except (KeyNotFoundError, KeyDeletedError):
        return False


class Bus:
    """One NATS connection with JetStream, KV and a per-subject sequence counter."""

    def __init__(self, nc: Client, settings: CoreSettings, name: str,
                 reconnect_hooks: list[Callable[[], Awaitable[None]]] | None = None) -> None:
        self.nc = nc
        self.reconnect_hooks = reconnect_hooks if reconnect_hooks is not None else []
        self.js: JetStreamContext = nc.jetstream()
        self.settings = settings
        self.name = name
        self.service = name.split("-", 1)[0]
        self._seq: dict[str, itertools.count[int]] = {}
        # bucket handles, looked up once (a lookup is a JetStream request, which waits out a
        # leader election); dropped on reconnect, when a restarted server may have lost them
        self._kvs: dict[str, KeyValue] = {}
        self._storing: set[asyncio.Task[None]] = set()  # work items sent straight on
        self._takes = TakeWatch(self)  # stored work items no replica took yet
        self.reconnect_hooks.append(self._forget_buckets)

    @classmethod
    async def connect(cls, settings: CoreSettings, name: str) -> Bus:
        """Connect with unbounded reconnects (a NATS restart must not kill a service)."""

        async def on_error(exc: Exception) -> None:
            log.warning("nats error: %s", exc)

        async def on_disconnect() -> None:
            log.warning("nats disconnected")

        hooks: list[Callable[[], Awaitable[None]]] = []

        async def on_reconnect() -> None:
            log.info("nats reconnected")
            for hook in hooks:  # e.g. streams a NATS restart lost (memory storage) come back
                try:
                    await hook()
                except Exception:
                    log.exception("after-reconnect step failed")

        nc = await nats.connect(
            server_list(settings.nats_url),  # a cluster: every node (it also learns others)
            name=name,
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.5,
            connect_timeout=5,
            error_cb=on_error,
            disconnected_cb=on_disconnect,
            reconnected_cb=on_reconnect,
            **connect_options(settings),  # credentials, TLS, inbox prefix (docs/security.md)
        )
        return cls(nc, settings, name, hooks)

    # -- contract ---------------------------------------------------------------------------

    def after_reconnect(self, hook: Callable[[], Awaitable[None]]) -> None:
        """Run `hook` each time the connection comes back (it runs in the callback: keep it
        short and bounded)."""
        self.reconnect_hooks.append(hook)

    async def ensure_streams(self) -> None:
        """Create or update every stream of the contract (idempotent, safe to race)."""
        for spec in stream_specs(self.settings.audio_max_age_s, self.settings.events_max_age_s,
                                 self.settings.live_max_age_s):
            await self._ensure_stream(spec)

    async def _ensure_stream(self, spec: StreamSpec) -> None:
        config = StreamConfig(
            name=spec.name,
            subjects=spec.subjects,
            retention=spec.retention,
            storage=spec.storage,
            max_age=spec.max_age_s or None,
            max_bytes=spec.max_bytes,
            duplicate_window=spec.duplicate_window_s,
            description=spec.description,
            num_replicas=self.settings.nats_replicas,
        )
        try:
            await self.js.add_stream(config)
        except BadRequestError as exc:
            if not may_update_streams(self.settings.nats_user):  # a stream manager updates it
                log.warning("stream %s differs from this service's contract, left as it is: %s",
                            spec.name, exc.description)
                return
            await self.js.update_stream(config)

    async def sessions_kv(self) -> KeyValue:
        """The KV bucket that holds each call's conversation."""
        return await self._kv(SESSIONS_BUCKET, self.settings.session_ttl_s, direct=True)

    async def callers_kv(self) -> KeyValue:
        """The KV bucket of long-term memory per caller; the TTL restarts at each call."""
        return await self._kv(CALLERS_BUCKET, self.settings.caller_ttl_s, direct=True)

    async def stt_kv(self) -> KeyValue:
        """STT replica heartbeats and per-call recognition checkpoints (failover)."""
        return await self._kv(STT_BUCKET, 600.0)

    async def calls_kv(self) -> KeyValue:
        """Which gateway owns each live call id (claimed with create: one owner)."""
        return await self._kv(CALLS_BUCKET, self.settings.max_call_seconds + 600.0)

    async def _kv(self, bucket: str, ttl_s: float, *, direct: bool = False) -> KeyValue:
        """The bucket, made if missing; its reads go to the bucket's leader (current)."""
        if (kv := self._kvs.get(bucket)) is not None:
            return kv
        try:
            await self.js.key_value(bucket)
        except Exception:
            from nats.js.api import KeyValueConfig

            await self.js.create_key_value(
                KeyValueConfig(bucket=bucket, ttl=ttl_s, history=1, direct=direct,
                               replicas=self.settings.nats_replicas))
        kv = self._kvs[bucket] = self._bucket_view(bucket, direct=False)
        return kv

    def _bucket_view(self, bucket: str, *, direct: bool) -> KeyValue:
        """A handle on the bucket whose gets go to its leader, or to any replica (`direct`)."""
        return KeyValue(name=bucket, stream=f"KV_{bucket}", pre=f"$KV.{bucket}.", js=self.js,
                        direct=direct)

    async def direct_reads(self, kv: KeyValue) -> KeyValue:
        """A view of the bucket whose reads any of its replicas answers (`allow_direct`):
        the local node, and also while the bucket elects a leader after a node is lost.
        Such a read may lag the leader by milliseconds: for reads that only inform (the
        turn's context), never before a revision-checked change. A bucket made before
        this existed is updated when this role may; else its reads stay with the leader."""
        stream = f"KV_{kv._name}"
        for attempt in range(10):  # (a bucket just made by another replica may not answer)
            try:
                info = await self.js.stream_info(stream)
                break
            except Exception as exc:
                log.warning("reading bucket %s failed (%s): %s", kv._name, exc or
                            type(exc).__name__, "retrying" if attempt < 9 else
                            "its reads stay with its leader")
                await asyncio.sleep(0.5)
        else:
            return kv
        if not info.config.allow_direct and may_update_streams(self.settings.nats_user):
            info.config.allow_direct = True
            try:
                info = await self.js.update_stream(info.config)
            except Exception as exc:  # (an auth setup that denies it)
                log.warning("bucket %s not updated for direct gets: %s", kv._name, exc)
                info.config.allow_direct = False
        if not info.config.allow_direct:
            log.warning("bucket %s reads only through its leader (made without direct gets)",
                        kv._name)
            return kv
        return self._bucket_view(kv._name, direct=True)

    async def _forget_buckets(self) -> None:
        self._kvs.clear()

    # -- publishing ---------------------------------------------------------------------------

    def meta(self, call_id: str, turn_id: int, subject: str) -> Meta:
        """A Meta with the next sequence number for this publisher and subject."""
        counter = self._seq.get(subject)
        if counter is None:
            counter = self._seq[subject] = itertools.count(1)
        return Meta(call_id=call_id, turn_id=turn_id, seq=next(counter), sent_unix_ns=now_ns())

    def forget_subjects(self, call_id: str) -> None:
        """Drop sequence counters of an ended call (bounded memory)."""
        for key in [k for k in self._seq if f".{call_id}." in k or k.endswith(f".{call_id}")]:
            del self._seq[key]

    async def publish(self, subject: str, msg: Message, *, traced: bool = True) -> None:
        """Core publish (fire and forget; still captured by the subject's stream)."""
        headers = inject_headers() if traced else None
        await self.nc.publish(subject, msg.SerializeToString(), headers=headers)

    async def publish_raw(self, subject: str, data: bytes, headers: dict[str, str]) -> None:
        await self.nc.publish(subject, data, headers=headers)

    async def publish_acked(self, subject: str, msg: Message, *, msg_id: str | None = None,
                            retry_s: float = ACKED_RETRY_S, direct: bool = False) -> None:
        """JetStream publish that waits for the stream's ack (for work that must not be lost).

        A clustered stream has no leader for a few seconds after its leader dies (an
        election): publishes then get no responder or no ack. They are retried for up to
        `retry_s` under one message id, so the stream stores the item once however many
        tries reach it (its duplicate window). A `direct` work item not acknowledged within
        DIRECT_AFTER_S goes at once to any replica on its direct subject (direct_work.py),
        and the retries go on in the background: the replica that takes it tells its pool,
        and the queue's copy is acknowledged unworked. A `direct` item stored but taken by
        no replica soon goes there too (take_watch.py: its consumer may be electing)."""
        headers = inject_headers()
        key = headers["Nats-Msg-Id"] = msg_id or uuid.uuid4().hex
        data = msg.SerializeToString()
        if not direct:
            await self._publish_until_stored(subject, data, headers, time.monotonic() + retry_s)
            return
        direct_subject = direct_work(subject)
        await self._takes.expect(work_taken(work_pool(subject)), key, direct_subject, data,
                                 headers)
        try:
            stored = await self._publish_until_stored(subject, data, headers,
                                                      time.monotonic() + retry_s, direct_subject)
        except BaseException:
            self._takes.cancel(key)
            raise
        if not stored:  # sent directly already
            self._takes.cancel(key)

    async def _publish_until_stored(self, subject: str, data: bytes, headers: dict[str, str],
                                    deadline: float, direct: str = "") -> bool:
        """The retry loop of `publish_acked`; raises what the last try got after `deadline`.
        True once stored, False when sent on `direct` (and stored in the background)."""
        while True:
            try:
                await self.js.publish(subject, data, headers=headers,
                                      timeout=DIRECT_AFTER_S if direct else 2.0)
                return True
            except RETRIED as exc:
                if time.monotonic() >= deadline:
                    raise
                log.warning("publish to %s not acknowledged (%s): %s", subject,
                            type(exc).__name__, "sent directly" if direct else "retrying")
                if direct:
                    await self.nc.publish(direct, data, headers=headers)
                    task = asyncio.create_task(self._store_later(subject, data, headers,
                                                                 deadline))
                    self._storing.add(task)
                    task.add_done_callback(self._storing.discard)
                    return False
                await asyncio.sleep(0.25)

    async def _store_later(self, subject: str, data: bytes, headers: dict[str, str],
                           deadline: float) -> None:
        """The stream's copy of an item sent straight on: worked from the queue if no replica
        took it directly, acknowledged unworked if one did (direct_work.py)."""
        await asyncio.sleep(0.25)
        try:
            await self._publish_until_stored(subject, data, headers, deadline)
        except Exception as exc:
            log.error("a work item sent straight to a replica was never stored (%s: %s): it "
                      "has no second chance", type(exc).__name__, exc)

    async def create_key(self, kv: KeyValue, key: str, value: bytes, *,
                         retry_s: float = ACKED_RETRY_S) -> None:
        """`kv.create` that outlasts a bucket's leader election, retried like
        `publish_acked`. A try that was stored but whose answer was lost makes the next try
        find the key: holding our own value, that is our create, not someone else's key.
        Raises KeyWrongLastSequenceError when the key is someone else's."""
        deadline = time.monotonic() + retry_s
        retried = False
        while True:
            try:
                await kv.create(key, value)
                return
            except KeyWrongLastSequenceError:
                if retried and await _holds(kv, key, value):
                    return
                raise
            except RETRIED as exc:
                if time.monotonic() >= deadline:
                    raise
                retried = True
                log.warning("create of %s not acknowledged (%s): retrying", key,
                            type(exc).__name__)
                await asyncio.sleep(0.25)

    # -- consuming ----------------------------------------------------------------------------

    async def subscribe(self, subject: str, handler: Callable[[Msg], Awaitable[None]],
                        queue: str = "") -> Subscription:
        """Core subscription whose handler errors are logged, never fatal."""

        async def guarded(msg: Msg) -> None:
            try:
                await handler(msg)
            except Exception:
                log.exception("handler failed", extra={"subject": msg.subject})

        return await self.nc.subscribe(subject, queue=queue, cb=guarded)

    async def ordered(self, subject: str, handler: Callable[[Msg], Awaitable[None]],
                      start_seq: int = 0) -> Subscription:
        """Ordered JetStream consumer of one subject from the start of what the stream holds.

        The consumer lives on the stream's leader. When that node dies, nats-py notices two
        missed idle heartbeats and makes a new one from the next sequence: at 2 s that is
        ~4 s, while the session reads the subject directly (direct_audio.py, after 0.3 s of
        silence), so no audio waits for it. At 0.5 s a saturated STT replica that took 100
        calls over read its heartbeats late and re-made all its consumers at once, again
        and again (1,458 timed-out re-creations in 2 minutes): a storm that kept it deaf."""
        config = None
        if start_seq:
            config = ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
                                    opt_start_seq=start_seq)
        return await self.js.subscribe(subject, cb=handler, ordered_consumer=True, config=config,
                                       idle_heartbeat=ORDERED_HEARTBEAT_S)

    run_pull_worker = serve_work_queue  # each item to exactly one replica (pull_worker.py)

    async def close(self) -> None:
        self._takes.close()
        if not self.nc.is_closed:
            try:
                await asyncio.wait_for(self.nc.drain(), timeout=5.0)
            except Exception:
                await self.nc.close()
