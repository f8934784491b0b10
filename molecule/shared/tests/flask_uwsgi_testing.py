"""Helpers for the scenarios' testinfra suites: the app's settings, a client for it, its service."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import jinja2
import pytest
import testinfra
import yaml

PROJECT = Path(__file__).resolve().parents[3]
ROLE_DEFAULTS = PROJECT / "roles" / "flask_uwsgi" / "defaults" / "main.yml"
DEMO = PROJECT / "examples" / "flask-demo"
CALLBACK_PLUGINS = PROJECT / "molecule" / "shared" / "callback_plugins"

# Runs inside the test host: one GET over HTTP or the uwsgi protocol (what nginx's uwsgi_pass
# speaks), printing the status line, a blank line and the body. Written apart from the role's own
# probe module so that a bug there cannot hide here.
CLIENT = r"""
import socket, struct, sys
address, protocol, path = sys.argv[1:4]
if address.startswith("/"):
    sock = socket.socket(socket.AF_UNIX)
    sock.connect(address)
else:
    host, _, port = address.rpartition(":")
    sock = socket.create_connection((host if host not in ("", "0.0.0.0") else "127.0.0.1", int(port)))
sock.settimeout(30)
if protocol == "uwsgi":
    path_info, _, query = path.partition("?")
    env = {"REQUEST_METHOD": "GET", "REQUEST_URI": path, "PATH_INFO": path_info, "QUERY_STRING": query,
           "SERVER_PROTOCOL": "HTTP/1.1", "SERVER_NAME": "test", "SERVER_PORT": "80", "HTTP_HOST": "test"}
    data = b"".join(struct.pack("<H", len(k)) + k.encode() + struct.pack("<H", len(v)) + v.encode()
                    for k, v in env.items())
    sock.sendall(struct.pack("<BHB", 0, len(data), 0) + data)
else:
    sock.sendall(f"GET {path} HTTP/1.0\r\nHost: test\r\n\r\n".encode())
answer = b""
while chunk := sock.recv(65536):
    answer += chunk
head, _, body = answer.partition(b"\r\n\r\n")
print(head.split(b"\r\n")[0].decode())
print()
print(body.decode())
"""


# uWSGI replaces no worker younger than this on a limit (min-worker-lifetime, 10 s by default).
MIN_WORKER_LIFETIME = 10

# Runs inside a test host, across a deploy: `clients` threads send GET / to 127.0.0.1:port over
# HTTP or HTTPS (one connection each, 10 ms apart) until the stop file appears, `seconds` pass or
# `most` requests were sent. Prints the count, the failures, the worst latency and how many answers
# each release gave. Over HTTPS it does not verify the certificate: the TLS tests check that apart.
LOADGEN = r"""
import http.client, json, os, ssl, sys, threading, time
port, clients, seconds, most = (int(arg) for arg in sys.argv[1:5])
stop_file, scheme = sys.argv[5], sys.argv[6] if len(sys.argv) > 6 else "http"
deadline, lock = time.monotonic() + seconds, threading.Lock()
stats = {"requests": 0, "failed": 0, "worst_ms": 0.0, "errors": [], "answers": {}}
def client():
    while time.monotonic() < deadline and not os.path.exists(stop_file):
        with lock:
            if stats["requests"] >= most:
                return
            stats["requests"] += 1
        start = time.monotonic()
        try:
            if scheme == "https":
                conn = http.client.HTTPSConnection(
                    "127.0.0.1", port, timeout=60, context=ssl._create_unverified_context())
            else:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            conn.request("GET", "/")
            response = conn.getresponse()
            ok, answer = response.status == 200, response.read().decode().split(" (pid")[0]
            conn.close()
        except Exception as error:
            ok, answer = False, repr(error)
        took = (time.monotonic() - start) * 1000
        with lock:
            stats["worst_ms"] = max(stats["worst_ms"], took)
            if ok:
                stats["answers"][answer] = stats["answers"].get(answer, 0) + 1
            else:
                stats["failed"] += 1
                stats["errors"] = (stats["errors"] + [answer])[:5]
        time.sleep(0.01)
