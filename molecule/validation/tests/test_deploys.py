"""Deploys to the hosts test_bad_input.py left bare: reload or restart, check mode, secrets, privileges.

Each play deploys to the Debian 12 and the Debian 13 host at once (one batch), and each test checks
both. The tests run in file order and build on each other; the last one leaves a broken service.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from flask_uwsgi_testing import ONE_BATCH, demo_release, deploy, exposure, recap, request_in_host, task_runs

UNIT = "flask-demo.service"
ENV_FILE = "/etc/flask_uwsgi/flask-demo.env"

# Routes added to the demo app: each reports what the app may do, never a secret itself.
PROBES = '''

import hashlib as _hashlib, json as _json, mmap as _mmap, socket as _socket, tempfile as _tempfile


@app.get("/version")
def version() -> str:
    return "probes"


@app.get("/secret-digest")
def secret_digest() -> tuple[str, int]:
    """A digest of SECRET_KEY and PEM; a 500 while either is missing or differs from EXPECTED_DIGEST."""
    values = [os.environ.get(name) for name in ("SECRET_KEY", "PEM")]
    if None in values:
        return "SECRET_KEY or PEM is not set\\n", 500
    digest = _hashlib.sha256(_json.dumps(values).encode()).hexdigest()
    if digest != os.environ.get("EXPECTED_DIGEST", digest):
        return "SECRET_KEY or PEM differs from what the deploy sent\\n", 500
    return digest, 200


def _attempt(action) -> tuple[str, int]:
    try:
        action()
    except OSError as error:
        return f"refused: {error}\\n", 403
    return "allowed\\n", 200


@app.get("/netlink")
def netlink() -> tuple[str, int]:
    return _attempt(lambda: _socket.socket(_socket.AF_NETLINK, _socket.SOCK_RAW).close())


@app.get("/write-execute")
def write_execute() -> tuple[str, int]:
    prot = _mmap.PROT_READ | _mmap.PROT_WRITE | _mmap.PROT_EXEC
    return _attempt(lambda: _mmap.mmap(-1, 4096, prot=prot).close())


def _chown_own_file() -> None:
    with _tempfile.NamedTemporaryFile() as own:
        os.chown(own.name, -1, os.getgid())


@app.get("/chown")
def chown() -> tuple[str, int]:
    """Give a file of its own to its own group: no privilege needed, but a system call of @privileged."""
    return _attempt(_chown_own_file)


@app.get("/affinity")
def affinity() -> tuple[str, int]:
    """Set its CPU affinity to what it is: no privilege needed, but a system call of @resources."""
    return _attempt(lambda: os.sched_setaffinity(0, os.sched_getaffinity(0)))
'''

# Values a naive quoting would mangle; the first few characters are what the searches look for.
SECRETS = {
    "SECRET_KEY": "s3cr3t-7f1c9a \"quoted\" 'single' back\\slash $HOME ${PATH} `cmd` #hash ;semi",
    "PEM": "-----BEGIN KEY-----\nk3y-b0dy-4e8d\\n\n-----END KEY-----",
}
NEEDLES = ["s3cr3t-7f1c9a", "k3y-b0dy-4e8d"]


def digest(secrets: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps([secrets["SECRET_KEY"], secrets["PEM"]]).encode()).hexdigest()


def with_secrets(probes: str, secrets: dict[str, str]) -> dict[str, Any]:
    """Settings that deploy the secrets; the health path (for the release check and the deploy's
    probe alike) answers 200 only if the app got exactly these values."""
    return {
        "flask_uwsgi_app_src": probes,
        "flask_uwsgi_env": {**secrets, "EXPECTED_DIGEST": digest(secrets)},
        "flask_uwsgi_health_path": "/secret-digest",
    }


@pytest.fixture(scope="module")
def probes(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The demo app with the probe routes, as a release source directory."""
    return str(demo_release(tmp_path_factory.mktemp("src"), "probes", after=PROBES))


def deployed(tmp_path: Path, extra_vars: dict[str, Any], *options: str) -> str:
    """Deploy to both hosts, check that it worked on each, and return what the play printed."""
    result = deploy(tmp_path, {**ONE_BATCH, **extra_vars}, *options)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    return output


def everywhere(output: str, task: str, hosts: list[Any]) -> str | dict[str, str]:
    """How the first run of a task or handler ended: its outcome if the same on every host, else by host."""
    outcomes = task_runs(output, task)[0]
    assert set(outcomes) == {host.backend.host for host in hosts}, f"{task}: {outcomes}"
    return outcomes.popitem()[1] if len(set(outcomes.values())) == 1 else outcomes


def unchanged(output: str, hosts: list[Any]) -> bool:
    counts = recap(output)
    return all(counts[host.backend.host]["changed"] == 0 for host in hosts)


