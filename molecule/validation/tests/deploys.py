"""What the validation scenario's deploys share: the probe routes added to the demo app, and plays
run against both app servers at once, read as data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask_uwsgi_testing import ONE_BATCH, Play, deploy, load_on_each_during, recap, request_in_host, task_runs

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


def deployed(tmp_path: Path, extra_vars: dict[str, Any], *options: str) -> Play:
    """Deploy to both hosts, check that it worked on each, and return the play."""
    play = deploy(tmp_path, {**ONE_BATCH, **extra_vars}, *options)
    assert play.returncode == 0, play.output[-3000:]
    return play


def restarted_under_load(
    hosts: list[Any], change: str, tmp_path: Path, extra_vars: dict[str, Any]
) -> tuple[Play, list[dict[str, Any]]]:
    """deployed(), while a load generator runs in each host; prints each host's figures for the change."""
    play, loads = load_on_each_during(hosts, 8000, lambda: deployed(tmp_path, extra_vars))
    for host, load in zip(hosts, loads, strict=True):
        print(f"{host.backend.host}: {change} under load: {load['figures']}")
    return play, loads


def everywhere(play: Play, task: str, hosts: list[Any]) -> str | dict[str, str]:
    """How the first run of a task ended: its outcome if the same on every host, else by host."""
    outcomes = task_runs(play, task)[0]
    assert set(outcomes) == {host.backend.host for host in hosts}, f"{task}: {outcomes}"
    return outcomes.popitem()[1] if len(set(outcomes.values())) == 1 else outcomes


def unchanged(play: Play, hosts: list[Any]) -> bool:
    counts = recap(play)
    return all(counts[host.backend.host]["changed"] == 0 for host in hosts)


def main_pid(host: Any) -> str:
    return host.check_output(f"systemctl show {UNIT} --property MainPID --value")


def main_pids(hosts: list[Any]) -> list[str]:
    return [main_pid(host) for host in hosts]


def get(host: Any, path: str, address: str = "127.0.0.1:8000") -> tuple[int, str]:
    """One GET to the app from inside the host: its status code and body."""
    status, body = request_in_host(host, address, path)
    return int(status.split()[1]), body.strip()