threads = [threading.Thread(target=client) for _ in range(clients)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print(json.dumps(stats))
"""

T = TypeVar("T")


def load_during(host: Any, port: int, action: Callable[[], T], scheme: str = "http") -> tuple[T, dict[str, Any]]:
    """Run action() while the load generator sends GET / to 127.0.0.1:port in the host (scheme http or https).

    The load starts 2 s before and stops 2 s after; it is bounded to 300 s and 100,000 requests.
    Returns what action returned and the load's figures, with a printable summary under "figures".
    """
    result, [stats] = load_on_each_during([host], port, action, scheme)
    return result, stats


def load_on_each_during(
    hosts: list[Any], port: int, action: Callable[[], T], scheme: str = "http"
) -> tuple[T, list[dict[str, Any]]]:
    """load_during, with a load generator in each of the hosts at once; the figures in the hosts' order."""
    stop_file = "/tmp/loadgen.stop"
    for host in hosts:
        host.run(f"rm -f {stop_file}")
    with ThreadPoolExecutor(len(hosts)) as pool:
        loads = [pool.submit(run_load, host, port, 4, 300, 100_000, stop_file, scheme) for host in hosts]
        time.sleep(2)
        result = action()
        time.sleep(2)
        for host in hosts:
            host.run(f"touch {stop_file}")
        return result, [load.result() for load in loads]


def run_load(
    host: Any, port: int, clients: int, seconds: int, most: int, stop_file: str = "/nonexistent", scheme: str = "http"
) -> dict[str, Any]:
    """Run the load generator in the host until it stops (see LOADGEN); return its figures, with a
    printable summary under "figures"."""
    args = [str(arg) for arg in (port, clients, seconds, most)]
    out = host.check_output("python3 -c %s %s %s %s %s %s %s", LOADGEN, *args, stop_file, scheme)
    stats = json.loads(out)
    requests, failed, worst = stats["requests"], stats["failed"], stats["worst_ms"]
    stats["figures"] = f"{requests} requests, {failed} failed, worst latency {worst:.0f} ms"
    return stats


def ansible_env(**settings: str) -> dict[str, str]:
    """The environment the project's playbooks run in, from tests and benchmarks: the project's
    ansible.cfg, plain text to read, ansible-playbook from this interpreter's virtualenv, and settings."""
    # Molecule sets ANSIBLE_FORCE_COLOR, which beats NOCOLOR.
    env = {key: value for key, value in os.environ.items() if key != "ANSIBLE_FORCE_COLOR"}
    env.update({"ANSIBLE_CONFIG": str(PROJECT / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1", **settings})
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


@dataclass
class Play:
    """What a run of ansible-playbook printed, and how each task ended, read from the JSON lines of
    the task_outcomes callback (molecule/shared/callback_plugins), not from the coloured text."""

    returncode: int
    stdout: str
    stderr: str
    events: list[dict[str, Any]]

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def run_playbook(
    playbook: str, extra_vars: dict[str, Any], tmp_path: Path, *options: str, cwd: Path = PROJECT, **settings: str
) -> Play:
    """Run one of the project's playbooks against the scenario's inventory; return what it printed
    and how its tasks ended. options go to ansible-playbook as they are, e.g. "--check", "--diff";
    settings are environment variables (ANSIBLE_CONFIG=..., say), for a run from cwd."""
    vars_file = tmp_path / "vars.json"
    vars_file.write_text(json.dumps(extra_vars))
    outcomes = tmp_path / f"outcomes-{time.monotonic_ns()}.jsonl"
    inventory = Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent
    env = ansible_env(
        ANSIBLE_CALLBACK_PLUGINS=str(CALLBACK_PLUGINS),
        ANSIBLE_CALLBACKS_ENABLED="task_outcomes",
        FLASK_UWSGI_TASK_OUTCOMES=str(outcomes),
        **settings,
    )
    result = subprocess.run(
        ["ansible-playbook", "-i", str(inventory), playbook, "-e", f"@{vars_file}", *options],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    events = [json.loads(line) for line in outcomes.read_text().splitlines()] if outcomes.exists() else []
    return Play(result.returncode, result.stdout, result.stderr, events)


# Extra vars that deploy every host of the scenario in one batch (playbooks/deploy.yml's serial), so
# that one play deploys to every release the scenario has.
ONE_BATCH = {"flask_uwsgi_serial": "100%"}


def deploy(tmp_path: Path, extra_vars: dict[str, Any], *options: str) -> Play:
    """Run playbooks/deploy.yml with these settings (and ansible-playbook options)."""
    return run_playbook("playbooks/deploy.yml", extra_vars, tmp_path, *options)


def task_runs(play: Play, task: str) -> list[dict[str, str]]:
    """How each run of the tasks whose name holds `task` ended, host by host: one
    {host: ok|changed|skipping|failed|unreachable} per run (a play with serial runs a task once per
    batch). Fails when no task has that name, so that a renamed task cannot pass a test unchecked."""
    runs = _runs(play, task)
    assert play.events, f"the play recorded no task outcomes:\n{play.output[-3000:]}"
    assert runs, f"no task named like {task!r} in the play"
    return runs


def _runs(play: Play, task: str) -> list[dict[str, str]]:
    runs: list[dict[str, str]] = []
    current: dict[str, str] | None = None
    for event in play.events:
        if event["event"] == "task":
            current = {} if task in event["task"] else None
            if current is not None:
                runs.append(current)
        elif event["event"] == "outcome" and current is not None:
            current[event["host"]] = event["outcome"]
    return runs


def task_outcome(play: Play, task: str) -> str:
    """How the first task whose name holds `task` ended in a play on one host: ok, changed, skipping or failed."""
    [(_, outcome)] = task_runs(play, task)[0].items()
    return outcome


def not_run(play: Play, task: str) -> bool:
    """Whether no host ran the tasks whose name holds `task`: skipped, or not even read, since the role
    includes some steps' task files only when they have work (a build, workers). Fails when the
    role has no task of that name, so that a renamed task cannot pass a test unchecked."""
    tasks = "\n".join(path.read_text() for path in (PROJECT / "roles").glob("*/tasks/*.yml"))
    assert re.search(r"^ *- name: .*" + re.escape(task), tasks, re.MULTILINE), (
        f"the role has no task named like {task!r}"
    )
    names = [event["task"] for event in play.events if event["event"] == "task"]
    assert names, f"the play recorded no tasks:\n{play.output[-3000:]}"
    return all(run == {} or set(run.values()) == {"skipping"} for run in _runs(play, task))


def recap(play: Play) -> dict[str, dict[str, int]]:
    """The play's recap per host, as its PLAY RECAP counts: {host: {"ok": 3, "changed": 0, "failed": 1, ...}}."""
    counts = {
        event["host"]: {key: value for key, value in event.items() if key not in ("event", "host")}
        for event in play.events
        if event["event"] == "stats"
    }
    assert counts, f"no recap in the play's outcomes:\n{play.output[-3000:]}"
    return counts


def demo_release(tmp_path: Path, name: str, *, before: str = "", after: str = "") -> Path:
    """A copy of the demo app whose greeting names the release, with code put before or after its own."""
    release = tmp_path / name
    shutil.copytree(DEMO, release)
    app_py = release / "app.py"
    code = app_py.read_text().replace("Hello from flask-demo (pid", f"Hello from flask-demo {name} (pid")
    app_py.write_text(before + code + after)
    return release


def new_dependencies(release: Path) -> Path:
    """The release with a changed requirements file (the same packages): it gets a virtualenv of its own."""
    requirements = release / "requirements.txt"
    requirements.write_text(requirements.read_text() + f"# {release.name}: the same packages, in a changed file\n")
    return release


def exposure(host: Any, unit: str) -> float:
    """The overall exposure level systemd-analyze security gives the unit (0 is best, 10 worst)."""
    report = host.check_output(f"systemd-analyze security {unit} --no-pager")
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", report)
    assert match, report
    return float(match.group(1))


# The exporter of flask_uwsgi_exporter, as the role's defaults have it.
EXPORTER_UNIT = "flask-uwsgi-exporter.service"
EXPORTER_PORT = 9117
SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>.*)\})? (?P<value>\S+)$")
LABEL = re.compile(r'(?P<key>[a-zA-Z_]\w*)="(?P<value>(?:[^"\\]|\\.)*)",?')


@dataclass
class Metrics:
    """One scrape of the host's exporter: its samples, each a name, its labels and its value."""

    samples: list[tuple[str, dict[str, str], float]]

    def find(self, name: str, **labels: str) -> list[float]:
        return [
            value
            for sample, its_labels, value in self.samples
            if sample == name and all(its_labels.get(key) == want for key, want in labels.items())
        ]

    def sum(self, name: str, **labels: str) -> float:
        """The sum of the samples of that name with those labels; fails when there is none."""
        found = self.find(name, **labels)
        assert found, f"no {name} with {labels} in the exporter's answer"
        return sum(found)


def scrape(host: Any, port: int = EXPORTER_PORT) -> Metrics:
    """GET /metrics of the host's exporter, from inside the host, parsed."""
    text = host.check_output(
        "python3 -c %s %s",
        "import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=10).read().decode())",
        f"http://127.0.0.1:{port}/metrics",
    )
    samples = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = SAMPLE.match(line)
        assert match, f"not a sample of the Prometheus text format: {line!r}"
        labels = {m["key"]: m["value"] for m in LABEL.finditer(match["labels"] or "")}
        samples.append((match["name"], labels, float(match["value"])))
    return Metrics(samples)


def request_in_host(host: Any, address: str, path: str = "/", protocol: str = "http") -> tuple[str, str]:
    """One GET from inside the host to address (host:port or a unix socket); its status line and body."""
    out = host.check_output("python3 -c %s %s %s %s", CLIENT, address, protocol, path)
    status, _, body = out.partition("\n\n")
    return status, body


def resolve(settings: dict[str, Any]) -> dict[str, Any]:
    """Render the templated defaults (e.g. "/run/{{ flask_uwsgi_app_name }}/uwsgi.pid") with the settings."""
    env = jinja2.Environment(undefined=jinja2.ChainableUndefined)
    # The one lookup the defaults use: lookup('env', NAME), the controller's environment.
    env.globals["lookup"] = lambda plugin, name: os.environ.get(name, "") if plugin.endswith("env") else ""
    for _ in range(4):
        settings = {
            key: env.from_string(value).render(settings) if isinstance(value, str) else value
            for key, value in settings.items()
        }
    return settings


@dataclass
class App:
    """The deployed app as a user sees it: its settings, its service and its answers."""

    host: Any
    vars: dict[str, Any]

    @property
    def name(self) -> str:
        return self.vars["flask_uwsgi_app_name"]

    @property
    def unit(self) -> str:
        return f"{self.vars['flask_uwsgi_service_name']}.service"

    @property
    def socket_unit(self) -> str:
        return f"{self.vars['flask_uwsgi_service_name']}.socket"

    @property
    def ini(self) -> str:
        return f"/etc/flask_uwsgi/{self.name}.ini"

    @property
    def address(self) -> tuple[str, str]:
        """Where the app answers and in which protocol, as the role's deploy check picks it."""
        for key, protocol in (("http_socket", "http"), ("http", "http"), ("socket", "uwsgi")):
            if self.vars[f"flask_uwsgi_{key}"]:
                return self.vars[f"flask_uwsgi_{key}"], protocol
        raise AssertionError("the scenario sets no address")

    def show(self, prop: str) -> str:
        return self.host.check_output(f"systemctl show {self.unit} --property {prop} --value")

    def main_pid(self) -> int:
        return int(self.show("MainPID"))

    def current_release(self) -> str:
        """The release directory the `current` link points at."""
        return self.host.check_output(f"readlink {self.vars['flask_uwsgi_base_dir']}/current")

    def workers(self) -> list[int]:
        """PIDs of the master's children."""
        out = self.host.run(f"ps --ppid {self.main_pid()} -o pid=").stdout
        return sorted(int(pid) for pid in out.split())

    def stop(self) -> float:
        """systemctl stop; the seconds it took, timed in the host, so that the test's own call into the
        host (a docker exec, slower on a busy machine) is not counted."""
        out = self.host.check_output(
            f"start=$(date +%s%N) && systemctl stop {self.unit} && echo $(($(date +%s%N) - start))"
        )
        return int(out.split()[-1]) / 1e9

    def get(self, path: str = "/") -> tuple[str, str]:
        """One GET to the app; returns its status line and body."""
        address, protocol = self.address
        return request_in_host(self.host, address, path, protocol)

    def wait_until(self, check: Any, timeout: float, what: str) -> float:
        """Poll check() until it is true; return the seconds it took, or fail after timeout."""
        start = time.monotonic()
        while True:
            try:
                if check():
                    return time.monotonic() - start
            except (AssertionError, RuntimeError):
                pass
            if time.monotonic() - start > timeout:
                journal = self.host.run(f"journalctl --unit {self.unit} --lines 30 --no-pager").stdout
                pytest.fail(f"{what}: not within {timeout} s. Journal:\n{journal}")
            time.sleep(0.2)

    def wait_for_workers_past_min_lifetime(self) -> None:
        """Wait until every worker is old enough for uWSGI to replace it on a limit."""

        def old_enough() -> bool:
            ages = [int(self.host.check_output(f"ps -o etimes= -p {pid}")) for pid in self.workers()]
            return bool(ages) and min(ages) > MIN_WORKER_LIFETIME

        self.wait_until(old_enough, timeout=MIN_WORKER_LIFETIME + 20, what="the workers pass min-worker-lifetime")

    def run_playbook(self, playbook: str, extra_vars: dict[str, Any], tmp_path: Path, *options: str) -> Any:
        """Run one of the project's playbooks against this app's host only (the scenario may have more)."""
        return run_playbook(playbook, extra_vars, tmp_path, "--limit", self.host.backend.host, *options)

    def deploy(self, tmp_path: Path, extra_vars: dict[str, Any], *options: str) -> Any:
        """Run playbooks/deploy.yml against this app's host only, with these settings."""
        return self.run_playbook("playbooks/deploy.yml", extra_vars, tmp_path, *options)

    def debian(self) -> int:
        """The host's Debian major version."""
        return int(self.host.file("/etc/debian_version").content_string.split(".")[0])

    def answers(self) -> bool:
        status, body = self.get("/")
        return status.endswith("200 OK") and "Hello from flask-demo" in body


def scenario_hosts(pattern: str) -> list[Any]:
    """The testinfra hosts of the scenario's inventory that an Ansible host pattern names, by name."""
    inventory = os.environ["MOLECULE_INVENTORY_FILE"]
    hosts = testinfra.get_hosts([f"ansible://{pattern}?ansible_inventory={inventory}"])
    assert hosts, f"no host in the scenario's inventory matches {pattern!r}"
    return sorted(hosts, key=lambda host: host.backend.host)


def host_settings(host: Any, **own: Any) -> dict[str, Any]:
    """An app's settings: the role's defaults, then the host's inventory, then own (a play's role vars)."""
    settings = yaml.safe_load(ROLE_DEFAULTS.read_text())
    settings.update({k: v for k, v in host.ansible.get_variables().items() if k.startswith("flask_uwsgi_")})
    return resolve({**settings, **own})


@pytest.fixture(scope="module")
def app(host: Any) -> App:
    return App(host=host, vars=host_settings(host))
