"""make test runs every Molecule scenario: the Makefile's SCENARIOS name each scenario directory
once, and nothing else."""

from __future__ import annotations

import re
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]


def test_make_test_runs_every_scenario_once() -> None:
    match = re.search(r"^SCENARIOS := (.*)$", (PROJECT / "Makefile").read_text(), re.MULTILINE)
    assert match, "no SCENARIOS in the Makefile"
    scenarios = sorted(path.parent.name for path in (PROJECT / "molecule").glob("*/molecule.yml"))
    assert sorted(match.group(1).split()) == scenarios
