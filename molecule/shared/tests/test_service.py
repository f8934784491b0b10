"""What a user relies on once the app is deployed: it runs, answers, survives and stops cleanly.

Expectations come from the scenario's variables (over the role's defaults), so every scenario
runs the same suite against its own settings. The stop test runs last and starts the app again.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable

import pytest
from flask_uwsgi_testing import CLIENT, App, exposure, run_load


def ini_entries(app: App) -> list[tuple[str, str]]:
    """The ini's `key = value` lines, in order, repeated keys kept."""
    content = app.host.file(app.ini).content_string
    return [
        (key.strip(), value.strip())
        for key, _, value in (line.partition("=") for line in content.splitlines())
        if _ and not key.lstrip().startswith((";", "#"))
    ]


def ini_bool(value: object) -> str:
    return str(value).lower()


# (ini key, the variable that sets it, how the role writes it)
INI_OPTIONS = [
    ("chdir", "flask_uwsgi_chdir", str),
    ("callable", "flask_uwsgi_callable", str),
    ("need-app", "flask_uwsgi_need_app", ini_bool),
    ("lazy-apps", "flask_uwsgi_lazy_apps", ini_bool),
    ("master", "flask_uwsgi_master", ini_bool),
    ("processes", "flask_uwsgi_processes", str),
    ("threads", "flask_uwsgi_threads", str),
    ("single-interpreter", "flask_uwsgi_single_interpreter", ini_bool),
    ("die-on-term", "flask_uwsgi_die_on_term", ini_bool),
    ("procname-prefix-spaced", "flask_uwsgi_procname_prefix", str),
    ("vacuum", "flask_uwsgi_vacuum", ini_bool),
    ("pidfile", "flask_uwsgi_pidfile", str),
    ("worker-reload-mercy", "flask_uwsgi_worker_reload_mercy", str),
    ("py-autoreload", "flask_uwsgi_py_autoreload", str),
    ("strict", "flask_uwsgi_strict", ini_bool),
    ("harakiri", "flask_uwsgi_harakiri", str),
    ("max-requests", "flask_uwsgi_max_requests", str),
    ("reload-on-rss", "flask_uwsgi_reload_on_rss", str),
    ("listen", "flask_uwsgi_listen", str),
]


@pytest.mark.parametrize(("key", "variable", "written"), INI_OPTIONS, ids=[o[0] for o in INI_OPTIONS])
def test_ini_holds_option(app: App, key: str, variable: str, written: Callable[[object], str]) -> None:
    assert (key, written(app.vars[variable])) in ini_entries(app)


def test_ini_loads_the_app_from_exactly_one_place(app: App) -> None:
    entries = dict(ini_entries(app))
    if app.vars["flask_uwsgi_module"]:
        assert entries.get("module") == app.vars["flask_uwsgi_module"]
        assert "wsgi-file" not in entries
    else:
        assert entries.get("wsgi-file") == app.vars["flask_uwsgi_wsgi_file"]
        assert "module" not in entries


def test_systemd_holds_the_addresses_and_uwsgi_serves_them_by_descriptor(app: App) -> None:
    """Socket activation: the socket unit listens on http-socket's and socket's addresses, in that
    order, and the ini names them by the descriptors systemd passes (fd://3 on); uWSGI binds the
    http router's address itself."""
    assert app.vars["flask_uwsgi_socket_activation"], "the scenarios run with the default, socket activation"
    entries = ini_entries(app)
    held = [app.vars[name] for name in ("flask_uwsgi_http_socket", "flask_uwsgi_socket") if app.vars[name]]
    listen = app.host.check_output(f"systemctl show {app.socket_unit} --property Listen --value").splitlines()
    assert listen == [("0.0.0.0" + address if address.startswith(":") else address) + " (Stream)" for address in held]
    assert app.host.check_output(f"systemctl is-active {app.socket_unit}") == "active"
    for key in ("http-socket", "socket"):
        value = app.vars["flask_uwsgi_" + key.replace("-", "_")]
        assert [v for k, v in entries if k == key] == ([f"fd://{3 + held.index(value)}"] if value else [])
    http = app.vars["flask_uwsgi_http"]
    assert [v for k, v in entries if k == "http"] == ([http] if http else [])


def test_ini_holds_extra_options_in_order_with_repeats(app: App) -> None:
    extra = [(o["option"], str(o["value"])) for o in app.vars["flask_uwsgi_extra_options"]]
    assert extra, "the scenario should set extra options so that this path is exercised"
    keys = {k for k, _ in extra}
    assert [e for e in ini_entries(app) if e[0] in keys] == extra


