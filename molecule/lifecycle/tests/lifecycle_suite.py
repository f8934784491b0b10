"""The service over its life: crashes, a reboot, request limits, releases, tags, logs, and removal.

The tests run in file order on one host and each starts from what the one before left (a release
served, a previous one to roll back to), ending with the removal: pytest keeps a module's order, and
molecule.yml's `--dist loadfile` keeps each host's module on one worker.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from flask_uwsgi_testing import (
    CLIENT,
    App,
    Play,
    demo_release,
    load_during,
    new_dependencies,
    not_run,
    recap,
    scrape,
    task_outcome,
    task_runs,
)


def journal_since(app: App, since: float) -> str:
    return app.host.check_output(f"journalctl --unit {app.unit} --since @{since:.0f} --no-pager --output cat")


def host_time(app: App) -> float:
    return float(app.host.check_output("date +%s.%N"))


def test_logs_go_to_the_journal_under_the_app_name(app: App) -> None:
    logged = app.host.check_output(f"journalctl SYSLOG_IDENTIFIER={app.name} --no-pager --output cat")
    assert "spawned uWSGI worker 1" in logged


def port(app: App) -> int:
    return int(app.address[0].rpartition(":")[2])


def test_killed_master_is_restarted_by_systemd_and_no_connection_is_refused(app: App) -> None:
    """Connections wait in the queue of the socket systemd holds until uWSGI is back: none is refused.
    systemd kills the workers the moment it sees the master gone (KillMode=mixed), so a request a
    worker is serving at that instant can be cut: at most one per worker, as a reset."""
    master, restarts = app.main_pid(), int(app.show("NRestarts"))

    def kill_and_wait() -> float:
        app.host.check_output(f"kill -KILL {master}")
        return app.wait_until(
            lambda: app.main_pid() not in (0, master) and app.answers(),
            timeout=30,
            what="systemd restarts the service after its master was killed",
        )

    took, stats = load_during(app.host, port(app), kill_and_wait)
    print(
        f"{app.host.backend.host}: master SIGKILLed under load: answering again after {took:.2f} s; {stats['figures']}"
    )
    assert took <= int(app.vars["flask_uwsgi_restart_sec"]) + 3
    assert int(app.show("NRestarts")) == restarts + 1
    assert stats["failed"] <= int(app.vars["flask_uwsgi_processes"]), stats["errors"]
    assert all("ConnectionResetError" in error or "RemoteDisconnected" in error for error in stats["errors"]), stats


def test_a_restart_and_a_stop_then_start_fail_no_request(app: App) -> None:
    """systemctl restart, and a stop with a start 3 s later, under load: the socket unit keeps the port,
    and connections wait for the new master."""
    for what, command in [
        ("systemctl restart", f"systemctl restart {app.unit}"),
        ("systemctl stop, start 3 s later", f"systemctl stop {app.unit} && sleep 3 && systemctl start {app.unit}"),
    ]:
        master = app.main_pid()
        _, stats = load_during(app.host, port(app), lambda command=command: app.host.check_output(command))
        print(f"{app.host.backend.host}: {what} under load: {stats['figures']}")
        assert stats["failed"] == 0, (what, stats["errors"])
        assert app.main_pid() not in (0, master), what


# Clients that connect and send nothing, as idle keep-alive and slow clients do: COUNT connections
# to 127.0.0.1:PORT for SECONDS, each opened again as soon as the server closes it. Keeps the count
# of connections it has opened in the file COUNTED.
IDLE_CLIENTS = r"""
import os, selectors, socket, sys, time
port, count, seconds = (int(arg) for arg in sys.argv[1:4])
counted, selector, end, opened = sys.argv[4], selectors.DefaultSelector(), time.monotonic() + seconds, 0
def connect():
    global opened
    selector.register(socket.create_connection(("127.0.0.1", port), timeout=5), selectors.EVENT_READ)
    opened += 1
    with open(counted + ".new", "w") as file:
        file.write(str(opened))
    os.replace(counted + ".new", counted)
for _ in range(count):
    connect()
while time.monotonic() < end:
    for key, _ in selector.select(timeout=0.5):
        if not key.fileobj.recv(1024):
            selector.unregister(key.fileobj)
            key.fileobj.close()
            connect()
