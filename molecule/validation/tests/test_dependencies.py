"""How an app names its dependencies: a pyproject.toml makes it a package, a uv.lock is installed
exactly as locked, and a requirements file with hashes is checked file by file (a wrong hash fails
the build, and the release that serves stays). A second app, deps-demo (molecule/validation/apps/),
deployed beside flask-demo on both hosts at once, then removed."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

from deploys import deployed, get
from flask_uwsgi_testing import ONE_BATCH, PROJECT, deploy, run_playbook, task_runs

APPS = PROJECT / "molecule" / "validation" / "apps"
ADDRESS = "127.0.0.1:8001"
DEPS_DEMO = {
    "flask_uwsgi_app_name": "deps-demo",
    "flask_uwsgi_module": "wsgi",
    "flask_uwsgi_http_socket": ADDRESS,
}
BASE = "/opt/deps-demo"


def answers(hosts: list[Any]) -> list[tuple[int, str]]:
    return [get(host, "/", ADDRESS) for host in hosts]


def deploy_app(tmp_path: Path, src: Path) -> Any:
    tmp_path.mkdir()
    return deployed(tmp_path, {**DEPS_DEMO, "flask_uwsgi_app_src": str(src)})


def test_a_pyproject_app_is_installed_as_a_package_with_its_dependencies(
    deployed_hosts: list[Any], tmp_path: Path
) -> None:
    play = deploy_app(tmp_path / "pyproject", APPS / "pyproject-app")
    assert answers(deployed_hosts) == [(200, "deps-demo 1.0.0, itsdangerous 2.2.0")] * 2
    assert set(task_runs(play, "Install the app itself")[0].values()) == {"changed"}


def test_a_uv_lock_is_installed_as_locked_and_uv_stays_out_of_the_app(
    deployed_hosts: list[Any], tmp_path: Path
) -> None:
    play = deploy_app(tmp_path / "uv", APPS / "uv-app")
    assert answers(deployed_hosts) == [(200, "deps-demo 2.0.0, itsdangerous 2.2.0")] * 2
    assert set(task_runs(play, "Install exactly what uv.lock pins")[0].values()) == {"changed"}
    for host in deployed_hosts:
        locked = host.file(f"{BASE}/current/uv-requirements.txt").content_string
        assert "itsdangerous==2.2.0" in locked
        assert "--hash=sha256:" in locked
        assert not host.file(f"{BASE}/current/venv/bin/uv").exists, "uv went into the app's virtualenv"


def test_hashed_requirements_are_checked_and_a_wrong_hash_leaves_the_release_that_serves(
    deployed_hosts: list[Any], tmp_path: Path
) -> None:
    deploy_app(tmp_path / "hashed", APPS / "hashed-app")
    # No pyproject.toml: the app is not a package; its requirements file is.
    assert answers(deployed_hosts) == [(200, "deps-demo absent, itsdangerous 2.2.0")] * 2
    before = [host.check_output(f"readlink {BASE}/current") for host in deployed_hosts]

    wrong = tmp_path / "wrong-hash"
    shutil.copytree(APPS / "hashed-app", wrong)
    requirements = wrong / "requirements.txt"
    # Every hash wrong (with one right, pip would take the file that has it).
    requirements.write_text(re.sub(r"sha256:[0-9a-f]{64}", "sha256:" + "0" * 64, requirements.read_text()))
    (wrong / "wsgi.py").write_text((wrong / "wsgi.py").read_text() + "\n# a new release\n")
    (tmp_path / "wrong").mkdir()
    play = deploy(tmp_path / "wrong", {**ONE_BATCH, **DEPS_DEMO, "flask_uwsgi_app_src": str(wrong)})
    assert play.returncode != 0
    assert "DO NOT MATCH THE HASHES" in " ".join(play.output.split()), play.output[-3000:]
    assert [host.check_output(f"readlink {BASE}/current") for host in deployed_hosts] == before
    assert answers(deployed_hosts) == [(200, "deps-demo absent, itsdangerous 2.2.0")] * 2

    (tmp_path / "remove").mkdir()
    removed = run_playbook(
        "playbooks/remove.yml", {**DEPS_DEMO, "flask_uwsgi_remove_shared_dirs": True}, tmp_path / "remove"
    )
    assert removed.returncode == 0, removed.output[-3000:]
