#!/usr/bin/env python3
"""make bench: how fast the role deploys, serves, reloads and stops the demo app, in figures.

1. Deploy: a fresh Debian 12 test host, the demo app with the role's defaults (uWSGI compiled by
   pip), timed with the slowest tasks (profile_tasks); then the idempotent re-run. RUNS hosts.
2. Serving: wrk on the host's loopback against the role's service and against other servers of
   the same app started beside it (SERVERS), in ROUNDS interleaved rounds of SECONDS each.
3. Stop, reload and failed requests during a reload under load, on the role's service.
4. Memory of each worker (RSS and PSS) of the role's service after a round of load.

Every figure is the median of its runs, and comparisons are ratios within this one run: the host
shares this machine's cores with the controller and wrk. Prints the tables and writes them to
docs/benchmarks.md, with docs/benchmarks.png. Run: make bench (or .venv/bin/python bench/run.py).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import statistics
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from testhosts import (
    DEMO_VARS,
    PROJECT,
    changed_count,
    in_host,
    remove_hosts,
    run_playbook,
    start_hosts,
    write_inventory,
)

sys.path.insert(0, str(PROJECT / "molecule" / "shared" / "tests"))
from flask_uwsgi_testing import LOADGEN

HOST = "flask-uwsgi-bench-serving"
RUNS = int(os.environ.get("BENCH_RUNS", 3))  # fresh deploys (each on a new host), stops, reloads
ROUNDS = int(os.environ.get("BENCH_ROUNDS", 3))  # rounds of load against every server
SECONDS = int(os.environ.get("BENCH_SECONDS", 10))  # length of one wrk run
CONNECTIONS = 16  # wrk's connections, each a request at a time
WRK = "wrk --threads 1 --latency"
# A burst: far more connections at once than workers. The kernel queues up to `listen` of them for
# the workers to accept; past that it drops the handshakes, and the clients retry after a second.
BURST_CONNECTIONS = 512
APP_DIR = "/opt/flask-demo/current/app"
UWSGI = "/opt/flask-demo/current/venv/bin/uwsgi"
# The role's own ini for the demo, less what would clash with the running service (its address,
# pidfile, stop hook) and its request-log switch: the variants below add those back as they need.
ROLE_INI = "/opt/bench/role.ini"
ROLE = f"{UWSGI} --ini {ROLE_INI}"
TRIVIAL_APP = """\
def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"Hello"]
"""


@dataclass
class Server:
    """A way to serve the demo app: its port, and the command that starts it (None: the role's own service)."""

    name: str
    port: int
    command: str = ""
    ceiling: bool = False  # a candidate for the fastest uWSGI settings for the demo app


def uwsgi_with_role_options(port: int, *options: str) -> str:
    return f"{ROLE} --http-socket 127.0.0.1:{port} {' '.join(options)}"


# The role's service, then what it is compared with: the blog post this project grew from, gunicorn,
# and the role's own ini run beside the service (so outside its systemd sandbox) with one change
# each; those and the service are the candidates for the fastest uWSGI settings for this app.
NO_SANDBOX = "role's ini outside the unit's sandbox"
SERVERS = [
    Server("role defaults (the service: http-socket, 2 processes, no request lines)", 8000, ceiling=True),
    Server(
        "blog post (http router, 2 processes x 2 threads, lazy-apps)",
        9002,
        f"{UWSGI} --http 127.0.0.1:9002 --master --processes 2 --threads 2 --lazy-apps --module app --callable app",
    ),
    Server("gunicorn sync, 2 workers", 9003, "/opt/bench/venv/bin/gunicorn --workers 2 --bind 127.0.0.1:9003 app:app"),
    Server(NO_SANDBOX, 9008, uwsgi_with_role_options(9008, "--disable-logging"), ceiling=True),
    Server(f"{NO_SANDBOX}, with request lines in the journal", 9001, uwsgi_with_role_options(9001)),
    Server(
        f"{NO_SANDBOX}, 2 threads per process",
        9009,
        uwsgi_with_role_options(9009, "--disable-logging --threads 2"),
        ceiling=True,
    ),
    Server(
        f"{NO_SANDBOX}, 4 processes",
        9010,
        uwsgi_with_role_options(9010, "--disable-logging --processes 4"),
        ceiling=True,
    ),
    Server(
        f"{NO_SANDBOX}, thunder-lock",
        9004,
        uwsgi_with_role_options(9004, "--disable-logging --thunder-lock"),
        ceiling=True,
    ),
    Server(
        f"{NO_SANDBOX}, cpu-affinity 1",
        9005,
        uwsgi_with_role_options(9005, "--disable-logging --cpu-affinity 1"),
        ceiling=True,
    ),
    Server(
        f"{NO_SANDBOX}, no harakiri or reload-on-rss",
        9006,
        uwsgi_with_role_options(9006, "--disable-logging --harakiri 0 --reload-on-rss 0"),
        ceiling=True,
    ),
    Server(
        f"{NO_SANDBOX}, max-requests 5000 (the default until these figures)",
        9011,
        uwsgi_with_role_options(9011, "--disable-logging --max-requests 5000"),
    ),
    Server(
        "a trivial WSGI app instead, uWSGI, 2 processes, no request lines",
        9007,
        f"{UWSGI} --master --processes 2 --wsgi-file /opt/bench/trivial.py --http-socket 127.0.0.1:9007"
        " --disable-logging",
    ),
]

# The role's ini under a burst, with uWSGI's own listen queue (100) and the role's default (1024).
BURST_SERVERS = [
    Server(
        f"{NO_SANDBOX}, listen {listen}", port, uwsgi_with_role_options(port, f"--disable-logging --listen {listen}")
    )
    for listen, port in ((100, 9012), (1024, 9013))
]


def median(values: list[float]) -> float:
    return statistics.median(values)


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


INSTALLS = {
    "pyuwsgi wheel from PyPI": Install(
        {"flask_uwsgi_uwsgi_package": "pyuwsgi", "flask_uwsgi_uwsgi_version": "2.0.30.post1"}
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


def prepare_servers() -> None:
    """wrk, gunicorn (in its own virtualenv, with the app's requirements) and the trivial app, in the host."""
    in_host(HOST, "DEBIAN_FRONTEND=noninteractive apt-get install --yes --quiet wrk >/dev/null")
    in_host(
        HOST,
        "mkdir -p /opt/bench && python3 -m venv /opt/bench/venv"
        f" && /opt/bench/venv/bin/pip install --quiet gunicorn -r {APP_DIR}/requirements.txt",
    )
    in_host(HOST, f"cat > /opt/bench/trivial.py <<'EOF'\n{TRIVIAL_APP}EOF")
    in_host(
        HOST,
        "grep -Ev '^(http-socket|pidfile|hook-master-start|disable-logging) ' /etc/flask_uwsgi/flask-demo.ini"
        f" > {ROLE_INI}",
    )


def start(server: Server) -> None:
    """Start the server as a transient unit, as the app's user, and wait until it answers."""
    if server.command:
        in_host(
            HOST,
            # SIGINT stops uWSGI without die-on-term (SIGTERM would reload it) and gunicorn alike.
            f"systemd-run --quiet --unit bench-{server.port} --uid flask-demo --gid flask-demo"
            f" --property KillSignal=SIGINT --working-directory {APP_DIR} {server.command}",
        )
    wait_until_answers(server.port)


def stop(server: Server) -> None:
    if server.command:
        in_host(HOST, f"systemctl stop bench-{server.port}")


def wait_until_answers(port: int) -> None:
    in_host(
        HOST,
        "python3 -c 'import sys, time, urllib.request\n"
        "for _ in range(300):\n"
        "    try: urllib.request.urlopen(sys.argv[1], timeout=2).read(); break\n"
        "    except OSError: time.sleep(0.1)\n"
        'else: sys.exit("no answer")\' ' + f"http://127.0.0.1:{port}/",
    )


@dataclass
class Load:
    rps: float
    p50_ms: float
    p99_ms: float


def parse_wrk(output: str) -> Load:
    """Figures from wrk's report. (Its "read" socket errors count the connections that uWSGI and
    gunicorn close after each answer, as HTTP/1.0 servers do, so they are not failures.)"""

    def ms(label: str) -> float:
        value, unit = re.search(rf"^\s+{label}\s+([\d.]+)(us|ms|s)\s*$", output, re.MULTILINE).groups()
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    assert "Non-2xx" not in output, output
    return Load(float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)), ms("50%"), ms("99%"))


def wrk(port: int, seconds: int = SECONDS, connections: int = CONNECTIONS) -> Load:
    return parse_wrk(in_host(HOST, f"{WRK} --connections {connections} --duration {seconds}s http://127.0.0.1:{port}/"))


def serving(servers: list[Server], connections: int = CONNECTIONS) -> dict[str, list[Load]]:
    """ROUNDS rounds; in each, every server in turn: start, 2 s of warm-up, SECONDS of load, stop."""
    loads: dict[str, list[Load]] = {server.name: [] for server in servers}
    for round_ in range(1, ROUNDS + 1):
        for server in servers:
            start(server)
            wrk(server.port, 2, connections)
            loads[server.name].append(load := wrk(server.port, connections=connections))
            stop(server)
            print(f"round {round_}: {server.name}: {load.rps:.0f} requests/s, p99 {load.p99_ms:.1f} ms", flush=True)
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


def start_service() -> None:
    """Start the role's service again after a stop, and wait until it answers."""
    in_host(HOST, "systemctl start flask-demo")
    wait_until_answers(8000)


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


# The role's ini with the app loaded in each worker instead of once in the master (lazy-apps).
LAZY = Server(f"{NO_SANDBOX}, lazy-apps", 9014, uwsgi_with_role_options(9014, "--disable-logging --lazy-apps"))


def memories() -> dict[str, Memory]:
    figures = {"role defaults (the service)": memory("flask-demo", 8000)}
    start(LAZY)
    figures[LAZY.name] = memory(f"bench-{LAZY.port}", LAZY.port)
    stop(LAZY)
    return figures


def main() -> None:
    try:
        with tempfile.TemporaryDirectory() as tmp:
            deployed = deploys(Path(tmp))
            prepare_servers()
            loads = serving(SERVERS)
            burst = serving(BURST_SERVERS, BURST_CONNECTIONS)
            lifecycle = stops_and_reloads()
            mem = memories()
    finally:
        remove_hosts([HOST])
    report = write_report(deployed, loads, burst, lifecycle, mem)
    print(report)


def write_report(
    deployed: dict[str, Deploys],
    loads: dict[str, list[Load]],
    burst: dict[str, list[Load]],
    lifecycle: dict[str, list[float]],
    mem: dict[str, Memory],
) -> str:
    defaults = median([load.rps for load in loads[SERVERS[0].name]])
    lines = [
        "# Benchmarks",
        "",
        "Written by `make bench` (bench/run.py). Medians of the runs given; ratios are taken within",
        "this one run. The test host is a Debian 12 container on the same 2-core machine as the",
        f"controller and the load generator (wrk, {WRK.split(' ', 1)[1]} --connections {CONNECTIONS},"
        f" {SECONDS} s per run, loopback). wrk corrects its latencies for stalls: it adds the requests",
        "that would have arrived during one at the measured rate, so a stall shows in p99 as its share of the run.",
        "",
        "## Deploy (the demo app on fresh hosts, one per run)",
        "",
        "| how uWSGI is installed | fresh deploy (apt, pip, code, service answering) | idempotent re-run |",
        "|---|---:|---:|",
    ]
    for install, runs in deployed.items():
        fresh, again = (", ".join(f"{t:.1f}" for t in times) for times in (runs.fresh, runs.again))
        lines.append(f"| {install} | {median(runs.fresh):.1f} s ({fresh}) | {median(runs.again):.1f} s ({again}) |")
    for install, runs in list(deployed.items())[1:]:
        lines += ["", f"Slowest tasks of the fresh deploy, {install} (profile_tasks, median):", ""]
        lines += ["| task | seconds |", "|---|---:|"]
        slowest = sorted(runs.tasks.items(), key=lambda item: -median(item[1]))[:6]
        lines += [f"| {task} | {median(times):.1f} |" for task, times in slowest]
    lines += [
        "",
        f"## Serving GET / of the demo app ({ROUNDS} rounds)",
        "",
        "| server | requests/s | vs role defaults | p50 | p99 |",
        "|---|---:|---:|---:|---:|",
    ]
    lines += load_rows(loads, defaults)
    rps = {server.name: median([load.rps for load in loads[server.name]]) for server in SERVERS}
    gunicorn_name = next(server.name for server in SERVERS if server.name.startswith("gunicorn"))
    gunicorn = rps[gunicorn_name]
    per_round = [
        ours.rps / theirs.rps for ours, theirs in zip(loads[SERVERS[0].name], loads[gunicorn_name], strict=True)
    ]
    ceiling_name = max((server.name for server in SERVERS if server.ceiling), key=rps.__getitem__)
    lines += [
        "",
        f"- Role defaults vs gunicorn sync, as many workers: **{defaults / gunicorn:.2f}x** (target: 1.5x or more;"
        f" round by round: {', '.join(f'{ratio:.2f}x' for ratio in per_round)}).",
        f"- Role defaults vs the fastest uWSGI settings tried for the same app ({ceiling_name}):"
        f" **{defaults / rps[ceiling_name]:.0%}** (target: 90% or more).",
    ]
    lines += [
        "",
        f"## A burst: {BURST_CONNECTIONS} connections at once ({ROUNDS} rounds)",
        "",
        "The kernel queues up to `listen` connections for the workers; past that it drops handshakes,",
        "and those clients retry after a second.",
        "",
        "| server | requests/s | vs the first | p50 | p99 |",
        "|---|---:|---:|---:|---:|",
    ]
    lines += load_rows(burst, median([load.rps for load in burst[BURST_SERVERS[0].name]]))
    lines += ["", "## Stop and reload (the role's service)", "", "| | median | runs |", "|---|---:|---|"]
    for what, values in lifecycle.items():
        unit = "" if "requests" in what else " s"
        lines.append(f"| {what} | {median(values):g}{unit} | {', '.join(f'{v:g}' for v in values)} |")
    lines += [
        "",
        "## Memory (after load)",
        "",
        "| | RSS per worker | PSS per worker | PSS of the master and its workers |",
        "|---|---:|---:|---:|",
    ]
    for name, figures in mem.items():
        rss, pss = (", ".join(f"{v:.1f}" for v in values) for values in (figures.rss, figures.pss))
        lines.append(f"| {name} | {rss} MiB | {pss} MiB | {figures.total_pss:.1f} MiB |")
    lines += ["", "![Requests per second and p99 latency](benchmarks.png)", ""]
    report = "\n".join(lines)
    docs = PROJECT / "docs"
    docs.mkdir(exist_ok=True)
    (docs / "benchmarks.md").write_text(report)
    chart(loads, docs / "benchmarks.png")
    return report


def load_rows(loads: dict[str, list[Load]], base_rps: float) -> list[str]:
    """A table row per server: medians of requests/s (and its ratio to base_rps), p50 and p99."""
    rows = []
    for name, runs in loads.items():
        rps = median([load.rps for load in runs])
        p50, p99 = median([load.p50_ms for load in runs]), median([load.p99_ms for load in runs])
        rows.append(f"| {name} | {rps:,.0f} | {rps / base_rps:.2f}x | {p50:.2f} ms | {p99:.2f} ms |")
    return rows


def chart(loads: dict[str, list[Load]], path: Path) -> None:
    """Requests per second of each server, with its p99 latency written beside its bar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [server.name for server in SERVERS]
    rps = [median([load.rps for load in loads[name]]) for name in names]
    p99 = [median([load.p99_ms for load in loads[name]]) for name in names]
    figure, axes = plt.subplots(figsize=(12, 0.4 * len(names) + 1))
    bars = axes.barh(names[::-1], rps[::-1], color=["#888"] * (len(names) - 1) + ["#2a7"])
    for bar, latency in zip(bars, p99[::-1], strict=True):
        axes.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, f" p99 {latency:.1f} ms", va="center")
    axes.set_xlabel("requests per second (median), GET / of the demo app")
    axes.set_xlim(0, max(rps) * 1.4)
    figure.savefig(path, dpi=110, bbox_inches="tight")


if __name__ == "__main__":
    sys.exit(main())
