"""The contract every result store keeps (Redis, PostgreSQL, memory), one suite for all."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Iterator

import pytest

from amqpq.envelope import ErrorInfo, Reply, TaskState
from amqpq.errors import ConfigError
from amqpq.results import ResultStore, ResultStoreError, open_store
from tests.support.stores import port_closed
from tests.support.waiting import eventually


def reply(task_id: str, state: TaskState = TaskState.SUCCESS, **fields: object) -> Reply:
    return Reply(id=task_id, task="tests.add", state=state, **fields)  # type: ignore[arg-type]


@pytest.fixture
def store(store_url: str) -> Iterator[ResultStore]:
    opened = open_store(store_url)
    yield opened
    opened.close()


def new_id() -> str:
    return f"order-{uuid.uuid4().hex[:8]}"


def test_unknown_id_is_none(store: ResultStore) -> None:
    assert store.load(new_id()) is None


def test_saved_state_reads_back_any_number_of_times(store: ResultStore) -> None:
    task_id = new_id()
    store.save(reply(task_id, result={"total": 7}, worker="w1"), expires=60)
    for _ in range(3):
        stored = store.load(task_id)
        assert stored is not None
        assert stored.state is TaskState.SUCCESS
        assert stored.reply.result == {"total": 7}
        assert stored.reply.task == "tests.add"
        assert stored.reply.worker == "w1"


def test_later_state_replaces_earlier(store: ResultStore) -> None:
    task_id = new_id()
    store.save(reply(task_id, TaskState.PROGRESS, meta={"done": 1}), expires=60)
    assert store.load(task_id).reply.meta == {"done": 1}  # type: ignore[union-attr]
    error = ErrorInfo(type="ValueError", message="bad", traceback="Traceback ...")
    store.save(reply(task_id, TaskState.FAILURE, error=error), expires=60)
    stored = store.load(task_id)
    assert stored is not None
    assert stored.state is TaskState.FAILURE
    assert stored.reply.error == error


def test_forget_deletes(store: ResultStore) -> None:
    task_id = new_id()
    store.save(reply(task_id, result=1), expires=60)
    store.forget(task_id)
    assert store.load(task_id) is None
    store.forget(task_id)  # forgetting twice is fine


def test_expired_result_is_gone(store: ResultStore) -> None:
    task_id = new_id()
    store.save(reply(task_id, result=1), expires=0.3)
    eventually(lambda: store.load(task_id) is None, timeout=10, what="the result to expire")


def test_non_json_result_is_stored_as_an_encode_error(store: ResultStore) -> None:
    task_id = new_id()
    store.save(reply(task_id, result=object()), expires=60)
    stored = store.load(task_id)
    assert stored is not None
    assert stored.state is TaskState.FAILURE
    assert stored.reply.error is not None
    assert stored.reply.error.type == "EncodeError"


def test_wait_returns_once_final_from_another_thread(store: ResultStore) -> None:
    task_id = new_id()
    store.save(reply(task_id, TaskState.STARTED), expires=60)

    def later() -> None:
        store.save(reply(task_id, TaskState.PROGRESS, meta={"n": 1}), expires=60)
        store.save(reply(task_id, result=42), expires=60)

    writer = threading.Timer(0.3, later)
    writer.start()
    try:
        stored = store.wait(task_id, timeout=20)
    finally:
        writer.join()
    assert stored is not None
    assert stored.state is TaskState.SUCCESS
    assert stored.reply.result == 42


def test_wait_times_out_with_the_current_state(store: ResultStore) -> None:
    task_id = new_id()
    store.save(reply(task_id, TaskState.STARTED), expires=60)
    stored = store.wait(task_id, timeout=0.2)
    assert stored is not None
    assert stored.state is TaskState.STARTED
    assert store.wait(new_id(), timeout=0.1) is None


async def test_async_twins(store: ResultStore) -> None:
    task_id = new_id()
    await store.asave(reply(task_id, TaskState.STARTED), expires=60)
    stored = await store.aload(task_id)
    assert stored is not None
    assert stored.state is TaskState.STARTED

    async def later() -> None:
        await asyncio.sleep(0.3)
        await store.asave(reply(task_id, result="done"), expires=60)

    writer = asyncio.ensure_future(later())
    final = await store.await_final(task_id, timeout=20)
    await writer
    assert final is not None
    assert final.reply.result == "done"
    await store.aforget(task_id)
    assert await store.aload(task_id) is None
    await store.aclose()


@pytest.mark.parametrize("scheme", ["redis", "postgresql"])
def test_unreachable_store_is_one_line_naming_the_url(scheme: str) -> None:
    port = port_closed()
    url = f"{scheme}://user:secret@127.0.0.1:{port}/0"
    store = open_store(url)
    with pytest.raises(ResultStoreError) as caught:
        store.load("x")
    message = str(caught.value)
    assert f"127.0.0.1:{port}" in message
    assert "secret" not in message
    assert "\n" not in message


def test_unknown_scheme_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown scheme 'mongodb'"):
        open_store("mongodb://user:secret@127.0.0.1/db")
    with pytest.raises(ConfigError) as caught:
        open_store("mongodb://user:secret@127.0.0.1/db")
    assert "secret" not in str(caught.value)


def with_option(url: str, option: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}{option}"


async def test_writes_that_arrive_together_are_each_stored_in_order(store: ResultStore) -> None:
    # Given many tasks ending at once on one loop (each write may share a batch)
    ids = [new_id() for _ in range(300)]

    async def one_task(task_id: str, n: int) -> None:
        await store.asave(reply(task_id, TaskState.STARTED), expires=60)
        await store.asave(reply(task_id, result=n), expires=60)

    await asyncio.gather(*(one_task(task_id, n) for n, task_id in enumerate(ids)))

    # Then every task's last state is the one stored, whichever batch carried it
    for n, task_id in enumerate(ids):
        stored = await store.aload(task_id)
        assert stored is not None
        assert (stored.state, stored.reply.result) == (TaskState.SUCCESS, n)
    await store.aclose()


def test_a_result_larger_than_max_bytes_is_stored_as_an_encode_error(store_url: str) -> None:
    store = open_store(with_option(store_url, "max_bytes=1000"))
    try:
        task_id, small_id = new_id(), new_id()
        store.save(reply(task_id, result="x" * 2000), expires=60)
        store.save(reply(small_id, result="x" * 10), expires=60)
        stored = store.load(task_id)
        assert stored is not None
        assert stored.state is TaskState.FAILURE
        assert stored.reply.error is not None
        assert stored.reply.error.type == "EncodeError"
        assert "too large to store" in stored.reply.error.message
        assert "at most 1,000" in stored.reply.error.message
        small = store.load(small_id)
        assert small is not None
        assert small.reply.result == "x" * 10
    finally:
        store.close()


def test_max_bytes_must_be_a_positive_number(store_url: str) -> None:
    with pytest.raises(ConfigError, match="max_bytes='lots' is not a positive number"):
        open_store(with_option(store_url, "max_bytes=lots"))


@pytest.mark.parametrize("scheme", ["redis", "postgresql"])
async def test_every_writer_of_a_batch_the_store_refused_gets_the_error(scheme: str) -> None:
    store = open_store(f"{scheme}://127.0.0.1:{port_closed()}/0")
    outcomes = await asyncio.gather(
        *(store.asave(reply(new_id()), expires=60) for _ in range(5)), return_exceptions=True
    )
    assert all(isinstance(outcome, ResultStoreError) for outcome in outcomes), outcomes
    await store.aclose()
