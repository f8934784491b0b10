#!/usr/bin/env python3
"""How deploy time grows with the fleet: deploy the demo to 1, 4 and 8 fresh test hosts at once.

For each fleet size: start that many Debian 12 systemd containers, run playbooks/deploy.yml on all
of them in one batch (flask_uwsgi_serial=100%, forks from ansible.cfg), time it, run it again (the
idempotent re-run) and time that, then remove the containers. On the largest fleet it then times
the re-run again under each Ansible setting in SETTINGS, against the project's ansible.cfg, in the
same run (ratios; absolute times on a shared machine are noisy). Prints two tables. On demand only:

    .venv/bin/python bench/fleet_deploy.py            # 1, 4 and 8 hosts
    .venv/bin/python bench/fleet_deploy.py 1 2        # other sizes

uWSGI comes from the pyuwsgi wheel here, so the figures show how Ansible scales, not how fast
this machine compiles uWSGI once per host.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from testhosts import DEMO_VARS, changed_count, remove_hosts, run_playbook, start_hosts, write_inventory

PREFIX = "flask-uwsgi-bench-"
# pyuwsgi, so that the figures show how Ansible scales, not how fast each host compiles uWSGI.
FLEET_VARS = {**DEMO_VARS, "flask_uwsgi_uwsgi_package": "pyuwsgi", "flask_uwsgi_uwsgi_version": "2.0.30.post1"}


# Ansible settings compared on the largest fleet, as environment variables over ansible.cfg.
SETTINGS: dict[str, dict[str, str]] = {
    "ansible.cfg as shipped (forks 10, pipelining)": {},
    "without pipelining": {"ANSIBLE_PIPELINING": "false"},
    "forks 5 instead of 10": {"ANSIBLE_FORKS": "5"},
    "with a fact cache (gathering smart, jsonfile)": {
        "ANSIBLE_GATHERING": "smart",
        "ANSIBLE_CACHE_PLUGIN": "jsonfile",
        "ANSIBLE_CACHE_PLUGIN_CONNECTION": "",  # filled in with a temporary directory
    },
    "with minimal facts (gather_subset min)": {"ANSIBLE_GATHER_SUBSET": "min"},
}


def timed_deploy(inventory: Path, names: list[str], settings: dict[str, str] | None = None) -> tuple[float, int]:
    """Deploy to every host in one batch; the wall time and the number of changed tasks."""
    took, output = run_playbook(inventory, "playbooks/deploy.yml", "-e", "flask_uwsgi_serial=100%", settings=settings)
    return took, changed_count(output, names)


def compare_settings(inventory: Path, names: list[str], cache: Path) -> list[tuple[str, float]]:
    """Time the idempotent re-run under each of SETTINGS; the fact cache gets one run to fill it first."""
    rows = []
    for name, settings in SETTINGS.items():
        if "ANSIBLE_CACHE_PLUGIN_CONNECTION" in settings:
            settings = {**settings, "ANSIBLE_CACHE_PLUGIN_CONNECTION": str(cache)}
            timed_deploy(inventory, names, settings)
        took, _ = timed_deploy(inventory, names, settings)
        rows.append((name, took))
        print(f"  re-run {name}: {took:.1f} s", flush=True)
    return rows


def main(sizes: list[int]) -> None:
    rows, compared = [], []
    for count in sizes:
        names = [f"{PREFIX}{n}" for n in range(1, count + 1)]
        try:
            start_hosts(names)
            with tempfile.TemporaryDirectory() as tmp:
                inventory = write_inventory(Path(tmp), names, FLEET_VARS)
                fresh, _ = timed_deploy(inventory, names)
                again, changed = timed_deploy(inventory, names)
                print(
                    f"{count} hosts: fresh deploy {fresh:.0f} s, re-run {again:.0f} s (changed={changed})", flush=True
                )
                if count == max(sizes):
                    compared = compare_settings(inventory, names, Path(tmp) / "facts")
        finally:
            remove_hosts(names)
        rows.append((count, fresh, again))
    base_fresh, base_again = rows[0][1], rows[0][2]
    print("\n| hosts | fresh deploy | vs 1 host | idempotent re-run | vs 1 host |")
    print("|---:|---:|---:|---:|---:|")
    for count, fresh, again in rows:
        print(f"| {count} | {fresh:.0f} s | {fresh / base_fresh:.2f}x | {again:.1f} s | {again / base_again:.2f}x |")
    shipped = compared[0][1]
    print(f"\n| idempotent re-run on {max(sizes)} hosts | time | vs ansible.cfg |")
    print("|---|---:|---:|")
    for name, took in compared:
        print(f"| {name} | {took:.1f} s | {took / shipped:.2f}x |")


if __name__ == "__main__":
    main([int(arg) for arg in sys.argv[1:]] or [1, 4, 8])
