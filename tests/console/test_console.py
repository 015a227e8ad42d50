"""The console in a real browser: live task states, cancel, stories, ack, and the token.

Every wait is on the page's own state (Playwright waits for a selector or a condition,
with a timeout); nothing sleeps. Each scenario leaves a screenshot in ``artifacts/``.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import aiohttp

from tests.console.conftest import ServerFactory, screenshot_path

if TYPE_CHECKING:
    from playwright.async_api import Browser, Page

WAIT_MS = 20_000  # generous: the machine is shared
SLOW = {"slow": {"kind": "echo", "delay_s": 1.0}}
BROKEN = {"broken": {"kind": "python", "target": "tests.actors.agents:boom"}}
TOKEN = "console-token-0f3a9c2e7b"


async def open_console(browser: Browser, base: str) -> tuple[Page, list[str]]:
    """A page on the console, and the script errors it will have (uncaught exceptions and
    console errors, but not Chromium's line for each 4xx answer, which is expected)."""
    page = await browser.new_page(viewport={"width": 1280, "height": 820})
    page.set_default_timeout(WAIT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))

    def on_console(message: Any) -> None:
        if message.type == "error" and "Failed to load resource" not in message.text:
            errors.append(message.text)

    page.on("console", on_console)
    await page.goto(f"{base}/console")  # redirected to /console/
    return page, errors


async def start_task(page: Page, prompt: str) -> str:
    """Start a task from the form; returns its id (from the API's answer)."""
    await page.fill("#prompt", prompt)
    async with page.expect_response(
        lambda r: r.request.method == "POST" and r.url.endswith("/tasks")
    ) as answer:
        await page.click("#start-task")
    task: dict[str, Any] = await (await answer.value).json()
    return str(task["id"])


def row(task_id: str, status: str | None = None) -> str:
    selector = f'#tasks tr[data-task-id="{task_id}"]'
    return selector + (f'[data-status="{status}"]' if status else "")


async def completion_timing(page: Page, task_id: str) -> dict[str, Any]:
    """What the page measured for this task's live task.completed event."""
    find = f"window.greenroomTimings.find(t => t.task_id === {json.dumps(task_id)} && !t.replayed)"
    await page.wait_for_function(f"Boolean({find})")
    timing: dict[str, Any] = await page.evaluate(find)
    return timing


async def test_tasks_go_queued_running_completed_live_and_a_cancel_shows_at_once(
    browser: Browser, console_server: ServerFactory
) -> None:
    base, _ = await console_server(
        default_agent="slow", agents={**SLOW, **BROKEN}, limits={"max_running_tasks": 1}
    )
    page, errors = await open_console(browser, base)
    await page.evaluate("window.notReloaded = true")
    await page.click("#new-session")
    await page.wait_for_selector('#stream-state[data-state="open"]')
    sid = await page.text_content("#session-title")
    assert sid and sid.startswith("ses_")

    # One task runs at a time: the first runs, the next two wait behind it.
    first = await start_task(page, "summarise the meeting notes")
    second = await start_task(page, "draft the weekly report")
    third = await start_task(page, "check the build logs")
    await page.wait_for_selector(row(second, "queued"))
    await page.click(f'{row(third)} [data-action="cancel"]')
    await page.wait_for_selector(row(third, "cancelled"))
    await page.wait_for_selector(row(second, "running"))
    await page.wait_for_selector(row(second, "completed"))
    await page.wait_for_selector(row(first, "completed"))
    assert await page.get_attribute(row(second), "data-history") == "queued running completed"
    assert await page.get_attribute(row(third), "data-history") == "queued cancelled"

    # A task started elsewhere (the API) shows up live too; its story names its error.
    async with aiohttp.ClientSession() as http:
        body = {"prompt": "this one breaks", "agent": "broken"}
        started = await http.post(f"{base}/v1/sessions/{sid}/tasks", json=body)
        broken = (await started.json())["id"]
    await page.wait_for_selector(row(broken, "failed"))
    await page.click(f'{row(broken)} [data-action="story"]')
    story = f'tr[data-story-for="{broken}"]'
    await page.wait_for_selector(f'{story} li[data-event="task.completed"]')
    events = await page.eval_on_selector_all(
        f"{story} li[data-event]", "items => items.map(i => i.dataset.event)"
    )
    assert events == ["task.queued", "task.started", "task.completed"]
    error = await page.text_content(f'{story} [data-error="RuntimeError"]')
    assert error == "RuntimeError: the model server exploded"
    await page.click(f'{row(second)} [data-action="story"]')
    await page.wait_for_selector(f'tr[data-story-for="{second}"] li[data-event="task.completed"]')

    # Results: acknowledging one removes it and every earlier one from the list.
    second_seq = await page.get_attribute(f'#results li[data-task-id="{second}"]', "data-seq")
    assert second_seq is not None
    await page.click(f'#results li[data-task-id="{second}"] [data-action="ack"]')
    await page.wait_for_selector(f'#acked:has-text("acknowledged up to #{second_seq}")')
    remaining = await page.eval_on_selector_all(
        "#results li", "items => items.map(i => Number(i.dataset.seq))"
    )
    assert remaining and all(seq > int(second_seq) for seq in remaining)

    # A message: the answer streams in on the same event stream.
    await page.fill("#prompt", "hello from the console")
    await page.click("#send-message")
    await page.wait_for_selector(
        '#messages li[data-role="assistant"]:has-text("hello from the console")'
    )

    timing = await completion_timing(page, second)
    print(
        f"\nconsole: task.completed SSE message -> row shows it: {timing['dom_ms']:.1f} ms "
        f"(next frame {timing['frame_ms']:.1f} ms; since the task's finished_at "
        f"{timing['since_finished_ms']:.1f} ms)"
    )
    assert timing["status"] == "completed"
    assert await page.evaluate("window.notReloaded === true")  # all of it without a reload
    assert errors == []
    await page.screenshot(path=screenshot_path("console-live.png"), full_page=True)
    await page.close()


