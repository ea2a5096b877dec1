"""Concurrent writers and readers on one real server: no 5xx, read-your-writes, no deadlock."""

from __future__ import annotations

import httpx
import pytest

from tests.reliability.conftest import Server
from tests.reliability.load import LoadReport, run_load


def assert_healthy_run(server: Server, writers: int, report: LoadReport) -> None:
    """No 5xx or dropped connection, every write visible at once and counted by the server."""
    assert report.server_errors == 0, report.summary()
    assert report.transport_errors == [], report.transport_errors[:5]
    assert report.invisible_after_ack == [], report.invisible_after_ack[:10]
    assert set(report.statuses) == {200}, report.summary()
    assert report.documents_written >= 2 * writers
    with httpx.Client(base_url=server.url, timeout=30) as client:
        stored = client.get("/v1/info").json()["documents"]
    assert stored == 200 + report.documents_written


def test_writers_and_readers_short_run(server: Server) -> None:
    report = run_load(server.url, server.process.pid, writers=4, readers=4, seconds=5)
    print("\n" + report.summary())
    assert_healthy_run(server, 4, report)


@pytest.mark.slow
def test_sixteen_writers_sixteen_readers(server: Server) -> None:
    report = run_load(server.url, server.process.pid, writers=16, readers=16, seconds=60)
    print("\n" + report.summary())
    assert_healthy_run(server, 16, report)
    settled = report.rss_mib[len(report.rss_mib) // 4]
    assert report.rss_mib[-1] - settled < 150, f"memory kept growing: {report.rss_mib}"