"""


def test_clients_holding_idle_connections_fail_no_request_and_hold_no_stop_past_the_mercy(app: App) -> None:
    """As many clients as workers connect and send nothing, again and again, as idle keep-alive and
    slow clients do: each holds a worker until socket-timeout (4 s), then the worker closes it. A
    reload, and a stop then start, each under load, fail no request, and the stop ends within
    worker-reload-mercy and the master's last second, as every stop must."""
    workers, mercy = int(app.vars["flask_uwsgi_processes"]), int(app.vars["flask_uwsgi_worker_reload_mercy"])
    unit, counted = "flask-uwsgi-test-idle-clients", "/tmp/idle-clients.opened"
    clients = f"python3 -c {shlex.quote(IDLE_CLIENTS)} {port(app)} {workers} 300 {counted}"
    app.host.check_output(f"rm -f {counted} && systemd-run --quiet --collect --unit {unit} {clients}")

    def opened() -> int:
        return int(app.host.check_output(f"cat {counted}"))

    try:
        app.wait_until(lambda: opened() >= workers, timeout=10, what="the idle clients connect")
        master = app.main_pid()
        _, reloaded = load_during(app.host, port(app), lambda: app.host.check_output(f"systemctl reload {app.unit}"))
        before_stop = opened()

        def stop_then_start() -> float:
            assert app.host.service(unit).is_running, "the idle clients are gone before the stop"
            took = app.stop()
            app.host.check_output(f"systemctl start {app.unit}")
            return took

        stopped_in, stopped = load_during(app.host, port(app), stop_then_start)
        during_stop = opened() - before_stop
    finally:
        app.host.run(f"systemctl stop {unit}")
    print(
        f"{app.host.backend.host}: {workers} idle clients holding connections: reload {reloaded['figures']};"
        f" stop in {stopped_in:.2f} s, stop and start {stopped['figures']};"
        f" {before_stop} idle connections before the stop, {during_stop} more around it"
    )
    # The server closed idle connections (at their socket-timeout, or as a worker left) and the
    # clients came back, around the reload and around the stop: the workers were held, not merely
    # the queue.
    assert before_stop > workers, before_stop
    assert during_stop > 0, during_stop
    assert reloaded["failed"] == 0, reloaded["errors"]
    assert stopped["failed"] == 0, stopped["errors"]
    assert stopped_in <= mercy + 2
    assert app.main_pid() not in (0, master)
    assert app.answers()


SLOW_ACCEPT = Path(__file__).resolve().parents[2] / "shared" / "tests" / "slow_accept.c"


def test_a_worker_told_to_leave_serves_the_connection_it_has_just_accepted(app: App, tmp_path: Path) -> None:
    """A restart or a reload tells each worker to leave (SIGHUP). uWSGI's own handler exits unless a
    request has begun, so a connection accepted a moment before was reset. That moment is microseconds
    wide; here a preloaded library (slow_accept.c) holds every accept() 20 ms, so most signals land in
    it, and every connection must still be served."""
    compiler = shutil.which("cc")
    assert compiler, "a C compiler is needed to build the fault injection (make docker installs gcc)"
    library, remote = tmp_path / "slow_accept.so", "/usr/local/lib/flask-uwsgi-test-slow-accept.so"
    subprocess.run([compiler, "-shared", "-fPIC", "-O2", "-o", library, SLOW_ACCEPT, "-ldl"], check=True)
    container, drop_in = app.host.backend.host, f"/run/systemd/system/{app.unit}.d/zz-slow-accept.conf"
    subprocess.run(
        ["docker", "exec", "-i", container, "sh", "-c", f"cat > {remote}"], input=library.read_bytes(), check=True
    )
    try:
        app.host.check_output(
            f"mkdir -p {Path(drop_in).parent} && printf '%s\\n' '[Service]' "
            f"'Environment=LD_PRELOAD={remote} SLOW_ACCEPT_US=20000' > {drop_in} "
            f"&& systemctl daemon-reload && systemctl restart {app.unit}"
        )
        app.wait_until(app.answers, timeout=30, what="the app answers with the fault injection")
        for worker in app.workers():
            assert remote in app.host.file(f"/proc/{worker}/maps").content_string, f"worker {worker} lacks the library"
        for what, command in [
            ("systemctl restart", f"systemctl restart {app.unit}"),
            ("systemctl reload", f"systemctl reload {app.unit}"),
            ("systemctl restart", f"systemctl restart {app.unit}"),
        ]:
            _, stats = load_during(app.host, port(app), lambda command=command: app.host.check_output(command))
            print(f"{container}: {what} under load, every accept() held 20 ms: {stats['figures']}")
            assert stats["failed"] == 0, (what, stats["errors"])
    finally:
        app.host.run(f"rm -f {drop_in} && systemctl daemon-reload && systemctl restart {app.unit} && rm -f {remote}")
    app.wait_until(app.answers, timeout=30, what="the app answers without the fault injection")


def test_the_port_stays_open_until_the_socket_unit_stops(app: App) -> None:
    """Stopping the service alone leaves systemd listening, and the next connection starts it again;
    stopping the socket unit closes the port (and stops the service, which requires it)."""
    socket_unit, address = app.socket_unit, f"tcp://{app.address[0]}"
    app.host.check_output(f"systemctl stop {app.unit}")
    assert app.show("ActiveState") == "inactive"
    assert app.host.socket(address).is_listening
    assert app.answers(), "a connection to the held port did not start the service"
    assert app.show("ActiveState") == "active"

    app.host.check_output(f"systemctl stop {socket_unit}")
    assert app.show("ActiveState") == "inactive"
    assert not app.host.socket(address).is_listening
    refused = app.host.run("python3 -c %s %s http /", CLIENT, app.address[0])
    assert refused.rc != 0
    assert "ConnectionRefusedError" in refused.stderr, refused.stderr
    app.host.check_output(f"systemctl start {app.unit}")
    assert app.host.check_output(f"systemctl is-active {socket_unit}") == "active"
    assert app.answers()


