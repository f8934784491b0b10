"""What failed in `make molecule`, from the scenario logs it keeps, printed last.

A CI log ends with the scenario's teardown; this puts the failed tests, their assertion lines and
Ansible's failed tasks at its very end. Usage: python scripts/failure_summary.py LOGDIR
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ANSI = re.compile(r"\x1b\[[0-9;]*m")
BOX = re.compile(r"^\s*[│┌└]\s?")  # molecule frames each command's output
MOST = 25  # lines per scenario


def summary(text: str) -> list[str]:
    """pytest's short summary of failures first, then the first lines of each assertion (E lines) and
    Ansible's failed tasks."""
    lines = [BOX.sub("", ANSI.sub("", line)).rstrip() for line in text.splitlines()]
    failures: list[str] = []
    details: list[str] = []
    in_summary, run = False, 0
    for number, line in enumerate(lines):
        if "short test summary info" in line:
            in_summary = True
            continue
        if in_summary:
            if re.match(r"^=+ \d+ ", line):  # "=== 1 failed, 79 passed in 32 s"
                failures.append(line)
                in_summary = False
            elif not line.strip().startswith("="):
                failures.append(line)
            continue
        if line.startswith("E  "):
            run += 1
            if run <= 3:  # an assertion's first lines, not a whole journal it prints
                details.append(line)
        elif not line.startswith("  "):  # a wrapped line continues the one before
            run = 0
        if line.startswith("fatal: ["):
            details.extend(lines[number : number + 4])
    return failures[:MOST] + details[: max(0, MOST - len(failures))]


def main(logdir: str) -> None:
    print(f"=== what failed, from the scenario logs in {logdir} ===")
    for log in sorted(Path(logdir).glob("*.log")):
        for line in summary(log.read_text(errors="replace")):
            print(f"[{log.stem}] {line[:300]}")


if __name__ == "__main__":
    main(sys.argv[1])
