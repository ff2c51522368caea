"""Result-store writes of concurrent tasks: batched (what the worker does) vs one by one.

    benchmarks/.venv/bin/python -m benchmarks.store_writes [--n 4000] [--writers 8] [--rounds 2]

8 writers on one event loop, as the 8 slots of a default worker process, each storing
final states with ``store.asave`` (batched: whatever piled up while the previous write
was in flight goes as one Redis pipeline / one PostgreSQL transaction), against the
same states written one by one (one pipeline, or one autocommit statement, each).
Redis and PostgreSQL from ``BENCH_REDIS_URL`` / ``BENCH_POSTGRES_URL`` (the defaults
of benchmarks/systems.py); the keys expire after a minute and the table is dropped.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from amqpq.envelope import Reply, TaskState
from amqpq.results import open_store
from amqpq.results.base import stored_text
from benchmarks.systems import STORES


def _one_by_one(store: Any) -> Callable[[Reply], Awaitable[None]]:
    if hasattr(store, "_awrite_keys"):  # Redis: one pipeline (SET + PUBLISH) per state

        async def write_key(reply: Reply) -> None:
            text = stored_text(reply, store.max_bytes)
            await store._awrite_keys([(store.key(reply.id), text, 60_000)])

        return write_key

    async def write_row(reply: Reply) -> None:  # PostgreSQL: one autocommit statement
        row = (reply.id, reply.state.value, reply.task, stored_text(reply), 60, store.table)
        await store._arun(store._upsert, row)

    return write_row


async def _measure(url: str, mode: str, n: int, writers: int) -> float:
    store = open_store(url)
    replies = [
        Reply(id=str(uuid.uuid4()), task="bench.add", state=TaskState.SUCCESS, result=3)
        for _ in range(n)
    ]
    write: Callable[[Reply], Awaitable[None]]
    if mode == "batched":

        async def write(reply: Reply) -> None:
            await store.asave(reply, 60)

    else:
        write = _one_by_one(store)
    await store.asave(replies[0], 60)  # connect (and create the table) before the clock
    pending = iter(replies)

    async def writer() -> None:
        for reply in pending:
            await write(reply)

    start = time.perf_counter()
    await asyncio.gather(*(writer() for _ in range(writers)))
    seconds = time.perf_counter() - start
    await store.aclose()
    store.close()
    return n / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=4000)
    parser.add_argument("--writers", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    stores = {"redis": STORES["store_redis"], "postgresql": STORES["store_postgres"]}
    for round_ in range(1, args.rounds + 1):
        for name, url in stores.items():
            for mode in ("batched", "one-by-one"):
                rate = asyncio.run(_measure(url, mode, args.n, args.writers))
                print(f"round {round_}  {name:10} {mode:10} {rate:8,.0f} writes/s", flush=True)
    _drop_table(stores["postgresql"])


def _drop_table(url: str) -> None:
    store = open_store(url)
    table = getattr(store, "table", None)
    if table is not None:
        from psycopg import sql

        store._run(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(table)), ())
    store.close()


if __name__ == "__main__":
    main()
