"""The HTTP baselines: a bare aiohttp app serving the same routes from plain dicts.

``python -m bench.bare_server PORT [SID PAGE_JSON]``. With a session id and a results
page (poll_rps) that session starts with those results. Its routes do the least work
the real ones must do:

* ``GET /v1/sessions/{sid}/results?after=&wait=&limit=``: the page after ``after`` (a
  bisect over a list) with ``next_after`` and ``has_more``, serialized to JSON; with
  ``wait`` and nothing to return, a long-poll parked on a future;
* ``POST /v1/sessions``: a new empty session;
* ``POST /v1/sessions/{sid}/tasks``: the task finishes at once (``finished_at`` is
  stamped then) and its completion is handed to parked long-polls and SSE streams;
* ``GET /v1/sessions/{sid}/events``: SSE, ``event: task.completed`` frames.

No auth, no validation beyond int(), no logging: the floor a greenroom route stands on.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import json
import sys
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class _Session:
    results: list[dict[str, Any]] = field(default_factory=list)
    seqs: list[int] = field(default_factory=list)
    polls: list[asyncio.Future[None]] = field(default_factory=list)
    streams: list[asyncio.Queue[bytes]] = field(default_factory=list)

    def after(self, after: int, limit: int) -> tuple[list[dict[str, Any]], bool]:
        """The page after ``after``, and whether more results follow it."""
        start = bisect.bisect_right(self.seqs, after)
        return self.results[start : start + limit], start + limit < len(self.results)


def make_app(seed: dict[str, list[dict[str, Any]]]) -> web.Application:
    sessions: dict[str, _Session] = {}
    for sid, seeded in seed.items():
        sessions[sid] = _Session(list(seeded), [r["seq"] for r in seeded])

    async def results(request: web.Request) -> web.Response:
        session = sessions[request.match_info["sid"]]
        after = int(request.query.get("after", 0))
        limit = int(request.query.get("limit", 100))
        wait_s = float(request.query.get("wait", 0))
        found, more = session.after(after, limit)
        if not found and wait_s > 0:
            poll = asyncio.get_running_loop().create_future()
            session.polls.append(poll)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(poll, wait_s)
            found, more = session.after(after, limit)
        next_after = found[-1]["seq"] if found else after
        return web.json_response({"results": found, "next_after": next_after, "has_more": more})

    async def create_session(request: web.Request) -> web.Response:
        sid = f"ses_{uuid.uuid4().hex}"
        sessions[sid] = _Session()
        return web.json_response({"id": sid}, status=201)

    async def start_task(request: web.Request) -> web.Response:
        session = sessions[request.match_info["sid"]]
        body = await request.json()
        now = time.time()
        seq = (session.seqs[-1] if session.seqs else 0) + 1
        task_id = f"tsk_{uuid.uuid4().hex}"
        result = {
            "seq": seq,
            "task_id": task_id,
            "session_id": request.match_info["sid"],
            "status": "completed",
            "content": body["prompt"],
            "error": None,
            "created_at": now,
            "started_at": now,
            "finished_at": time.time(),
        }
        session.results.append(result)
        session.seqs.append(seq)
        polls, session.polls = session.polls, []
        for poll in polls:
            if not poll.done():
                poll.set_result(None)
        frame = f"id: {seq}\nevent: task.completed\ndata: {json.dumps(result)}\n\n".encode()
        for stream in session.streams:
            stream.put_nowait(frame)
        return web.json_response({"id": task_id, "status": "queued"}, status=202)

    async def events(request: web.Request) -> web.StreamResponse:
        session = sessions[request.match_info["sid"]]
        queue: asyncio.Queue[bytes] = asyncio.Queue()
        session.streams.append(queue)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        try:
            await response.write(b": connected\n\n")
            while True:
                await response.write(await queue.get())
        except ConnectionResetError:
            pass
        finally:
            session.streams.remove(queue)
        return response

    app = web.Application()
    app.router.add_get("/v1/sessions/{sid}/results", results)
    app.router.add_post("/v1/sessions", create_session)
    app.router.add_post("/v1/sessions/{sid}/tasks", start_task)
    app.router.add_get("/v1/sessions/{sid}/events", events)
    return app


async def serve(app: web.Application, port: int) -> None:
    """Bind first, then say so: the caller connects as soon as it reads the line."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    print(f"bare server serving on http://127.0.0.1:{port}", flush=True)
    await asyncio.Event().wait()  # until SIGTERM


def main() -> None:
    port = int(sys.argv[1])
    seed: dict[str, list[dict[str, Any]]] = {}
    if len(sys.argv) > 3:
        seed[sys.argv[2]] = json.loads(sys.argv[3])["results"]
    asyncio.run(serve(make_app(seed), port))


if __name__ == "__main__":
    main()