def test_service_comes_back_after_a_reboot(app: App) -> None:
    container = app.host.backend.host
    # A clean shutdown, as a reboot does it: systemd (PID 1) halts on SIGRTMIN+3, stopping the app.
    subprocess.run(["docker", "kill", "--signal", "SIGRTMIN+3", container], check=True, capture_output=True)
    subprocess.run(["docker", "wait", container], check=True, capture_output=True, timeout=60)
    start = time.monotonic()
    subprocess.run(["docker", "start", container], check=True, capture_output=True)
    app.wait_until(app.answers, timeout=90, what="the app answers after the host restarted")
    print(f"host rebooted: app answering {time.monotonic() - start:.1f} s after the host started")
    assert app.show("ActiveState") == "active"
    assert app.show("NRestarts") == "0"


def stop_during(app: App, path: str) -> tuple[float, str, str]:
    """Stop the service while a request to path is in flight; return the stop's seconds and the answer."""
    with ThreadPoolExecutor(1) as pool:
        request = pool.submit(app.get, path)
        time.sleep(1.5)  # the request has reached a worker
        took = app.stop()
        status, body = request.result()
    return took, status, body


def assert_stopped_cleanly_and_start(app: App) -> None:
    assert app.show("ActiveState") == "inactive"
    assert app.show("Result") == "success"
    assert app.host.run(f"pgrep -u {app.vars['flask_uwsgi_user']}").rc == 1, "a process of the app survived"
    assert not app.host.file(app.vars["flask_uwsgi_pidfile"]).exists
    app.host.check_output(f"systemctl start {app.unit}")
    app.wait_until(app.answers, timeout=30, what="the app answers after a start")


def test_stop_lets_a_request_in_flight_finish(app: App) -> None:
    took, status, body = stop_during(app, "/slow?seconds=3")
    print(f"stop with a 3 s request in flight: {took:.2f} s, the request got {status!r}")
    assert status.endswith("200 OK")
    assert "Slept 3 s" in body
    assert took <= int(app.vars["flask_uwsgi_worker_reload_mercy"]) + 1
    assert_stopped_cleanly_and_start(app)


def test_stop_cuts_a_request_longer_than_the_mercy(app: App) -> None:
    mercy = int(app.vars["flask_uwsgi_worker_reload_mercy"])
    took, status, _ = stop_during(app, f"/slow?seconds={mercy * 4}")
    print(f"stop with a {mercy * 4} s request in flight: {took:.2f} s (worker-reload-mercy {mercy} s)")
    assert not status.endswith("200 OK")
    # The busy worker is killed at the mercy; the master then needs about a second to tear down (its
    # last cycle), and one more is allowed for a busy machine: the request is cut, not waited for.
    assert mercy <= took <= mercy + 3
    assert_stopped_cleanly_and_start(app)


def test_harakiri_kills_a_stuck_request_and_only_its_worker(app: App) -> None:
    limit = int(app.vars["flask_uwsgi_harakiri"])
    harakiri_before = scrape(app.host).sum("uwsgi_worker_harakiri_count_total", app=app.name)
    master, since = app.main_pid(), host_time(app)
    start = time.monotonic()
    status, _ = app.get(f"/slow?seconds={limit + 5}")
    took = time.monotonic() - start
    print(f"harakiri {limit} s: a {limit + 5} s request ended after {took:.1f} s with {status!r}")
    assert not status.endswith("200 OK")
    assert limit - 1 <= took < limit + 3  # uWSGI keeps time in whole seconds
    assert "HARAKIRI ON WORKER" in journal_since(app, since)
    # The exporter counts the kill (the counter stays with the worker's slot across its respawn).
    harakiri = scrape(app.host).sum("uwsgi_worker_harakiri_count_total", app=app.name)
    assert harakiri == harakiri_before + 1
    assert app.main_pid() == master
    assert app.answers()


def test_max_requests_recycles_workers(app: App) -> None:
    limit = int(app.vars["flask_uwsgi_max_requests"])
    app.wait_for_workers_past_min_lifetime()
    master, before = app.main_pid(), set(app.workers())
    for _ in range(3 * limit):
        assert app.answers()
    app.wait_until(lambda: len(app.workers()) == len(before), timeout=10, what="every worker is back")
    replaced = before - set(app.workers())
    print(f"max-requests {limit}: {len(replaced)} of {len(before)} workers replaced after {3 * limit} requests")
    assert replaced
    assert app.main_pid() == master