def main_pid(host: Any) -> str:
    return host.check_output(f"systemctl show {UNIT} --property MainPID --value")


def main_pids(hosts: list[Any]) -> list[str]:
    return [main_pid(host) for host in hosts]


def get(host: Any, path: str, address: str = "127.0.0.1:8000") -> tuple[int, str]:
    """One GET to the app from inside the host: its status code and body."""
    status, body = request_in_host(host, address, path)
    return int(status.split()[1]), body.strip()


def test_good_release_deploys(app_hosts: list[Any], tmp_path: Path) -> None:
    """From here on the hosts change: a first release goes out and answers on each."""
    deployed(tmp_path, {})
    for host in app_hosts:
        assert host.service("flask-demo").is_running
        assert get(host, "/")[0] == 200


def test_check_mode_on_a_converged_host_reports_no_change(app_hosts: list[Any], tmp_path: Path) -> None:
    masters = main_pids(app_hosts)
    output = deployed(tmp_path, {}, "--check", "--diff")
    assert unchanged(output, app_hosts), output[-3000:]
    assert main_pids(app_hosts) == masters


def test_code_change_is_a_graceful_reload(app_hosts: list[Any], tmp_path: Path, probes: str) -> None:
    """New code reaches the workers through a reload: same master, new answer, no restart."""
    masters = main_pids(app_hosts)
    output = deployed(tmp_path, {"flask_uwsgi_app_src": probes, "flask_uwsgi_health_path": "/version"})
    assert everywhere(output, "Reload the app's service", app_hosts) == "changed"
    assert "RUNNING HANDLER [flask_uwsgi : Restart the app's service]" not in output, "a restart was queued"
    assert main_pids(app_hosts) == masters
    for host in app_hosts:
        assert get(host, "/version") == (200, "probes")


def test_unit_change_is_a_restart(app_hosts: list[Any], tmp_path: Path, probes: str) -> None:
    masters = main_pids(app_hosts)
    output = deployed(tmp_path, {"flask_uwsgi_app_src": probes, "flask_uwsgi_restart_sec": 3})
    assert everywhere(output, "Restart the app's service", app_hosts) == "changed"
    for host, master in zip(app_hosts, masters, strict=True):
        assert main_pid(host) != master
        assert host.check_output(f"systemctl show {UNIT} --property RestartUSec --value") == "3s"


def test_secrets_reach_the_app_and_nothing_else(app_hosts: list[Any], tmp_path: Path, probes: str) -> None:
    """flask_uwsgi_env reaches the release check and the app exactly, and no log, file or output holds it."""
    # The most verbose play there is, with diffs: it must still not print a secret.
    output = deployed(tmp_path, with_secrets(probes, SECRETS), "--diff", "-vvv")
    for needle in NEEDLES:
        assert needle not in output, f"the play printed {needle!r}"
    for host in app_hosts:
        assert get(host, "/secret-digest") == (200, digest(SECRETS))
        env_file = host.file(ENV_FILE)
        assert (env_file.user, env_file.group, env_file.mode) == ("root", "root", 0o600)
        assert host.run(f"runuser -u flask-demo -- cat {ENV_FILE}").rc != 0, "the app's user can read the secrets"
        for needle in NEEDLES:
            # Not in the ini, the unit, the code, the logs, or anything Ansible left behind: only the file.
            found = host.run(f"grep -rlF -- {needle} /etc /opt /run /var/log /tmp /root /usr/local").stdout.split()
            assert found == [ENV_FILE], f"{needle!r} found in {found}"
            assert host.run(f"journalctl --output verbose --no-pager | grep -cF -- {needle}").stdout.strip() == "0"

    again = deployed(tmp_path, with_secrets(probes, SECRETS), "--diff")
    assert unchanged(again, app_hosts), again[-3000:]
    assert not any(needle in again for needle in NEEDLES)


def test_new_secret_values_alone_restart_the_service(app_hosts: list[Any], tmp_path: Path, probes: str) -> None:
    """A reload would keep the master's environment: new values need a restart, and get one."""
    rotated = {**SECRETS, "SECRET_KEY": SECRETS["SECRET_KEY"].replace("quoted", "rotated")}
    masters = main_pids(app_hosts)
    output = deployed(tmp_path, with_secrets(probes, rotated))
    assert everywhere(output, "service | Write the app's systemd unit", app_hosts) == "ok", "not a values-only test"
    assert everywhere(output, "config | Write the app's uwsgi.ini", app_hosts) == "ok"
    assert everywhere(output, "Restart the app's service", app_hosts) == "changed"
    for host, master in zip(app_hosts, masters, strict=True):
        assert main_pid(host) != master
        assert get(host, "/secret-digest") == (200, digest(rotated))


