"""One adapter per system: how it enqueues, how its workers start, how it does RPC.

Every system works in a vhost of its own (``bench-<name>``), on a durable classic
queue, with persistent messages and publisher confirms. Producers run in the
harness process and connect (and send a few warm-up messages) before the clock
starts; workers run as subprocesses started from ``benchmarks/``.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.harness import HERE, PYTHON, Probe, amqp_url, python_env

WARMUP = 20

# The shape of a small task message: what amqpq's envelope for noop() weighs, give or take.
RAW_BODY = (
    b'{"v":1,"id":"0190b7c2-6a3e-7d4c-9a1b-5b2f3c4d5e6f","task":"bench.noop","args":[],'
    b'"kwargs":{},"retries":0,"created_at":"2024-07-01T12:00:00.000000Z"}'
)


class NotSupported(Exception):
    """This system has no such feature (shown as n/a with the reason)."""


class System:
    name: str
    queue: str

    def __init__(self, vhost_prefix: str = "bench-") -> None:
        self.vhost = f"{vhost_prefix}{self.name}"
        self.url = amqp_url(self.vhost)

    def unavailable(self) -> str | None:
        """Why this system cannot run here, or None."""
        return None

    def prepare(self, probe: Probe) -> None:
        """Declare the queue so passive declares work before any worker started."""

    def close(self) -> None:
        """Close producer connections."""

    # enqueue: seconds for n confirmed publishes
    def enqueue_one(self, n: int, data: str | None = None) -> float:
        raise NotSupported("no such API")

    def enqueue_one_value(self, n: int) -> float:
        """n ``add(1, 2)`` sends with default options (a reply requested where the system
        asks for one by default), one at a time."""
        raise NotSupported("no such API")

    def enqueue_bulk(self, n: int) -> float:
        raise NotSupported("no bulk send API")

    def enqueue_bulk_async(self, n: int) -> float:
        raise NotSupported("no async bulk send API")

    def fill(self, n: int, data: str | None = None) -> None:
        """Put n tasks in the queue as fast as this system allows (not timed)."""
        raise NotImplementedError

    def fill_results(self, n: int) -> None:
        """Put n ``add(1, 2)`` tasks in the queue, sent with default options by a caller
        that is gone before they run (not timed)."""
        raise NotSupported("no result store measured")

    def fill_values(self, n: int) -> None:
        """Put n ``add(1, 2)`` tasks in the queue, sent with default options by a caller
        that is gone before they run (not timed): the drain rows of tasks that return a
        value."""
        self.fill_results(n)

    def worker(self, mode: str, procs: int = 1) -> tuple[list[str], dict[str, str]]:
        """argv and env of a worker: mode ``one_slot``, ``solo`` (one slot, tasks on the
        consumer's own thread), ``default``, ``procs`` (N processes, one task at a time
        each, prefetch 1, late ack) or ``store_none`` / ``store_redis`` / ``store_postgres``
        (the default worker, results kept nowhere or in that store)."""
        raise NotImplementedError

    def rpc(self, n: int) -> list[float]:
        raise NotSupported("no RPC over RabbitMQ")


def _timed_loop(n: int, send: Any) -> float:
    for _ in range(WARMUP):
        send()
    start = time.perf_counter()
    for _ in range(n):
        send()
    return time.perf_counter() - start


# -- raw aio-pika ---------------------------------------------------------------------------------


class Raw(System):
    """The ceiling: a bare aio-pika client doing the same broker work, no task framework."""

    name = "raw"
    queue = "raw"

    def unavailable(self) -> str | None:
        try:
            import aio_pika  # noqa: F401
        except ImportError:
            return "aio-pika not installed"
        return None

    def prepare(self, probe: Probe) -> None:
        asyncio.run(self._declare())

    async def _declare(self) -> None:
        import aio_pika

        connection = await aio_pika.connect(self.url)
        async with connection:
            channel = await connection.channel()
            await channel.declare_queue(self.queue, durable=True)

    async def _connect(self) -> tuple[Any, Any]:
        import aio_pika

        connection = await aio_pika.connect(
            self.url, client_properties={"connection_name": "bench raw producer"}
        )
        channel = await connection.channel(publisher_confirms=True)
        return connection, channel

    @staticmethod
    def _message(body: bytes) -> Any:
        import aio_pika

        return aio_pika.Message(
            body,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            content_type="application/json",
        )

    def enqueue_one(self, n: int, data: str | None = None) -> float:
        body = RAW_BODY if data is None else data.encode()

        async def run() -> float:
            connection, channel = await self._connect()
            exchange = channel.default_exchange
            try:
                for _ in range(WARMUP):
                    await exchange.publish(self._message(body), self.queue, mandatory=True)
                start = time.perf_counter()
                for _ in range(n):
                    await exchange.publish(self._message(body), self.queue, mandatory=True)
                return time.perf_counter() - start
            finally:
                await connection.close()

        return asyncio.run(run())

    def enqueue_one_value(self, n: int) -> float:
        return self.enqueue_one(n)  # the ceiling: the same publishes, nothing more

    def fill_values(self, n: int) -> None:
        self.fill(n)  # the raw consumer acks without a reply: the ceiling

    async def _pipelined(self, channel: Any, n: int, body: bytes, window: int = 1000) -> None:
        exchange = channel.default_exchange
        semaphore = asyncio.Semaphore(window)

        async def one() -> None:
            async with semaphore:
                await exchange.publish(self._message(body), self.queue, mandatory=True)

        await asyncio.gather(*(one() for _ in range(n)))

    def enqueue_bulk(self, n: int) -> float:
        async def run() -> float:
            connection, channel = await self._connect()
            try:
                await self._pipelined(channel, WARMUP, RAW_BODY)
                start = time.perf_counter()
                await self._pipelined(channel, n, RAW_BODY)
                return time.perf_counter() - start
            finally:
                await connection.close()

        return asyncio.run(run())

    def fill(self, n: int, data: str | None = None) -> None:
        body = RAW_BODY if data is None else data.encode()

        async def run() -> None:
            connection, channel = await self._connect()
            try:
                await self._pipelined(channel, n, body, window=1000 if data is None else 20)
            finally:
                await connection.close()

        asyncio.run(run())

    def worker(self, mode: str, procs: int = 1) -> tuple[list[str], dict[str, str]]:
        prefetch = 100 if mode == "default" else 1
        argv = [PYTHON, str(HERE / "raw_worker.py"), self.url, self.queue]
        argv += ["--prefetch", str(prefetch), "--procs", str(procs)]
        if mode == "rpc":
            argv.append("--rpc")
        return argv, python_env()

    def rpc(self, n: int) -> list[float]:
        import aio_pika

        async def run() -> list[float]:
            connection, channel = await self._connect()
            waiting: dict[str, asyncio.Future[bytes]] = {}

            async def on_reply(message: aio_pika.abc.AbstractIncomingMessage) -> None:
                future = waiting.pop(message.correlation_id or "", None)
                if future is not None and not future.done():
                    future.set_result(message.body)

            reply_queue = await channel.get_queue("amq.rabbitmq.reply-to", ensure=False)
            await reply_queue.consume(on_reply, no_ack=True)
            exchange = channel.default_exchange
            loop = asyncio.get_running_loop()
            latencies = []
            try:
                for i in range(n + WARMUP):
                    cid = str(i)
                    future: asyncio.Future[bytes] = loop.create_future()
                    waiting[cid] = future
                    start = time.perf_counter()
                    await exchange.publish(
                        aio_pika.Message(
                            b'{"task":"bench.add","args":[1,2]}',
                            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                            correlation_id=cid,
                            reply_to="amq.rabbitmq.reply-to",
                        ),
                        self.queue,
                        mandatory=True,
                    )
                    await asyncio.wait_for(future, 10)
                    if i >= WARMUP:
                        latencies.append(time.perf_counter() - start)
            finally:
                await connection.close()
            return latencies

        return asyncio.run(run())


# -- amqpq ----------------------------------------------------------------------------------------


class Amqpq(System):
    name = "amqpq"
    queue = "bench"

    def __init__(self, vhost_prefix: str = "bench-") -> None:
        super().__init__(vhost_prefix)
        self._module: Any = None

    def unavailable(self) -> str | None:
        try:
            importlib.import_module("amqpq.producer")
            importlib.import_module("amqpq.worker")
        except ImportError as exc:
            return f"not available yet ({exc})"
        return None

    @property
    def tasks(self) -> Any:
        if self._module is None:
            # The App reads AMQPQ_URL when it is created: point it at our vhost first.
            os.environ["AMQPQ_URL"] = self.url
            self._module = importlib.import_module("benchmarks.bench_tasks")
        return self._module

    def prepare(self, probe: Probe) -> None:
        from amqpq.transport.declare import declare_topology

        tasks = self.tasks
        asyncio.run(declare_topology(tasks.app.settings, tasks.app.topology))

    def close(self) -> None:
        if self._module is not None:
            self._module.app.close()

    def enqueue_one(self, n: int, data: str | None = None) -> float:
        tasks = self.tasks
        if data is None:
            return _timed_loop(n, tasks.noop.delay)
        return _timed_loop(n, lambda: tasks.blob.delay(data))

    def enqueue_one_value(self, n: int) -> float:
        add = self.tasks.add
        return _timed_loop(n, lambda: add.delay(1, 2))

    def enqueue_bulk(self, n: int) -> float:
        tasks = self.tasks
        producer = tasks.app.producer
        producer.map(tasks.noop, [()] * WARMUP)
        calls = [()] * n
        start = time.perf_counter()
        producer.map(tasks.noop, calls)
        return time.perf_counter() - start

    def enqueue_bulk_async(self, n: int) -> float:
        tasks = self.tasks

        async def run() -> float:
            producer = tasks.app.aproducer()
            try:
                await producer.map(tasks.noop, [()] * WARMUP)
                start = time.perf_counter()
                await producer.map(tasks.noop, [()] * n)
                return time.perf_counter() - start
            finally:
                await tasks.app.aclose()

        return asyncio.run(run())

    def fill(self, n: int, data: str | None = None) -> None:
        tasks = self.tasks
        producer = tasks.app.producer
        if data is None:
            producer.map(tasks.noop, [()] * n)
        else:
            for start in range(0, n, 20):
                producer.map(tasks.blob, [(data,)] * min(20, n - start))

    def worker(self, mode: str, procs: int = 1) -> tuple[list[str], dict[str, str]]:
        argv = [PYTHON, "-m", "amqpq", "worker", "-A", "bench_tasks", "-Q", self.queue]
        argv += ["--loglevel", "WARNING"]
        if mode == "one_slot":
            argv += ["-c", "1"]
        elif mode == "solo":
            argv += ["--pool", "solo", "-w", "1"]
        elif mode == "procs":
            # N independent worker processes of one slot each (as Dramatiq's --processes N
            # --threads 1 and the raw consumers); `--pool processes -c N` is the other shape,
            # one consumer feeding N children over pipes, like Celery's prefork.
            argv += ["--workers", str(procs), "-c", "1"]
        elif mode == "without_events":
            argv += ["--without-events"]
        env = {"AMQPQ_URL": self.url}
        store = STORES.get(mode)
        if store:
            env["AMQPQ_RESULT_BACKEND"] = store
            env["AMQPQ_RESULT_EXPIRES"] = "600"  # a run's results do not pile up
        return argv, python_env(env)

    def fill_results(self, n: int) -> None:
        tasks = self.tasks
        tasks.app.producer.map(tasks.add, [(1, 2)] * n)
        tasks.app.close()  # the caller is gone: nobody waits for these replies

    def rpc(self, n: int) -> list[float]:
        add = self.tasks.add
        for _ in range(WARMUP):
            assert add.delay(1, 2).get(timeout=10) == 3
        latencies = []
        for _ in range(n):
            start = time.perf_counter()
            add.delay(1, 2).get(timeout=10)
            latencies.append(time.perf_counter() - start)
        return latencies


# Each store's URL (``BENCH_REDIS_URL`` / ``BENCH_POSTGRES_URL`` override); "" = no store.
STORES = {
    "store_none": "",
    "store_redis": os.environ.get(
        "BENCH_REDIS_URL", "redis://127.0.0.1:6379/0?prefix=amqpq-bench:"
    ),
    "store_postgres": os.environ.get(
        "BENCH_POSTGRES_URL", "postgresql://127.0.0.1:5432/test?table=amqpq_bench_results"
    ),
}
CELERY_STORES = {
    "store_redis": os.environ.get("BENCH_CELERY_REDIS_URL", "redis://127.0.0.1:6379/1"),
}


# -- Celery ---------------------------------------------------------------------------------------


class CeleryBench(System):
    name = "celery"
    queue = "celery"

    def __init__(self, vhost_prefix: str = "bench-") -> None:
        super().__init__(vhost_prefix)
        self._module: Any = None
        self._fill_app: Any = None

    def unavailable(self) -> str | None:
        try:
            importlib.import_module("celery")
        except ImportError:
            return "celery not installed (benchmarks/run.sh installs it in benchmarks/.venv)"
        return None

    @property
    def tasks(self) -> Any:
        if self._module is None:
            os.environ["BENCH_CELERY_URL"] = self.url
            self._module = importlib.import_module("benchmarks.celery_tasks")
        return self._module

    def prepare(self, probe: Probe) -> None:
        with self.tasks.app.connection_for_write() as connection:
            channel = connection.default_channel
            channel.queue_declare(self.queue, durable=True, auto_delete=False)

    def close(self) -> None:
        for app in (self._module.app if self._module else None, self._fill_app):
            if app is not None:
                app.pool.force_close_all()
                app.close()

    def enqueue_one(self, n: int, data: str | None = None) -> float:
        tasks = self.tasks
        if data is None:
            return _timed_loop(n, tasks.noop.delay)
        return _timed_loop(n, lambda: tasks.blob.delay(data))

    def enqueue_one_value(self, n: int) -> float:
        add = self.tasks.add
        return _timed_loop(n, lambda: add.delay(1, 2))

    def _filler(self) -> Any:
        if self._fill_app is None:
            from celery import Celery

            # Same messages, no confirms: only to pre-fill queues faster (not timed).
            self._fill_app = Celery("bench-fill", broker=self.url)
            self._fill_app.conf.broker_connection_retry_on_startup = True
        return self._fill_app

    def fill(self, n: int, data: str | None = None) -> None:
        app = self._filler()
        with app.producer_or_acquire() as producer:
            for _ in range(n):
                if data is None:
                    app.send_task("bench.noop", producer=producer, ignore_result=True)
                else:
                    app.send_task("bench.blob", (data,), producer=producer, ignore_result=True)

    def fill_results(self, n: int) -> None:
        app = self._filler()
        with app.producer_or_acquire() as producer:
            for _ in range(n):
                app.send_task("bench.add", (1, 2), producer=producer)

    def worker(self, mode: str, procs: int = 1) -> tuple[list[str], dict[str, str]]:
        argv = [PYTHON, "-m", "celery", "-A", "celery_tasks", "worker", "-Q", self.queue]
        argv += ["--loglevel", "WARNING", "-n", f"bench{os.getpid()}-{time.time_ns()}@%h"]
        env = {"BENCH_CELERY_URL": self.url}
        if mode.startswith("store_"):
            if mode not in CELERY_STORES:
                raise NotSupported(f"{mode[len('store_') :]} backend not measured")
            env["BENCH_CELERY_BACKEND"] = CELERY_STORES[mode]
        if mode == "solo":
            raise NotSupported(
                "-P solo with late acks and prefetch 1 drained ~10 tasks/s here (a task per "
                "~100 ms), not run with thousands of tasks"
            )
        if mode == "one_slot":
            # -P solo with late acks and prefetch 1 ran ~10 tasks/s here: one thread instead.
            argv += ["-P", "threads", "-c", "1", "--prefetch-multiplier", "1"]
            env["BENCH_ACKS_LATE"] = "1"
        elif mode == "procs":
            argv += ["-P", "prefork", "-c", str(procs), "--prefetch-multiplier", "1"]
            env["BENCH_ACKS_LATE"] = "1"
        return argv, python_env(env)

    def rpc(self, n: int) -> list[float]:
        add = self.tasks.add
        for _ in range(WARMUP):
            assert add.delay(1, 2).get(timeout=10) == 3
        latencies = []
        for _ in range(n):
            start = time.perf_counter()
            add.delay(1, 2).get(timeout=10)
            latencies.append(time.perf_counter() - start)
        return latencies


# -- Celery producer -> amqpq worker ------------------------------------------------------------


class CeleryToAmqpq(Amqpq):
    """A Celery producer's unchanged messages (protocol 2 JSON, ``rpc://`` results) on
    amqpq's worker (docs/celery.md): amqpq's queue, tasks and worker; Celery's client."""

    name = "celery-amqpq"

    def __init__(self, vhost_prefix: str = "bench-") -> None:
        super().__init__(vhost_prefix)
        self._celery: Any = None

    def unavailable(self) -> str | None:
        try:
            importlib.import_module("celery")
        except ImportError:
            return "celery not installed (benchmarks/run.sh installs it in benchmarks/.venv)"
        return super().unavailable()

    @property
    def celery(self) -> Any:
        """The Celery producer: amqpq's queue, which amqpq declares (no_declare)."""
        if self._celery is None:
            from celery import Celery
            from kombu import Exchange, Queue

            from benchmarks.bench_tasks import QUEUE

            app = Celery("bench-celery-producer", broker=self.url, backend="rpc://")
            app.conf.update(
                broker_transport_options={"confirm_publish": True},
                broker_connection_retry_on_startup=True,
                task_default_queue=QUEUE,
                task_queues=[Queue(QUEUE, Exchange("bench"), routing_key=QUEUE, no_declare=True)],
            )
            self._celery = app
        return self._celery

    def prepare(self, probe: Probe) -> None:
        # Not through self.tasks: that module's App may already point at amqpq's own vhost.
        from amqpq.settings import Settings
        from amqpq.transport.declare import declare_topology
        from benchmarks.bench_tasks import TOPOLOGY

        asyncio.run(declare_topology(Settings(url=self.url), TOPOLOGY))

    def close(self) -> None:
        if self._celery is not None:
            self._celery.pool.force_close_all()
            self._celery.close()
        super().close()

    def enqueue_one(self, n: int, data: str | None = None) -> float:
        raise NotSupported("the producer is Celery's: see the celery column")

    def enqueue_one_value(self, n: int) -> float:
        raise NotSupported("the producer is Celery's: see the celery column")

    def enqueue_bulk(self, n: int) -> float:
        raise NotSupported("the producer is Celery's: see the celery column")

    def enqueue_bulk_async(self, n: int) -> float:
        raise NotSupported("the producer is Celery's: see the celery column")

    def fill(self, n: int, data: str | None = None) -> None:
        app = self.celery
        with app.producer_or_acquire() as producer:
            for _ in range(n):
                if data is None:
                    app.send_task("bench.noop", producer=producer, ignore_result=True)
                else:
                    app.send_task("bench.blob", (data,), producer=producer, ignore_result=True)

    def fill_values(self, n: int) -> None:
        app = self.celery
        with app.producer_or_acquire() as producer:
            for _ in range(n):
                app.send_task("bench.add", (1, 2), producer=producer)

    def rpc(self, n: int) -> list[float]:
        app = self.celery
        for _ in range(WARMUP):
            assert app.send_task("bench.add", (1, 2)).get(timeout=10) == 3
        latencies = []
        for _ in range(n):
            start = time.perf_counter()
            app.send_task("bench.add", (1, 2)).get(timeout=10)
            latencies.append(time.perf_counter() - start)
        return latencies


