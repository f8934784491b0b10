#!/usr/bin/env python3
"""How deploy time grows with the fleet: deploy the demo to 1, 4 and 8 fresh test hosts at once.

For each fleet size: start that many Debian 12 systemd containers, run playbooks/deploy.yml on all
of them in one batch (flask_uwsgi_serial=100%, forks from ansible.cfg), time it, run it again (the
idempotent re-run) and time that, then remove the containers. Prints a table. On demand only:

    .venv/bin/python bench/fleet_deploy.py            # 1, 4 and 8 hosts
    .venv/bin/python bench/fleet_deploy.py 1 2        # other sizes

uWSGI comes from the pyuwsgi wheel here, so the figures show how Ansible scales, not how fast
this machine compiles uWSGI once per host.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
IMAGE = os.environ.get("TEST_IMAGE", "flask-uwsgi-test:bookworm")
PREFIX = "flask-uwsgi-bench-"
SYSTEMD_FLAGS = [
    "--cap-add", "SYS_ADMIN", "--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined",
    "--cgroupns", "host", "--volume", "/sys/fs/cgroup:/sys/fs/cgroup:rw",
    "--tmpfs", "/run", "--tmpfs", "/run/lock", "--tmpfs", "/tmp",
]  # fmt: skip


def start_hosts(count: int) -> list[str]:
    names = [f"{PREFIX}{n}" for n in range(1, count + 1)]
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
    return names


def remove_hosts() -> None:
    found = subprocess.run(
        ["docker", "ps", "--all", "--quiet", "--filter", f"name={PREFIX}"], capture_output=True, text=True
    ).stdout.split()
    if found:
        subprocess.run(["docker", "rm", "--force", *found], check=True, capture_output=True)


def write_inventory(directory: Path, names: list[str]) -> Path:
    hosts = "".join(f"    {name}:\n" for name in names)
    (directory / "hosts.yml").write_text(
        "app_servers:\n  hosts:\n" + hosts + "  vars:\n"
        "    ansible_connection: community.docker.docker\n"
        "    flask_uwsgi_app_name: flask-demo\n"
        f"    flask_uwsgi_app_src: {PROJECT / 'examples' / 'flask-demo'}\n"
        "    flask_uwsgi_uwsgi_package: pyuwsgi\n"
        '    flask_uwsgi_uwsgi_version: "2.0.30.post1"\n'
        "    flask_uwsgi_health_path: /health\n"
    )
    return directory


def timed_deploy(inventory: Path) -> tuple[float, str]:
    env = {**os.environ, "ANSIBLE_CONFIG": str(PROJECT / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"}
    start = time.monotonic()
    play = subprocess.run(
        ["ansible-playbook", "-i", str(inventory), "playbooks/deploy.yml", "-e", "flask_uwsgi_serial=100%"],
        cwd=PROJECT,
        env=env,
        capture_output=True,
        text=True,
        timeout=3600,
    )
    took = time.monotonic() - start
    if play.returncode != 0:
        sys.exit(f"deploy failed:\n{play.stdout[-4000:]}")
    recap = [line for line in play.stdout.splitlines() if line.startswith(PREFIX)]
    changed = sum(int(line.split("changed=")[1].split()[0]) for line in recap)
    return took, f"changed={changed}"


def main(sizes: list[int]) -> None:
    rows = []
    for count in sizes:
        remove_hosts()
        try:
            names = start_hosts(count)
            with tempfile.TemporaryDirectory() as tmp:
                inventory = write_inventory(Path(tmp), names)
                fresh, _ = timed_deploy(inventory)
                again, changed = timed_deploy(inventory)
        finally:
            remove_hosts()
        rows.append((count, fresh, again, changed))
        print(f"{count} hosts: fresh deploy {fresh:.0f} s, re-run {again:.0f} s ({changed})", flush=True)
    base_fresh, base_again = rows[0][1], rows[0][2]
    print("\n| hosts | fresh deploy | vs 1 host | idempotent re-run | vs 1 host |")
    print("|---:|---:|---:|---:|---:|")
    for count, fresh, again, _ in rows:
        print(f"| {count} | {fresh:.0f} s | {fresh / base_fresh:.2f}x | {again:.0f} s | {again / base_again:.2f}x |")


if __name__ == "__main__":
    main([int(arg) for arg in sys.argv[1:]] or [1, 4, 8])
