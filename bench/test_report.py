"""report.py on made-up measurements, without Docker: ratios are taken against the servers named as
baselines wherever they stand, and a baseline that was not measured stops the report.
Run: .venv/bin/python -m pytest -q bench/test_report.py"""

from __future__ import annotations

import re

import pytest
import report
import servers
from measure import CLOSE, INSTALLS, KEEPALIVE, NOT_SCRAPED, SCRAPED, Deploys, KeepAlive, Load, Memory
from servers import (
    BASELINE,
    BURST_BASELINE,
    BURST_SERVERS,
    GRANIAN,
    GUNICORN,
    KEEPALIVE_SERVERS,
    NGINX_BASELINE,
    NGINX_PATHS,
    SERVERS,
    UWSGI_KEEPALIVE,
    Server,
)


def made_up_loads(servers: list[Server], rps: dict[str, float]) -> dict[str, list[Load]]:
    """Three rounds per server, listed in the reverse order, at these requests/s (8000 by default)."""
    return {server.name: [Load(rps.get(server.name, 8000.0), 1.0, 2.0)] * 3 for server in reversed(servers)}


def made_up_keepalive(kept: dict[str, float], closed: dict[str, float]) -> KeepAlive:
    """Three rounds per server of each traffic (8000 requests/s by default); the newcomer waits 2 ms,
    but gets no answer from uWSGI on http11-socket in two of the three."""
    keep = KeepAlive()
    for traffic, rps in ((KEEPALIVE, kept), (CLOSE, closed)):
        keep.loads[traffic] = made_up_loads(KEEPALIVE_SERVERS, rps)
    keep.newcomer_s = {server.name: [0.002] * 3 for server in KEEPALIVE_SERVERS}
    keep.newcomer_s[UWSGI_KEEPALIVE.name] = [float("nan"), 4.1, float("nan")]
    return keep


def render(
    loads: dict[str, list[Load]],
    burst: dict[str, list[Load]],
    keep: KeepAlive | None = None,
    nginx: dict[str, list[Load]] | None = None,
) -> str:
    keep = keep or made_up_keepalive({}, {})
    nginx = nginx or {path.name: [Load(8000.0, 1.0, 2.0)] * 3 for path in NGINX_PATHS}
    deployed = {name: Deploys([30.0] * install.runs, [9.0] * install.runs) for name, install in INSTALLS.items()}
    lifecycle = {"stop idle": [1.07, 1.08, 1.07]}
    mem = {"role defaults (the service)": Memory([27.5, 27.5], [17.5, 17.5], 55.9)}
    scraped = {NOT_SCRAPED: [Load(8000.0, 1.0, 2.0)] * 3, SCRAPED: [Load(7920.0, 1.0, 2.0)] * 3}
    return report.render(deployed, loads, burst, lifecycle, mem, scraped, keep, nginx)


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


def test_keepalive_ratios_are_taken_against_the_service_granian_and_gunicorn() -> None:
    kept = {BASELINE: 16000.0, UWSGI_KEEPALIVE.name: 18000.0, GRANIAN.name: 20000.0}
    keep = made_up_keepalive(kept, {BASELINE: 15000.0, GUNICORN.name: 6000.0})
    nginx = {
        path.name: [Load(12000.0 if path.name == NGINX_BASELINE else 15000.0, 1.0, 2.0)] * 3 for path in NGINX_PATHS
    }
    text = render(made_up_loads(SERVERS, {}), made_up_loads(BURST_SERVERS, {}), keep, nginx)
    assert "Granian, keep-alive traffic: **0.80x**" in text
    assert "a connection per request: **2.50x**" in text
    assert f"uWSGI measured here vs Granian, keep-alive traffic: **0.90x**: {UWSGI_KEEPALIVE.name}." in text
    row = next(line for line in text.splitlines() if line.startswith(f"| {UWSGI_KEEPALIVE.name} |"))
    assert "none in 2 of 3 runs" in row
    row = next(line for line in text.splitlines() if line.startswith(f"| {GRANIAN.name} |"))
    assert row.split(" | ")[2:6] == ["1.25x", "2.00 ms", "2.0 ms", "8,000"]
    assert {ratio(text, name) for name in nginx if name != NGINX_BASELINE} == {"1.25x"}


def test_upstream_keepalive_is_added_to_a_site_of_the_nginx_role() -> None:
    site = """upstream flask_uwsgi_b {
    server 127.0.0.1:9022 max_fails=1 fail_timeout=5s;
}
server {
    listen 8107;
    location / {
        proxy_pass http://flask_uwsgi_b;
        proxy_set_header Host $host;
    }
}
"""
    kept = servers.with_upstream_keepalive(site)
    assert "    server 127.0.0.1:9022 max_fails=1 fail_timeout=5s;\n    keepalive 16;\n}" in kept
    assert (
        'proxy_pass http://flask_uwsgi_b;\n        proxy_http_version 1.1;\n        proxy_set_header Connection "";'
        in kept
    )
    with pytest.raises(ValueError, match="one proxy_pass"):
        servers.with_upstream_keepalive(site.replace("proxy_pass", "uwsgi_pass"))
