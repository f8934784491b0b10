"""What plugins/modules/flask_uwsgi_host_state.py finds astray: a path that a later task of the deploy would
change. A path it passes is skipped by that task, so each way a path can differ must show here."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from collection_modules import load

state = load("flask_uwsgi_host_state")

# The module wants root's paths; these tests make them, so they need root (as make test runs).
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="makes files owned by root:root")

HELPER = b"#!/bin/sh\necho stop\n"


def sha1(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


def look(directories: list[Path], programs: dict[Path, str], exists: list[Path]) -> dict[str, object]:
    return state.host_state(
        {
            "root_directories": [str(path) for path in directories],
            "root_programs": {str(path): checksum for path, checksum in programs.items()},
            "exists": [str(path) for path in exists],
        }
    )


def root_dir(path: Path, mode: int = 0o755) -> Path:
    path.mkdir()
    os.chown(path, 0, 0)
    path.chmod(mode)
    return path


def root_program(path: Path, data: bytes = HELPER, mode: int = 0o755) -> Path:
    path.write_bytes(data)
    os.chown(path, 0, 0)
    path.chmod(mode)
    return path


def test_a_directory_is_in_place_only_as_root_s_with_mode_0755(tmp_path: Path) -> None:
    good = root_dir(tmp_path / "good")
    closed = root_dir(tmp_path / "closed", 0o700)
    other_group = root_dir(tmp_path / "other-group")
    os.chown(other_group, 0, 1)
    not_a_dir = root_program(tmp_path / "file")
    # A link counts as the directory it points to, as the file module follows it.
    link, link_to_closed = tmp_path / "link", tmp_path / "link-to-closed"
    link.symlink_to(good)
    link_to_closed.symlink_to(closed)
    missing = tmp_path / "missing"
    found = look([good, closed, other_group, not_a_dir, link, link_to_closed, missing], {}, [])
    assert found["astray_directories"] == [
        str(path) for path in (closed, other_group, not_a_dir, link_to_closed, missing)
    ]


def test_a_program_is_in_place_only_with_its_content_mode_and_owner(tmp_path: Path) -> None:
    good = root_program(tmp_path / "good")
    other = root_program(tmp_path / "other", b"#!/bin/sh\necho changed\n")
    not_executable = root_program(tmp_path / "plain", mode=0o644)
    not_root_s = root_program(tmp_path / "not-root-s")
    os.chown(not_root_s, 1, 0)
    link = tmp_path / "link"
    link.symlink_to(good)
    programs = {path: sha1(HELPER) for path in (good, other, not_executable, not_root_s, link, tmp_path / "missing")}
    found = look([], programs, [])
    assert found["astray_programs"] == sorted(str(path) for path in programs if path != good)


def test_existing_holds_the_paths_on_the_host_even_a_dangling_link(tmp_path: Path) -> None:
    present = root_program(tmp_path / "present")
    dangling = tmp_path / "dangling"
    dangling.symlink_to(tmp_path / "nowhere")
    found = look([], {}, [present, tmp_path / "missing", dangling])
    assert found["existing"] == [str(present), str(dangling)]


def test_somaxconn_is_the_kernel_s() -> None:
    assert look([], {}, [])["somaxconn"] == int(Path("/proc/sys/net/core/somaxconn").read_text())
