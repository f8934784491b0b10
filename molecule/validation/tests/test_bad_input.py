"""Bad input is refused before the host changes; a deploy that cannot start says why.

Each case runs the real `playbooks/deploy.yml` against the scenario's bare test host with one
wrong setting, and checks the play's message and that nothing on the host changed.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from flask_uwsgi_testing import PROJECT, run_playbook

GET_VERSION = "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:8000/version').read().decode())"

# What could change on the host: accounts, installed packages, configuration, code, units.
FINGERPRINT = "find /etc /opt /srv /usr/local /var/lib/dpkg -xdev -printf '%p %s %T@\\n' | sort | sha256sum"


def deploy(tmp_path: Path, extra_vars: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    return run_playbook("playbooks/deploy.yml", extra_vars, tmp_path)


# (case, the wrong setting, words the message must hold)
BAD_INPUT = [
    ("processes-not-a-number", {"flask_uwsgi_processes": "two"}, ["flask_uwsgi_processes", "int"]),
    ("zero-processes", {"flask_uwsgi_processes": 0}, ["flask_uwsgi_processes must be an integer of at least 1"]),
    ("negative-threads", {"flask_uwsgi_threads": -2}, ["flask_uwsgi_threads must be an integer of at least 1"]),
    ("need-app-not-a-bool", {"flask_uwsgi_need_app": "maybe"}, ["flask_uwsgi_need_app", "bool"]),
    ("app-src-empty", {"flask_uwsgi_app_src": ""}, ["flask_uwsgi_app_src must name an existing directory"]),
    ("app-src-missing", {"flask_uwsgi_app_src": "/nonexistent/app"}, ["flask_uwsgi_app_src", "/nonexistent/app"]),
    (
        "module-and-wsgi-file",
        {"flask_uwsgi_module": "app", "flask_uwsgi_wsgi_file": "app.py"},
        ["Set exactly one of flask_uwsgi_module", "flask_uwsgi_wsgi_file"],
    ),
    (
        "no-bind-address",
        {"flask_uwsgi_http_socket": "", "flask_uwsgi_socket": "", "flask_uwsgi_http": ""},
        ["Set at least one of flask_uwsgi_http_socket, flask_uwsgi_socket and flask_uwsgi_http"],
    ),
    ("app-name-with-space", {"flask_uwsgi_app_name": "my app"}, ["flask_uwsgi_app_name must be"]),
    ("app-name-with-dots-and-slash", {"flask_uwsgi_app_name": "../etc"}, ["flask_uwsgi_app_name must be"]),
    ("unknown-uwsgi-package", {"flask_uwsgi_uwsgi_package": "uwsgi2"}, ["flask_uwsgi_uwsgi_package", "uwsgi2"]),
    (
        "pidfile-outside-runtime-dir",
        {"flask_uwsgi_pidfile": "/tmp/app.pid"},
        ["flask_uwsgi_pidfile must be a file directly in /run/flask-demo/"],
    ),
    (
        "socket-outside-runtime-dir",
        {"flask_uwsgi_socket": "/tmp/app.sock"},
        ["flask_uwsgi_socket, when a unix socket path, must be a file directly in /run/flask-demo/"],
    ),
    (
        "listen-queue-over-somaxconn",
        {"flask_uwsgi_listen": 100000},
        ["flask_uwsgi_listen (100000) is larger than this host's net.core.somaxconn"],
    ),
    ("base-dir-climbs-out", {"flask_uwsgi_base_dir": "/opt/../etc"}, ["flask_uwsgi_base_dir must be an absolute path"]),
    ("base-dir-is-a-system-dir", {"flask_uwsgi_base_dir": "/srv"}, ["flask_uwsgi_base_dir must be", "'/srv'"]),
    (
        "writable-path-is-a-system-dir",
        {"flask_uwsgi_writable_paths": ["/etc"]},
        ["flask_uwsgi_writable_paths: '/etc' must be an absolute path", "not a system directory"],
    ),
    ("release-name-unsafe", {"flask_uwsgi_release": "../v2"}, ["flask_uwsgi_release must be empty", "'../v2'"]),
    (
        "keep-no-release",
        {"flask_uwsgi_keep_releases": 0},
        ["flask_uwsgi_keep_releases must be an integer of at least 1"],
    ),
    (
        "log-file-outside-its-directory",
        {"flask_uwsgi_log_file": "/tmp/app.log"},
        ["flask_uwsgi_log_file must be", "/var/log/flask-demo/"],
    ),
    ("log-rotate-unknown", {"flask_uwsgi_log_rotate": "hourly"}, ["flask_uwsgi_log_rotate", "daily, weekly, monthly"]),
    ("socket-mode-not-octal", {"flask_uwsgi_socket_mode": "999"}, ["flask_uwsgi_socket_mode must be three octal"]),
    (
        "extra-option-bad-name",
        {"flask_uwsgi_extra_options": [{"option": "max requests", "value": 10}]},
        ["flask_uwsgi_extra_options: 'max requests' is not a uWSGI option name"],
    ),
    (
        "extra-option-without-value",
        {"flask_uwsgi_extra_options": [{"option": "harakiri"}]},
        ["flask_uwsgi_extra_options", "value"],
    ),
]


@pytest.mark.parametrize(("case", "extra_vars", "words"), BAD_INPUT, ids=[c[0] for c in BAD_INPUT])
def test_bad_input_is_refused_and_host_untouched(
    host: Any, tmp_path: Path, case: str, extra_vars: dict[str, Any], words: list[str]
) -> None:
    before = host.check_output(FINGERPRINT)
    result = deploy(tmp_path, extra_vars)
    output = result.stdout + result.stderr
    assert result.returncode != 0, f"{case}: the play did not fail:\n{output[-3000:]}"
    for word in words:
        assert word in output, f"{case}: {word!r} not in the play's output:\n{output[-3000:]}"
    assert "changed=0" in output, f"{case}: the play reports a change:\n{output[-3000:]}"
    assert host.check_output(FINGERPRINT) == before, f"{case}: the host changed"
    assert not host.file("/etc/flask_uwsgi").exists


def test_good_release_deploys(host: Any, tmp_path: Path) -> None:
    """From here on the host changes: a first release goes out and answers."""
    result = deploy(tmp_path, {})
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert host.service("flask-demo").is_running


def main_pid(host: Any) -> str:
    return host.check_output("systemctl show flask-demo.service --property MainPID --value")


def test_code_change_is_a_graceful_reload(host: Any, tmp_path: Path) -> None:
    """New code reaches the workers through a reload: same master, new answer, no restart."""
    release = tmp_path / "release-2"
    shutil.copytree(PROJECT / "examples" / "flask-demo", release)
    with (release / "app.py").open("a") as app:
        app.write('\n\n@app.get("/version")\ndef version() -> str:\n    return "release-2"\n')
    master = main_pid(host)
    result = deploy(tmp_path, {"flask_uwsgi_app_src": str(release), "flask_uwsgi_health_path": "/version"})
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "changed: [flask-uwsgi-validation]" in output.split("RUNNING HANDLER [flask_uwsgi : Reload")[1]
    assert "RUNNING HANDLER [flask_uwsgi : Restart" not in output
    assert main_pid(host) == master
    assert host.check_output("python3 -c %s", GET_VERSION) == "release-2"


def test_unit_change_is_a_restart(host: Any, tmp_path: Path) -> None:
    master = main_pid(host)
    result = deploy(tmp_path, {"flask_uwsgi_restart_sec": 3})
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "changed: [flask-uwsgi-validation]" in output.split("RUNNING HANDLER [flask_uwsgi : Restart")[1]
    assert main_pid(host) != master
    assert host.check_output("systemctl show flask-demo.service --property RestartUSec --value") == "3s"


def test_config_that_uwsgi_refuses_fails_the_deploy_with_its_journal(host: Any, tmp_path: Path) -> None:
    """An ini uWSGI will not run (strict mode, an unknown option): the play fails with the journal."""
    result = deploy(
        tmp_path,
        {"flask_uwsgi_extra_options": [{"option": "no-such-option", "value": 1}], "flask_uwsgi_health_timeout": 10},
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "RUNNING HANDLER [flask_uwsgi : Reload the app's service]" in output
    assert "flask-demo.service did not start and answer / on 127.0.0.1:8000" in output, output[-3000:]
    assert "Last lines of its journal" in output
    assert "[strict-mode] unknown config directive: no-such-option" in output
