"""No background task dies unobserved: a failure is logged with its traceback and counted when it happens."""

from __future__ import annotations

import asyncio
import gc
import logging

import pytest

from daemon.system.tasks import Supervisor


async def test_a_failing_task_is_logged_and_counted_at_once(caplog: pytest.LogCaptureFixture) -> None:
    supervisor = Supervisor()

    async def broken() -> None:
        raise RuntimeError("synthesis exploded")

    with caplog.at_level(logging.ERROR, logger="daemon.system.tasks"):
        task = supervisor.spawn(broken(), "hark-test-broken")
        await asyncio.wait([task])
        await asyncio.sleep(0)  # done callbacks run on the next loop step
    assert supervisor.failures == 1
    [record] = caplog.records
    assert "hark-test-broken" in record.getMessage() and "synthesis exploded" in record.getMessage()
    assert record.exc_info is not None


async def test_cancelled_and_finished_tasks_are_not_failures() -> None:
    supervisor = Supervisor()
    done = supervisor.spawn(asyncio.sleep(0), "ok")
    waiting = supervisor.spawn(asyncio.sleep(60), "cancelled")
    await done
    waiting.cancel()
    await asyncio.wait([waiting])
    await asyncio.sleep(0)
    assert supervisor.failures == 0


async def test_what_escapes_elsewhere_reaches_the_loop_handler(caplog: pytest.LogCaptureFixture) -> None:
    supervisor = Supervisor()
    loop = asyncio.get_running_loop()
    old = loop.get_exception_handler()
    supervisor.install(loop)
    try:

        async def orphan() -> None:
            raise ValueError("nobody awaited me")

        task = loop.create_task(orphan())  # not through spawn(): only the loop's handler can see it
        await asyncio.wait([task])
        with caplog.at_level(logging.ERROR, logger="daemon.system.tasks"):
            del task
            gc.collect()
        assert supervisor.failures == 1
        assert "nobody awaited me" in caplog.text
    finally:
        loop.set_exception_handler(old)
