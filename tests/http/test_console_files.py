"""The console's static files: served without a build step, with a strict CSP."""

from __future__ import annotations

from greenroom.http.routes_console import CONSOLE_DIR
from tests.http.conftest import ClientFactory


async def test_the_console_files_are_served_with_a_same_origin_policy_even_with_a_token(
    make_client: ClientFactory,
) -> None:
    client = await make_client(server={"token": "console-files-token"})  # files hold no data
    root = await client.get("/console", allow_redirects=False)
    assert root.status == 302 and root.headers["Location"] == "console/"
    page = await client.get("/console/")
    assert page.status == 200 and page.content_type == "text/html"
    html = await page.text()
    assert '<script src="console.js"' in html and "http" not in html.replace("http-equiv", "")
    policy = page.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "connect-src 'self'" in policy
    for name, kind in (("console.js", "javascript"), ("console.css", "text/css")):
        response = await client.get(f"/console/{name}")
        assert response.status == 200 and kind in response.content_type
        assert await response.text() == (CONSOLE_DIR / name).read_text()
    for missing in ("/console/secret.txt", "/console/..%2fapp.py", "/console/index.html/x"):
        response = await client.get(missing)
        assert response.status == 404, missing
        assert (await response.json())["error"]["code"] == "not_found"
