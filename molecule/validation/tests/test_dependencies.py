"""Where the app's code comes from and how it names its dependencies. A git repository, private (over
ssh, with a deploy key) or public (git daemon), served from the Debian 12 host: the release is named
after the commit, the same commit makes no new release, a moved branch makes one, an unknown one is
refused. A pyproject.toml makes the app a package, a uv.lock is installed exactly as locked, and a
requirements file with hashes is checked file by file (a wrong hash fails the build, and the release
that serves stays). A second app, deps-demo (molecule/validation/apps/), deployed beside flask-demo on
both hosts at once, then removed."""

from __future__ import annotations

import base64
import datetime
import functools
import hashlib
import http.server
import ipaddress
import os
import re
import shutil
import ssl
import subprocess
import tarfile
import tempfile
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat
from cryptography.x509.oid import NameOID
from deploys import deployed, get, unchanged
from flask_uwsgi_testing import ONE_BATCH, PROJECT, deploy, not_run, recap, run_playbook, task_runs

APPS = PROJECT / "molecule" / "validation" / "apps"
ADDRESS = "127.0.0.1:8001"
DEPS_DEMO = {
    "flask_uwsgi_app_name": "deps-demo",
    "flask_uwsgi_module": "wsgi",
    "flask_uwsgi_http_socket": ADDRESS,
}
BASE = "/opt/deps-demo"


def app_code(name: str, tmp_path: Path) -> Path:
    """One of the apps of molecule/validation/apps, with the wsgi.py they share, in tmp_path/name."""
    code = tmp_path / name
    shutil.copytree(APPS / name, code)
    shutil.copy(APPS / "wsgi.py", code)
    return code


def answers(hosts: list[Any]) -> list[tuple[int, str]]:
    return [get(host, "/", ADDRESS) for host in hosts]


def deploy_app(tmp_path: Path, src: Path) -> Any:
    tmp_path.mkdir()
    return deployed(tmp_path, {**DEPS_DEMO, "flask_uwsgi_app_src": str(src)})


@dataclass
class GitServer:
    """Two bare repositories on a test host: private.git over ssh (the git user, deploy key only) and
    public.git over git daemon. push() commits a directory on the controller to one as branch main."""

    host: Any
    address: str
    key: str
    known_hosts: str
    work: Path

    def ssh_url(self, repo: str) -> str:
        return f"ssh://git@{self.address}/srv/git/{repo}"

    def push(self, repo: str, src: Path, message: str, branch: str = "main") -> str:
        """Make src's files the next commit (none if they are what the last one holds), push it to
        repo's branch, and return it: the same files pushed to both repositories are the same commit."""
        clone = self.work / "app"
        if not clone.exists():
            git(self.work, "init", "--quiet", "--initial-branch=main", str(clone))
        for old in clone.iterdir():
            if old.name != ".git":
                shutil.rmtree(old) if old.is_dir() else old.unlink()
        shutil.copytree(src, clone, symlinks=True, dirs_exist_ok=True)
        git(clone, "add", "--all")
        if git(clone, "status", "--porcelain").strip():
            git(
                clone,
                "-c",
                "user.name=test",
                "-c",
                "user.email=test@example.invalid",
                "commit",
                "--quiet",
                "-m",
                message,
            )
        ssh = f"ssh -i {self.work / 'key'} -o IdentitiesOnly=yes -o BatchMode=yes"
        ssh += f" -o UserKnownHostsFile={self.work / 'known_hosts'}"
        git(clone, "push", "--quiet", self.ssh_url(repo), f"HEAD:refs/heads/{branch}", env={"GIT_SSH_COMMAND": ssh})
        return git(clone, "rev-parse", "HEAD").strip()


