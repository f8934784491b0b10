"""The collection as a user gets it: built as `make dist` builds it, installed into an empty
collections path (and from the git checkout through a requirements.yml), then used by its full
names only, from a directory outside this checkout, with no roles path: a second app deployed on
the scenario's hosts, deployed again with no change, and removed.

Galaxy is out of reach here, so the installs skip the dependency on community.crypto (--no-deps):
the `ansible` package brings it.
"""

from __future__ import annotations

import json
import subprocess
import tarfile
from pathlib import Path

import pytest
import yaml
from flask_uwsgi_testing import DEMO, PROJECT, ansible_env, recap, request_in_host, run_playbook, scenario_hosts

GALAXY = yaml.safe_load((PROJECT / "galaxy.yml").read_text())
NAME = f"{GALAXY['namespace']}.{GALAXY['name']}"
TARBALL = f"{GALAXY['namespace']}-{GALAXY['name']}-{GALAXY['version']}.tar.gz"

# A second app beside the scenario's flask-demo, from the pyuwsgi wheel (nothing to compile).
APP = {
    "flask_uwsgi_app_name": "collection-demo",
    "flask_uwsgi_app_src": str(DEMO),
    "flask_uwsgi_uwsgi_package": "pyuwsgi",
    "flask_uwsgi_uwsgi_version": "2.0.30.post1",
    "flask_uwsgi_http_socket": "127.0.0.1:8002",
    "flask_uwsgi_procname_prefix": "collection-demo",
    "flask_uwsgi_writable_paths": [],
    "flask_uwsgi_extra_options": [],
    "flask_uwsgi_stats": False,
}

# The user's own playbook: the roles by their full names.
PLAYBOOK = f"""
- name: Deploy an app with the installed collection
  hosts: app_servers
  become: true
  roles:
    - role: {NAME}.flask_uwsgi
"""


def galaxy(*args: str, cwd: Path, env: dict[str, str]) -> str:
    """ansible-galaxy in the user's environment: from the checkout's, it would find the collection
    already there (its ansible.cfg puts the checkout first on the collections path) and install nothing."""
    result = subprocess.run(
        ["ansible-galaxy", *args], cwd=cwd, env=ansible_env(**env), capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, f"ansible-galaxy {' '.join(args)}:\n{result.stdout}{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def user_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory outside the checkout with the collection installed from its tarball, an empty
    roles path and an ansible.cfg of the user's own."""
    where = tmp_path_factory.mktemp("user")
    (where / "roles").mkdir()
    (where / "ansible.cfg").write_text(
        "[defaults]\ninterpreter_python = auto_silent\n[connection]\npipelining = True\n"
    )
    (where / "site.yml").write_text(PLAYBOOK)
    env = settings(where)
    galaxy("collection", "build", "--output-path", str(where / "dist"), str(PROJECT), cwd=where, env=env)
    galaxy("collection", "install", "--no-deps", str(where / "dist" / TARBALL), cwd=where, env=env)
    return where


def settings(where: Path, collections: Path | None = None) -> dict[str, str]:
    """The user's environment: their ansible.cfg, the collections installed (by default from the
    tarball) and nothing in their roles path; a mismatch with requires_ansible is an error."""
    return {
        "ANSIBLE_CONFIG": str(where / "ansible.cfg"),
        "ANSIBLE_COLLECTIONS_PATH": str(collections or where / "collections"),
        "ANSIBLE_ROLES_PATH": str(where / "roles"),
        "ANSIBLE_COLLECTIONS_ON_ANSIBLE_VERSION_MISMATCH": "error",
    }


def test_the_tarball_holds_the_roles_playbooks_and_modules_and_no_tests(user_dir: Path) -> None:
    with tarfile.open(user_dir / "dist" / TARBALL) as tarball:
        names = set(tarball.getnames())
    manifest = json.loads(
        (
            user_dir / "collections" / "ansible_collections" / GALAXY["namespace"] / GALAXY["name"] / "MANIFEST.json"
        ).read_text()
    )
    assert manifest["collection_info"]["version"] == GALAXY["version"]
    for wanted in (
        "roles/flask_uwsgi/tasks/main.yml",
        "roles/flask_uwsgi_nginx/tasks/main.yml",
        "roles/flask_uwsgi_exporter/tasks/main.yml",
        "playbooks/deploy.yml",
        "playbooks/rollback.yml",
        "playbooks/remove.yml",
        "plugins/modules/flask_uwsgi_probe.py",
        "meta/runtime.yml",
        "CHANGELOG.md",
        "README.md",
    ):
        assert wanted in names, wanted
    tops = {name.split("/")[0] for name in names}
    for unwanted in (
        "molecule",
        "tests",
        "bench",
        "examples",
        "scripts",
        "inventory",
        ".venv",
        ".cache",
        "collections",
    ):
        assert unwanted not in tops, unwanted


def test_a_playbook_using_the_installed_roles_by_full_name_deploys_then_changes_nothing(
    user_dir: Path, tmp_path: Path
) -> None:
    hosts = scenario_hosts("app_servers")
    found = galaxy("collection", "list", NAME, cwd=user_dir, env=settings(user_dir))
    assert str(user_dir / "collections" / "ansible_collections") in found, found

    plays = [run_playbook("site.yml", APP, tmp_path, cwd=user_dir, **settings(user_dir)) for _ in range(2)]
    assert plays[0].returncode == 0, plays[0].output[-3000:]
    for host in hosts:
        status, body = request_in_host(host, APP["flask_uwsgi_http_socket"])
        assert status.endswith("200 OK"), (host.backend.host, status, body)
        assert "Hello from flask-demo" in body
    assert plays[1].returncode == 0, plays[1].output[-3000:]
    assert {host: counts["changed"] for host, counts in recap(plays[1]).items()} == {
        host.backend.host: 0 for host in hosts
    }


def test_the_collection_from_git_through_a_requirements_file_is_the_same_collection(
    user_dir: Path, tmp_path: Path
) -> None:
    requirements = tmp_path / "requirements.yml"
    requirements.write_text(
        yaml.safe_dump({"collections": [{"name": f"file://{PROJECT}", "type": "git", "version": "HEAD"}]})
    )
    galaxy(
        "collection",
        "install",
        "--no-deps",
        "-r",
        str(requirements),
        cwd=tmp_path,
        env=settings(user_dir, tmp_path / "collections"),
    )

    def files(root: Path) -> set[str]:
        listing = json.loads(
            (root / "ansible_collections" / GALAXY["namespace"] / GALAXY["name"] / "FILES.json").read_text()
        )
        return {entry["name"] for entry in listing["files"] if entry["ftype"] == "file"}

    assert files(tmp_path / "collections") == files(user_dir / "collections")
    check = run_playbook(
        f"{NAME}.deploy", APP, tmp_path, "--syntax-check", cwd=tmp_path, **settings(user_dir, tmp_path / "collections")
    )
    assert check.returncode == 0, check.output[-3000:]


def test_the_collections_remove_playbook_takes_the_app_away(user_dir: Path, tmp_path: Path) -> None:
    play = run_playbook(f"{NAME}.remove", APP, tmp_path, cwd=user_dir, **settings(user_dir))
    assert play.returncode == 0, play.output[-3000:]
    for host in scenario_hosts("app_servers"):
        assert not host.service("collection-demo").is_running
        assert not host.file("/etc/flask_uwsgi/collection-demo.ini").exists
        assert not host.socket(f"tcp://{APP['flask_uwsgi_http_socket']}").is_listening
