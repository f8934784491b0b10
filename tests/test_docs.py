"""The role's three descriptions of its variables agree: defaults, argument specs and the README.

Roles drift when a variable is added to one place and not the others; these checks fail first.
"""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
ROLE = ROOT / "roles" / "flask_uwsgi"
DEFAULTS_FILE = ROLE / "defaults" / "main.yml"
DEFAULTS: dict[str, Any] = yaml.safe_load(DEFAULTS_FILE.read_text())
SPECS: dict[str, Any] = yaml.safe_load((ROLE / "meta" / "argument_specs.yml").read_text())["argument_specs"]["main"][
    "options"
]
README_ROW = re.compile(r"^\| `(flask_uwsgi_\w+)` \| `(.*)` \| (.+) \|$")
PYTHON_TYPES = {"str": str, "path": str, "int": int, "bool": bool, "list": list, "dict": dict}


def readme_table() -> dict[str, str]:
    rows = (README_ROW.match(line) for line in (ROOT / "README.md").read_text().splitlines())
    return {m[1]: m[2] for m in rows if m}


def test_every_variable_is_in_the_namespace() -> None:
    assert all(name.startswith("flask_uwsgi_") for name in DEFAULTS)


def test_specs_describe_exactly_the_defaults() -> None:
    assert sorted(SPECS) == sorted(DEFAULTS)


@pytest.mark.parametrize("name", sorted(DEFAULTS))
def test_spec_default_matches_the_default(name: str) -> None:
    assert SPECS[name].get("default") == DEFAULTS[name]


@pytest.mark.parametrize("name", sorted(DEFAULTS))
def test_literal_default_has_the_spec_type(name: str) -> None:
    value = DEFAULTS[name]
    if isinstance(value, str) and "{{" in value:
        pytest.skip("templated default: its type is checked when the role runs")
    assert isinstance(value, PYTHON_TYPES[SPECS[name]["type"]])
    if "choices" in SPECS[name]:
        assert value in SPECS[name]["choices"]


def test_every_default_has_a_comment_above_it() -> None:
    lines = DEFAULTS_FILE.read_text().splitlines()
    uncommented = [
        line.split(":")[0]
        for before, line in itertools.pairwise(lines)
        if line.startswith("flask_uwsgi_") and not before.startswith("# ")
    ]
    assert uncommented == []


def test_readme_lists_every_variable_with_its_default() -> None:
    table = readme_table()
    assert sorted(table) == sorted(DEFAULTS)
    assert {name: json.loads(cell) for name, cell in table.items()} == DEFAULTS