def git(cwd: Path, *args: str, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        ["git", *args], cwd=cwd, env={**os.environ, **(env or {})}, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, f"git {' '.join(args)}: {result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def git_server(deployed_hosts: list[Any], tmp_path_factory: pytest.TempPathFactory) -> GitServer:
    """sshd and git daemon on the Debian 12 host, with a deploy key made here for private.git."""
    host = deployed_hosts[0]
    work = tmp_path_factory.mktemp("git")
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(Encoding.PEM, PrivateFormat.OpenSSH, NoEncryption()).decode()
    public = key.public_key().public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH).decode()
    (work / "key").write_text(private)
    (work / "key").chmod(0o600)
    setup = f"""set -e
    apt-get install --quiet --yes --no-install-recommends git openssh-server >/dev/null
    id git >/dev/null 2>&1 || useradd --create-home --shell /usr/bin/git-shell git
    install -d -o git -g git -m 0700 /home/git/.ssh
    echo '{public}' > /home/git/.ssh/authorized_keys
    chown git:git /home/git/.ssh/authorized_keys
    install -d -o git -g git /srv/git
    for repo in private public; do
        runuser -u git -- git init --quiet --bare --initial-branch=main /srv/git/$repo.git
    done
    touch /srv/git/public.git/git-daemon-export-ok
    systemctl start ssh
    systemctl is-active --quiet git-daemon ||
        systemd-run --unit=git-daemon --uid=git git daemon --reuseaddr --base-path=/srv/git /srv/git
    """
    host.check_output("bash -c %s", setup)
    address = host.check_output("hostname -I").split()[0]
    host_key = host.check_output("cat /etc/ssh/ssh_host_ed25519_key.pub").split()[:2]
    known_hosts = f"{address} {' '.join(host_key)}\n"
    (work / "known_hosts").write_text(known_hosts)
    return GitServer(host, address, private, known_hosts, work)


def from_git(server: GitServer, tmp_path: Path, url: str, version: str = "main", **extra: Any) -> Any:
    settings = {
        **ONE_BATCH,
        **DEPS_DEMO,
        "flask_uwsgi_app_src": "",
        "flask_uwsgi_app_git_repo": url,
        "flask_uwsgi_app_git_version": version,
        "flask_uwsgi_app_cache": str(server.work / "cache"),
        **extra,
    }
    tmp_path.mkdir()
    return deploy(tmp_path, settings)


def changed_tasks(play: Any) -> set[str]:
    """The tasks that changed something on some host (or, delegated, on the controller), by name up
    to a ' and ' or the end."""
    changed, task = set(), ""
    for event in play.events:
        if event["event"] == "task":
            task = event["task"].split(" and ")[0]
        elif event["event"] == "outcome" and event["outcome"] == "changed":
            changed.add(task)
    return changed


def releases(hosts: list[Any]) -> list[list[str]]:
    return [sorted(host.check_output(f"ls {BASE}/releases").split()) for host in hosts]


def current(hosts: list[Any]) -> list[str]:
    return [host.check_output(f"basename $(readlink {BASE}/current)") for host in hosts]


def test_a_private_git_repository_deploys_a_pyproject_app_and_the_key_stays_on_the_controller(
    deployed_hosts: list[Any], git_server: GitServer, tmp_path: Path
) -> None:
    commit = git_server.push("private.git", app_code("pyproject-app", tmp_path), "deps-demo 1.0.0")
    keys_before = set(Path(tempfile.gettempdir()).glob("flask_uwsgi_git_*"))
    private = {"flask_uwsgi_app_git_key": git_server.key, "flask_uwsgi_app_git_known_hosts": git_server.known_hosts}
    play = from_git(git_server, tmp_path / "private", git_server.ssh_url("private.git"), **private)
    assert play.returncode == 0, play.output[-3000:]
    assert answers(deployed_hosts) == [(200, "deps-demo 1.0.0, itsdangerous 2.2.0")] * 2
    # A pyproject.toml with [build-system]: the app is a package.
    assert task_runs(play, "Install the app itself")[0] == dict.fromkeys(host_names(deployed_hosts), "changed")
    assert [name.split("-")[0] for name in current(deployed_hosts)] == [commit[:12]] * 2

    # The key: never printed, gone from the controller, never on a host.
    # A line of the key's secret part (the first lines of any OpenSSH key are alike).
    key_line = git_server.key.splitlines()[-3]
    assert len(key_line) >= 60, git_server.key.splitlines()
    assert key_line not in play.output
    assert set(Path(tempfile.gettempdir()).glob("flask_uwsgi_git_*")) == keys_before
    for host in deployed_hosts:
        found = host.run("grep -rlF -e %s /opt /etc /home /root /tmp /var/tmp /srv", key_line)
        assert found.rc == 1, f"the deploy key is on {host.backend.host}: {found.stdout} {found.stderr}"

    # Without the key, the private repository is refused, and nothing changes.
    refused = from_git(
        git_server,
        tmp_path / "no-key",
        git_server.ssh_url("private.git"),
        flask_uwsgi_app_git_known_hosts=git_server.known_hosts,
    )
    assert refused.returncode != 0
    message = " ".join(refused.output.split())
    assert "flask_uwsgi_app_git_repo, flask_uwsgi_app_git_version: git could not fetch" in message, message[-3000:]
    assert unchanged(refused, deployed_hosts), recap(refused)


