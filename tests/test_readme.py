"""README's examples are run as written: the embedded snippet and the HTTP walkthrough."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.http.test_server_process import _kill, _start

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def block(after_heading: str, language: str) -> str:
    section = README.split(after_heading, 1)[1]
    found = re.search(rf"```{language}\n(.*?)```", section, re.DOTALL)
    assert found, f"no {language} block after {after_heading!r}"
    return found.group(1)


# After the walkthrough as written: wait (bounded) for the turn's answer to land, so the
# stream has shown message.completed, then stop the background stream.
_EPILOGUE = """
for _ in $(seq 100); do
  curl -s $B/v1/sessions/$SID/messages | grep -q '"assistant"' && break
  sleep 0.1
done
curl -s $B/v1/sessions/$SID/messages
sleep 0.2
kill %1
"""


def test_the_embedded_example_runs(tmp_path: Path) -> None:
    code = block("## Embedded use", "python")
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("hi: hello")
    assert "completed" in proc.stdout and proc.stderr == ""


@pytest.mark.skipif(
    not os.environ.get("CI") and subprocess.run(["which", "curl"], check=False).returncode,
    reason="curl is not installed",
)
def test_the_http_walkthrough_runs_against_a_real_server(tmp_path: Path) -> None:
    script = block("## HTTP API", "sh")
    server = _start(tmp_path, GREENROOM_TOKEN="")
    try:
        script = script.replace("B=http://127.0.0.1:8765", f"B={server.base}")
        proc = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script + _EPILOGUE],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        _kill(server)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert '"acked_up_to": 3' in out or '"acked_up_to":3' in out, out
    for event in ("task.queued", "task.started", "task.completed", "message.completed"):
        assert f"event: {event}" in out, out
    assert '"role": "assistant"' in out or '"role":"assistant"' in out


def test_the_metrics_table_lists_every_exported_metric_with_its_type() -> None:
    from greenroom.metrics import PrometheusMetrics

    section = README.split("### Metrics", 1)[1].split("\n## ", 1)[0]
    listed = dict(re.findall(r"^\| `(greenroom_\w+)` \| (\w+) \|", section, re.MULTILINE))
    metrics = PrometheusMetrics(lambda: None)
    assert metrics.registry is not None
    exported = {
        family.name + ("_total" if family.type == "counter" else ""): family.type
        for family in metrics.registry.collect()
    }
    assert listed == exported
