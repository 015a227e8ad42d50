"""LoopActor keeps pykka's model: tell/ask by ref, on_start/on_stop/on_failure, one message
at a time, in order — with every mailbox drained on the asyncio loop, no thread each."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pykka

from greenroom.actors.dispatch import BATCH, LoopActor

WAIT_S = 10


class Recorder(LoopActor):
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop)
        self.seen: list[Any] = []
        self.threads: set[int] = set()
        self.hooks: list[str] = []
        self.stopped = asyncio.Event()

    def on_start(self) -> None:
        self.hooks.append("start")

    def on_receive(self, message: Any) -> Any:
        self.threads.add(threading.get_ident())
        if message == "boom":
            raise RuntimeError("bad message")
        self.seen.append(message)
        return f"got {message}"

    def on_failure(self, *exc_info: Any) -> None:
        self.hooks.append(f"failure:{exc_info[1]}")

    def on_stop(self) -> None:
        self.hooks.append("stop")

    def on_reaped(self) -> None:
        self.stopped.set()


async def test_messages_are_handled_in_order_on_the_loop_and_asks_work_from_threads() -> None:
    loop = asyncio.get_running_loop()
    actor = Recorder.spawn(loop)
    ref = actor.actor_ref
    for i in range(3 * BATCH + 5):  # more than one drain's batch
        ref.tell(i)
    answer = await asyncio.to_thread(lambda: ref.ask("from a thread", timeout=WAIT_S))
    assert answer == "got from a thread"
    assert actor.seen == [*range(3 * BATCH + 5), "from a thread"]
    assert actor.threads == {threading.get_ident()}  # the loop's thread, for every message
    await asyncio.to_thread(lambda: ref.stop(timeout=WAIT_S))
    assert actor.hooks == ["start", "stop"] and not ref.is_alive()
    assert ref not in pykka.ActorRegistry.get_all()


async def test_a_failure_in_a_told_message_calls_on_failure_and_stops_the_actor() -> None:
    actor = Recorder.spawn(asyncio.get_running_loop())
    actor.actor_ref.tell("boom")
    actor.actor_ref.tell("never handled")
    await asyncio.wait_for(actor.stopped.wait(), WAIT_S)
    assert actor.hooks == ["start", "failure:bad message"]
    assert actor.seen == [] and not actor.actor_ref.is_alive()


async def test_an_asked_failure_goes_back_to_the_caller_and_the_actor_lives_on() -> None:
    actor = Recorder.spawn(asyncio.get_running_loop())
    ref = actor.actor_ref
    future = ref.ask("boom", block=False)
    try:
        await asyncio.to_thread(lambda: future.get(timeout=WAIT_S))
    except RuntimeError as exc:
        assert str(exc) == "bad message"
    else:
        raise AssertionError("the asked failure did not reach the caller")
    assert (
        await asyncio.to_thread(lambda: ref.ask("still here", timeout=WAIT_S)) == "got still here"
    )
    ref.stop(block=False)
    await asyncio.wait_for(actor.stopped.wait(), WAIT_S)


async def test_a_paused_mailbox_waits_until_resumed() -> None:
    actor = Recorder.spawn(asyncio.get_running_loop())
    actor.actor_ref.tell("first")
    await asyncio.to_thread(lambda: actor.actor_ref.ask("sync", timeout=WAIT_S))
    actor.pause()
    actor.actor_ref.tell("second")
    for _ in range(5):  # several loop turns: a paused mailbox is not drained
        await asyncio.sleep(0)
    assert actor.seen == ["first", "sync"]
    actor.resume()
    await asyncio.to_thread(lambda: actor.actor_ref.ask("third", timeout=WAIT_S))
    assert actor.seen == ["first", "sync", "second", "third"]
    actor.actor_ref.stop(block=False)
    await asyncio.wait_for(actor.stopped.wait(), WAIT_S)