def app_may(host: Any, what: str, address: str = "127.0.0.1:8000") -> bool:
    status, body = get(host, f"/{what}", address)
    assert status in (200, 403), (status, body)
    return status == 200


def capabilities(host: Any) -> int:
    """The effective capabilities of the uWSGI master, as a bit mask."""
    status = host.check_output(f"grep CapEff /proc/{main_pid(host)}/status")
    return int(status.split()[1], 16)


def test_the_sandbox_holds_by_default(app_hosts: list[Any], tmp_path: Path, probes: str) -> None:
    # Also a unix socket of the app's own group, which uWSGI creates as it is (no chown-socket).
    socket = "/run/flask-demo/uwsgi.sock"
    deployed(tmp_path, {"flask_uwsgi_app_src": probes, "flask_uwsgi_socket": socket})
    for host in app_hosts:
        sock = host.file(socket)
        assert (sock.is_socket, sock.user, sock.group, sock.mode) == (True, "flask-demo", "flask-demo", 0o660)
        status, body = request_in_host(host, socket, "/version", "uwsgi")
        assert (status.split()[1], body.strip()) == ("200", "probes")
        assert "\nchown-socket =" not in host.file("/etc/flask_uwsgi/flask-demo.ini").content_string
        score = exposure(host, UNIT)
        print(f"{host.backend.host}: systemd-analyze security by default, with a unix socket of its own group: {score}")
        assert score <= 1.2
        assert not host.file(ENV_FILE).exists, "an app without variables keeps no environment file"
        # Each probe is refused by its own directive: RestrictAddressFamilies=, MemoryDenyWriteExecute=,
        # SystemCallFilter=~@privileged and ~@resources.
        assert [app_may(host, what) for what in ("netlink", "write-execute", "chown", "affinity")] == [False] * 4
        assert capabilities(host) == 0
        # Port 80 is privileged in this host (the scenario sets the sysctl), so the next test can fail.
        assert host.check_output("sysctl --values net.ipv4.ip_unprivileged_port_start") == "1024"
        bind_80 = "import socket; socket.socket().bind(('127.0.0.1', 80))"
        assert host.run("runuser -u flask-demo -- python3 -c %s", bind_80).rc != 0


def test_each_relaxation_grants_only_what_it_names(app_hosts: list[Any], tmp_path: Path, probes: str) -> None:
    settings = {
        "flask_uwsgi_app_src": probes,
        "flask_uwsgi_http_socket": "127.0.0.1:80",
        "flask_uwsgi_bind_privileged_ports": True,
        "flask_uwsgi_extra_address_families": ["AF_NETLINK"],
        "flask_uwsgi_memory_deny_write_execute": False,
        "flask_uwsgi_extra_system_calls": ["@resources"],
    }
    deployed(tmp_path, settings)
    cap_net_bind_service = 1 << 10
    for host in app_hosts:
        assert get(host, "/", "127.0.0.1:80")[0] == 200
        allowed = {what: app_may(host, what, "127.0.0.1:80") for what in ("netlink", "write-execute", "affinity")}
        assert allowed == dict.fromkeys(allowed, True)
        assert not app_may(host, "chown", "127.0.0.1:80"), "@resources does not allow chown"
        assert capabilities(host) == cap_net_bind_service
        score = exposure(host, UNIT)
        print(
            f"{host.backend.host}: systemd-analyze security with port 80, AF_NETLINK, write+execute memory",
            f"and @resources allowed: {score}",
        )
        assert score <= 2.5


def test_the_sandbox_switch_drops_it_all(app_hosts: list[Any], tmp_path: Path, probes: str) -> None:
    deployed(tmp_path, {"flask_uwsgi_app_src": probes, "flask_uwsgi_sandbox": False})
    for host in app_hosts:
        allowed = {what: app_may(host, what) for what in ("netlink", "write-execute", "chown", "affinity")}
        assert allowed == dict.fromkeys(allowed, True)
        score = exposure(host, UNIT)
        print(f"{host.backend.host}: systemd-analyze security with flask_uwsgi_sandbox: false: {score}")
        assert score > 8


def test_config_that_uwsgi_refuses_fails_the_deploy_with_its_journal(app_hosts: list[Any], tmp_path: Path) -> None:
    """An ini uWSGI will not run (strict mode, an unknown option): the play fails with the journal."""
    result = deploy(
        tmp_path,
        {
            **ONE_BATCH,
            "flask_uwsgi_extra_options": [{"option": "no-such-option", "value": 1}],
            "flask_uwsgi_health_timeout": 10,
        },
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "flask-demo.service did not start and answer / on 127.0.0.1:8000" in output, output[-3000:]
    counts = recap(output)
    assert [counts[host.backend.host]["failed"] for host in app_hosts] == [1, 1], counts
    assert "Last lines of its journal" in output
    assert "[strict-mode] unknown config directive: no-such-option" in output
