"""Test hosts for the benchmarks: Debian 12 containers with systemd as PID 1, and the project's
playbooks run against them from this controller, with the project's ansible.cfg."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

PROJECT = Path(__file__).resolve().parents[1]
# The test suites' helpers: the benchmarks run the playbooks and load the app as the tests do.
sys.path.insert(0, str(PROJECT / "molecule" / "shared" / "tests"))
from flask_uwsgi_testing import ansible_env  # noqa: E402

IMAGE = os.environ.get("TEST_IMAGE", "flask-uwsgi-test:bookworm")
# systemd as PID 1 without --privileged (which fails on some machines): see docs/testing.md.
SYSTEMD_FLAGS = [
    "--cap-add", "SYS_ADMIN", "--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined",
    "--cgroupns", "host", "--volume", "/sys/fs/cgroup:/sys/fs/cgroup:rw",
    "--tmpfs", "/run", "--tmpfs", "/run/lock", "--tmpfs", "/tmp",
]  # fmt: skip
# The demo app as a user would deploy it: everything else is the role's defaults.
DEMO_VARS = {
    "ansible_connection": "community.docker.docker",
    "flask_uwsgi_app_name": "flask-demo",
    "flask_uwsgi_app_src": str(PROJECT / "examples" / "flask-demo"),
    "flask_uwsgi_health_path": "/health",
}


def start_hosts(names: list[str]) -> None:
    """Start a fresh container per name and wait until its systemd has booted."""
    remove_hosts(names)
    for name in names:
        subprocess.run(
            ["docker", "run", "--detach", "--name", name, "--hostname", name, *SYSTEMD_FLAGS, IMAGE],
            check=True,
            capture_output=True,
        )
    for name in names:
        for _ in range(60):
            state = subprocess.run(
                ["docker", "exec", name, "systemctl", "is-system-running"], capture_output=True, text=True
            ).stdout.strip()
            if state in ("running", "degraded"):
                break
            time.sleep(0.5)


def remove_hosts(names: list[str]) -> None:
    subprocess.run(["docker", "rm", "--force", *names], capture_output=True, check=False)


def write_inventory(directory: Path, names: list[str], variables: dict[str, object]) -> Path:
    """An inventory with the hosts in app_servers and these group variables."""
    inventory = {"app_servers": {"hosts": dict.fromkeys(names), "vars": variables}}
    path = directory / "hosts.yml"
    path.write_text(yaml.safe_dump(inventory))
    return path


def run_playbook(inventory: Path, *args: str, settings: dict[str, str] | None = None) -> tuple[float, str]:
    """Run ansible-playbook from the project; return its wall time and output, or exit with its output."""
    start = time.monotonic()
    play = subprocess.run(
        ["ansible-playbook", "-i", str(inventory), *args],
        cwd=PROJECT,
        env=ansible_env(**(settings or {})),
        capture_output=True,
        text=True,
        timeout=3600,
        check=False,
    )
    took = time.monotonic() - start
    if play.returncode != 0:
        sys.exit(f"ansible-playbook {' '.join(args)} failed:\n{play.stdout[-4000:]}")
    return took, play.stdout


def changed_count(output: str, names: list[str]) -> int:
    """The sum of changed= over these hosts in a play's recap."""
    recap = [line for line in output.splitlines() if line.split(" ", 1)[0] in names]
    return sum(int(line.split("changed=")[1].split()[0]) for line in recap)


def in_host(name: str, script: str, check: bool = True) -> str:
    """Run a shell script inside the host as root; return its stdout."""
    done = subprocess.run(["docker", "exec", name, "sh", "-c", script], capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        sys.exit(f"in {name}: {script}\n{done.stdout}{done.stderr}")
    return done.stdout
