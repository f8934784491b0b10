"""Installs without PyPI, and uWSGI compiled once: where each host's packages came from, and that it serves.

The tests run in this order: the last two empty the controller's cache of Debian 12's compiled uWSGI.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
from flask_uwsgi_testing import App, demo_release, deploy, new_dependencies, task_runs

# The platform each compiled wheel fits, by Debian release.
WHEEL_KEYS = {12: "debian-12-cpython-311-linux-x86_64", 13: "debian-13-cpython-313-linux-x86_64"}
COMPILE_TASK = "compile_uwsgi | Compile uWSGI into a wheel"
COPY_TASK = "compile_uwsgi | Copy the compiled uWSGI from the controller's cache"
# Not in /tmp, which is mounted noexec in the test hosts.
PROBE = "/root/pip-probe"


def pip_download(host: Any, *args: str) -> Any:
    """`pip download --no-deps` in the host, from a throwaway virtualenv, with one quick retry (which logs why)."""
    host.run(f"test -x {PROBE}/bin/pip || python3 -m venv {PROBE}")
    return host.run(
        f"{PROBE}/bin/pip download --no-deps --retries 1 --timeout 5 --dest {PROBE}-files " + " ".join(args)
    )


def installed(host: Any, package: str) -> bool:
    return host.run(f"dpkg-query -W -f '${{Status}}' {package}").stdout == "install ok installed"


def venv_versions(app: App, *packages: str) -> list[str]:
    python = f"{app.vars['flask_uwsgi_base_dir']}/current/venv/bin/python"
    code = f"import importlib.metadata as m; print(*(m.version(p) for p in {list(packages)!r}))"
    return app.host.check_output(f"{python} -c %s", code).split()


def sha256_in_host(host: Any, path: str) -> str:
    return host.check_output(f"sha256sum {path}").split()[0]


def wheel_key(app: App) -> str:
    return WHEEL_KEYS[app.debian()]


def cached_wheels(app: App) -> list[Path]:
    """The wheels in the controller's cache for the app's platform."""
    return sorted((Path(app.vars["flask_uwsgi_wheel_cache"]) / wheel_key(app)).glob("*.whl"))


def installed_the_cached_wheel(app: App) -> bool:
    """The host's copy of its platform's compiled wheel is the one in the controller's cache."""
    [wheel] = cached_wheels(app)
    on_host = sha256_in_host(app.host, f"/var/cache/flask_uwsgi/uwsgi/{wheel_key(app)}/{wheel.name}")
    return on_host == hashlib.sha256(wheel.read_bytes()).hexdigest()


def runs_compiled_uwsgi(app: App) -> bool:
    """The master is the compiled uwsgi binary of the release's virtualenv (pyuwsgi's master is python)."""
    exe = app.host.check_output(f"readlink -f /proc/{app.main_pid()}/exe")
    return exe == app.host.check_output(f"readlink -f {app.vars['flask_uwsgi_base_dir']}/current/venv/bin/uwsgi")


def empty_the_debian_12_wheel_caches(compiled: list[App]) -> None:
    """Remove Debian 12's compiled wheel from the controller's cache and from the Debian 12 hosts'
    copies; Debian 13's stays, as a platform whose wheel is cached."""
    shutil.rmtree(Path(compiled[0].vars["flask_uwsgi_wheel_cache"]) / WHEEL_KEYS[12], ignore_errors=True)
    for app in compiled:
        if app.debian() == 12:
            app.host.check_output("rm -rf /var/cache/flask_uwsgi/uwsgi")


def test_pip_on_the_sealed_hosts_reaches_no_index(sealed: App) -> None:
    for index, args in (
        ("http://127.0.0.1:9/simple/", ""),
        ("https://pypi.org/simple/", "--index-url https://pypi.org/simple/"),
    ):
        attempt = pip_download(sealed.host, args, "flask")
        assert attempt.rc == 1
        assert f"Looking in indexes: {index}" in attempt.stdout
        assert "Connection refused" in attempt.stderr
        assert "No matching distribution found for flask" in attempt.stderr


def test_the_airgapped_host_installed_everything_from_the_wheel_directory(airgapped: App) -> None:
    status, body = airgapped.get("/")
    assert status.endswith("200 OK"), (status, body)
    assert "Hello from flask-demo" in body
    assert venv_versions(airgapped, "pyuwsgi", "flask", "six") == ["2.0.30.post1", "3.1.3", "1.17.0"]
    # The host's copy holds exactly the controller's wheels, byte for byte.
    controller = {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in Path(airgapped.vars["flask_uwsgi_pip_wheel_dir"]).iterdir()
    }
    copy = f"/var/cache/flask_uwsgi/wheels/{airgapped.name}"
    on_host = dict(
        reversed(line.split("  ")) for line in airgapped.host.check_output(f"cd {copy} && sha256sum *").splitlines()
    )
    assert on_host == controller


