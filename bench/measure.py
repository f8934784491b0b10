"""The measurements of make bench: deploy times on fresh hosts, wrk's runs against the servers, the
stops and reloads of the role's service, and its workers' memory. Each returns its raw runs; the
report takes their medians."""

from __future__ import annotations

import json
import os
import re
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

from servers import (
    HOST,
    LAZY,
    NGINX_PATHS,
    SERVICE,
    Server,
    keep_upstream_connections,
    nginx_sites,
    start,
    start_service,
    stop,
)
from testhosts import DEMO_VARS, PROJECT, changed_count, in_host, run_playbook, start_hosts, write_inventory

sys.path.insert(0, str(PROJECT / "molecule" / "shared" / "tests"))
from flask_uwsgi_testing import LOADGEN

RUNS = int(os.environ.get("BENCH_RUNS", 3))  # fresh deploys (each on a new host), stops, reloads
ROUNDS = int(os.environ.get("BENCH_ROUNDS", 3))  # rounds of load against every server
SECONDS = int(os.environ.get("BENCH_SECONDS", 10))  # length of one wrk run
CONNECTIONS = 16  # wrk's connections, each a request at a time
WRK = "wrk --threads 1 --latency"
# A burst: far more connections at once than workers. The kernel queues up to `listen` of them for
# the workers to accept; past that it drops the handshakes, and the clients retry after a second.
BURST_CONNECTIONS = 512


@dataclass
class Deploys:
    """Wall times of fresh deploys and their idempotent re-runs, and each task's times in the fresh ones."""

    fresh: list[float] = field(default_factory=list)
    again: list[float] = field(default_factory=list)
    tasks: dict[str, list[float]] = field(default_factory=dict)


# Ways to install uWSGI, each deployed to its own fresh hosts. The role's defaults come last (the
# last host stays up for the serving figures): uWSGI compiled once, by the first host from a
# controller whose cache is empty (a row of its own, one run), and installed from that wheel on
# every later host.
CACHE = "controller cache"


@dataclass
class Install:
    """A way to install uWSGI: the role variables that choose it, and how many fresh hosts get it."""

    variables: dict[str, str]
    runs: int = RUNS
    slowest_tasks: bool = True  # the report lists the slowest tasks of its fresh deploys


INSTALLS = {
    "pyuwsgi wheel from PyPI": Install(
        {"flask_uwsgi_uwsgi_package": "pyuwsgi", "flask_uwsgi_uwsgi_version": "2.0.30.post1"}, slowest_tasks=False
    ),
    'uWSGI compiled on each host (flask_uwsgi_wheel_cache: "")': Install({"flask_uwsgi_wheel_cache": ""}),
    "role defaults, first host from a controller with an empty cache: compiles uWSGI once": Install(
        {"flask_uwsgi_wheel_cache": CACHE}, runs=1
    ),
    "role defaults, every later host: uWSGI from the controller's cache": Install({"flask_uwsgi_wheel_cache": CACHE}),
}


def deploys(inventory_dir: Path) -> dict[str, Deploys]:
    profile = {"ANSIBLE_CALLBACKS_ENABLED": "ansible.posix.profile_tasks", "PROFILE_TASKS_TASK_OUTPUT_LIMIT": "100"}
    cache = str(inventory_dir / "wheels")
    figures = {}
    for name, install in INSTALLS.items():
        variables = {key: cache if value == CACHE else value for key, value in install.variables.items()}
        inventory = write_inventory(inventory_dir, [HOST], {**DEMO_VARS, **variables})
        figures[name] = runs = Deploys()
        for _ in range(install.runs):
            start_hosts([HOST])
            took, output = run_playbook(inventory, "playbooks/deploy.yml", settings=profile)
            runs.fresh.append(took)
            for task, seconds in re.findall(r"^(\S.*?) -{3,} (\d+\.\d+)s$", output, re.MULTILINE):
                runs.tasks.setdefault(task, []).append(float(seconds))
            took, output = run_playbook(inventory, "playbooks/deploy.yml")
            runs.again.append(took)
            changed = changed_count(output, [HOST])
            print(f"{name}: fresh {runs.fresh[-1]:.1f} s, re-run {took:.1f} s (changed={changed})", flush=True)
    return figures


