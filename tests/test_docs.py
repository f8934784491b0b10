"""Each role's three descriptions of its variables agree: defaults, argument specs and the README.

meta/argument_specs.yml is the one description of each variable: the comment above each default
says the same (at most shorter), and the README's tables are written from the specs by
scripts/readme_variables.py (`make readme`). Roles drift when a variable is added to one place and
not the others; these checks fail first.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def load_readme_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("readme_variables", ROOT / "scripts" / "readme_variables.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


README_SCRIPT = load_readme_script()
ROLES = README_SCRIPT.ROLES
defaults_file = README_SCRIPT.defaults_file
DEFAULTS: dict[str, dict[str, Any]] = {role: yaml.safe_load(defaults_file(role).read_text()) for role in ROLES}
SPECS: dict[str, dict[str, Any]] = {role: README_SCRIPT.spec_options(role) for role in ROLES}
VARIABLES = [(role, name) for role in ROLES for name in sorted(DEFAULTS[role])]
README_ROW = re.compile(r"^\| `(flask_uwsgi_\w+)` \| `(.*)` \| (.+) \|$")
PYTHON_TYPES = {"str": str, "path": str, "int": int, "bool": bool, "list": list, "dict": dict}


def readme_table() -> dict[str, str]:
    rows = (README_ROW.match(line) for line in (ROOT / "README.md").read_text().splitlines())
    return {m[1]: m[2] for m in rows if m}


def comments_above_defaults(role: str) -> dict[str, list[str]]:
    """For each variable of defaults/main.yml, the comment lines directly above it (section headers left out)."""
    comments: dict[str, list[str]] = {}
    block: list[str] = []
    for line in defaults_file(role).read_text().splitlines():
        if line.startswith("#") and not README_SCRIPT.SECTION.match(line):
            block.append(line)
            continue
        if variable := re.match(r"^(flask_uwsgi\w*):", line):
            comments[variable[1]] = block
        block = []  # a blank line, a section header or a variable ends the comment above
    return comments


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
def test_every_default_has_exactly_one_comment_line_above_it(role: str) -> None:
    comments = comments_above_defaults(role)
    assert sorted(comments) == sorted(DEFAULTS[role]), "a variable of defaults/main.yml is not on a line of its own"
    assert {name: len(lines) for name, lines in comments.items() if len(lines) != 1} == {}
    assert [lines[0] for lines in comments.values() if not lines[0].startswith("# ")] == []


@pytest.mark.parametrize(("role", "name"), VARIABLES)
def test_default_comment_says_what_the_spec_says(role: str, name: str) -> None:
    # The comment may be shorter than the description, but not different: it is its beginning.
    comment = comments_above_defaults(role)[name][-1].removeprefix("# ").removesuffix(".")
    assert README_SCRIPT.description(SPECS[role][name]).startswith(comment)


def test_readme_tables_are_written_from_the_specs() -> None:
    readme = (ROOT / "README.md").read_text()
    assert readme == README_SCRIPT.render(readme), "README.md differs from the argument specs: run make readme"


def test_readme_lists_every_variable_with_its_default() -> None:
    table = readme_table()
    everything = {name: value for role in ROLES for name, value in DEFAULTS[role].items()}
    assert sorted(table) == sorted(everything)
    assert {name: yaml.safe_load(cell) for name, cell in table.items()} == everything


def test_the_readme_script_refuses_a_readme_without_markers() -> None:
    with pytest.raises(ValueError, match="BEGIN flask_uwsgi variables"):
        README_SCRIPT.render("# A README without the markers\n")