# -- Dramatiq -------------------------------------------------------------------------------------


class DramatiqBench(System):
    name = "dramatiq"
    queue = "default"

    def __init__(self, vhost_prefix: str = "bench-") -> None:
        super().__init__(vhost_prefix)
        self._module: Any = None

    def unavailable(self) -> str | None:
        try:
            importlib.import_module("dramatiq")
            importlib.import_module("pika")
        except ImportError:
            return "dramatiq not installed (benchmarks/run.sh installs it in benchmarks/.venv)"
        return None

    @property
    def tasks(self) -> Any:
        if self._module is None:
            os.environ["BENCH_DRAMATIQ_URL"] = self.url
            self._module = importlib.import_module("benchmarks.dramatiq_tasks")
        return self._module

    def prepare(self, probe: Probe) -> None:
        self.tasks.broker.declare_queue(self.queue, ensure=True)

    def close(self) -> None:
        if self._module is not None:
            self._module.broker.close()

    def enqueue_one(self, n: int, data: str | None = None) -> float:
        tasks = self.tasks
        if data is None:
            return _timed_loop(n, tasks.noop.send)
        return _timed_loop(n, lambda: tasks.blob.send(data))

    def enqueue_one_value(self, n: int) -> float:
        add = self.tasks.add
        return _timed_loop(n, lambda: add.send(1, 2))

    def fill_values(self, n: int) -> None:
        self.fill(n, value=True)

    def fill(self, n: int, data: str | None = None, *, value: bool = False) -> None:
        from dramatiq.brokers.rabbitmq import RabbitmqBroker

        tasks = self.tasks
        # Same messages, no confirms: only to pre-fill queues faster (not timed). A new
        # broker each time: an idle pika connection misses heartbeats and is dropped.
        broker = RabbitmqBroker(url=self.url, confirm_delivery=False)
        try:
            for _ in range(n):
                if value:
                    message = tasks.add.message(1, 2)
                elif data is None:
                    message = tasks.noop.message()
                else:
                    message = tasks.blob.message(data)
                broker.enqueue(message)
        finally:
            broker.close()

    def worker(self, mode: str, procs: int = 1) -> tuple[list[str], dict[str, str]]:
        argv = [PYTHON, "-m", "dramatiq", "dramatiq_tasks", "-Q", self.queue]
        env = {"BENCH_DRAMATIQ_URL": self.url}
        if mode == "solo":
            raise NotSupported("no worker without threads (tasks always run in worker threads)")
        if mode == "one_slot":
            argv += ["--processes", "1", "--threads", "1"]
            env["dramatiq_queue_prefetch"] = "1"
        elif mode == "procs":
            argv += ["--processes", str(procs), "--threads", "1"]
            env["dramatiq_queue_prefetch"] = "1"
        return argv, python_env(env)

    def rpc(self, n: int) -> list[float]:
        raise NotSupported("Dramatiq has no result backend on RabbitMQ (Redis/Memcached only)")


SYSTEMS: dict[str, type[System]] = {
    "raw": Raw,
    "amqpq": Amqpq,
    "celery": CeleryBench,
    "dramatiq": DramatiqBench,
    "celery-amqpq": CeleryToAmqpq,
}


def worker_cwd() -> Path:
    return HERE


def _ensure_importable() -> None:
    # `python benchmarks/run.py` as well as `python -m benchmarks`.
    root = str(HERE.parent)
    if root not in sys.path:
        sys.path.insert(0, root)


_ensure_importable()