def test_reload_on_rss_replaces_a_worker_that_grew(app: App) -> None:
    limit = int(app.vars["flask_uwsgi_reload_on_rss"])
    app.wait_for_workers_past_min_lifetime()
    status, body = app.get(f"/leak?mb={limit + 16}")
    assert status.endswith("200 OK")
    grown = int(re.search(r"in pid (\d+)", body).group(1))
    took = app.wait_until(lambda: grown not in app.workers(), timeout=10, what=f"worker {grown} is replaced")
    print(f"reload-on-rss {limit} MiB: the worker holding {limit + 16} MiB was replaced {took:.2f} s after its request")
    assert app.answers()


def make_release(tmp_path: Path, name: str, broken: bool = False) -> Path:
    """A copy of the demo app whose greeting names the release; a broken one cannot import."""
    return demo_release(tmp_path, name, before="import no_such_module_in_this_release\n" if broken else "")


def under_load(
    app: App, tmp_path: Path, playbook: str, extra_vars: dict[str, Any], *options: str
) -> tuple[Play, dict[str, Any]]:
    """Run a playbook while the load generator runs in the host; return the play and the load's figures."""
    play, stats = load_during(app.host, port(app), lambda: app.run_playbook(playbook, extra_vars, tmp_path, *options))
    print(f"{app.host.backend.host}: {playbook} {' '.join(options)} under load: {stats['figures']}")
    return play, {**stats, "rc": play.returncode}


def changed(app: App, play: Play) -> int:
    """How many tasks the play changed on the app's host, by its recap."""
    return recap(play)[app.host.backend.host]["changed"]


def test_a_good_release_switches_over_without_a_failed_request(app: App, tmp_path: Path) -> None:
    before, master = app.current_release(), app.main_pid()
    play, stats = under_load(
        app, tmp_path, "playbooks/deploy.yml", {"flask_uwsgi_app_src": str(make_release(tmp_path, "release-2"))}
    )
    assert stats["rc"] == 0, play.output[-3000:]
    assert stats["failed"] == 0, stats["errors"]
    assert stats["answers"].get("Hello from flask-demo release-2", 0) > 0
    assert stats["answers"].get("Hello from flask-demo", 0) > 0
    assert app.current_release() != before
    assert "release-2" in app.get("/")[1]
    assert app.main_pid() == master, "a graceful reload keeps the master"


def test_a_broken_release_never_gets_traffic(app: App, tmp_path: Path) -> None:
    before = app.current_release()
    play, stats = under_load(
        app,
        tmp_path,
        "playbooks/deploy.yml",
        {"flask_uwsgi_app_src": str(make_release(tmp_path, "broken", broken=True))},
    )
    output = play.output
    assert stats["rc"] != 0
    assert "failed its check, so it gets no traffic" in output
    assert "Traceback" in output
    assert "No module named 'no_such_module_in_this_release'" in output
    assert stats["failed"] == 0, stats["errors"]
    assert set(stats["answers"]) == {"Hello from flask-demo release-2"}
    assert app.current_release() == before


def test_rollback_returns_to_the_previous_release_without_a_failed_request(app: App, tmp_path: Path) -> None:
    before = app.current_release()
    play, stats = under_load(app, tmp_path, "playbooks/rollback.yml", {})
    assert stats["rc"] == 0, play.output[-3000:]
    assert stats["failed"] == 0, stats["errors"]
    assert "release-2" not in app.get("/")[1]
    assert app.host.check_output(f"readlink {app.vars['flask_uwsgi_base_dir']}/previous") == before


def pruning_release(tmp_path: Path, n: int, keep: int) -> Path:
    """Release n of the pruning test below: new code, and for the last one (n = 2 + keep) new dependencies too."""
    release = make_release(tmp_path, f"release-{n}")
    return new_dependencies(release) if n == 2 + keep else release


def test_old_releases_are_pruned_with_the_virtualenvs_only_they_used(app: App, tmp_path: Path) -> None:
    """New code alone reuses the virtualenv of the release before (pip does not run); a changed
    requirements file builds one of its own. Pruning keeps the virtualenvs of the releases kept, and no other."""
    base, keep = app.vars["flask_uwsgi_base_dir"], int(app.vars["flask_uwsgi_keep_releases"])
    venv_before = app.host.check_output(f"readlink {base}/current/venv")
    for n in range(3, 3 + keep):
        last = n == 2 + keep
        play = app.deploy(tmp_path, {"flask_uwsgi_app_src": str(pruning_release(tmp_path, n, keep))})
        assert play.returncode == 0, play.output[-3000:]
        if last:
            assert task_outcome(play, "Install uWSGI into the virtualenv") == "changed"
        else:
            assert not_run(play, "Install uWSGI into the virtualenv")
        venv = app.host.check_output(f"readlink {base}/current/venv")
        assert (venv == venv_before) != last, (n, venv, venv_before)
    releases = app.host.check_output(f"ls {base}/releases").split()
    print(f"after {keep} more deploys: {len(releases)} releases kept")
    assert len(releases) == keep
    assert app.current_release().rpartition("/")[2] in releases
    linked = {app.host.check_output(f"readlink {base}/releases/{release}/venv") for release in releases}
    assert linked == {venv_before, venv}
    assert {f"{base}/venvs/{name}" for name in app.host.check_output(f"ls {base}/venvs").split()} == linked