def test_the_proxied_host_installed_through_the_private_index_trusting_its_ca(proxied: App) -> None:
    status, body = proxied.get("/")
    assert status.endswith("200 OK"), (status, body)
    assert "Hello from flask-demo" in body
    assert venv_versions(proxied, "pyuwsgi", "flask", "six") == ["2.0.30.post1", "3.1.3", "1.17.0"]
    index_log = proxied.host.check_output("journalctl --unit pypi-internal --no-pager --output cat")
    # uWSGI, a requirement, one of its dependencies and the extra package each came from there.
    for page in ("/simple/pyuwsgi/", "/simple/flask/", "/simple/werkzeug/", "/simple/six/"):
        assert f'"GET {page} HTTP/1.1" 200' in index_log, page
    ca = proxied.host.file(f"/etc/flask_uwsgi/{proxied.name}.pip-ca.pem")
    assert (ca.user, ca.group, ca.mode) == ("root", "root", 0o644)
    assert ca.content == Path(proxied.vars["flask_uwsgi_pip_ca_bundle"]).read_bytes()
    # The CA is what made the index usable: pip's own trust store refuses its certificate.
    index = f"--index-url {proxied.vars['flask_uwsgi_pip_index_url']} flask"
    untrusted = pip_download(proxied.host, index)
    assert untrusted.rc == 1
    assert "CERTIFICATE_VERIFY_FAILED" in untrusted.stdout + untrusted.stderr
    trusted = pip_download(proxied.host, f"--cert {ca.path}", index)
    assert trusted.rc == 0, trusted.stdout + trusted.stderr


def test_uwsgi_was_compiled_once_per_platform_and_runs_everywhere(compiled: list[App]) -> None:
    compiler12, other12, compiler13 = compiled
    assert [installed(app.host, "gcc") for app in compiled] == [True, False, True]
    assert not installed(other12.host, "python3-dev")
    for app in compiled:
        assert runs_compiled_uwsgi(app)
        assert venv_versions(app, "uwsgi") == ["2.0.31"]
        assert app.answers()
        # Each installed the one wheel of its platform in the controller's cache.
        assert len(cached_wheels(app)) == 1
        assert installed_the_cached_wheel(app)
    assert cached_wheels(compiler12) != cached_wheels(compiler13)


def test_check_mode_compiles_nothing_and_says_where_it_would(compiled: list[App], tmp_path: Path) -> None:
    empty_the_debian_12_wheel_caches(compiled)
    # A changed requirements file, so a real run would build a virtualenv (new code alone reuses the
    # one of the release before, and needs no uWSGI at all).
    src = new_dependencies(demo_release(tmp_path, "release-check"))
    play = deploy(tmp_path, {"flask_uwsgi_app_src": str(src)}, "--check", "--limit", "compiled")
    assert play.returncode == 0, play.stdout[-3000:]
    compiler12, other12, debian13 = (app.host.backend.host for app in compiled)
    # One batch per host (serial 1): the first Debian 12 host would compile, the second would take
    # its wheel, and the Debian 13 host has the wheel of its platform in the cache already.
    assert task_runs(play, COMPILE_TASK) == [
        {compiler12: "changed"},
        {other12: "skipping"},
        {debian13: "skipping"},
    ]
    assert cached_wheels(compiled[0]) == []
    for app in compiled[:2]:
        assert not app.host.file("/var/cache/flask_uwsgi/uwsgi").exists
        assert not app.host.file("/var/cache/flask_uwsgi/build").exists


def test_serial_batches_compile_once_and_later_batches_take_the_cached_wheel(
    compiled: list[App], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty_the_debian_12_wheel_caches(compiled)
    monkeypatch.setenv("ANSIBLE_CALLBACKS_ENABLED", "ansible.posix.profile_tasks")
    src = new_dependencies(demo_release(tmp_path, "release-2"))
    start = time.monotonic()
    play = deploy(tmp_path, {"flask_uwsgi_app_src": str(src)}, "--limit", "compiled")
    took = time.monotonic() - start
    assert play.returncode == 0, play.stdout[-3000:]
    compiler12, other12, debian13 = (app.host.backend.host for app in compiled)
    assert task_runs(play, COMPILE_TASK) == [
        {compiler12: "changed"},
        {other12: "skipping"},
        {debian13: "skipping"},
    ]
    assert task_runs(play, COPY_TASK) == [{compiler12: "ok"}, {other12: "changed"}, {debian13: "ok"}]
    for app in compiled:
        assert "Hello from flask-demo release-2" in app.get("/")[1]
        assert runs_compiled_uwsgi(app)
        assert installed_the_cached_wheel(app)
    assert not installed(compiled[1].host, "gcc")
    compile_time = re.search(re.escape(COMPILE_TASK) + r".*?-+ ([0-9.]+)s", play.stdout)
    print(
        f"serial deploy of a new release to 3 hosts of 2 platforms, uWSGI compiled once: {took:.0f} s;",
        f"the compile took {compile_time[1] if compile_time else '?'} s",
    )
