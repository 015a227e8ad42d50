"""Actor behaviour that survived mutation testing (`make mutate`, docs/mutation.md):
foreground turns that fail or are cut by shutdown, and what their log lines say (the
lines `greenroom trace` and `greenroom doctor` read)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from greenroom import Orchestrator, TaskStatus, TurnInProgressError
from greenroom.doctor import doctor_main
from greenroom.errors import AgentError
from greenroom.logs import configure_logging, flush_logging, reset_logging
from greenroom.models import (
    EVENT_MESSAGE_COMPLETED,
    ErrorInfo,
    Event,
    SessionRecord,
    TaskRecord,
)
from greenroom.settings import LoggingSettings, ServerSettings, Settings, StoreSettings
from greenroom.store.sqlite import SqliteStore
from greenroom.typing import AgentContext, History
from tests.actors.agents import boom
from tests.conftest import make_settings

WAIT_S = 10


class Silent(Exception):
    """An exception with an empty message."""


async def silent(history: History) -> str:
    raise Silent()


class HalfAnswer:
    """An agent that streams one chunk, then waits for ``release`` (or a cancel)."""

    def __init__(self) -> None:
        self.streaming = asyncio.Event()
        self.release = asyncio.Event()

    async def __call__(self, history: History) -> AsyncIterator[str]:
        yield "partial "
        self.streaming.set()
        await self.release.wait()
        yield "rest"


@pytest.fixture
def log_path(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "greenroom.log"
    configure_logging(LoggingSettings(path=str(path), level="info", format="json"))
    yield path
    reset_logging()


async def _log_lines(path: Path, event: str) -> list[dict[str, Any]]:
    await asyncio.to_thread(flush_logging)  # waits for the log writer: off the loop
    text = await asyncio.to_thread(path.read_text)
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    return [line for line in lines if line.get("event") == event]


def _json(message: Any) -> dict[str, Any]:
    """A transcript entry as JSON (``Session.messages`` returns dicts or ChatMessages)."""
    return message.to_json() if hasattr(message, "to_json") else dict(message)


async def _completions(session: Any) -> list[dict[str, Any]]:
    page = await session.events(after=0)
    return [e.data for e in page.events if e.type == EVENT_MESSAGE_COMPLETED]


async def test_a_failed_turn_says_why_keeps_only_the_question_and_frees_the_session(
    orch: Orchestrator, log_path: Path
) -> None:
    orch.register_agent("boom", boom)
    orch.register_agent("silent", silent)
    session = await orch.create_session(agent="boom")
    with pytest.raises(AgentError, match=r"^RuntimeError: the model server exploded$"):
        async for _ in session.send("hello"):
            pass
    [failed] = await _completions(session)
    assert failed["status"] == "failed"
    assert failed["error"] == {"type": "RuntimeError", "message": "the model server exploded"}
    assert [(m.role, m.content) for m in await session.messages()] == [("user", "hello")]

    quiet = await orch.create_session(agent="silent")  # no message: the type names it
    with pytest.raises(AgentError, match=r"^Silent: Silent$"):
        async for _ in quiet.send("hello"):
            pass

    # The failed turn ended: the session takes the next one (no TurnInProgressError).
    with pytest.raises(AgentError, match=r"^RuntimeError: "):
        async for _ in session.send("hello again"):
            pass

    [line] = [
        x for x in await _log_lines(log_path, "turn_failed") if x["turn_id"] == failed["turn_id"]
    ]
    assert line["level"] == "warning"
    assert line["turn_id"] == failed["turn_id"]
    assert (line["error_type"], line["error"]) == ("RuntimeError", "the model server exploded")
    assert line["session_id"] == session.id
    assert isinstance(line["duration_ms"], float) and line["duration_ms"] >= 0

    orch.register_agent("echo2", lambda history: "fine: " + history[-1]["content"])
    ok = await orch.create_session(agent="echo2")
    assert "".join([c async for c in ok.send("again")]) == "fine: again"
    [done] = await _log_lines(log_path, "turn_completed")
    [completed] = await _completions(ok)
    assert done["turn_id"] == completed["turn_id"]
    assert (done["chars"], done["seq"]) == (len("fine: again"), 1)
    assert isinstance(done["duration_ms"], float) and done["duration_ms"] >= 0


async def test_a_turn_cut_by_shutdown_is_recorded_as_interrupted(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=str(tmp_path / "data"),
        store=StoreSettings(kind="sqlite"),
        server=ServerSettings(shutdown_grace_s=0.1),
    )
    agent = HalfAnswer()
    orch = Orchestrator(settings)
    orch.register_agent("half", agent)
    await orch.start()
    session = await orch.create_session(agent="half")
    chunks: list[str] = []

    async def talk() -> None:
        async for chunk in session.send("tell me everything"):
            chunks.append(chunk)

    talking = asyncio.ensure_future(talk())
    await asyncio.wait_for(agent.streaming.wait(), WAIT_S)
    await orch.stop()
    with pytest.raises(AgentError, match=r"^Interrupted: the turn was interrupted by shutdown$"):
        await asyncio.wait_for(talking, WAIT_S)
    assert chunks == ["partial "]

    async with Orchestrator(settings) as again:  # what the store kept
        again.register_agent("half", agent)
        kept = again.session(session.id)
        [interrupted] = await _completions(kept)
        assert interrupted["status"] == "failed"
        assert interrupted["error"] == {
            "type": "Interrupted",
            "message": "the turn was interrupted by shutdown",
        }
        assert [m.role for m in await kept.messages()] == ["user"]


class Recorder:
    """An Agent that answers with the history it was given and keeps the context."""

    name = "recorder"

    def __init__(self) -> None:
        self.contexts: list[AgentContext] = []
        self.histories: list[list[dict[str, str]]] = []

    async def stream(self, history: History, ctx: AgentContext) -> AsyncIterator[str]:
        self.contexts.append(ctx)
        self.histories.append([dict(m) for m in history])
        yield f"{len(history)} messages, "
        yield "last: " + history[-1]["content"]

    async def complete(self, history: History, ctx: AgentContext) -> str:
        return "".join([c async for c in self.stream(history, ctx)])

    async def aclose(self) -> None:
        return None


async def test_a_turn_is_stored_whole_and_survives_a_restart(tmp_path: Path) -> None:
    settings = Settings(data_dir=str(tmp_path / "data"), store=StoreSettings(kind="sqlite"))
    agent = Recorder()
    before = time.time()
    async with Orchestrator(settings) as orch:
        orch.register_agent("recorder", agent)
        session = await orch.create_session(agent="recorder")
        answer = "".join([c async for c in session.send("hello", request_id="req-turn-1")])
        assert answer == "1 messages, last: hello"
        second = "".join([c async for c in session.send("again")])
        assert second == "3 messages, last: again"  # the history: question, answer, question
        with pytest.raises(ValueError, match=r"^content: must not be empty$"):
            await session.start_turn("   ")
        live = [_json(m) for m in await session.messages()]
        completions = await _completions(session)
    after = time.time()

    first_turn = completions[0]["turn_id"]
    assert [c.turn_id for c in agent.contexts] == [c["turn_id"] for c in completions]
    assert agent.contexts[0].session_id == session.id
    assert agent.contexts[0].request_id == "req-turn-1"
    assert [(m["role"], m["content"], m["turn_id"], m["seq"]) for m in live] == [
        ("user", "hello", first_turn, None),
        ("assistant", answer, first_turn, 1),
        ("user", "again", completions[1]["turn_id"], None),
        ("assistant", second, completions[1]["turn_id"], 2),
    ]
    assert all(before <= m["created_at"] <= after for m in live)
    assert completions[0]["status"] == "completed"
    assert completions[0]["message"] == live[1]

    async with Orchestrator(settings) as again:  # what the store kept is the same
        again.register_agent("recorder", agent)
        assert [_json(m) for m in await again.session(session.id).messages()] == live


async def test_a_second_turn_is_refused_naming_the_running_one(orch: Orchestrator) -> None:
    agent = HalfAnswer()
    orch.register_agent("half", agent)
    session = await orch.create_session(agent="half")

    async def talk() -> str:
        return "".join([chunk async for chunk in session.send("first")])

    talking = asyncio.ensure_future(talk())
    await asyncio.wait_for(agent.streaming.wait(), WAIT_S)
    with pytest.raises(TurnInProgressError) as refused:
        await session.start_turn("second")
    agent.release.set()
    assert await asyncio.wait_for(talking, WAIT_S) == "partial rest"
    [done] = await _completions(session)
    assert str(refused.value) == f"session {session.id} is already running turn {done['turn_id']}"


class Unanswerable:
    """An answer that cannot even be tested for truth: the task actor's own handler
    raises on it (``content or ""``), on pykka's failure path."""

    def __bool__(self) -> bool:
        raise RuntimeError("the truth of this answer is undefined")


