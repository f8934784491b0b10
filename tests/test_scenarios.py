"""make test runs every Molecule scenario: the Makefile's SCENARIOS name each scenario directory
once, and nothing else."""

from __future__ import annotations

import re
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]


def make_variable(name: str, makefile: str) -> list[str]:
    """The words of a `NAME := ...` line of the Makefile, with $(OTHER) references expanded."""
    match = re.search(rf"^{name} := (.*)$", makefile, re.MULTILINE)
    assert match, f"no {name} in the Makefile"
    words = []
    for word in match.group(1).split():
        reference = re.fullmatch(r"\$\((\w+)\)", word)
        words += make_variable(reference.group(1), makefile) if reference else [word]
    return words


def test_make_test_runs_every_scenario_once() -> None:
    scenarios = sorted(path.parent.name for path in (PROJECT / "molecule").glob("*/molecule.yml"))
    assert sorted(make_variable("SCENARIOS", (PROJECT / "Makefile").read_text())) == scenarios