def test_ini_is_readable_by_the_app_group_only(app: App) -> None:
    ini = app.host.file(app.ini)
    assert (ini.user, ini.group, ini.mode) == ("root", app.vars["flask_uwsgi_group"], 0o640)
    assert app.host.run(f"runuser -u {app.vars['flask_uwsgi_user']} -- cat {app.ini}").rc == 0
    assert app.host.run(f"runuser -u nobody -- cat {app.ini}").rc != 0


def test_service_is_enabled_and_active(app: App) -> None:
    assert app.show("UnitFileState") == "enabled"
    assert app.show("ActiveState") == "active"
    assert app.show("StatusText") == "uWSGI is ready"


def test_main_pid_is_the_pidfile(app: App) -> None:
    pidfile = app.host.file(app.vars["flask_uwsgi_pidfile"])
    assert int(pidfile.content_string.strip()) == app.main_pid()


def test_runs_as_the_app_user(app: App) -> None:
    users = app.host.check_output(f"ps -o user= -p {app.main_pid()} --ppid {app.main_pid()}").split()
    uid = app.host.user(app.vars["flask_uwsgi_user"]).uid
    assert set(users) in ({app.vars["flask_uwsgi_user"]}, {str(uid)})


def test_master_has_exactly_the_configured_workers(app: App) -> None:
    routers = 1 if app.vars["flask_uwsgi_http"] else 0
    assert len(app.workers()) == int(app.vars["flask_uwsgi_processes"]) + routers


def test_processes_carry_the_procname_prefix(app: App) -> None:
    if app.vars["flask_uwsgi_uwsgi_package"] == "pyuwsgi":
        pytest.skip("pyuwsgi does not set process titles (checked: procname options have no effect)")
    prefix = app.vars["flask_uwsgi_procname_prefix"]
    titles = app.host.check_output(f"ps -o args= -p {app.main_pid()} --ppid {app.main_pid()}").splitlines()
    assert titles[0] == f"{prefix} uWSGI master"
    assert all(re.fullmatch(rf"{re.escape(prefix)} uWSGI (master|worker \d+|http 1)", t) for t in titles)


def test_listen_queue_has_the_configured_size(app: App) -> None:
    address, _ = app.address
    if address.startswith("/"):
        query = f"--unix src {address}"
    else:
        query = f"--tcp --numeric sport = :{address.rpartition(':')[2]}"
    listening = app.host.check_output(f"ss --no-header --listening {query}")
    # Columns: [Netid] State Recv-Q Send-Q ...; for a listening socket, Send-Q is the backlog.
    columns = listening.split()
    assert columns[columns.index("LISTEN") + 2] == str(app.vars["flask_uwsgi_listen"])


def chowns_its_socket(app: App) -> bool:
    """Whether uWSGI hands its unix socket to another group (chown-socket), which needs chown: only
    when it binds the socket itself (without socket activation)."""
    return (
        app.vars["flask_uwsgi_socket"].startswith("/")
        and app.vars["flask_uwsgi_socket_group"] != app.vars["flask_uwsgi_group"]
        and not app.vars["flask_uwsgi_socket_activation"]
    )


def test_unit_exposure_is_at_most_1_2_or_1_4_with_chown_socket(app: App) -> None:
    # systemd-analyze weighs ~@privileged as a whole: allowing chown back for chown-socket costs 0.2.
    score, most = exposure(app.host, app.unit), 1.4 if chowns_its_socket(app) else 1.2
    print(f"Debian {app.debian()}: systemd-analyze security {app.unit}: {score}")
    assert score <= most


def test_service_umask_keeps_new_files_to_the_app_user(app: App) -> None:
    status = app.host.check_output(f"grep Umask /proc/{app.main_pid()}/status")
    assert status.split() == ["Umask:", "0077"]


def as_the_app_user(app: App, command: str, sandboxed: bool = True) -> int:
    """Run a command as the app's user, inside the mount namespace systemd made for the service or not.

    nsenter needs SYS_PTRACE in the test host; the writes that must succeed show that it worked.
    """
    user, group = app.vars["flask_uwsgi_user"], app.vars["flask_uwsgi_group"]
    setpriv = f"setpriv --reuid {user} --regid {group} --init-groups {command}"
    return app.host.run(f"nsenter --target {app.main_pid()} --mount {setpriv}" if sandboxed else setpriv).rc


