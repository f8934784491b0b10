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
    lines = [BOX.sub("", ANSI.sub("", line)).rstrip() for line in text.splitlines()]
    picked: list[str] = []
    in_summary = False
    for number, line in enumerate(lines):
        if "short test summary info" in line:
            in_summary = True
            continue
        if in_summary:
            if re.match(r"^=+ \d+ ", line):  # "=== 1 failed, 79 passed in 32 s"
                picked.append(line)
                in_summary = False
            elif not line.strip().startswith("="):
                picked.append(line)
        elif line.startswith("E  ") or line.startswith("fatal: ["):
            picked.append(line)
            if line.startswith("fatal: ["):
                picked.extend(lines[number + 1 : number + 4])
    return picked[:MOST]


def main(logdir: str) -> None:
    print(f"=== what failed, from the scenario logs in {logdir} ===")
    for log in sorted(Path(logdir).glob("*.log")):
        for line in summary(log.read_text(errors="replace")):
            print(f"[{log.stem}] {line[:300]}")


if __name__ == "__main__":
    main(sys.argv[1])
