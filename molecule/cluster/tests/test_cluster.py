"""Rolling deploys across the fleet, seen from a client of the load balancer."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

from flask_uwsgi_testing import (
    App,
    demo_release,
    deploy,
    load_during,
    recap,
    request_in_host,
    run_playbook,
    task_runs,
)


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


def test_check_mode_on_the_converged_fleet_reports_no_change(app_servers: list[App], tmp_path: Path) -> None:
    """With a worker and shared data, --check --diff on the hosts as converged: nothing would change,
    and the worker is not restarted."""
    workers = [app.host.check_output(f"systemctl show --property MainPID --value {WORKER}") for app in app_servers]
    play = deploy(tmp_path, {}, "--check", "--diff")
    assert play.returncode == 0, play.output[-3000:]
    assert {host: counts["changed"] for host, counts in recap(play).items()} == dict.fromkeys(recap(play), 0)
    assert [
        app.host.check_output(f"systemctl show --property MainPID --value {WORKER}") for app in app_servers
    ] == workers


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


def visits(app: App) -> int:
    """Count a visit with the demo's /visits, which appends to data/ (a shared directory); the count."""
    status, body = app.get("/visits")
    assert status.endswith("200 OK"), (status, body)
    return int(re.fullmatch(r"Visit (\d+)\s*", body)[1])


def lines(app: App, name: str) -> list[str]:
    """The lines of a file in the app's shared data/ directory ([] when there is none)."""
    path = f"{app.vars['flask_uwsgi_base_dir']}/shared/data/{name}"
    return app.host.file(path).content_string.splitlines() if app.host.file(path).exists else []


WORKER = "flask-demo-heartbeat.service"


def worker(app: App) -> tuple[int, str]:
    """The demo worker's main PID, and what its heartbeat (data/worker) says: its PID and its release."""
    pid = int(app.host.check_output(f"systemctl show --property MainPID --value {WORKER}"))
    assert pid > 0, f"{WORKER} does not run"
    return pid, app.host.file(f"{app.vars['flask_uwsgi_base_dir']}/shared/data/worker").content_string.strip()


def wait_for_heartbeat(app: App) -> None:
    """Wait until the running worker (the unit's main process: the helper replaced itself with the
    command) writes its heartbeat from the release `current` points at."""
    release = app.current_release().rpartition("/")[2]
    app.wait_until(
        lambda: worker(app)[1] == f"{worker(app)[0]} {release}",
        timeout=10,
        what=f"the worker's heartbeat from {release}",
    )


def test_the_worker_runs_from_the_current_release_as_the_app_user(app_servers: list[App]) -> None:
    for app in app_servers:
        wait_for_heartbeat(app)
        pid, _ = worker(app)
        assert app.host.process.get(pid=pid).user == app.vars["flask_uwsgi_user"]
        assert app.host.service(WORKER).is_enabled


# Each command appends the host's name to a file of the shared data/, so the files count the runs.
COMMANDS = [
    {"command": "sh -c 'hostname >> data/migrated'", "once": True},
    {"command": "sh -c 'hostname >> data/prepared'"},
]


def test_release_commands_run_once_per_rollout_and_data_outlives_the_release(
    balancer: Any, app_servers: list[App], tmp_path: Path
) -> None:
    counts, workers = [visits(app) for app in app_servers], [worker(app)[0] for app in app_servers]
    src = demo_release(tmp_path, "release-3")
    settings = {"flask_uwsgi_app_src": str(src), "flask_uwsgi_release_commands": COMMANDS}
    play, stats = load_during(balancer, 80, lambda: deploy(tmp_path, settings))
    print(f"rolling deploy of release-3 with release commands: {stats['figures']}")
    assert play.returncode == 0, play.output[-3000:]
    assert stats["failed"] == 0, stats["errors"]
    first, second = app_servers
    names = [app.host.check_output("hostname") for app in app_servers]
    # The `once` command ran on the first host only; the other on each host, in its own batch.
    assert lines(first, "migrated") == names[:1]
    assert lines(second, "migrated") == []
    assert [lines(app, "prepared") for app in app_servers] == [[name] for name in names]
    # The new release sees what the old one wrote, and the data is the app user's alone.
    assert [visits(app) for app in app_servers] == [count + 1 for count in counts]
    data = first.host.file(f"{first.vars['flask_uwsgi_base_dir']}/shared/data")
    assert (data.user, data.mode) == (first.vars["flask_uwsgi_user"], 0o750)
    assert first.host.file(f"{first.current_release()}/app/data").linked_to == data.path

    # The worker was restarted onto the new release.
    for app, pid in zip(app_servers, workers, strict=True):
        wait_for_heartbeat(app)
        assert worker(app)[0] != pid

    # The same release again, with a new uwsgi.ini: no command runs, the web app reloads, and the
    # worker, still on the same release, keeps running.
    workers = [worker(app)[0] for app in app_servers]
    again = deploy(tmp_path, {**settings, "flask_uwsgi_processes": 3})
    assert again.returncode == 0, again.output[-3000:]
    assert task_runs(again, "Reload the app's service gracefully") == [
        {app.host.backend.host: "changed"} for app in app_servers
    ]
    assert lines(first, "migrated") == names[:1]
    assert [lines(app, "prepared") for app in app_servers] == [[name] for name in names]
    assert [worker(app)[0] for app in app_servers] == workers


