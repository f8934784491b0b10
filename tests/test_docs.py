"""Each role's three descriptions of its variables agree: defaults, argument specs and the README.

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
ROLES = ("flask_uwsgi", "flask_uwsgi_nginx")


def defaults_file(role: str) -> Path:
    return ROOT / "roles" / role / "defaults" / "main.yml"


DEFAULTS: dict[str, dict[str, Any]] = {role: yaml.safe_load(defaults_file(role).read_text()) for role in ROLES}
SPECS: dict[str, dict[str, Any]] = {
    role: yaml.safe_load((ROOT / "roles" / role / "meta" / "argument_specs.yml").read_text())["argument_specs"]["main"][
        "options"
    ]
    for role in ROLES
}
VARIABLES = [(role, name) for role in ROLES for name in sorted(DEFAULTS[role])]
README_ROW = re.compile(r"^\| `(flask_uwsgi_\w+)` \| `(.*)` \| (.+) \|$")
PYTHON_TYPES = {"str": str, "path": str, "int": int, "bool": bool, "list": list, "dict": dict}


def readme_table() -> dict[str, str]:
    rows = (README_ROW.match(line) for line in (ROOT / "README.md").read_text().splitlines())
    return {m[1]: m[2] for m in rows if m}


@pytest.mark.parametrize("role", ROLES)
def test_every_variable_is_in_the_role_namespace(role: str) -> None:
    assert all(name.startswith(role + "_") for name in DEFAULTS[role])


@pytest.mark.parametrize("role", ROLES)
def test_specs_describe_exactly_the_defaults(role: str) -> None:
    assert sorted(SPECS[role]) == sorted(DEFAULTS[role])


@pytest.mark.parametrize(("role", "name"), VARIABLES)
def test_spec_default_matches_the_default(role: str, name: str) -> None:
    assert SPECS[role][name].get("default") == DEFAULTS[role][name]


@pytest.mark.parametrize(("role", "name"), VARIABLES)
def test_literal_default_has_the_spec_type(role: str, name: str) -> None:
    value, spec = DEFAULTS[role][name], SPECS[role][name]
    if isinstance(value, str) and "{{" in value:
        pytest.skip("templated default: its type is checked when the role runs")
    assert isinstance(value, PYTHON_TYPES[spec["type"]])
    if "choices" in spec:
        assert value in spec["choices"]


@pytest.mark.parametrize("role", ROLES)
def test_every_default_has_a_comment_above_it(role: str) -> None:
    lines = defaults_file(role).read_text().splitlines()
    uncommented = [
        line.split(":")[0]
        for before, line in itertools.pairwise(lines)
        if line.startswith("flask_uwsgi_") and not before.startswith("# ")
    ]
    assert uncommented == []


def test_readme_lists_every_variable_with_its_default() -> None:
    table = readme_table()
    everything = {name: value for role in ROLES for name, value in DEFAULTS[role].items()}
    assert sorted(table) == sorted(everything)
    assert {name: json.loads(cell) for name, cell in table.items()} == everything
