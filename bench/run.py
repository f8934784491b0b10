#!/usr/bin/env python3
"""make bench: how fast the role deploys, serves, reloads and stops the demo app, in figures.

1. Deploy: a fresh Debian 12 test host, the demo app with the role's defaults (uWSGI compiled by
   pip), timed with the slowest tasks (profile_tasks); then the idempotent re-run. RUNS hosts.
2. Serving: wrk on the host's loopback against the role's service and against other servers of
   the same app started beside it (SERVERS), in ROUNDS interleaved rounds of SECONDS each; and the
   role's service while the host's Prometheus exporter is scraped every second, and while it is not.
   Then keep-alive: the role's service, uWSGI on http11-socket and behind its http router, gunicorn
   sync and gthread and Granian (KEEPALIVE_SERVERS), each under keep-alive traffic and under
   Connection: close, with a newcomer's wait; and nginx in front (flask_uwsgi_nginx's sites, some
   with upstream keep-alive) of uWSGI over its unix socket, the service, gunicorn and Granian
   (NGINX_PATHS).
3. Stop, reload and failed requests during a reload under load, on the role's service.
4. Memory of each worker (RSS and PSS) of the role's service after a round of load.

Every figure is the median of its runs, and comparisons are ratios within this one run (the host
shares this machine's cores with the controller and wrk), each against a server named in
servers.py: BASELINE, the role's service, for the serving table. Prints the tables and writes them
to docs/benchmarks.md, with docs/benchmarks.png and docs/benchmarks-keepalive.png. Run: make bench
(or .venv/bin/python bench/run.py).

What is started and measured is in servers.py, how it is measured (RUNS, ROUNDS, SECONDS) in
measure.py, what is written in report.py; this file runs them in order.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import measure
import report
import servers
from testhosts import remove_hosts


def main() -> None:
    try:
        with tempfile.TemporaryDirectory() as tmp:
            deployed = measure.deploys(Path(tmp))  # the last host deployed stays up for the rest
            servers.prepare_servers()
            loads = measure.serving(servers.SERVERS)
            burst = measure.serving(servers.BURST_SERVERS, measure.BURST_CONNECTIONS)
            keep = measure.keepalive_serving(servers.KEEPALIVE_SERVERS)
            nginx = measure.through_nginx(Path(tmp) / "hosts.yml")
            scraped = measure.exporter_cost()
            lifecycle = measure.stops_and_reloads()
            mem = measure.memories()
    finally:
        remove_hosts([servers.HOST])
    text = report.render(deployed, loads, burst, lifecycle, mem, scraped, keep, nginx)
    report.write(text, loads, keep, nginx)
    print(text)


if __name__ == "__main__":
    sys.exit(main())