def test_app_writes_only_where_it_may(app: App) -> None:
    for path in [f"/run/{app.name}", *app.vars["flask_uwsgi_writable_paths"]]:
        assert as_the_app_user(app, f"touch {path}/written-by-the-app") == 0, path
    # A directory the app's user owns but that no variable declares: writable outside the sandbox only.
    owned = "/srv/owned-by-the-app-user"
    user, group = app.vars["flask_uwsgi_user"], app.vars["flask_uwsgi_group"]
    app.host.check_output(f"install -d -o {user} -g {group} {owned}")
    try:
        assert as_the_app_user(app, f"touch {owned}/outside", sandboxed=False) == 0
        venv = f"{app.vars['flask_uwsgi_base_dir']}/current/venv/bin"
        # /run/lock is open to every user outside the sandbox; ProtectSystem= alone left it writable.
        assert as_the_app_user(app, "touch /run/lock/outside", sandboxed=False) == 0
        app.host.run("rm -f /run/lock/outside")
        for path in [owned, "/etc", "/etc/flask_uwsgi", app.vars["flask_uwsgi_chdir"], venv, "/run/lock"]:
            assert as_the_app_user(app, f"touch {path}/written-by-the-app") != 0, path
    finally:
        app.host.run(f"rm -rf {owned}")


def test_app_has_a_tmp_of_its_own(app: App) -> None:
    """PrivateTmp=: the app's /tmp is not the host's; on Debian 13 ("disconnected") it is not even a
    directory of the host's /tmp, where systemd 252 keeps it."""
    name = f"from-the-app-{time.time_ns()}"
    assert as_the_app_user(app, f"touch /tmp/{name}") == 0
    assert not app.host.file(f"/tmp/{name}").exists
    kept_on_host = app.host.run(f"find /tmp -maxdepth 1 -name 'systemd-private-*-{app.unit}-*'").stdout.split()
    assert len(kept_on_host) == (0 if app.debian() >= 13 else 1), kept_on_host


def test_app_answers_with_the_demo_response(app: App) -> None:
    status, body = app.get("/")
    assert status.endswith("200 OK")
    assert body.startswith("Hello from flask-demo")
    status, body = app.get("/health")
    assert status.endswith("200 OK")
    assert '"status":"ok"' in body.replace(" ", "")


# An HTTP/1.1 request on a connection the client would keep: what the answer says, then whether the
# server closes the connection (EOF within 10 s) once the answer is read.
KEEPING_CLIENT = r"""
import json, socket, sys, time
sock = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
sock.sendall(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")
answer, start = b"", time.monotonic()
while chunk := sock.recv(65536):
    answer += chunk
head = answer.partition(b"\r\n\r\n")[0].decode().lower().split("\r\n")
print(json.dumps([head[0], [line for line in head if line.startswith("connection:")], time.monotonic() - start]))
"""


def test_http_socket_answers_say_connection_close_and_close_it(app: App) -> None:
    """The workers serve one request per connection: an HTTP/1.1 client is told so, and not left to
    send its next request down a connection the worker has closed."""
    if not app.vars["flask_uwsgi_http_socket"]:
        pytest.skip("the scenario's app has no http-socket")
    port = app.vars["flask_uwsgi_http_socket"].rpartition(":")[2]
    status, connection, took = json.loads(app.host.check_output("python3 -c %s %s", KEEPING_CLIENT, port))
    assert status.endswith("200 ok"), status
    assert connection == ["connection: close"], connection
    assert took < 5, f"the connection stayed open {took:.1f} s after the answer"


def test_requests_are_logged_only_when_asked(app: App) -> None:
    # A path of its own (no query: the uwsgi-protocol client sends none); the app answers 404.
    path = f"/logged-{time.time_ns()}"
    assert app.get(path)[0].endswith("404 NOT FOUND")

    def journal() -> str:
        return app.host.check_output(f"journalctl SYSLOG_IDENTIFIER={app.name} --no-pager --output cat")

    if app.vars["flask_uwsgi_log_requests"]:
        app.wait_until(lambda: path in journal(), timeout=5, what="the request's line in the journal")
    else:
        time.sleep(1)
        assert path not in journal()
    assert "spawned uWSGI worker" in journal(), "uWSGI's own messages reach the journal either way"


def test_steady_load_is_served_by_the_same_workers(app: App) -> None:
    # A worker replaced on a request count is away until the master's next check (up to 1 s), and
    # evenly loaded workers reach the count together, so by default no count replaces them.
    address, protocol = app.address
    if protocol != "http" or address.startswith("/"):
        pytest.skip("the load generator speaks HTTP over TCP")
    app.wait_for_workers_past_min_lifetime()
    master, workers = app.main_pid(), app.workers()
    # Some worker serves at least 6000 of them: past the 5000 that was the default before make bench.
    requests = 6000 * int(app.vars["flask_uwsgi_processes"])
    stats = run_load(app.host, int(address.rsplit(":", 1)[1]), clients=16, seconds=120, most=requests)
    print(stats["figures"])
    assert (stats["requests"], stats["failed"]) == (requests, 0)
    assert (app.main_pid(), app.workers()) == (master, workers)