def test_the_same_commit_makes_no_new_release_a_moved_branch_does_and_an_unknown_one_is_refused(
    deployed_hosts: list[Any], git_server: GitServer, tmp_path: Path
) -> None:
    """From public.git (git daemon): first the commit that serves already, then a new one on main."""
    url = f"git://{git_server.address}/public.git"
    served, before = current(deployed_hosts), releases(deployed_hosts)
    commit = git_server.push("public.git", app_code("pyproject-app", tmp_path), "deps-demo 1.0.0")
    assert served[0].startswith(commit[:12])
    same = from_git(git_server, tmp_path / "same", url)
    assert same.returncode == 0, same.output[-3000:]
    assert (current(deployed_hosts), releases(deployed_hosts)) == (served, before)
    # Not even the code is copied again: nothing changes on the hosts (on the controller, the clone
    # now fetches from another URL).
    assert not_run(same, "Copy the app's code into the release")
    assert changed_tasks(same) == {"flask_uwsgi : source_export | Fetch the repository into the controller's cache"}

    moved = app_code("pyproject-app", tmp_path / "moved-src")
    pyproject = moved / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('version = "1.0.0"', 'version = "1.1.0"'))
    new_commit = git_server.push("public.git", moved, "deps-demo 1.1.0")
    assert new_commit != commit
    play = from_git(git_server, tmp_path / "moved", url)
    assert play.returncode == 0, play.output[-3000:]
    assert answers(deployed_hosts) == [(200, "deps-demo 1.1.0, itsdangerous 2.2.0")] * 2
    assert [name.split("-")[0] for name in current(deployed_hosts)] == [new_commit[:12]] * 2

    newest = current(deployed_hosts)
    unknown = from_git(git_server, tmp_path / "unknown", url, version="no-such-branch")
    assert unknown.returncode != 0
    message = " ".join(unknown.output.split())
    assert "git could not fetch 'no-such-branch'" in message, message[-3000:]
    assert unchanged(unknown, deployed_hosts), recap(unknown)
    assert current(deployed_hosts) == newest

    # A link out of the code would carry a file of the controller to the hosts: refused.
    evil = app_code("pyproject-app", tmp_path / "evil-src")
    (evil / "leak").symlink_to("/etc/hostname")
    git_server.push("public.git", evil, "a link out of the code", branch="evil")
    linked = from_git(git_server, tmp_path / "evil", url, version="evil")
    assert linked.returncode != 0
    message = " ".join(linked.output.split())
    assert "the app's code has links that point out of it" in message, message[-3000:]
    assert "/leak -> /etc/hostname" in message, message[-3000:]
    # Only the controller's cache changed: the clone and the export (tasks/source_export.yml).
    assert all(task.startswith("flask_uwsgi : source_export |") for task in changed_tasks(linked)), changed_tasks(
        linked
    )
    assert current(deployed_hosts) == newest


def host_names(hosts: list[Any]) -> list[str]:
    return [host.backend.host for host in hosts]


@dataclass
class ArtifactServer:
    """An HTTPS server on the controller's loopback, with a certificate of its own CA (ca_bundle),
    serving the files of root."""

    root: Path
    url: str
    ca_bundle: Path