async def test_with_a_token_the_console_asks_for_it_and_streams_with_tickets_only(
    browser: Browser, console_server: ServerFactory
) -> None:
    base, _ = await console_server(
        server={"token": TOKEN}, agents={"echo": {"kind": "echo", "delay_s": 0.3}}
    )
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as http:
        for _ in range(21):  # one more than the console's page of 20
            assert (await http.post(f"{base}/v1/sessions", json={})).status == 201
    page, errors = await open_console(browser, base)
    urls: list[str] = []
    page.on("request", lambda request: urls.append(request.url))
    await page.wait_for_selector("#token-form:not([hidden])")  # the API answered 401
    await page.fill("#token-input", TOKEN)
    await page.click('#token-form button[type="submit"]')
    await page.wait_for_selector("#token-set:not([hidden])")
    # The sessions come a page at a time.
    await page.wait_for_selector("#sessions li:nth-child(20)")
    assert await page.locator("#sessions li").count() == 20
    await page.click("#more-sessions")
    await page.wait_for_selector("#sessions li:nth-child(21)")
    await page.wait_for_selector("#more-sessions", state="hidden")
    await page.click("#new-session")
    await page.wait_for_selector('#stream-state[data-state="open"]')
    sid = await page.text_content("#session-title")
    task = await start_task(page, "a job behind a token")
    await page.wait_for_selector(row(task, "completed"))
    await page.screenshot(path=screenshot_path("console-token.png"), full_page=True)

    streams = [url for url in urls if "/events?" in url]
    assert streams and all("ticket=v1." in url for url in streams), streams
    assert not [url for url in urls if TOKEN in url], "the token went into a URL"
    kept = await page.evaluate(
        "[sessionStorage.getItem('greenroom.token'), localStorage.length, document.cookie]"
    )
    assert kept == [TOKEN, 0, ""]
    assert errors == []

    # The stream itself refuses to open without a valid ticket for this very session.
    ticket = streams[0].split("ticket=")[1].split("&")[0]
    async with aiohttp.ClientSession() as http:
        auth = {"Authorization": f"Bearer {TOKEN}"}
        other = (await (await http.post(f"{base}/v1/sessions", json={}, headers=auth)).json())["id"]
        events = f"{base}/v1/sessions/{sid}/events"
        for url in (
            events,
            f"{events}?ticket=v1.99999999999.forged",
            f"{events}?ticket={ticket[:-2]}xx",
            f"{base}/v1/sessions/{other}/events?ticket={ticket}",
        ):
            async with http.get(url) as response:
                assert response.status == 401, url
        async with http.get(f"{events}?ticket={ticket}") as response:
            assert response.status == 200
    await page.close()