BUILD_TASKS = (
    "Copy the app's code into the release",
    "Install uWSGI into the virtualenv",
    "Install the app's requirements file into the virtualenv",
)


def test_a_release_is_built_once_and_a_build_cut_short_is_built_again(app: App, tmp_path: Path) -> None:
    """The pruning test's releases: the one that serves is not built again, and the one kept for a
    rollback, once it lost its mark and a file as a build cut short would, is built again."""
    keep = int(app.vars["flask_uwsgi_keep_releases"])
    serving = app.current_release()
    kept = app.host.check_output(f"readlink {app.vars['flask_uwsgi_base_dir']}/previous")
    again = app.deploy(tmp_path, {"flask_uwsgi_app_src": str(pruning_release(tmp_path, 2 + keep, keep))})
    assert again.returncode == 0, again.output[-3000:]
    assert changed(app, again) == 0
    assert {task: not_run(again, task) for task in BUILD_TASKS} == dict.fromkeys(BUILD_TASKS, True)
    assert app.current_release() == serving

    app.host.check_output(f"rm {kept}/checked {kept}/app/app.py")
    rebuilt = app.deploy(tmp_path, {"flask_uwsgi_app_src": str(pruning_release(tmp_path, 1 + keep, keep))})
    assert rebuilt.returncode == 0, rebuilt.output[-3000:]
    assert task_outcome(rebuilt, BUILD_TASKS[0]) == "changed"
    assert app.current_release() == kept
    assert f"release-{1 + keep}" in app.get("/")[1]


def test_a_named_release_is_built_once_and_never_rebuilt_while_it_serves(app: App, tmp_path: Path) -> None:
    """flask_uwsgi_release names the directory; its mark still records the content, so the same
    content is not built again, and other content under the name of the serving release is refused
    before anything changes (a failed check must never alter a release that serves)."""
    first = {"flask_uwsgi_app_src": str(make_release(tmp_path, "named-one")), "flask_uwsgi_release": "v-named"}
    play = app.deploy(tmp_path, first)
    assert play.returncode == 0, play.output[-3000:]
    release, master = app.current_release(), app.main_pid()
    assert release.endswith("/releases/v-named")
    again = app.deploy(tmp_path, first)
    assert again.returncode == 0, again.output[-3000:]
    assert changed(app, again) == 0
    assert {task: not_run(again, task) for task in BUILD_TASKS} == dict.fromkeys(BUILD_TASKS, True)

    code = app.host.file(f"{release}/app/app.py").content_string
    reused = app.deploy(tmp_path, {**first, "flask_uwsgi_app_src": str(make_release(tmp_path, "named-two"))})
    assert reused.returncode != 0, reused.output[-3000:]
    assert "release 'v-named' of flask-demo is on this host with other content, and it serves" in " ".join(
        reused.output.split()
    ), reused.output[-3000:]
    assert changed(app, reused) == 0
    assert app.host.file(f"{release}/app/app.py").content_string == code
    assert (app.current_release(), app.main_pid()) == (release, master)
    assert "named-one" in app.get("/")[1]

    # Once it neither serves nor is kept for a rollback, the name may take other content, built afresh:
    # a build of it that fails its check leaves no mark that the first content could be mistaken for.
    for name in ("v-other", "v-third"):
        play = app.deploy(tmp_path, {**first, "flask_uwsgi_release": name})
        assert play.returncode == 0, play.output[-3000:]
    broken = app.deploy(tmp_path, {**first, "flask_uwsgi_app_src": str(make_release(tmp_path, "named-x", broken=True))})
    assert broken.returncode != 0, broken.output[-3000:]
    assert "failed its check, so it gets no traffic" in broken.output
    assert not app.host.file(f"{release}/checked").exists
    again = app.deploy(tmp_path, first)
    assert again.returncode == 0, again.output[-3000:]
    assert task_outcome(again, BUILD_TASKS[0]) == "changed"
    assert app.current_release() == release
    assert "named-one" in app.get("/")[1]