@pytest.fixture(scope="module")
def artifact_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ArtifactServer]:
    work = tmp_path_factory.mktemp("https")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    (work / "cert.pem").write_bytes(cert.public_bytes(Encoding.PEM))
    (work / "key.pem").write_bytes(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    root = work / "files"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(work / "cert.pem", work / "key.pem")
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield ArtifactServer(root, f"https://127.0.0.1:{server.server_address[1]}", work / "cert.pem")
    server.shutdown()


def sha256(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def from_artifact(tmp_path: Path, artifact: str, checksum: str, **extra: Any) -> Any:
    tmp_path.mkdir()
    settings = {
        **ONE_BATCH,
        **DEPS_DEMO,
        "flask_uwsgi_app_src": "",
        "flask_uwsgi_app_artifact": artifact,
        "flask_uwsgi_app_artifact_checksum": checksum,
        "flask_uwsgi_app_cache": str(tmp_path.parent / "cache"),
        **extra,
    }
    return deploy(tmp_path, settings)


def test_a_uv_lock_app_from_an_https_artifact_is_installed_as_locked_and_a_wrong_checksum_is_refused(
    deployed_hosts: list[Any], artifact_server: ArtifactServer, tmp_path: Path
) -> None:
    """An sdist-like tarball (one directory, uv-app-2.0.0/) downloaded over HTTPS."""
    tarball = artifact_server.root / "uv-app-2.0.0.tar.gz"
    with tarfile.open(tarball, "w:gz") as archive:
        archive.add(app_code("uv-app", tmp_path), arcname="uv-app-2.0.0")
    url, ca = f"{artifact_server.url}/{tarball.name}", str(artifact_server.ca_bundle)
    play = from_artifact(tmp_path / "uv", url, sha256(tarball), flask_uwsgi_app_artifact_ca_bundle=ca)
    assert play.returncode == 0, play.output[-3000:]
    assert answers(deployed_hosts) == [(200, "deps-demo 2.0.0, itsdangerous 2.2.0")] * 2
    assert task_runs(play, "Install exactly what uv.lock pins")[0] == dict.fromkeys(
        host_names(deployed_hosts), "changed"
    )
    for host in deployed_hosts:
        locked = host.file(f"{BASE}/current/uv-requirements.txt").content_string
        assert "itsdangerous==2.2.0" in locked
        assert "--hash=sha256:" in locked
        assert not host.file(f"{BASE}/current/venv/bin/uv").exists, "uv went into the app's virtualenv"

    served = current(deployed_hosts)
    wrong = "sha256:" + "0" * 64
    refused = from_artifact(tmp_path / "wrong", url, wrong, flask_uwsgi_app_artifact_ca_bundle=ca)
    assert refused.returncode != 0
    message = " ".join(refused.output.split())
    assert "flask_uwsgi_app_artifact, flask_uwsgi_app_artifact_checksum:" in message, message[-3000:]
    # The file downloaded before is checked too: its checksum is not the one given.
    assert f"has SHA-256 {sha256(tarball)[7:]}, not {'0' * 64}" in message, message[-3000:]
    assert unchanged(refused, deployed_hosts), recap(refused)
    assert current(deployed_hosts) == served


def build_wheel(directory: Path, version: str) -> Path:
    """A wheel of the pyproject app (wsgi.py), made by hand: a zip with the metadata pip reads."""
    dist_info = f"deps_demo-{version}.dist-info"
    files = {
        "wsgi.py": (APPS / "wsgi.py").read_bytes(),
        f"{dist_info}/METADATA": (
            f"Metadata-Version: 2.1\nName: deps-demo\nVersion: {version}\nRequires-Dist: itsdangerous==2.2.0\n"
        ).encode(),
        f"{dist_info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = [
        f"{name},sha256={base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode()},{len(data)}"
        for name, data in files.items()
    ]
    files[f"{dist_info}/RECORD"] = ("\n".join([*record, f"{dist_info}/RECORD,,"]) + "\n").encode()
    wheel = directory / f"deps_demo-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return wheel


def test_a_wheel_on_the_controller_is_installed_with_its_dependencies(
    deployed_hosts: list[Any], tmp_path: Path
) -> None:
    wheel = build_wheel(tmp_path, "3.0.0")
    play = from_artifact(tmp_path / "wheel", str(wheel), sha256(wheel))
    assert play.returncode == 0, play.output[-3000:]
    assert answers(deployed_hosts) == [(200, "deps-demo 3.0.0, itsdangerous 2.2.0")] * 2
    assert task_runs(play, "Install the app itself")[0] == dict.fromkeys(host_names(deployed_hosts), "changed")


def test_hashed_requirements_are_checked_and_a_wrong_hash_leaves_the_release_that_serves(
    deployed_hosts: list[Any], tmp_path: Path
) -> None:
    deploy_app(tmp_path / "hashed", app_code("hashed-app", tmp_path))
    # No pyproject.toml: the app is not a package; its requirements file is.
    assert answers(deployed_hosts) == [(200, "deps-demo absent, itsdangerous 2.2.0")] * 2
    before = [host.check_output(f"readlink {BASE}/current") for host in deployed_hosts]

    wrong = app_code("hashed-app", tmp_path / "wrong-hash")
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