@dataclass
class Load:
    rps: float
    p50_ms: float
    p99_ms: float
    failed: int = 0  # answers other than 2xx or 3xx, and answers that took 2 s or more


def parse_wrk(output: str, failures: bool = False) -> Load:
    """Figures from wrk's report. An answer other than 2xx or 3xx stops the benchmark unless failures
    are counted; answers that took 2 s or more (wrk's "timeout") are counted either way. A request
    never answered is counted nowhere by wrk: the newcomer's wait shows that case. (wrk's "read"
    socket errors count the connections a server closes after an answer without saying so.)"""

    def ms(label: str) -> float:
        value, unit = re.search(rf"^\s+{label}\s+([\d.]+)(us|ms|s)\s*$", output, re.MULTILINE).groups()
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    def count(pattern: str) -> int:
        found = re.search(pattern, output)
        return int(found.group(1)) if found else 0

    not_2xx = count(r"Non-2xx or 3xx responses: (\d+)")
    assert failures or not not_2xx, output
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))
    return Load(rps, ms("50%"), ms("99%"), not_2xx + count(r"Socket errors: .*timeout (\d+)"))


def wrk(
    port: int, seconds: int = SECONDS, connections: int = CONNECTIONS, options: str = "", failures: bool = False
) -> Load:
    return parse_wrk(in_host(HOST, wrk_command(port, seconds, connections, options)), failures)


def wrk_command(port: int, seconds: int = SECONDS, connections: int = CONNECTIONS, options: str = "") -> str:
    """The wrk command line for a run against 127.0.0.1:port, to run in the host."""
    return f"{WRK} --connections {connections} --duration {seconds}s {options} http://127.0.0.1:{port}/"


def serving(servers: list[Server], connections: int = CONNECTIONS) -> dict[str, list[Load]]:
    """ROUNDS rounds of load against every server, each on its own port."""
    return in_turns([(server.name, server, server.port) for server in servers], connections)


def in_turns(
    targets: list[tuple[str, Server, int]], connections: int = CONNECTIONS, failures: bool = False
) -> dict[str, list[Load]]:
    """ROUNDS rounds; in each, every (name, server, port) in turn: start the server, 2 s of warm-up,
    SECONDS of load on the port, stop."""
    loads: dict[str, list[Load]] = {name: [] for name, _, _ in targets}
    for round_ in range(1, ROUNDS + 1):
        for name, server, port in targets:
            start(server)
            wrk(port, 2, connections, failures=failures)
            loads[name].append(load := wrk(port, connections=connections, failures=failures))
            stop(server)
            print(f"round {round_}: {name}: {load.rps:.0f} requests/s, p99 {load.p99_ms:.1f} ms", flush=True)
    return loads


# Keep-alive traffic is wrk's own: each connection sends its next request once it has the answer.
# Without keep-alive, every request asks for its connection to be closed after the answer (a
# server that ignores that keeps the connection open, as uWSGI on http11-socket does).
KEEPALIVE = "keep-alive"
CLOSE = "Connection: close"
TRAFFIC = {KEEPALIVE: "", CLOSE: "--header 'Connection: close'"}
# A newcomer: one more client, 3 s into the keep-alive load, on a connection of its own. How long it
# waits for its answer tells whether the server still takes new clients while others keep theirs.
NEWCOMER_TIMEOUT = 5.0
NEWCOMER = r"""
import sys, time, urllib.request
time.sleep(3)
start = time.monotonic()
try:
    urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/", timeout=float(sys.argv[2])).read()
    print(time.monotonic() - start)
except Exception:
    print("nan")
"""


@dataclass
class KeepAlive:
    """Each server's runs with either traffic, and the newcomer's waits (s; nan: no answer in time)."""

    loads: dict[str, dict[str, list[Load]]] = field(default_factory=lambda: {name: {} for name in TRAFFIC})
    newcomer_s: dict[str, list[float]] = field(default_factory=dict)