class UnanswerableAgent:
    """A buggy Agent implementation: ``complete`` returns something that is no ``str``."""

    name = "unanswerable"

    async def stream(self, history: History, ctx: AgentContext) -> AsyncIterator[str]:
        yield "streamed fine"

    async def complete(self, history: History, ctx: AgentContext) -> Any:
        return Unanswerable()

    async def aclose(self) -> None:
        return None


async def test_a_crashed_task_actor_is_logged_so_doctor_names_it(
    orch: Orchestrator, log_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    orch.register_agent("unanswerable", UnanswerableAgent())
    session = await orch.create_session()
    crashed = await session.start_task("x", agent="unanswerable")
    done = await crashed.wait(timeout=WAIT_S)
    assert done.error is not None and done.error.type == "ActorCrashed"
    [line] = await _log_lines(log_path, "actor_crashed")
    assert line["level"] == "error"
    assert (line["actor"], line["task_id"], line["session_id"]) == ("task", crashed.id, session.id)
    assert (line["error_type"], line["error"]) == (
        "RuntimeError",
        "the truth of this answer is undefined",
    )
    assert await asyncio.to_thread(doctor_main, ["--log", str(log_path)]) == 1
    out = capsys.readouterr().out
    assert (
        "[actor_crashed] task actor crashed: RuntimeError: the truth of this answer is undefined"
        in out
    )
    [recorded] = await _log_lines(log_path, "completion_recorded")  # exactly one completion
    assert (recorded["task_id"], recorded["status"]) == (crashed.id, "failed")


async def test_stats_count_the_live_sessions(orch: Orchestrator) -> None:
    first = await orch.create_session()
    await orch.create_session()
    await first.info()
    stats = await orch.stats()
    assert stats["live_sessions"] == 2
    assert stats["passivating"] == 0
    assert stats["stale_lifecycle_messages"] == 0


async def test_events_older_than_the_memory_ring_are_read_from_the_store(tmp_path: Path) -> None:
    async with Orchestrator(make_settings(tmp_path, replay_events=2)) as orch:
        session = await orch.create_session()
        tasks = [await session.start_task(f"job {i}") for i in range(4)]
        for task in tasks:
            await task.wait(timeout=WAIT_S)
        seqs: list[int | None] = []
        page = await session.events(after=0, limit=5)
        assert [e.seq for e in page.events] == [1, 2, 3, 4, 5]
        assert (page.next_after, page.has_more) == (5, True)
        while True:
            seqs += [e.seq for e in page.events]
            if not page.has_more:
                break
            page = await session.events(after=page.next_after, limit=5)
        assert seqs == list(range(1, 13))  # queued, started, completed for each task
        events = (await session.events(after=0)).events
        completed = {e.data["task_id"] for e in events if e.type == "task.completed"}
        assert completed == {t.id for t in tasks}


async def test_a_background_task_sees_its_prompt_alone_and_a_side_question_the_talk(
    orch: Orchestrator,
) -> None:
    agent = Recorder()
    orch.register_agent("recorder", agent)
    session = await orch.create_session(agent="recorder")
    answer = "".join([c async for c in session.send("hello")])
    job = await session.start_task("the job", agent="recorder")
    await job.wait(timeout=WAIT_S)
    side = await session.start_task("a side question", kind="side", agent="recorder")
    await side.wait(timeout=WAIT_S)
    assert agent.histories[1] == [{"role": "user", "content": "the job"}]
    assert agent.histories[2] == [
        {"role": "user", "content": "hello"},
        {"role": "assistant", "content": answer},
        {"role": "user", "content": "a side question"},
    ]


def _left_running(db: Path, *, attempt: int, max_attempts: int) -> None:
    """What a crashed process left in its store: a session with a running task."""
    store = SqliteStore(db)
    store.open()
    store.commit("ses_1", session=SessionRecord("ses_1", "echo", 1.0, {}))
    running = TaskRecord(
        "tsk_1",
        "ses_1",
        "background",
        "echo",
        "the job",
        TaskStatus.RUNNING,
        1.0,
        started_at=2.0,
        request_id="req-before-crash",
        attempt=attempt,
        max_attempts=max_attempts,
    )
    store.commit("ses_1", tasks=[running], events=[Event("task.queued", {}, 1, 1.0)])
    store.close()


async def test_a_task_left_running_by_a_crash_is_recorded_interrupted_by_the_restart(
    tmp_path: Path, log_path: Path
) -> None:
    settings = Settings(data_dir=str(tmp_path / "data"), store=StoreSettings(kind="sqlite"))
    await asyncio.to_thread(Path(settings.data_dir).mkdir, parents=True)
    await asyncio.to_thread(
        _left_running, Path(settings.data_dir) / "greenroom.db", attempt=1, max_attempts=1
    )
    before = time.time()
    async with Orchestrator(settings) as orch:
        done = await (await orch.session("ses_1").task("tsk_1")).wait(timeout=WAIT_S)
    assert done.status is TaskStatus.INTERRUPTED
    assert done.error == ErrorInfo("Interrupted", "interrupted by restart")
    assert (done.seq, done.content, done.started_at) == (2, None, 2.0)
    assert before <= done.finished_at <= time.time()
    [recorded] = await _log_lines(log_path, "completion_recorded")
    assert (recorded["task_id"], recorded["request_id"]) == ("tsk_1", "req-before-crash")


async def test_a_task_with_attempts_left_is_queued_again_and_runs_after_a_crash(
    tmp_path: Path, log_path: Path
) -> None:
    settings = Settings(data_dir=str(tmp_path / "data"), store=StoreSettings(kind="sqlite"))
    await asyncio.to_thread(Path(settings.data_dir).mkdir, parents=True)
    await asyncio.to_thread(
        _left_running, Path(settings.data_dir) / "greenroom.db", attempt=1, max_attempts=2
    )
    async with Orchestrator(settings) as orch:
        session = orch.session("ses_1")
        done = await (await session.task("tsk_1")).wait(timeout=WAIT_S)
        assert (done.status, done.content) == (TaskStatus.COMPLETED, "the job")
        events = (await session.events(after=0)).events
        again = await session.get_task("tsk_1")
    assert [(e.seq, e.type) for e in events] == [
        (1, "task.queued"),
        (2, "task.queued"),
        (3, "task.started"),
        (4, "task.completed"),
    ]
    assert events[1].data["requeued"] is True
    assert events[1].data["task"]["status"] == "queued"
    assert events[1].data["task"]["started_at"] is None
    assert again.attempt == 2 and done.seq == 4
    [requeued] = await _log_lines(log_path, "task_requeued")
    assert (requeued["task_id"], requeued["was"], requeued["attempt"]) == ("tsk_1", "running", 1)
    assert requeued["request_id"] == "req-before-crash"