def test_a_failing_release_command_stops_the_rollout_before_the_switch(
    balancer: Any, app_servers: list[App], tmp_path: Path
) -> None:
    before, workers = [app.current_release() for app in app_servers], [worker(app)[0] for app in app_servers]
    failing = [*COMMANDS, {"command": "python -c \"import sys; sys.exit('migration 0042 failed: no such table')\""}]
    # Release 2 again: the previous release on both hosts, built and checked, so nothing is built.
    src = demo_release(tmp_path, "release-2")
    settings = {"flask_uwsgi_app_src": str(src), "flask_uwsgi_release_commands": failing}
    play, stats = load_during(balancer, 80, lambda: deploy(tmp_path, settings))
    print(f"rolling deploy of release-2 again, whose last command fails: {stats['figures']}")
    assert play.returncode != 0
    message = " ".join(play.output.split())
    assert "A command of release" in message, play.output[-3000:]
    assert "failed with exit status 1, so the release gets no traffic" in message
    assert "migration 0042 failed: no such table" in message
    assert f"[{app_servers[1].host.backend.host}]" not in play.output
    assert [app.current_release() for app in app_servers] == before
    assert stats["failed"] == 0, stats["errors"]
    assert set(stats["answers"]) == {"Hello from flask-demo release-3"}

    # A command that runs past flask_uwsgi_release_command_timeout is killed, with the same outcome.
    slow = {**settings, "flask_uwsgi_release_commands": [{"command": "sleep 60"}]}
    slow["flask_uwsgi_release_command_timeout"] = 2
    play = deploy(tmp_path, slow)
    assert play.returncode != 0
    assert "killed after 2 s" in " ".join(play.output.split()), play.output[-3000:]
    assert [app.current_release() for app in app_servers] == before
    assert app_servers[0].host.run("pgrep -x sleep").rc == 1, "the timed-out command survived"
    assert [worker(app)[0] for app in app_servers] == workers


def test_a_rollback_keeps_the_shared_data(balancer: Any, app_servers: list[App], tmp_path: Path) -> None:
    counts = [visits(app) for app in app_servers]
    play = run_playbook("playbooks/rollback.yml", {}, tmp_path)
    assert play.returncode == 0, play.output[-3000:]
    assert all("release-2" in app.get("/")[1] for app in app_servers)
    assert [visits(app) for app in app_servers] == [count + 1 for count in counts]
    for app in app_servers:  # the worker followed the rollback
        wait_for_heartbeat(app)


def test_a_worker_that_dies_after_its_start_fails_the_deploy_and_a_dropped_worker_goes(
    app_servers: list[App], tmp_path: Path
) -> None:
    heartbeat = {"name": "heartbeat", "command": "python worker.py", "stop_timeout": 5}
    broken = {"name": "broken", "command": "python -c \"raise SystemExit('cannot reach the broker')\""}
    first = app_servers[0]
    before = worker(first)[0]
    # Release 2, which the rollback left serving: no switch, so only the new worker starts.
    src = str(demo_release(tmp_path, "release-2"))
    play = deploy(tmp_path, {"flask_uwsgi_app_src": src, "flask_uwsgi_workers": [heartbeat, broken]})
    assert play.returncode != 0
    message = " ".join(play.output.split())
    assert "did not keep running for 3 s after its restart" in message, play.output[-3000:]
    assert "cannot reach the broker" in message
    assert worker(first)[0] == before, "the heartbeat worker was restarted with the broken one"

    play = deploy(tmp_path, {"flask_uwsgi_app_src": src, "flask_uwsgi_workers": [heartbeat]})
    assert play.returncode == 0, play.output[-3000:]
    assert not first.host.file("/etc/systemd/system/flask-demo-broken.service").exists
    assert first.host.run("systemctl is-active flask-demo-broken.service").rc != 0
    assert worker(first)[0] == before


def test_a_worker_stops_gracefully_and_remove_takes_it_away_but_keeps_the_data(
    app_servers: list[App], tmp_path: Path
) -> None:
    app = app_servers[0]
    start = time.monotonic()
    app.host.check_output(f"systemctl stop {WORKER}")
    took = time.monotonic() - start
    print(f"worker stopped in {took:.2f} s")
    assert took < 3
    assert app.host.file(f"{app.vars['flask_uwsgi_base_dir']}/shared/data/worker").content_string.endswith(" stopped\n")
    assert app.host.service(WORKER).systemd_properties["Result"] == "success"
    app.host.check_output(f"systemctl start {WORKER}")

    uids = [app.host.check_output(f"id -u {app.vars['flask_uwsgi_user']}") for app in app_servers]
    play = run_playbook("playbooks/remove.yml", {}, tmp_path)
    assert play.returncode == 0, play.output[-3000:]
    for app, uid in zip(app_servers, uids, strict=True):
        assert not app.host.file(f"/etc/systemd/system/{WORKER}").exists
        assert app.host.run(f"pgrep -U {uid}").rc == 1, "a process of the app survived"
        assert app.host.file(f"{app.vars['flask_uwsgi_base_dir']}/shared/data/visits").exists
