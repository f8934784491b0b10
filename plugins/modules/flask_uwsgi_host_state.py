#!/usr/bin/python
"""Ansible module: look, in one call, at the host's paths that a deploy keeps, and at its listen queue limit."""

from __future__ import annotations

DOCUMENTATION = r"""
module: flask_uwsgi_host_state
short_description: What the host has of the role's own paths, and its limit for listen queues
description:
  - Reads, in one call at the start of a deploy (tasks/preflight.yml), what later tasks would
    otherwise each ask the host for, so that a task with nothing to change is skipped instead of run.
  - A directory of O(root_directories) or a file of O(root_programs) is astray when it is missing,
    of another type, not owned by root:root, not of mode 0755, or (a file) of other content. A link
    to a directory counts as the directory (the file module follows it); a link to a file is astray.
  - Reads only, so it runs in check mode too.
options:
  root_directories:
    description: Directories that must exist, owned by root:root with mode 0755.
    type: list
    elements: path
    required: true
  root_programs:
    description: Files that must hold the content of the given SHA-1, owned by root:root with mode 0755.
    type: dict
    required: true
  exists:
    description: Paths to look for; those on the host are returned in RV(existing).
    type: list
    elements: path
    required: true
author: flask_uwsgi maintainers
"""

RETURN = r"""
astray_directories:
  description: The paths of O(root_directories) that are not as wanted, in their order.
  type: list
  elements: str
  returned: always
astray_programs:
  description: The paths of O(root_programs) that are not as wanted, sorted.
  type: list
  elements: str
  returned: always
existing:
  description: The paths of O(exists) on the host (a link counts, even a dangling one).
  type: list
  elements: str
  returned: always
somaxconn:
  description: The host's net.core.somaxconn, the largest listen queue a socket may ask for.
  type: int
  returned: always
"""

import hashlib
import os
import stat

from ansible.module_utils.basic import AnsibleModule

MODE = 0o755


def root_s_with_mode_0755(info: os.stat_result) -> bool:
    return info.st_uid == 0 and info.st_gid == 0 and stat.S_IMODE(info.st_mode) == MODE


def directory_in_place(path: str) -> bool:
    """A link to such a directory passes too: the file module follows it."""
    try:
        info = os.stat(path)
    except OSError:
        return False
    return stat.S_ISDIR(info.st_mode) and root_s_with_mode_0755(info)


def program_in_place(path: str, sha1: str) -> bool:
    try:
        info = os.lstat(path)
        if not (stat.S_ISREG(info.st_mode) and root_s_with_mode_0755(info)):
            return False
        with open(path, "rb") as handle:
            return hashlib.sha1(handle.read()).hexdigest() == sha1
    except OSError:
        return False


def somaxconn() -> int:
    with open("/proc/sys/net/core/somaxconn", encoding="ascii") as handle:
        return int(handle.read())


def host_state(params: dict[str, object]) -> dict[str, object]:
    directories = list(params["root_directories"])  # type: ignore[call-overload]
    programs = dict(params["root_programs"])  # type: ignore[call-overload]
    return {
        "astray_directories": [path for path in directories if not directory_in_place(path)],
        "astray_programs": sorted(path for path, sha1 in programs.items() if not program_in_place(path, sha1)),
        "existing": [path for path in params["exists"] if os.path.lexists(path)],  # type: ignore[attr-defined]
        "somaxconn": somaxconn(),
    }


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "root_directories": {"type": "list", "elements": "path", "required": True},
            "root_programs": {"type": "dict", "required": True},
            "exists": {"type": "list", "elements": "path", "required": True},
        },
        supports_check_mode=True,
    )
    module.exit_json(changed=False, **host_state(module.params))


if __name__ == "__main__":
    main()