def keepalive_serving(servers: list[Server]) -> KeepAlive:
    """ROUNDS rounds; in each, every server in turn: warm-up, keep-alive load with a newcomer, then
    the same load with Connection: close."""
    figures = KeepAlive()
    newcomer = f"python3 -c {shlex.quote(NEWCOMER)}"
    for round_ in range(1, ROUNDS + 1):
        for server in servers:
            start(server)
            wrk(server.port, 2, failures=True)
            load = wrk_command(server.port)
            out = in_host(HOST, f"{newcomer} {server.port} {NEWCOMER_TIMEOUT} > /tmp/newcomer & {load}; wait")
            figures.loads[KEEPALIVE].setdefault(server.name, []).append(kept := parse_wrk(out, failures=True))
            figures.newcomer_s.setdefault(server.name, []).append(float(in_host(HOST, "cat /tmp/newcomer")))
            figures.loads[CLOSE].setdefault(server.name, []).append(
                closed := wrk(server.port, options=TRAFFIC[CLOSE], failures=True)
            )
            stop(server)
            print(
                f"round {round_}: {server.name}: {kept.rps:.0f} requests/s kept alive,"
                f" newcomer {figures.newcomer_s[server.name][-1]:.3f} s; {closed.rps:.0f} closed",
                flush=True,
            )
    return figures


def through_nginx(inventory: Path) -> dict[str, list[Load]]:
    """nginx in front (flask_uwsgi_nginx's sites, some with upstream keep-alive added), clients keeping
    their connections to nginx: ROUNDS rounds, every path in turn."""
    playbook = inventory.parent / "nginx.yml"
    playbook.write_text(
        "- name: nginx in front of the servers the benchmark compares\n"
        "  hosts: app_servers\n  become: true\n"
        "  roles: [flaskapps.uwsgi.flask_uwsgi_nginx]\n"
    )
    variables = inventory.parent / "nginx-vars.json"
    variables.write_text(json.dumps({"flask_uwsgi_nginx_sites": nginx_sites()}))
    run_playbook(inventory, str(playbook), "--extra-vars", f"@{variables}")
    keep_upstream_connections()
    return in_turns([(path.name, path.server, path.port) for path in NGINX_PATHS], failures=True)


# The exporter (flask_uwsgi_exporter) scraped every SCRAPE_INTERVAL s: 15 times as often as
# Prometheus' usual 15 s, so that its cost shows. Runs in the host, for the seconds given.
SCRAPE_INTERVAL = 1.0
SCRAPER = r"""
import sys, time, urllib.request
end = time.monotonic() + float(sys.argv[1])
while time.monotonic() < end:
    urllib.request.urlopen("http://127.0.0.1:9117/metrics", timeout=5).read()
    time.sleep(float(sys.argv[2]))
"""
NOT_SCRAPED = "the service, its exporter idle"
SCRAPED = f"the service, its exporter scraped every {SCRAPE_INTERVAL:g} s"


def exporter_cost() -> dict[str, list[Load]]:
    """ROUNDS rounds of load on the role's service, with and without scrapes of the host's exporter
    (in turns, the first of each round alternating)."""
    loads: dict[str, list[Load]] = {NOT_SCRAPED: [], SCRAPED: []}
    start_service()
    scraper = f"python3 -c {shlex.quote(SCRAPER)} {SECONDS + 3} {SCRAPE_INTERVAL}"
    load = wrk_command(SERVICE.port)
    for round_ in range(1, ROUNDS + 1):
        for name in (NOT_SCRAPED, SCRAPED) if round_ % 2 else (SCRAPED, NOT_SCRAPED):
            wrk(SERVICE.port, 2)
            script = f"{scraper} & sleep 1; {load}; wait" if name == SCRAPED else load
            loads[name].append(run := parse_wrk(in_host(HOST, script)))
            print(f"round {round_}: {name}: {run.rps:.0f} requests/s, p99 {run.p99_ms:.1f} ms", flush=True)
    return loads


