"""Rolling deploys across the fleet, seen from a client of the load balancer."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from flask_uwsgi_testing import App, demo_release, deploy, load_during, request_in_host


def rollout(balancer: Any, tmp_path: Path, name: str, **release: str) -> tuple[str, int, dict[str, Any]]:
    """Deploy a new release of the demo to the app servers while a load goes through the balancer."""
    src = demo_release(tmp_path, name, **release)
    play, stats = load_during(balancer, 80, lambda: deploy(tmp_path, {"flask_uwsgi_app_src": str(src)}))
    print(f"rolling deploy of {name} through the balancer: {stats['figures']}, answers {stats['answers']}")
    return play.stdout, play.returncode, stats


def test_the_balancer_spreads_requests_over_both_app_servers(balancer: Any, app_servers: list[App]) -> None:
    # The fleet mixes releases, so every rollout below crosses from Debian 12 to Debian 13.
    assert [app.debian() for app in app_servers] == [12, 13]
    pids = set()
    for _ in range(20):
        status, body = request_in_host(balancer, "127.0.0.1:80")
        assert status.endswith("200 OK"), (status, body)
        pids.add(re.search(r"\(pid (\d+)\)", body)[1])
    workers = [set(map(str, app.workers())) for app in app_servers]
    assert all(pids & mine for mine in workers), (pids, workers)


def test_a_rolling_deploy_drops_no_request_and_ends_with_every_host_new(
    balancer: Any, app_servers: list[App], tmp_path: Path
) -> None:
    before = [app.current_release() for app in app_servers]
    output, rc, stats = rollout(balancer, tmp_path, "release-2")
    assert rc == 0, output[-3000:]
    # One batch per host (serial 1): the play starts over for each.
    assert output.count("PLAY [Deploy the WSGI apps") == len(app_servers)
    assert stats["failed"] == 0, stats["errors"]
    assert stats["answers"].get("Hello from flask-demo", 0) > 0
    assert stats["answers"].get("Hello from flask-demo release-2", 0) > 0
    for app, old in zip(app_servers, before, strict=True):
        assert app.current_release() != old
        assert "Hello from flask-demo release-2" in app.get("/")[1]


def test_a_broken_release_stops_the_rollout_at_the_first_host(
    balancer: Any, app_servers: list[App], tmp_path: Path
) -> None:
    before = [app.current_release() for app in app_servers]
    releases = [app.host.check_output(f"ls {app.vars['flask_uwsgi_base_dir']}/releases") for app in app_servers]
    output, rc, stats = rollout(balancer, tmp_path, "broken", before="import no_such_module_in_this_release\n")
    assert rc != 0
    assert "failed its check, so it gets no traffic" in output
    first, second = app_servers
    assert f"[{first.host.backend.host}]" in output
    # The second host was never touched: no task ran there and it has no new release directory.
    assert f"[{second.host.backend.host}]" not in output
    assert second.host.check_output(f"ls {second.vars['flask_uwsgi_base_dir']}/releases") == releases[1]
    assert [app.current_release() for app in app_servers] == before
    assert stats["failed"] == 0, stats["errors"]
    assert set(stats["answers"]) == {"Hello from flask-demo release-2"}