def test_the_run_after_one_that_died_half_way_reloads_what_it_wrote(app: App, tmp_path: Path) -> None:
    """A run dies after writing uwsgi.ini (a later task fails): the service still runs the old ini.
    The next plain run has nothing to write, but reloads the service onto the ini, with no failed request."""
    processes = int(app.vars["flask_uwsgi_processes"]) + 1
    workers = len(app.workers())
    # A directory under a file cannot be created: that task comes after the ini and fails.
    died = app.deploy(tmp_path, {"flask_uwsgi_processes": processes, "flask_uwsgi_writable_paths": ["/etc/hostname/x"]})
    assert died.returncode != 0, died.output[-3000:]
    assert task_outcome(died, "config | Write the app's uwsgi.ini") == "changed"
    assert task_outcome(died, "config | Create the directories the app may write to") == "failed"
    assert f"\nprocesses = {processes}\n" in app.host.file(app.ini).content_string
    time.sleep(2)
    assert len(app.workers()) == workers, "the failed run reloaded the service"

    master = app.main_pid()
    play, stats = under_load(app, tmp_path, "playbooks/deploy.yml", {"flask_uwsgi_processes": processes})
    assert stats["rc"] == 0, play.output[-3000:]
    assert stats["failed"] == 0, stats["errors"]
    assert task_outcome(play, "config | Write the app's uwsgi.ini") == "ok"
    assert task_outcome(play, "Reload the app's service") == "changed"
    assert app.main_pid() == master
    app.wait_until(lambda: len(app.workers()) == processes, timeout=10, what=f"{processes} workers")

    back = app.deploy(tmp_path, {})
    assert back.returncode == 0, back.output[-3000:]
    app.wait_until(lambda: len(app.workers()) == workers, timeout=10, what=f"{workers} workers")


def test_a_hand_edited_ini_is_written_back_and_reloaded(app: App, tmp_path: Path) -> None:
    """Somebody edits uwsgi.ini on the host and reloads: the next deploy writes the role's ini back
    and reloads onto it, though what the service last ran with by the role's hand has not changed."""
    workers = len(app.workers())
    app.host.check_output(f"sed -i 's/^processes = .*/processes = {workers + 1}/' {app.ini}")
    app.host.check_output(f"systemctl reload {app.unit}")
    app.wait_until(lambda: len(app.workers()) == workers + 1, timeout=15, what="the hand-edited worker count")
    play = app.deploy(tmp_path, {})
    assert play.returncode == 0, play.output[-3000:]
    assert task_outcome(play, "config | Write the app's uwsgi.ini") == "changed"
    assert task_outcome(play, "Reload the app's service") == "changed"
    app.wait_until(lambda: len(app.workers()) == workers, timeout=15, what=f"{workers} workers again")


# What each tag runs: the steps of tasks/main.yml (the preflight runs with every tag).
STEPS = (
    "preflight",
    "accounts",
    "build",
    "check",
    "release_commands",
    "activate",
    "config",
    "service",
    "health",
    "workers",
)
TAGS = {
    "flask_uwsgi": STEPS,
    "flask_uwsgi_accounts": ("preflight", "accounts"),
    "flask_uwsgi_release": (
        "preflight",
        "build",
        "check",
        "release_commands",
        "activate",
        "service",
        "health",
        "workers",
    ),
    "flask_uwsgi_config": ("preflight", "config", "service", "health", "workers"),
    "flask_uwsgi_service": ("preflight", "service", "health", "workers"),
    "flask_uwsgi_exporter": ("preflight",),
}
# The steps of the exporter's role (roles/flask_uwsgi_exporter/tasks/main.yml): its checks run with
# every tag (playbooks/deploy.yml runs them first), the rest only with its tag or without --tags.
EXPORTER_STEPS = ("assert", "install", "service")
EXPORTER_TAGS = {"flask_uwsgi_exporter": EXPORTER_STEPS}


def steps_run(play: Play, role: str = "flask_uwsgi") -> set[str]:
    """The role's steps that ran a task in the play (named "<role> : <step> | ...")."""
    names = [event["task"] for event in play.events if event["event"] == "task"]
    return {name.split(" : ", 1)[1].split(" | ")[0] for name in names if name.startswith(f"{role} : ")}


def test_each_tag_runs_its_steps_alone_on_a_converged_host(app: App, tmp_path: Path) -> None:
    """Every documented tag runs (preflight, then its own steps) and, with nothing to change, changes nothing."""
    for tag, steps in TAGS.items():
        play = app.deploy(tmp_path, {}, "--tags", tag)
        assert play.returncode == 0, f"--tags {tag}:\n{play.output[-3000:]}"
        assert steps_run(play) & set(STEPS) == set(steps), f"--tags {tag}"
        exporter_steps = steps_run(play, "flask_uwsgi_exporter") & set(EXPORTER_STEPS)
        assert exporter_steps == set(EXPORTER_TAGS.get(tag, ("assert",))), f"--tags {tag}"
        assert changed(app, play) == 0, f"--tags {tag}:\n{play.output[-3000:]}"
        if "accounts" in steps:
            # The preflight found the role's directories and helpers as they should be: nothing to run.
            for task in ("Create the app's directories and flask_uwsgi's own", "Install the helpers"):
                assert task_outcome(play, task) == "skipping", f"--tags {tag}: {task}"


