"""Result stores for tests: the machine's Redis and PostgreSQL, each test under its own
key prefix or table (removed at its end), and private Redis servers a test may kill.
Dashboard histories in PostgreSQL, each under a table prefix of its own."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support.brokernode import free_port
from tests.support.waiting import eventually

REDIS_URL = os.environ.get("AMQPQ_TEST_REDIS", "redis://127.0.0.1:6379/0")
POSTGRES_URL = os.environ.get("AMQPQ_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


def unique_name() -> str:
    return f"t{uuid.uuid4().hex[:12]}"


@contextmanager
def redis_store_url(base: str = REDIS_URL) -> Iterator[str]:
    """A Redis store URL with a key prefix of its own; its keys are deleted afterwards."""
    import redis

    prefix = f"amqpq-test:{unique_name()}:"
    try:
        yield f"{base}?prefix={prefix}"
    finally:
        client = redis.Redis.from_url(base)
        keys = list(client.scan_iter(match=f"{prefix}*"))
        if keys:
            client.delete(*keys)
        client.close()


@contextmanager
def postgres_store_url(base: str = POSTGRES_URL) -> Iterator[str]:
    """A PostgreSQL store URL with a table of its own; the table is dropped afterwards."""
    import psycopg

    table = f"amqpq_test_{unique_name()}"
    try:
        yield f"{base}?table={table}"
    finally:
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f'DROP TABLE IF EXISTS "{table}"')


def port_closed() -> int:
    """A local port where nothing listens (a store that is down)."""
    return free_port()


class RedisServer:
    """A ``redis-server`` of the test's own on a free port, stopped by PID (never the shared one)."""

    def __init__(self, port: int | None = None, log_dir: Path | None = None) -> None:
        self.port = port or free_port()
        self.log_dir = log_dir
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.process = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
                "--bind",
                "127.0.0.1",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        eventually(self._answers, timeout=15, what=f"redis-server on port {self.port}")
        return self

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def kill(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(10)


@contextmanager
def postgres_history_url(base: str = POSTGRES_URL) -> Iterator[str]:
    """A dashboard history URL with a table prefix of its own; its tables are dropped
    afterwards."""
    import psycopg

    prefix = f"amqpq_test_{unique_name()}_"
    try:
        yield f"{base}?table_prefix={prefix}"
    finally:
        with psycopg.connect(base, autocommit=True) as conn:
            for table in ("tasks", "events", "workers", "minutes", "meta"):
                conn.execute(f'DROP TABLE IF EXISTS "{prefix}{table}"')