def host_seconds(script: str) -> float:
    """Wall time of a shell script measured inside the host (no docker exec in it)."""
    out = in_host(HOST, f"s=$(date +%s%N); {script}; e=$(date +%s%N); echo $(( (e - s) / 1000000 ))")
    return int(out.split()[-1]) / 1000


# Runs in the host: a reload, then GETs until a worker forked after it answers (the demo names its pid).
RELOAD = r"""
import subprocess, sys, time, urllib.request
def pid():
    return urllib.request.urlopen("http://127.0.0.1:8000/", timeout=30).read().decode().split("pid ")[1].rstrip(")\n")
master = subprocess.check_output(["systemctl", "show", "-P", "MainPID", "flask-demo"], text=True).strip()
old = set(subprocess.check_output(["pgrep", "-P", master], text=True).split())
start = time.monotonic()
subprocess.run(["systemctl", "reload", "flask-demo"], check=True)
while pid() in old:
    time.sleep(0.01)
print(time.monotonic() - start)
"""


def stops_and_reloads() -> dict[str, list[float]]:
    reload = "reload, until a new worker answers"
    figures: dict[str, list[float]] = {"stop idle": [], "stop, 3 s request in flight": [], reload: []}
    failed, total = [], []
    for _ in range(RUNS):
        figures["stop idle"].append(host_seconds("systemctl stop flask-demo"))
        start_service()
        slow = "python3 -c 'import urllib.request; urllib.request.urlopen(\"http://127.0.0.1:8000/slow?seconds=3\")'"
        took = host_seconds(f"({slow} && touch /tmp/slow.ok) & sleep 0.5; systemctl stop flask-demo; wait")
        in_host(HOST, "rm /tmp/slow.ok")  # the request in flight got its answer
        figures["stop, 3 s request in flight"].append(round(took - 0.5, 3))
        start_service()
        figures[reload].append(round(float(in_host(HOST, f"python3 -c '{RELOAD}'")), 3))
        # Counted by a client that checks every answer (a connection per request, 4 at a time).
        loadgen = f"python3 -c {shlex.quote(LOADGEN)} 8000 4 {SECONDS} 100000 /nonexistent"
        stats = json.loads(in_host(HOST, f"{loadgen} & sleep 3; systemctl reload flask-demo; wait"))
        failed.append(stats["failed"])
        total.append(stats["requests"])
    figures["requests during a reload under load"] = total
    figures["failed requests during a reload under load"] = failed
    return figures


@dataclass
class Memory:
    """RSS and PSS (MiB) of each worker of a uWSGI master, and the PSS of the master and workers together."""

    rss: list[float]
    pss: list[float]
    total_pss: float


def memory(unit: str, port: int) -> Memory:
    """The memory of a uWSGI service's processes after a round of load."""
    wrk(port, 5)
    master = in_host(HOST, f"systemctl show -P MainPID {unit}").strip()

    def rollup(pid: str) -> dict[str, float]:
        """The process's Rss and Pss, in MiB, from one read of its smaps_rollup."""
        text = in_host(HOST, f"cat /proc/{pid}/smaps_rollup")
        return {key: int(value) / 1024 for key, value in re.findall(r"^(Rss|Pss):\s+(\d+) kB", text, re.MULTILINE)}

    workers = [rollup(pid) for pid in in_host(HOST, f"pgrep -P {master}").split()]
    pss = [worker["Pss"] for worker in workers]
    return Memory([worker["Rss"] for worker in workers], pss, rollup(master)["Pss"] + sum(pss))


def memories() -> dict[str, Memory]:
    """The memory of the role's service, and of its ini with lazy-apps."""
    figures = {"role defaults (the service)": memory("flask-demo", SERVICE.port)}
    start(LAZY)
    figures[LAZY.name] = memory(f"bench-{LAZY.port}", LAZY.port)
    stop(LAZY)
    return figures