def test_killed_worker_is_respawned(app: App) -> None:
    master, workers = app.main_pid(), app.workers()
    victim = workers[-1]
    app.host.check_output(f"kill -KILL {victim}")
    took = app.wait_until(
        lambda: victim not in app.workers() and len(app.workers()) == len(workers),
        timeout=5,
        what="the master respawns the killed worker",
    )
    assert app.main_pid() == master
    assert app.show("ActiveState") == "active"
    assert app.answers()
    print(f"worker respawned in {took:.2f} s")


def test_reload_keeps_the_master_and_replaces_the_workers(app: App) -> None:
    master, workers = app.main_pid(), set(app.workers())
    app.host.check_output(f"systemctl reload {app.unit}")
    app.wait_until(
        lambda: not (set(app.workers()) & workers) and len(app.workers()) == len(workers) and app.answers(),
        timeout=int(app.vars["flask_uwsgi_worker_reload_mercy"]) + 10,
        what="new workers answer after the reload",
    )
    assert app.main_pid() == master
    assert app.show("ActiveState") == "active"
    assert app.show("NRestarts") == "0"


def test_stop_is_clean_and_start_works_again(app: App) -> None:
    # Start afresh.
    app.host.check_output(f"systemctl restart {app.unit}")
    app.wait_until(app.answers, timeout=30, what="the app answers after a restart")
    invocation = app.show("InvocationID")

    took = app.stop()
    print(f"systemctl stop took {took:.2f} s")

    # Idle, it takes about a second (the master's last cycle). The bound is what a user can count on:
    # the mercy, that cycle, and a second for a busy machine.
    assert took <= int(app.vars["flask_uwsgi_worker_reload_mercy"]) + 2
    assert app.show("ActiveState") == "inactive"
    assert app.show("Result") == "success"
    assert app.host.run(f"pgrep -u {app.vars['flask_uwsgi_user']}").rc == 1, "a process of the app survived"
    assert not app.host.file(app.vars["flask_uwsgi_pidfile"]).exists
    journal = app.host.check_output(f"journalctl _SYSTEMD_INVOCATION_ID={invocation} --no-pager --output cat")
    assert "VACUUM: pidfile removed." in journal
    socket = app.vars["flask_uwsgi_socket"]
    if socket.startswith("/"):
        # systemd holds the unix socket: it stays, for the next start.
        assert app.host.file(socket).is_socket

    app.host.check_output(f"systemctl start {app.unit}")
    app.wait_until(app.answers, timeout=30, what="the app answers after a new start")


def test_unix_socket_is_open_to_its_group_only(app: App) -> None:
    socket = app.vars["flask_uwsgi_socket"]
    if not socket.startswith("/"):
        pytest.skip("this scenario binds no unix socket")
    sock = app.host.file(socket)
    assert sock.is_socket
    assert (sock.user, sock.group, sock.mode) == (
        app.vars["flask_uwsgi_user"],
        app.vars["flask_uwsgi_socket_group"],
        int(app.vars["flask_uwsgi_socket_mode"], 8),
    )
    # What a user sees: a member of the group (a web server, say) gets answers; anyone else is refused.
    client = "python3 -c %s %s uwsgi /health"
    app.host.check_output(f"useradd --system --no-create-home -G {app.vars['flask_uwsgi_socket_group']} web-probe")
    try:
        as_member = app.host.run(f"runuser -u web-probe -- {client}", CLIENT, socket)
    finally:
        app.host.run("userdel web-probe")
    assert as_member.stdout.startswith("HTTP/1.1 200"), as_member.stderr
    as_nobody = app.host.run(f"runuser -u nobody -- {client}", CLIENT, socket)
    assert as_nobody.rc != 0
    assert "PermissionError" in as_nobody.stderr


def test_pyuwsgi_needs_no_compiler(app: App) -> None:
    if app.vars["flask_uwsgi_uwsgi_package"] != "pyuwsgi":
        pytest.skip("uWSGI is compiled from source in this scenario")
    assert not app.host.exists("gcc")
    uwsgi = f"{app.vars['flask_uwsgi_base_dir']}/current/venv/bin/uwsgi"
    assert app.host.check_output(f"{uwsgi} --version").startswith("2.0.")
