"""Run real scenarios, then debug them from the log file alone with trace and doctor."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from greenroom import Orchestrator
from greenroom.config import load_settings
from greenroom.doctor import doctor_main
from greenroom.http import create_app
from greenroom.logs import configure_logging, flush_logging, get_logger, reset_logging
from greenroom.settings import LoggingSettings
from greenroom.testing import FakeOpenAI
from greenroom.trace import trace_main
from tests.actors.agents import forever

SECRET_KEY = "sk-planted-secret-key-123"
SECRET_TOKEN = "planted-bearer-token-456"


@pytest.fixture
def log_path(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "greenroom.log"
    configure_logging(LoggingSettings(path=str(path), level="info", format="json"))
    yield path
    reset_logging()


async def _scenario(tmp_path: Path, log_path: Path, *, stuck: bool) -> dict[str, str]:
    settings = load_settings(
        overrides={
            "data_dir": str(tmp_path / "d"),
            "store": {"kind": "memory"},
            "server": {"token": SECRET_TOKEN},
        },
        env={},
    )
    headers = {"Authorization": f"Bearer {SECRET_TOKEN}"}
    orch = Orchestrator(settings)
    orch.register_agent("forever", forever)
    await orch.start()
    client = TestClient(TestServer(create_app(orch), host="127.0.0.1"))
    await client.start_server()
    try:
        sid = (await (await client.post("/v1/sessions", json={}, headers=headers)).json())["id"]
        task = await (
            await client.post(
                f"/v1/sessions/{sid}/tasks",
                json={"prompt": "x"},
                headers={**headers, "X-Request-ID": "req-start"},
            )
        ).json()
        await client.get(f"/v1/sessions/{sid}/tasks/{task['id']}?wait=10", headers=headers)
        for _ in range(2):
            await client.get(f"/v1/sessions/{sid}/results", headers=headers)
        await client.post(f"/v1/sessions/{sid}/results/ack", json={"up_to": 3}, headers=headers)
        ids = {"session": sid, "task": task["id"]}
        if stuck:
            hung = await (
                await client.post(
                    f"/v1/sessions/{sid}/tasks",
                    json={"prompt": "y", "agent": "forever"},
                    headers=headers,
                )
            ).json()
            ids["stuck"] = hung["id"]
            await client.get(f"/v1/sessions/{sid}/tasks/{hung['id']}?wait=0.2", headers=headers)
    finally:
        await client.close()
        if not stuck:
            await orch.stop()
    await asyncio.to_thread(flush_logging)  # it waits for the log writer: off the loop
    if stuck:  # the process "crashed": cut the log mid-line, then stop for the test's sake
        text = log_path.read_text()
        log_path.write_text(text + '{"event": "task_fini')
        await orch.stop()
        # Its shutdown lines must be written before the log is cut again, or a late
        # write would land after the cut and "finish" the stuck task.
        await asyncio.to_thread(flush_logging)
        log_path.write_text(text + '{"event": "task_fini')
    return ids


async def test_trace_tells_the_whole_story_of_a_request(
    tmp_path: Path, log_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = await _scenario(tmp_path, log_path, stuck=False)
    assert await asyncio.to_thread(trace_main, ["req-start", "--log", str(log_path)]) == 0
    out = capsys.readouterr().out
    order = [
        "request_started",
        "task_queued",
        "task_started",
        "task_finished",
        "completion_recorded",
        "results_read",
        "results_acked",
    ]
    positions = [out.index(event) for event in order]
    assert positions == sorted(positions), out
    assert f"verdict: task {ids['task']} completed in" in out
    assert "result read 2 time(s), acknowledged" in out
    assert await asyncio.to_thread(trace_main, [ids["task"], "--log", str(log_path), "--json"]) == 0
    story = json.loads(capsys.readouterr().out)
    assert story["kind"] == "task" and "completed" in story["verdict"]
    assert await asyncio.to_thread(trace_main, ["tsk_nowhere", "--log", str(log_path)]) == 2
    assert await asyncio.to_thread(doctor_main, ["--log", str(log_path)]) == 0
    assert "0 problems" in capsys.readouterr().out


async def test_doctor_names_the_task_a_crash_left_unfinished(
    tmp_path: Path, log_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = await _scenario(tmp_path, log_path, stuck=True)
    assert await asyncio.to_thread(doctor_main, ["--log", str(log_path), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    never_ended = [f for f in report["problems"] if f["kind"] == "task_never_ended"]
    assert [f["ids"]["task_id"] for f in never_ended] == [ids["stuck"]]
    assert report["garbled_lines"] == 1
    assert await asyncio.to_thread(trace_main, [ids["stuck"], "--log", str(log_path)]) == 0
    assert "started and never ended" in capsys.readouterr().out


async def test_unread_results_are_warnings_that_fail_only_strict_runs(
    tmp_path: Path, log_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with Orchestrator({"store": {"kind": "memory"}, "data_dir": str(tmp_path)}) as orch:
        session = await orch.create_session()
        feed = await session.subscribe()  # waits for the end without reading the result
        await session.start_task("nobody reads me")
        while (await asyncio.wait_for(feed.get(), 10)).type != "task.completed":
            pass
        read_by_wait = await session.start_task("read by wait")
        await read_by_wait.wait(timeout=10)  # Task.wait reads it (GET .../tasks/{tid})
    await asyncio.to_thread(flush_logging)  # it waits for the log writer: off the loop
    assert await asyncio.to_thread(doctor_main, ["--log", str(log_path)]) == 0
    out = capsys.readouterr().out
    assert "[result_never_read]" in out and "(seq 3)" in out
    assert f"result of task {read_by_wait.id} (seq 6) was read but never acknowledged" in out
    assert await asyncio.to_thread(doctor_main, ["--log", str(log_path), "--strict"]) == 1


async def test_secrets_never_reach_the_log(
    tmp_path: Path, log_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _scenario(tmp_path, log_path, stuck=False)
    async with FakeOpenAI() as fake:
        config = {
            "store": {"kind": "memory"},
            "data_dir": str(tmp_path / "o"),
            "agents": {
                "gpt": {"kind": "openai", "base_url": fake.base_url, "api_key_env": "PLANTED_KEY"}
            },
        }
        monkeypatch.setenv("PLANTED_KEY", SECRET_KEY)
        async with Orchestrator(config) as orch:
            session = await orch.create_session(agent="gpt")
            done = await (await session.start_task("hello")).wait(timeout=10)
            assert done.content == "hello"
        assert fake.requests[0].headers["Authorization"] == f"Bearer {SECRET_KEY}"
    await asyncio.to_thread(flush_logging)  # it waits for the log writer: off the loop
    text = log_path.read_text()
    assert "agent_call_completed" in text
    assert SECRET_KEY not in text and SECRET_TOKEN not in text
    assert '"content"' not in text  # log_content is off: lengths only


def test_missing_log_file_exits_2(tmp_path: Path) -> None:
    assert doctor_main(["--log", str(tmp_path / "none.log")]) == 2
    assert trace_main(["x", "--log", str(tmp_path / "none.log")]) == 2


def test_rotation_caps_the_log_size(tmp_path: Path) -> None:
    path = tmp_path / "small.log"
    configure_logging(LoggingSettings(path=str(path), max_bytes=2000, backup_count=2))
    log = get_logger()
    for i in range(200):
        log.info("filler_event", n=i, session_id="ses_x")
    flush_logging()
    reset_logging()
    files = sorted(tmp_path.glob("small.log*"))
    assert len(files) == 3
    assert all(f.stat().st_size <= 2200 for f in files)


async def test_doctor_reads_a_large_log_in_one_pass(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "big.log"
    filler = {
        "event": "actor_message",
        "actor": "session",
        "msg": "GetResults",
        "session_id": "ses_1",
        "duration_ms": 0.1,
        "level": "info",
        "ts": "2026-11-25T00:00:00.000000Z",
    }
    task = {"session_id": "ses_1", "level": "info", "ts": "2026-11-25T00:00:01.000000Z"}
    # What the doctor must find, planted among 100 000 lines of a rotated log: the older
    # half in the backup (big.log.1), the newer half in big.log.
    planted = {
        10: {**task, "event": "task_started", "task_id": "tsk_stuck"},
        20: {**task, "event": "task_started", "task_id": "tsk_done"},
        30: {**task, "event": "task_finished", "task_id": "tsk_done", "status": "completed"},
        40: {**task, "event": "completion_recorded", "task_id": "tsk_done", "seq": 3},
        49_990: {**task, "event": "task_started", "task_id": "tsk_unread"},
        50_010: {**task, "event": "completion_recorded", "task_id": "tsk_unread", "seq": 4},
        60_000: {**task, "event": "results_read", "seqs": [3]},
        75_000: {**filler, "duration_ms": 2500.0},
        99_000: {**task, "event": "results_acked", "up_to": 3},
    }
    for name, lines in (("big.log.1", range(50_000)), ("big.log", range(50_000, 100_000))):
        with (tmp_path / name).open("w") as handle:
            for i in lines:
                handle.write(json.dumps(planted.get(i, {**filler, "n": i})) + "\n")
                if i == 80_000:
                    handle.write('{"event": "cut off\n')  # one garbled line
    assert await asyncio.to_thread(doctor_main, ["--log", str(path), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert (report["lines"], report["garbled_lines"]) == (100_001, 1)
    assert [(f["kind"], f["ids"]) for f in report["problems"]] == [
        ("task_never_ended", {"task_id": "tsk_stuck", "session_id": "ses_1"})
    ]
    assert [(f["kind"], f["ids"].get("task_id")) for f in report["warnings"]] == [
        ("result_never_read", "tsk_unread"),
        ("slow_handler", None),
    ]
    assert report["warnings"][1]["message"] == ("session GetResults: 1 over 1000 ms, max 2500.0 ms")


async def test_prompt_and_answer_text_are_logged_only_with_log_content(tmp_path: Path) -> None:
    for log_content in (False, True):
        path = tmp_path / f"content-{log_content}.log"
        settings = LoggingSettings(path=str(path), log_content=log_content)
        await asyncio.to_thread(configure_logging, settings)
        config = {
            "store": {"kind": "memory"},
            "data_dir": str(tmp_path),
            "logging": {"log_content": log_content},
        }
        async with Orchestrator(config) as orch:
            session = await orch.create_session()
            await (await session.start_task("the secret plan")).wait(timeout=10)
            _ = [c async for c in session.send("a private thought")]
        await asyncio.to_thread(flush_logging)  # it waits for the log writer: off the loop
        text = path.read_text()
        await asyncio.to_thread(reset_logging)  # it waits for the log writer: off the loop
        assert ("the secret plan" in text) is log_content
        assert ("a private thought" in text) is log_content
        assert ("prompt_chars" in text) is not log_content
