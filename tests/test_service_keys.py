"""The service's keys (plugins/modules/flask_uwsgi_service_keys.py) are the very hashes that the role's
templates computed before the module existed, so that a host upgraded to it keeps its recorded keys
and gets no restart; and each file changes the key it should, and only that one."""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
from ansible.plugins.filter.core import get_hash, regex_findall, to_json
from collection_modules import load

keys = load("flask_uwsgi_service_keys")

RESTART_OPTIONS = [
    "http",
    "https",
    "http-socket",
    "socket",
    "uwsgi-socket",
    "shared-socket",
    "listen",
    "chmod-socket",
    "chown-socket",
]
# The expression of tasks/service.yml before the module, for the ini's lines that only a restart applies.
OLD_PATTERN = "(?m)^(?:https?|http-socket|socket|uwsgi-socket|shared-socket|listen|chmod-socket|chown-socket) = .*$"
# The find of tasks/service.yml before the module, for the uWSGI distributions.
OLD_DIST_INFO = "^(?i:uwsgi|pyuwsgi)-[^-]+[.]dist-info$"
INI = """[uwsgi]
strict = true
http-socket = 127.0.0.1:8000
socket = /run/demo/uwsgi.sock
chmod-socket = 660
listen = 128
processes = 2
# http-socket = a comment is not an option
"""


def host(tmp_path: Path, ini: str = INI, uwsgi: str = "pyuwsgi-2.0.30.post1.dist-info") -> dict[str, Any]:
    """A host's files as the role lays them out; returns the module's parameters for them."""
    (tmp_path / "demo.service").write_text("[Service]\nExecStart=/bin/true\n")
    (tmp_path / "demo.socket").write_text("[Socket]\nListenStream=127.0.0.1:8000\n")
    (tmp_path / "demo.env").write_text("SECRET=1\n")
    (tmp_path / "demo.ini").write_text(ini)
    release = tmp_path / "releases" / "r1"
    (release / "venv" / "lib" / "python3.11" / "site-packages" / uwsgi).mkdir(parents=True)
    (release / "venv" / "lib" / "python3.11" / "site-packages" / "flask-3.1.1.dist-info").mkdir()
    (release / "checked").write_text("content-hash\n")
    (tmp_path / "current").symlink_to("releases/r1")
    return params(tmp_path)


def params(base: Path) -> dict[str, Any]:
    """The module's parameters for a host whose files are under base."""
    return {
        "unit": str(base / "demo.service"),
        "socket_unit": str(base / "demo.socket"),
        "env_file": str(base / "demo.env"),
        "ini": str(base / "demo.ini"),
        "restart_options": RESTART_OPTIONS,
        "current": str(base / "current"),
        "mark": str(base / "current" / "checked"),
        "venv_lib": str(base / "current" / "venv" / "lib"),
        "state_file": str(base / "state.json"),
    }


def old_keys(params: dict[str, Any]) -> dict[str, str]:
    """The keys as tasks/service.yml computed them with Ansible's filters (stat, slurp and find)."""

    def sha1(path: str) -> str:  # stat's checksum: a regular file's SHA-1, else undefined ('')
        return hashlib.sha1(Path(path).read_bytes()).hexdigest() if os.path.isfile(path) else ""

    ini = Path(params["ini"]).read_text() if os.path.exists(params["ini"]) else ""
    lib = Path(params["venv_lib"])
    found = sorted(path.name.lower() for path in lib.glob("*/*/*") if re.match(OLD_DIST_INFO, path.name))
    restart = [sha1(params["unit"]), sha1(params["env_file"]), regex_findall(ini, OLD_PATTERN), found]
    target = os.readlink(params["current"]) if os.path.islink(params["current"]) else ""
    reload = [sha1(params["ini"]), target, sha1(params["mark"])]
    return {"restart": get_hash(to_json(restart), "sha1"), "reload": get_hash(to_json(reload), "sha1")}


def test_the_keys_are_those_the_role_computed_before(tmp_path: Path) -> None:
    params = host(tmp_path)
    found = keys.service_keys(params)
    assert {name: found[name] for name in ("restart", "reload")} == old_keys(params)
    assert keys.restart_lines(INI, RESTART_OPTIONS) == [
        "http-socket = 127.0.0.1:8000",
        "socket = /run/demo/uwsgi.sock",
        "chmod-socket = 660",
        "listen = 128",
    ]
    assert keys.uwsgi_installed(params["venv_lib"]) == ["pyuwsgi-2.0.30.post1.dist-info"]
    assert found["unit_exists"] is True
    assert found["recorded"] == {}
    assert found["uptime"] > 0


def test_a_bare_host_has_empty_keys_and_no_record(tmp_path: Path) -> None:
    bare = params(tmp_path)
    found = keys.service_keys(bare)
    assert {name: found[name] for name in ("restart", "reload")} == old_keys(bare)
    assert (found["unit_exists"], found["recorded"]) == (False, {})


@pytest.mark.parametrize(
    ("change", "moved"),
    [
        (lambda p: Path(p["unit"]).write_text("[Service]\nExecStart=/bin/false\n"), {"restart"}),
        (lambda p: Path(p["socket_unit"]).write_text("[Socket]\nListenStream=127.0.0.1:8001\n"), {"sockets"}),
        (lambda p: Path(p["socket_unit"]).unlink(), {"sockets"}),
        (lambda p: Path(p["env_file"]).write_text("SECRET=2\n"), {"restart"}),
        (lambda p: Path(p["ini"]).write_text(INI.replace("listen = 128", "listen = 256")), {"restart", "reload"}),
        (lambda p: Path(p["ini"]).write_text(INI.replace("processes = 2", "processes = 3")), {"reload"}),
        (lambda p: Path(p["mark"]).write_text("other-content\n"), {"reload"}),
    ],
    ids=["unit", "socket-unit", "no-socket-unit", "environment", "listen-queue", "processes", "rebuilt-release"],
)
def test_each_file_moves_the_key_of_what_applies_it(tmp_path: Path, change: Any, moved: set[str]) -> None:
    params = host(tmp_path)
    before = keys.service_keys(params)
    change(params)
    after = keys.service_keys(params)
    assert {name for name in ("restart", "reload", "sockets") if before[name] != after[name]} == moved


def test_another_uwsgi_in_the_current_release_moves_the_restart_key(tmp_path: Path) -> None:
    one, other = tmp_path / "one", tmp_path / "other"
    one.mkdir()
    other.mkdir()
    first = keys.service_keys(host(one))
    second = keys.service_keys(host(other, uwsgi="uWSGI-2.0.31.dist-info"))
    assert first["restart"] != second["restart"]
    assert keys.uwsgi_installed(str(other / "current" / "venv" / "lib")) == ["uwsgi-2.0.31.dist-info"]


def test_the_record_is_read_and_a_broken_one_counts_as_none(tmp_path: Path) -> None:
    params = host(tmp_path)
    Path(params["state_file"]).write_text(json.dumps({"restart": "a", "reload": "b"}))
    assert keys.service_keys(params)["recorded"] == {"restart": "a", "reload": "b"}
    Path(params["state_file"]).write_text("{not json")
    assert keys.service_keys(params)["recorded"] == {}
