# Scenario 4 of scenarios.py (Python 3.6+): an asyncio task whose coroutine sleeps synchronously,
# so the coroutine frames are on the thread's stack under the event loop's own frames.
# ruff: noqa: UP036 -- runs on Python 3.6 too
import asyncio
import sys
import time


def asyncio_main(ctx):
    if sys.version_info >= (3, 7):
        asyncio.run(coro_outer(ctx))  # @asyncio_run
    else:
        loop = asyncio.new_event_loop()
        loop.run_until_complete(coro_outer(ctx))  # @asyncio_run36


async def coro_outer(ctx):
    await coro_inner(ctx)  # @coro_await


async def coro_inner(ctx):
    ctx.record("coro_sleep")
    time.sleep(1000)  # @coro_sleep
