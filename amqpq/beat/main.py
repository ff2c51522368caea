"""``amqpq beat``: send the topology's schedules on time; one leader among any number of beats.

Leadership and state live on the broker, in the quorum queue ``amqpq.beat.leader``
(single active consumer):

- Every beat consumes it (prefetch 100, manual ack); RabbitMQ delivers only to the
  *active* consumer, so the leader is whichever beat the broker picked.
- The queue holds *tokens*: messages whose body is the last tick sent per schedule
  (:mod:`amqpq.beat.state`). The leader holds every token unacked while it leads.
  Each beat publishes an empty token when it starts, so a token always exists;
  tokens merge (latest tick per schedule), so extra ones are harmless and the
  leader folds them into one on its next write.
- After sending a round of ticks the leader publishes a new token (confirmed) and
  only then acks the tokens it held. When the leader dies, the broker puts its
  unacked tokens back and hands them to the next consumer, which becomes leader.
- A tick's task id is ``beat:<schedule>:<tick>``, the same in every beat.

Guarantee: each tick is sent at least once. A tick is sent twice only if the leader
dies (or loses its connection) after the broker confirmed the tick's task and
before it confirmed the leader's next token, a window of one publish round trip;
the duplicate carries the same task id. See docs/scheduler.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from amqpq.beat.state import TOKEN_CONTENT_TYPE, BeatToken, merge_ticks
from amqpq.beat.ticks import (
    describe_next_run,
    due_ticks,
    next_tick_after,
    tick_id,
    tick_iso,
)
from amqpq.codec import MessageProperties, OutgoingMessage
from amqpq.errors import (
    AmqpqError,
    BrokerError,
    ConfigError,
    DecodeError,
    MessageError,
    PublishError,
    PublishNackedError,
    UnroutableError,
)
from amqpq.producer import TaskPreparer
from amqpq.topology.infra import beat_leader_queue_name
from amqpq.transport.aio import AsyncBroker, publish_on
from amqpq.transport.base import Delivery
from amqpq.transport.consume import AioQueueConsumer
from amqpq.wire import BEAT_HEADER_SCHEDULE, BEAT_HEADER_TICK, beat_consumer_tag

if TYPE_CHECKING:
    from amqpq.app import App
    from amqpq.settings import Settings
    from amqpq.topology.models import Schedule, Topology

__all__ = ["BEAT_HEADER_SCHEDULE", "BEAT_HEADER_TICK", "TOKEN_TYPE", "Beat", "BeatOptions"]

log = logging.getLogger("amqpq.beat")

TOKEN_TYPE = "amqpq.beat.token"


@dataclass(frozen=True, slots=True)
class BeatOptions:
    catch_up: float = 60.0
    """Seconds: every missed tick this recent is sent; older missed ticks collapse to one."""
    settle: float = 0.5
    """Seconds a new leader waits for the rest of the tokens before acting."""
    rotate: float = 60.0
    """Seconds between token rewrites when nothing is sent (stays far below consumer_timeout)."""
    declare: bool = True
    prefetch: int = 100
    publish_timeout: float = 10.0


@dataclass(slots=True)
class _Held:
    delivery: Delivery
    ticks: dict[str, datetime] = field(default_factory=dict)


class Beat:
    """One beat process. ``await Beat(app, topology, settings).run()`` until :meth:`request_stop`."""

    def __init__(
        self,
        app: App,
        topology: Topology,
        settings: Settings,
        options: BeatOptions | None = None,
        *,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.app = app
        self.topology = topology
        self.settings = settings
        self.options = options or BeatOptions()
        self.schedules: dict[str, Schedule] = dict(topology.schedules)
        self.queue = beat_leader_queue_name(topology.infrastructure.prefix)
        self._clock = clock or (lambda: datetime.now(UTC))
        # Routes come from this topology, argument checks from the App's tasks (if any).
        self._preparer = TaskPreparer(app.registry, lambda: topology)
        self._stop = asyncio.Event()
        self._arrived = asyncio.Event()
        self._held: list[_Held] = []
        self._ticks: dict[str, datetime] = {}
        self._broker: AsyncBroker | None = None
        self._channel: Any = None  # the transport's confirming channel
        self._last_write = 0.0
        # The token just written, on its way back to us: (message id, give up after).
        self._own_token: tuple[str, float] | None = None
        self.leading = False
        self.sent = 0
        self.name = ""

    # -- lifecycle --------------------------------------------------------------------------

    def request_stop(self, reason: str = "requested") -> None:
        if not self._stop.is_set():
            log.info("%s: stopping; the leader's tokens go back to the queue", reason)
            self._stop.set()

    def _install_signals(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop, sig.name)

    def check(self) -> None:
        """Every schedule's task must route somewhere and its arguments must validate."""
        if not self.schedules:
            raise ConfigError(
                "the topology has no schedules: add some under schedules: (see docs/scheduler.md)"
            )
        now = self._clock()
        for name, schedule in self.schedules.items():
            try:
                self._prepare(name, schedule, now)
            except AmqpqError as exc:
                raise type(exc)(f"schedule {name!r}: {exc}") from exc

    async def run(self, *, install_signals: bool = True) -> int:
        if install_signals:
            self._install_signals()
        self.check()
        if self.options.declare:
            from amqpq.transport.declare import declare_topology

            await declare_topology(self.settings, self.topology)
        broker = self._broker = AsyncBroker(self.settings, "beat")
        self.name = broker.name
        consumer = AioQueueConsumer(broker, prefetch=self.options.prefetch, handler=self._on_token)
        try:
            await broker.connect()
            # A token must exist for anyone to lead; extra ones merge away.
            await self._publish(self._token_message(BeatToken()))
            host = socket.gethostname().replace(".", "-")
            await consumer.start([self.queue], lambda _: beat_consumer_tag(host, os.getpid()))
            log.info(
                "beat started schedules=%s leader_queue=%s broker=%s connection=%r; "
                "waiting for the leader token",
                ",".join(self.schedules),
                self.queue,
                broker.address.display,  # the node this process's URL order reached
                broker.name,
            )
            now = self._clock()
            for name, schedule in self.schedules.items():
                log.info("schedule %s next run %s", name, describe_next_run(schedule, now))
            await self._loop()
        finally:
            await consumer.cancel()
            for held in self._live():
                await held.delivery.nack(requeue=True)
            self._held.clear()
            await consumer.close()
            await self._close_channel()
            await broker.close()
        log.info("beat stopped sent=%d", self.sent)
        return 0

    # -- tokens -----------------------------------------------------------------------------

    async def _on_token(self, delivery: Delivery) -> None:
        try:
            ticks = dict(BeatToken.decode(delivery.body).ticks)
        except DecodeError as exc:
            log.warning(
                "ignoring a broken token in %s (%s); it is dropped on the next write",
                self.queue,
                exc,
            )
            ticks = {}
        if self._own_token is not None and delivery.properties.message_id == self._own_token[0]:
            self._own_token = None
        self._held.append(_Held(delivery, ticks))
        self._arrived.set()

    def _live(self) -> list[_Held]:
        """Tokens still ours: those whose channel closed went back to the queue."""
        self._held = [h for h in self._held if h.delivery.channel_open]
        return list(self._held)

    def _token_message(self, token: BeatToken) -> OutgoingMessage:
        return OutgoingMessage(
            body=token.encode(),
            properties=MessageProperties(
                message_id=f"beat-token:{uuid.uuid4()}",
                content_type=TOKEN_CONTENT_TYPE,
                type=TOKEN_TYPE,
                timestamp=datetime.now(UTC),
            ),
            exchange="",
            routing_key=self.queue,
        )

    async def _write_token(self) -> None:
        """Publish the state (confirmed), then ack the tokens it replaces."""
        replaced = self._live()
        # Tokens that arrived during the round are acked below: fold them in first.
        self._ticks = merge_ticks(self._ticks, *(h.ticks for h in replaced))
        token = BeatToken(ticks=dict(self._ticks), written_by=self.name, written_at=self._clock())
        message = self._token_message(token)
        await self._publish(message)
        self._last_write = time.monotonic()
        if message.properties.message_id is not None:
            self._own_token = (message.properties.message_id, self._last_write + 5.0)
        for held in replaced:
            await held.delivery.ack()
            if held in self._held:
                self._held.remove(held)

    async def _publish(self, message: OutgoingMessage) -> None:
        """One confirmed, mandatory publish; never retried here (leadership may have moved)."""
        assert self._broker is not None
        try:
            if self._channel is None or self._channel.is_closed:
                self._channel = await self._broker.channel()
            await publish_on(self._channel, message, timeout=self.options.publish_timeout)
        except AmqpqError:
            raise
        except Exception as exc:  # the client library's connection and channel errors
            self._channel = None
            raise PublishError(f"publish failed: {type(exc).__name__}: {exc}") from exc

    async def _close_channel(self) -> None:
        channel, self._channel = self._channel, None
        if channel is not None and not channel.is_closed:
            with contextlib.suppress(Exception):  # closing: the connection may be gone already
                await channel.close()

    # -- leading ----------------------------------------------------------------------------

    async def _wait(self, timeout: float | None) -> None:
        """Until a token arrives, stop is requested, or ``timeout`` seconds passed."""
        self._arrived.clear()
        waits = [
            asyncio.ensure_future(self._arrived.wait()),
            asyncio.ensure_future(self._stop.wait()),
        ]
        try:
            await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waits:
                waiter.cancel()

    async def _loop(self) -> None:
        while not self._stop.is_set():
            live = self._live()
            if not live and self.leading and self._own_token is not None:
                # Between acking the old tokens and receiving the new one: still leading.
                left = self._own_token[1] - time.monotonic()
                if left > 0:
                    await self._wait(left)
                    continue
            if not live:
                self._own_token = None
                if self.leading:
                    log.warning(
                        "lost leadership: the connection or channel holding the token closed"
                    )
                    self.leading = False
                await self._wait(1.0)  # also notices a closed channel without deliveries
                continue
            if not self.leading:
                await self._become_leader()
                continue
            try:
                await self._round()
            except BrokerError as exc:
                log.warning("leader round interrupted: %s", exc)
                await self._wait(1.0)
                continue
            await self._wait(self._seconds_to_next())

    async def _become_leader(self) -> None:
        # The broker hands every ready token over at once; give them a moment to arrive
        # so the state acted on is the merge of all of them.
        deadline = time.monotonic() + self.options.settle
        while not self._stop.is_set() and (left := deadline - time.monotonic()) > 0:
            await self._wait(left)
        live = self._live()
        if self._stop.is_set() or not live:
            return
        self.leading = True
        self._ticks = merge_ticks(self._ticks, *(h.ticks for h in live))
        known = {n: tick_iso(t) for n, t in self._ticks.items() if n in self.schedules}
        log.info(
            "leading: this beat sends the schedules now (tokens=%d last ticks=%s)",
            len(live),
            known or "none",
        )
        self._last_write = 0.0  # write at once: folds the tokens into one

    async def _round(self) -> None:
        live = self._live()
        if not live:
            return
        self._ticks = merge_ticks(self._ticks, *(h.ticks for h in live))
        now = self._clock()
        dirty = len(live) > 1 or time.monotonic() - self._last_write >= self.options.rotate
        for name in self.schedules:
            if name not in self._ticks:
                # First seen: ticks after now are due (nothing is owed from before).
                self._ticks[name] = now
                dirty = True
        sent = await self._send_due(now)
        if sent or dirty:
            await self._write_token()

    async def _send_due(self, now: datetime) -> int:
        sent = 0
        catch_up = timedelta(seconds=self.options.catch_up)
        for name, schedule in self.schedules.items():
            due = due_ticks(schedule, self._ticks[name], now, catch_up=catch_up)
            if due.skipped and due.skipped_range is not None:
                first, last = due.skipped_range
                log.warning(
                    "schedule %s: %d missed tick(s) from %s to %s not sent (more than "
                    "--catch-up %.0fs late; only the latest missed tick is sent)",
                    name,
                    due.skipped,
                    tick_iso(first),
                    tick_iso(last),
                    self.options.catch_up,
                )
            for tick in due.send:
                if not self._live():
                    return sent
                if await self._send_tick(name, schedule, tick):
                    sent += 1
                self._ticks[name] = tick
        return sent

    def _prepare(self, name: str, schedule: Schedule, tick: datetime) -> Any:
        iso = tick_iso(tick)
        return self._preparer.prepare(
            schedule.task,
            schedule.args,
            schedule.kwargs,
            {
                "task_id": tick_id(name, tick),
                "ignore_result": True,
                "headers": {BEAT_HEADER_SCHEDULE: name, BEAT_HEADER_TICK: iso},
            },
        )

    async def _send_tick(self, name: str, schedule: Schedule, tick: datetime) -> bool:
        """True when sent; False when the task cannot be sent at all (logged, not retried).
        Connection trouble raises: the tick stays due."""
        try:
            prepared = self._prepare(name, schedule, tick)
            await self._publish(prepared.message)
        except (ConfigError, MessageError, UnroutableError, PublishNackedError) as exc:
            log.error("schedule %s: tick %s not sent: %s", name, tick_iso(tick), exc)
            return False
        self.sent += 1
        message = prepared.message
        log.info(
            "sent schedule=%s task=%s id=%s tick=%s late=%.3fs exchange=%s routing_key=%s",
            name,
            schedule.task,
            prepared.envelope.id,
            tick_iso(tick),
            (self._clock() - tick).total_seconds(),
            message.exchange,
            message.routing_key,
        )
        log.info("schedule %s next run %s", name, describe_next_run(schedule, tick))
        return True

    def _seconds_to_next(self) -> float:
        now = self._clock()
        wake = min(
            (next_tick_after(s, self._ticks.get(n, now)) for n, s in self.schedules.items()),
            default=now + timedelta(seconds=self.options.rotate),
        )
        until_tick = (wake - now).total_seconds()
        until_rotate = self._last_write + self.options.rotate - time.monotonic()
        return max(0.001, min(until_tick, until_rotate) + 0.001)
