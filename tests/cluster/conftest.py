"""Fixtures of the cluster tests: HAProxy. Each skips with one line when its tool is
missing, and fails under CI=true."""

from __future__ import annotations

import pytest

from tests.cluster import haproxy
from tests.cluster.procs import unavailable


@pytest.fixture
def haproxy_bin() -> str:
    """The haproxy executable."""
    exe = haproxy.binary()
    if exe is None:
        unavailable("haproxy is not installed (apt-get install -y haproxy)")
    return exe
