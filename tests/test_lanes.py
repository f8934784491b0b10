"""make test runs every Molecule scenario exactly once: the Makefile's LANES name each scenario
directory once, and nothing else."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]


def makefile_value(name: str) -> str:
    match = re.search(rf"^{name} := (.*)$", (PROJECT / "Makefile").read_text(), re.MULTILINE)
    assert match, f"no {name} in the Makefile"
    return match.group(1)


def test_the_lanes_run_every_scenario_once() -> None:
    lanes = [lane.split() for lane in shlex.split(makefile_value("LANES"))]
    in_lanes = [scenario for lane in lanes for scenario in lane]
    scenarios = sorted(path.parent.name for path in (PROJECT / "molecule").glob("*/molecule.yml"))
    assert len(lanes) == 2
    assert sorted(in_lanes) == scenarios
    assert sorted(makefile_value("SCENARIOS").split()) == scenarios