def test_a_tag_applies_what_it_writes(app: App, tmp_path: Path) -> None:
    """--tags flask_uwsgi_config writes the ini and reloads onto it; --tags flask_uwsgi_release builds,
    switches and reloads onto a new release: both under load, with no failed request."""
    processes, master = int(app.vars["flask_uwsgi_processes"]) + 1, app.main_pid()
    play, stats = under_load(
        app, tmp_path, "playbooks/deploy.yml", {"flask_uwsgi_processes": processes}, "--tags", "flask_uwsgi_config"
    )
    assert stats["rc"] == 0, play.output[-3000:]
    assert stats["failed"] == 0, stats["errors"]
    assert task_outcome(play, "Reload the app's service") == "changed"
    app.wait_until(lambda: len(app.workers()) == processes, timeout=10, what=f"{processes} workers")

    src = {"flask_uwsgi_app_src": str(make_release(tmp_path, "tagged")), "flask_uwsgi_processes": processes}
    play, stats = under_load(app, tmp_path, "playbooks/deploy.yml", src, "--tags", "flask_uwsgi_release")
    assert stats["rc"] == 0, play.output[-3000:]
    assert stats["failed"] == 0, stats["errors"]
    assert task_runs(play, "Reload the app's service") == [{app.host.backend.host: "changed"}]
    assert "tagged" in app.get("/")[1]
    assert app.main_pid() == master


def test_a_tag_is_refused_on_a_host_without_a_directory_of_a_newer_role(app: App, tmp_path: Path) -> None:
    """As after an upgrade of the role: --tags flask_uwsgi_config is refused, naming the directory and
    changing nothing; with flask_uwsgi_accounts added, it runs and makes it."""
    registry = "/etc/flask_uwsgi/exporter.d"
    app.host.check_output(f"mv {registry} /root/exporter.d.saved")
    try:
        refused = app.deploy(tmp_path, {}, "--tags", "flask_uwsgi_config")
        assert refused.returncode != 0
        assert f"needs {registry}, which this host lacks" in " ".join(refused.output.split()), refused.output[-3000:]
        assert changed(app, refused) == 0
        accepted = app.deploy(tmp_path, {}, "--tags", "flask_uwsgi_accounts,flask_uwsgi_config")
        assert accepted.returncode == 0, accepted.output[-3000:]
        assert app.host.file(f"{registry}/{app.name}.json").exists
    finally:
        app.host.run(f"test -d {registry} || mv /root/exporter.d.saved {registry}; rm -rf /root/exporter.d.saved")


def test_the_exporter_tag_applies_a_new_port(app: App, tmp_path: Path) -> None:
    """--tags flask_uwsgi_exporter alone rewrites the exporter's unit and restarts it onto the new port."""
    for port, other in ((9118, 9117), (9117, 9118)):
        play = app.deploy(tmp_path, {"flask_uwsgi_exporter_port": port}, "--tags", "flask_uwsgi_exporter")
        assert play.returncode == 0, play.output[-3000:]
        assert task_outcome(play, "Restart the exporter") == "changed"
        app.wait_until(
            lambda port=port: scrape(app.host, port).sum("uwsgi_up", app=app.name) == 1,
            timeout=10,
            what=f"the exporter answers on port {port}",
        )
        assert not app.host.socket(f"tcp://127.0.0.1:{other}").is_listening


def test_stats_off_leaves_no_socket_and_takes_the_app_out_of_the_exporter(app: App, tmp_path: Path) -> None:
    registration = f"/etc/flask_uwsgi/exporter.d/{app.name}.json"
    off = app.deploy(tmp_path, {"flask_uwsgi_stats": False})
    assert off.returncode == 0, off.output[-3000:]
    assert "stats" not in dict(
        line.split(" = ", 1) for line in app.host.file(app.ini).content_string.splitlines() if " = " in line
    )
    assert not app.host.file(f"/run/{app.name}/stats").exists
    assert not app.host.file(registration).exists
    assert scrape(app.host).find("uwsgi_up", app=app.name) == []
    assert app.answers()
    on = app.deploy(tmp_path, {})
    assert on.returncode == 0, on.output[-3000:]
    assert app.host.file(registration).exists
    app.wait_until(
        lambda: scrape(app.host).sum("uwsgi_up", app=app.name) == 1, timeout=10, what="the exporter reads the app again"
    )


