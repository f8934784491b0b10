"""report.py on made-up measurements, without Docker: ratios are taken against the servers named as
baselines wherever they stand, and a baseline that was not measured stops the report.
Run: .venv/bin/python -m pytest -q bench/test_report.py"""

from __future__ import annotations

import re

import pytest
import report
from measure import INSTALLS, NOT_SCRAPED, SCRAPED, Deploys, Load, Memory
from servers import BASELINE, BURST_BASELINE, BURST_SERVERS, GUNICORN, SERVERS, Server


def made_up_loads(servers: list[Server], rps: dict[str, float]) -> dict[str, list[Load]]:
    """Three rounds per server, listed in the reverse order, at these requests/s (8000 by default)."""
    return {server.name: [Load(rps.get(server.name, 8000.0), 1.0, 2.0)] * 3 for server in reversed(servers)}


def render(loads: dict[str, list[Load]], burst: dict[str, list[Load]]) -> str:
    deployed = {name: Deploys([30.0] * install.runs, [9.0] * install.runs) for name, install in INSTALLS.items()}
    lifecycle = {"stop idle": [1.07, 1.08, 1.07]}
    mem = {"role defaults (the service)": Memory([27.5, 27.5], [17.5, 17.5], 55.9)}
    scraped = {NOT_SCRAPED: [Load(8000.0, 1.0, 2.0)] * 3, SCRAPED: [Load(7920.0, 1.0, 2.0)] * 3}
    return report.render(deployed, loads, burst, lifecycle, mem, scraped)


def ratio(text: str, name: str) -> str:
    """The "vs" cell of the server's row in a table of loads."""
    return next(line.split(" | ")[2] for line in text.splitlines() if line.startswith(f"| {name} |"))


def test_ratios_are_taken_against_the_named_baselines() -> None:
    loads = made_up_loads(SERVERS, {BASELINE: 10000.0, GUNICORN.name: 5000.0})
    burst = made_up_loads(BURST_SERVERS, {BURST_BASELINE: 1000.0})
    text = render(loads, burst)
    assert ratio(text, BASELINE) == "1.00x"
    assert ratio(text, GUNICORN.name) == "0.50x"
    assert "as many workers: **2.00x**" in text
    assert ratio(text, BURST_BASELINE) == "1.00x"
    assert {ratio(text, server.name) for server in BURST_SERVERS if server.name != BURST_BASELINE} == {"8.00x"}
    assert ratio(text, SCRAPED) == "0.99x"


@pytest.mark.parametrize("missing", [BASELINE, GUNICORN.name, BURST_BASELINE])
def test_a_baseline_not_measured_stops_the_report(missing: str) -> None:
    loads, burst = made_up_loads(SERVERS, {}), made_up_loads(BURST_SERVERS, {})
    del (loads if missing in loads else burst)[missing]
    with pytest.raises(LookupError, match=re.escape(missing)):
        render(loads, burst)
