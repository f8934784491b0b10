#!/usr/bin/python
"""Ansible module: read the files a uWSGI service runs with and hash them into its two keys."""

from __future__ import annotations

DOCUMENTATION = r"""
module: flask_uwsgi_service_keys
short_description: The restart and reload keys of a uWSGI service, from the files on the host
description:
  - Reads, in one call, what tasks/service.yml compares with the service's state file, and that file.
  - The restart key hashes the unit, the environment file, the lines of uwsgi.ini that set an option
    of O(restart_options) (only a restart applies them), and the names of the uWSGI distributions
    installed in the virtualenv of the release that C(current) points at.
  - The reload key hashes uwsgi.ini, the target of the C(current) link and the mark inside it.
  - The sockets key hashes the unit that holds the service's sockets (socket activation).
  - A missing file counts as empty. Reads only, so it runs in check mode too.
  - Also notes the host's uptime, the clock of the workers' start times in /proc, from which
    tasks/health.yml waits for a worker started after the restart or reload that follows.
options:
  unit:
    description: The service's systemd unit file.
    type: path
    required: true
  socket_unit:
    description: The unit that holds the service's sockets, if any (socket activation).
    type: path
    required: true
  env_file:
    description: The service's environment file.
    type: path
    required: true
  ini:
    description: The service's uwsgi.ini.
    type: path
    required: true
  restart_options:
    description: The uwsgi.ini options that only a restart applies (a reload keeps the open sockets).
    type: list
    elements: str
    required: true
  current:
    description: The link to the release that serves.
    type: path
    required: true
  mark:
    description: The mark file inside the release that serves, whose content changes when it is rebuilt.
    type: path
    required: true
  venv_lib:
    description: The lib directory of the serving release's virtualenv, where uWSGI's dist-info lies.
    type: path
    required: true
  state_file:
    description: The service's state file (JSON), which records the keys the running master has.
    type: path
    required: true
author: flask_uwsgi maintainers
"""

RETURN = r"""
restart:
  description: The SHA-1 of what only a restart applies.
  type: str
  returned: always
sockets:
  description: The SHA-1 of the socket unit, or of nothing.
  type: str
  returned: always
reload:
  description: The SHA-1 of what a graceful reload applies.
  type: str
  returned: always
recorded:
  description: What the state file holds; empty when it is missing or not a JSON object.
  type: dict
  returned: always
unit_exists:
  description: Whether the unit file is on the host.
  type: bool
  returned: always
uptime:
  description: The host's uptime in seconds (the first figure of /proc/uptime) when the files were read.
  type: float
  returned: always
"""

import hashlib
import json
import os
import re
import stat

from ansible.module_utils.basic import AnsibleModule

# A uWSGI distribution's dist-info directory, for the compiled package (uwsgi) and the binary wheel (pyuwsgi).
UWSGI_DIST_INFO = re.compile(r"^(?i:uwsgi|pyuwsgi)-[^-]+[.]dist-info$")
# site-packages sits at lib/pythonX.Y/site-packages: the dist-info is 3 levels under lib.
DIST_INFO_DEPTH = 3


def checksum(path: str) -> str:
    """The SHA-1 of a regular file (not followed if a link), or '' if there is none."""
    try:
        if not stat.S_ISREG(os.lstat(path).st_mode):
            return ""
        with open(path, "rb") as handle:
            return hashlib.sha1(handle.read()).hexdigest()
    except OSError:
        return ""


def link_target(path: str) -> str:
    """Where a link points, as written, or '' if the path is not a link."""
    try:
        return os.readlink(path)
    except OSError:
        return ""


def read_text(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as handle:
            return handle.read()
    except OSError:
        return ""


def restart_lines(ini: str, options: list[str]) -> list[str]:
    """The lines of uwsgi.ini (as the role writes them: `name = value`) that set one of options."""
    names = "|".join(re.escape(option) for option in options)
    pattern = re.compile(rf"^(?:{names}) = .*$", re.MULTILINE)
    return pattern.findall(ini)


def uwsgi_installed(lib: str) -> list[str]:
    """The lower-cased names of the uWSGI dist-info directories at most DIST_INFO_DEPTH levels under lib."""
    found = []
    top = lib.rstrip(os.sep).count(os.sep)
    for root, dirs, _files in os.walk(lib):
        level = root.rstrip(os.sep).count(os.sep) - top + 1
        found += [name.lower() for name in dirs if UWSGI_DIST_INFO.match(name)]
        if level >= DIST_INFO_DEPTH:
            dirs[:] = []
    return sorted(found)


def key(parts: list[object]) -> str:
    """The SHA-1 of the parts as JSON, the same text as Ansible's `to_json | hash('sha1')`."""
    return hashlib.sha1(json.dumps(parts).encode("utf-8", "surrogateescape")).hexdigest()


def recorded(path: str) -> dict[str, object]:
    try:
        with open(path, encoding="utf-8") as handle:
            state = json.load(handle)
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


def service_keys(params: dict[str, object]) -> dict[str, object]:
    ini = str(params["ini"])
    restart = [
        checksum(str(params["unit"])),
        checksum(str(params["env_file"])),
        restart_lines(read_text(ini), list(params["restart_options"])),  # type: ignore[call-overload]
        uwsgi_installed(str(params["venv_lib"])),
    ]
    reload = [checksum(ini), link_target(str(params["current"])), checksum(str(params["mark"]))]
    return {
        "restart": key(restart),
        "reload": key(reload),
        "sockets": key([checksum(str(params["socket_unit"]))]),
        "recorded": recorded(str(params["state_file"])),
        "unit_exists": os.path.lexists(str(params["unit"])),
        "uptime": float(read_text("/proc/uptime").split()[0]),
    }


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "unit": {"type": "path", "required": True},
            "socket_unit": {"type": "path", "required": True},
            "env_file": {"type": "path", "required": True},
            "ini": {"type": "path", "required": True},
            "restart_options": {"type": "list", "elements": "str", "required": True},
            "current": {"type": "path", "required": True},
            "mark": {"type": "path", "required": True},
            "venv_lib": {"type": "path", "required": True},
            "state_file": {"type": "path", "required": True},
        },
        supports_check_mode=True,
    )
    module.exit_json(changed=False, **service_keys(module.params))


if __name__ == "__main__":
    main()