def test_another_uwsgi_restarts_and_a_rollback_across_it_restarts_again(app: App, tmp_path: Path) -> None:
    """The uWSGI of the release `current` points at is part of what only a restart applies: a deploy
    with another version restarts, and so does the rollback to the release with the first one.
    (Its deploy also brings back the scenario's settings after the tests of tags.)"""
    before, master = app.current_release(), app.main_pid()
    other, stats = under_load(app, tmp_path, "playbooks/deploy.yml", {"flask_uwsgi_uwsgi_version": "2.0.29"})
    assert other.returncode == 0, other.output[-3000:]
    assert task_outcome(other, "Restart the app's service") == "changed"
    assert stats["failed"] == 0, stats["errors"]
    assert app.current_release() != before
    assert app.main_pid() != master
    master = app.main_pid()

    back, stats = under_load(app, tmp_path, "playbooks/rollback.yml", {})
    assert back.returncode == 0, back.output[-3000:]
    assert task_outcome(back, "Restart the app's service") == "changed"
    assert stats["failed"] == 0, stats["errors"]
    assert app.current_release() == before
    assert app.main_pid() != master
    assert app.answers()


# Runs inside the test host: GET /?n=0 .. /?n=COUNT-1, one every 10 ms, so each request has a
# numbered line in uWSGI's request log.
NUMBERED_REQUESTS = r"""
import sys, time, urllib.request
port, count = sys.argv[1], int(sys.argv[2])
for n in range(count):
    urllib.request.urlopen(f"http://127.0.0.1:{port}/?n={n}", timeout=30).read()
    time.sleep(0.01)
"""


def test_log_file_rotation_loses_no_line_and_restarts_nothing(app: App, tmp_path: Path) -> None:
    log = f"/var/log/{app.name}/uwsgi.log"
    play = app.deploy(tmp_path, {"flask_uwsgi_log_file": log, "flask_uwsgi_log_requests": True})
    assert play.returncode == 0, play.output[-3000:]
    master, count = app.main_pid(), 600
    with ThreadPoolExecutor(1) as pool:
        requests = pool.submit(
            app.host.check_output, "python3 -c %s %s %s", NUMBERED_REQUESTS, str(port(app)), str(count)
        )
        for _ in range(2):  # rotate twice while requests are logged
            time.sleep(2)
            app.host.check_output(f"logrotate --force /etc/logrotate.d/{app.name}")
        requests.result()
    time.sleep(1.5)  # uWSGI checks the trigger about once a second
    logged = app.host.check_output(f"cat {log}.2.gz | gunzip; cat {log}.1 {log}")
    numbers = [int(n) for n in re.findall(r"GET /\?n=(\d+) ", logged)]
    print(f"{count} requests, logrotate forced twice: {len(numbers)} request lines across 3 files")
    assert sorted(numbers) == list(range(count))
    assert logged.count("reopened.") >= 2
    assert app.host.file(log).user == app.vars["flask_uwsgi_user"]
    assert app.main_pid() == master
    assert "GET /?n=" not in journal_since(app, time.time() - 60)


def test_remove_keeps_the_data_unless_asked_and_then_leaves_nothing(app: App, tmp_path: Path) -> None:
    """playbooks/remove.yml keeps the shared directories (the app's data), and the account that owns
    them, unless flask_uwsgi_remove_shared_dirs is true; then nothing is left, and a second run
    changes nothing."""
    base = app.vars["flask_uwsgi_base_dir"]
    assert app.get("/visits")[0].endswith("200 OK")
    kept = app.run_playbook("playbooks/remove.yml", {}, tmp_path)
    assert kept.returncode == 0, kept.output[-3000:]
    assert app.show("LoadState") == "not-found"
    # The host's exporter no longer reports the app.
    assert not app.host.file(f"/etc/flask_uwsgi/exporter.d/{app.name}.json").exists
    assert scrape(app.host).find("uwsgi_up", app=app.name) == []
    assert app.host.check_output(f"ls -A {base}") == "shared"
    assert app.host.file(f"{base}/shared/data/visits").size > 0
    # The data's owner stays too, so that its id goes to no other account.
    assert app.host.file(f"{base}/shared/data/visits").user == app.vars["flask_uwsgi_user"]

    first = app.run_playbook("playbooks/remove.yml", {"flask_uwsgi_remove_shared_dirs": True}, tmp_path)
    assert first.returncode == 0, first.output[-3000:]
    assert app.show("LoadState") == "not-found"
    assert app.host.run(f"pgrep -u {app.vars['flask_uwsgi_user']}").rc != 0
    assert not app.host.user(app.vars["flask_uwsgi_user"]).exists
    assert not app.host.group(app.vars["flask_uwsgi_group"]).exists
    for path in (
        app.ini,
        app.vars["flask_uwsgi_base_dir"],
        *(f"/etc/systemd/system/{u}" for u in (app.unit, app.socket_unit)),
    ):
        assert not app.host.file(path).exists, path
    assert not app.host.socket("tcp://" + app.vars["flask_uwsgi_http_socket"]).is_listening

    second = app.run_playbook("playbooks/remove.yml", {"flask_uwsgi_remove_shared_dirs": True}, tmp_path)
    assert second.returncode == 0, second.output[-3000:]
    assert changed(app, second) == 0
