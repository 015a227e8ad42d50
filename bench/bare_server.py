"""The poll_rps baseline: a bare aiohttp handler returning the same JSON from a dict."""

from __future__ import annotations

import json
import sys

from aiohttp import web


def main() -> None:
    port = int(sys.argv[1])
    payload = json.loads(sys.argv[2])

    async def results(request: web.Request) -> web.Response:
        return web.json_response(payload)

    app = web.Application()
    app.router.add_get("/v1/sessions/{sid}/results", results)
    print(f"bare server serving on http://127.0.0.1:{port}", flush=True)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


if __name__ == "__main__":
    main()
