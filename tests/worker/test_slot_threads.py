"""SlotThreads: a task's outcome comes back whether the loop waited for it inline or not."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from amqpq.worker.execution import Outcome
from amqpq.worker.pools.handoff import SlotThreads


def _quick() -> Outcome:
    return Outcome(status="success", result=threading.current_thread().name)


def _slow() -> Outcome:
    time.sleep(SlotThreads.INLINE_WAIT * 20)
    return Outcome(status="success", result="slow")


def _broken() -> Outcome:
    raise KeyboardInterrupt  # what an async exception outside the task's try looks like


@pytest.mark.parametrize("inline_wait", [True, False])
def test_outcome_comes_back_from_a_task_thread(inline_wait: bool) -> None:
    async def main() -> None:
        threads = SlotThreads(1, asyncio.get_running_loop())
        try:
            quick = await threads.run(_quick, inline_wait=inline_wait)
            assert quick.result == "amqpq-task-0"  # ran in the task thread, not the loop's
            slow = await threads.run(_slow, inline_wait=inline_wait)  # outlives the inline wait
            assert slow.result == "slow"
            with pytest.raises(KeyboardInterrupt):
                await threads.run(_broken, inline_wait=inline_wait)
        finally:
            threads.shutdown()

    asyncio.run(main())


def test_a_slow_task_leaves_the_loop_free() -> None:
    """Past the inline wait the loop runs other callbacks while the task goes on."""

    async def main() -> None:
        threads = SlotThreads(1, asyncio.get_running_loop())
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0)

        ticker = asyncio.create_task(tick())
        try:
            await asyncio.sleep(0)
            seen = ticks
            outcome = await threads.run(_slow, inline_wait=True)
            assert outcome.result == "slow"
            assert ticks > seen + 1
        finally:
            ticker.cancel()
            threads.shutdown()

    asyncio.run(main())


def test_outcomes_finishing_at_the_inline_deadline_are_never_lost() -> None:
    """Tasks that end around the moment the loop stops waiting inline: each outcome
    arrives exactly once, by whichever path won."""

    def around_deadline(i: int) -> Outcome:
        time.sleep(SlotThreads.INLINE_WAIT * (0.5 + (i % 10) / 10))
        return Outcome(status="success", result=i)

    async def main() -> None:
        threads = SlotThreads(1, asyncio.get_running_loop())
        try:
            for i in range(200):
                outcome = await threads.run(lambda i=i: around_deadline(i), inline_wait=True)
                assert outcome.result == i
        finally:
            threads.shutdown()

    asyncio.run(main())


def test_many_outcomes_finishing_together_each_reach_their_caller() -> None:
    """Completions that pile up share a wake-up of the loop; none is lost or swapped."""

    async def main() -> None:
        threads = SlotThreads(8, asyncio.get_running_loop())
        try:
            outcomes = await asyncio.gather(
                *(
                    threads.run(lambda i=i: Outcome(status="success", result=i), inline_wait=False)
                    for i in range(2000)
                )
            )
            assert [o.result for o in outcomes] == list(range(2000))
        finally:
            threads.shutdown()

    asyncio.run(main())
