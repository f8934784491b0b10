#!/usr/bin/env python3
"""Write the README's variable tables from each role's meta/argument_specs.yml.

The argument specs hold the one description of each variable. defaults/main.yml gives the order,
the sections (its `# --- Section ---` comments) and each default as it is written there. `make readme`
rewrites README.md in place between the markers `<!-- BEGIN <role> variables -->` and
`<!-- END <role> variables -->`, one pair per role; tests/test_docs.py fails when README.md differs
from what this script writes.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
ROLES = ("flask_uwsgi", "flask_uwsgi_nginx", "flask_uwsgi_exporter")

SECTION = re.compile(r"^# --- (.+?) -*$")
VARIABLE = re.compile(r"^(?P<name>flask_uwsgi\w*): (?P<value>.+)$")


def defaults_file(role: str) -> Path:
    return ROOT / "roles" / role / "defaults" / "main.yml"


def spec_options(role: str) -> dict[str, Any]:
    specs = yaml.safe_load((ROOT / "roles" / role / "meta" / "argument_specs.yml").read_text())
    return specs["argument_specs"]["main"]["options"]


def sections(role: str) -> list[tuple[str, list[tuple[str, str]]]]:
    """The variables of defaults/main.yml, in order, grouped by section: (title, [(name, default as written)]).

    Variables before the first section comment are in a section without a title ("").
    """
    path = defaults_file(role)
    found: list[tuple[str, list[tuple[str, str]]]] = [("", [])]
    for line in path.read_text().splitlines():
        if section := SECTION.match(line):
            found.append((section[1], []))
        elif variable := VARIABLE.match(line):
            found[-1][1].append((variable["name"], variable["value"]))
    # Each default as written must be the value YAML reads, and no variable may be missed.
    values = yaml.safe_load(path.read_text())
    written = {name: text for _, variables in found for name, text in variables}
    if sorted(written) != sorted(values):
        missed = sorted(set(values) ^ set(written))
        raise ValueError(f"{path}: write each variable on a line of its own as 'name: value'; missed {missed}")
    for name, text in written.items():
        if yaml.safe_load(text) != values[name]:
            raise ValueError(f"{path}: the default of {name} is not on its own line ({text!r})")
    return [(title, variables) for title, variables in found if variables]


def description(spec: dict[str, Any]) -> str:
    """A spec's description on one line (a list of paragraphs is joined)."""
    text = spec["description"]
    return " ".join((" ".join(text) if isinstance(text, list) else text).split())


def describe(spec: dict[str, Any]) -> str:
    """A spec's description as the cell of a Markdown table."""
    return description(spec).replace("|", r"\|").replace("<", r"\<")


def code(text: str) -> str:
    return f"`` {text} ``" if "`" in text else f"`{text}`"


def literal(value: Any) -> str:
    """A default given in a spec (a key of a list item), written as YAML would be."""
    if value == "":
        return '""'
    text = yaml.safe_dump(value, default_flow_style=True, width=1000).strip().removesuffix("...").strip()
    return json.dumps(value) if text.startswith("'") else text


def variables_table(role: str) -> list[str]:
    specs = spec_options(role)
    lines = ["| variable | default | description |", "|---|---|---|"]
    for title, variables in sections(role):
        if title:
            lines.append(f"| **{title}** | | |")
        lines += [f"| `{name}` | {code(text)} | {describe(specs[name])} |" for name, text in variables]
    for name, spec in specs.items():
        if "options" not in spec:
            continue
        lines += ["", f"Each item of `{name}` has these keys:", "", "| key | default | description |", "|---|---|---|"]
        lines += [
            f"| `{key}` | {'required' if option.get('required') else code(literal(option.get('default')))} "
            f"| {describe(option)} |"
            for key, option in spec["options"].items()
        ]
    return lines


def render(readme: str) -> str:
    """The README with each role's block between its markers written anew from that role's files."""
    for role in ROLES:
        begin, end = f"<!-- BEGIN {role} variables -->", f"<!-- END {role} variables -->"
        before, found, rest = readme.partition(begin + "\n")
        _, found_end, after = rest.partition(end)
        if not (found and found_end):
            raise ValueError(f"README.md needs the lines {begin} and {end} around {role}'s variables")
        readme = before + begin + "\n" + "\n".join(variables_table(role)) + "\n" + end + after
    return readme


def main() -> int:
    old = README.read_text()
    new = render(old)
    if new != old:
        README.write_text(new)
        print("README.md: variable tables written from meta/argument_specs.yml")
    else:
        print("README.md: variable tables already up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
