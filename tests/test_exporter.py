"""The uWSGI exporter (roles/flask_uwsgi_exporter/files), run as a program against fake uWSGI stats servers."""

from __future__ import annotations

import http.client
import json
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROGRAM = ROOT / "roles" / "flask_uwsgi_exporter" / "files" / "flask_uwsgi_exporter.py"
SAMPLE_STATS = (Path(__file__).parent / "data" / "uwsgi-stats.json").read_bytes()

# The families the exporter emits for an app that is up, and for itself (names as in timonwong/uwsgi_exporter).
APP_FAMILIES = {
    "uwsgi_up",
    "uwsgi_listen_queue_length",
    "uwsgi_listen_queue_errors",
    "uwsgi_signal_queue_length",
    "uwsgi_workers",
    "uwsgi_socket_queue_length",
    "uwsgi_socket_max_queue_length",
    "uwsgi_socket_shared",
    "uwsgi_socket_can_offload",
    "uwsgi_worker_accepting",
    "uwsgi_worker_delta_requests",
    "uwsgi_worker_signal_queue_length",
    "uwsgi_worker_rss_bytes",
    "uwsgi_worker_vsz_bytes",
    "uwsgi_worker_running_time_seconds",
    "uwsgi_worker_last_spawn_time_seconds",
    "uwsgi_worker_average_response_time_seconds",
    "uwsgi_worker_busy",
    "uwsgi_worker_idle",
    "uwsgi_worker_cheap",
    "uwsgi_worker_requests_total",
    "uwsgi_worker_exceptions_total",
    "uwsgi_worker_harakiri_count_total",
    "uwsgi_worker_signals_total",
    "uwsgi_worker_respawn_count_total",
    "uwsgi_worker_transmitted_bytes_total",
}
EXPORTER_FAMILIES = {
    "uwsgi_exporter_scrape_duration_seconds",
    "uwsgi_exporter_scrapes_total",
    "uwsgi_exporter_scrape_errors_total",
    "uwsgi_exporter_build_info",
}

# The text exposition format, version 0.0.4.
NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
SAMPLE_LINE = re.compile(rf"(?P<name>{NAME})(?:\{{(?P<labels>.*)\}})? (?P<value>\S+)")
LABEL_PAIR = re.compile(r'(?P<key>[a-zA-Z_][a-zA-Z0-9_]*)="(?P<value>(?:[^"\\\n]|\\[\\"n])*)"(?:,|$)')
VALUE = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?|NaN|[-+]Inf")
HELP_LINE = re.compile(rf"# HELP (?P<name>{NAME}) (?P<text>(?:[^\\\n]|\\[\\n])*)")
TYPE_LINE = re.compile(rf"# TYPE (?P<name>{NAME}) (?P<type>counter|gauge|histogram|summary|untyped)")


def unescape(value: str) -> str:
    return re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), value)


def parse_labels(text: str) -> dict[str, str]:
    labels, pos = {}, 0
    while pos < len(text):
        pair = LABEL_PAIR.match(text, pos)
        assert pair, f"bad labels at {text[pos:]!r}"
        assert pair["key"] not in labels
        labels[pair["key"]] = unescape(pair["value"])
        pos = pair.end()
    return labels


@dataclass
class Scrape:
    """One /metrics answer, checked line by line, then its samples by family."""

    text: str
    types: dict[str, str] = field(default_factory=dict)
    samples: list[tuple[str, dict[str, str], float]] = field(default_factory=list)

    def __post_init__(self) -> None:
        assert self.text.endswith("\n")
        family, help_seen = None, set()
        for line in self.text.splitlines():
            if line.startswith("# HELP "):
                match = HELP_LINE.fullmatch(line)
                assert match, line
                assert match["name"] not in help_seen, f"family {match['name']} twice"
                help_seen.add(match["name"])
                family = None
            elif line.startswith("# TYPE "):
                match = TYPE_LINE.fullmatch(line)
                assert match, line
                assert match["name"] in help_seen, f"TYPE before HELP: {line}"
                assert match["name"] not in self.types, f"family {match['name']} twice"
                family = match["name"]
                self.types[family] = match["type"]
            else:
                match = SAMPLE_LINE.fullmatch(line)
                assert match, f"not a sample: {line!r}"
                assert match["name"] == family, f"sample outside its family (no HELP/TYPE just before): {line}"
                assert VALUE.fullmatch(match["value"]), line
                labels = parse_labels(match["labels"] or "")
                assert all((match["name"], labels) != (name, seen) for name, seen, _ in self.samples), line
                self.samples.append((match["name"], labels, float(match["value"])))

    def find(self, family: str, /, **labels: str) -> list[tuple[dict[str, str], float]]:
        """The samples of a family whose labels include the given ones."""
        wanted = labels.items()
        return [(seen, value) for name, seen, value in self.samples if name == family and wanted <= seen.items()]

    def value(self, family: str, /, **labels: str) -> float:
        """The value of the one sample of a family whose labels include the given ones."""
        found = self.find(family, **labels)
        assert len(found) == 1, f"{family}{labels}: {found}"
        return found[0][1]

    def families(self, **labels: str) -> set[str]:
        return {name for name, seen, _ in self.samples if labels.items() <= seen.items()}


class FakeStats:
    """A uWSGI stats server on a unix socket: per connection it sends `body` and closes; None: it never answers.

    With `trickle`, it sends the body one byte every `trickle` seconds: each read gets data, the whole never ends.
    """

    def __init__(self, path: Path, body: bytes | None, trickle: float = 0) -> None:
        self.path, self.body, self.trickle, self.held = path, body, trickle, []
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(str(path))
        self.listener.listen(16)
        self.listener.settimeout(0.05)
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        while not self.stopped.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            if self.body is None:
                self.held.append(conn)  # accepted, never answered, never closed (until stop)
                continue
            with conn:
                self.send(conn, self.body)

    def send(self, conn: socket.socket, body: bytes) -> None:
        if not self.trickle:
            conn.sendall(body)
            return
        for byte in body:
            if self.stopped.is_set():
                return
            try:
                conn.sendall(bytes([byte]))
            except OSError:
                return  # the client gave up
            time.sleep(self.trickle)

    def stop(self) -> None:
        """Stop listening but leave the socket file, as while uWSGI re-executes: clients get ECONNREFUSED."""
        if not self.stopped.is_set():
            self.stopped.set()
            self.thread.join()
            self.listener.close()
            for conn in self.held:
                conn.close()


@dataclass
class Exporter:
    process: subprocess.Popen
    address: str
    port: int
    stderr_path: Path

    def get(self, path: str) -> tuple[int, str, str]:
        conn = http.client.HTTPConnection(self.address, self.port, timeout=10)
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            return response.status, response.getheader("Content-Type", ""), response.read().decode()
        finally:
            conn.close()

    def scrape(self) -> Scrape:
        status, _, body = self.get("/metrics")
        assert status == 200
        return Scrape(body)

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def register(apps_dir: Path, app: str, stats: Path, filename: str | None = None) -> Path:
    """Write the file the flask_uwsgi role writes for an app, {"app", "stats"}, by default <app>.json."""
    path = apps_dir / (filename or f"{app}.json")
    path.write_text(json.dumps({"app": app, "stats": str(stats)}))
    return path


@pytest.fixture
def apps_dir(tmp_path: Path) -> Path:
    path = tmp_path / "exporter.d"
    path.mkdir()
    return path


@pytest.fixture
def stats_server(tmp_path: Path) -> Iterator[Callable[..., FakeStats]]:
    servers: list[FakeStats] = []

    def start(name: str, body: bytes | None = SAMPLE_STATS, trickle: float = 0) -> FakeStats:
        servers.append(FakeStats(tmp_path / f"{name}.sock", body, trickle))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def start_exporter(tmp_path: Path, apps_dir: Path) -> Iterator[Callable[..., Exporter]]:
    """Start the program; wait until it answers; always stop it at the end."""
    started: list[Exporter] = []

    def start(timeout: float = 2, address: str = "127.0.0.1", apps: Path = apps_dir) -> Exporter:
        port, stderr_path = free_port(), tmp_path / f"exporter-{len(started)}.err"
        args = ["--apps-dir", str(apps), "--address", address, "--port", str(port), "--timeout", str(timeout)]
        with stderr_path.open("wb") as stderr:
            process = subprocess.Popen([sys.executable, "-I", str(PROGRAM), *args], stderr=stderr)
        exporter = Exporter(process, address, port, stderr_path)
        started.append(exporter)
        deadline = time.monotonic() + 10
        while True:
            assert process.poll() is None, f"the exporter exited: {exporter.stderr}"
            try:
                if exporter.get("/")[0] == 200:
                    return exporter
            except OSError:
                assert time.monotonic() < deadline, "the exporter did not answer within 10 s"
                time.sleep(0.05)

    yield start
    for exporter in started:
        exporter.process.terminate()
        try:
            exporter.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            exporter.process.kill()
            exporter.process.wait()


def test_metrics_follow_the_stats_document(
    apps_dir: Path, stats_server: Callable[..., FakeStats], start_exporter: Callable[..., Exporter]
) -> None:
    server = stats_server("demo")
    register(apps_dir, "flask-demo", server.path)
    exporter = start_exporter()
    status, content_type, _ = exporter.get("/metrics")
    assert (status, content_type) == (200, "text/plain; version=0.0.4; charset=utf-8")
    scrape = exporter.scrape()
    worker1 = {"app": "flask-demo", "stats_uri": f"unix://{server.path}", "worker_id": "1"}
    assert scrape.families() == APP_FAMILIES | EXPORTER_FAMILIES
    assert scrape.find("uwsgi_worker_requests_total") == [(worker1, 1234), ({**worker1, "worker_id": "2"}, 567)]
    assert scrape.value("uwsgi_up", app="flask-demo", stats_uri=f"unix://{server.path}") == 1
    assert scrape.value("uwsgi_workers", app="flask-demo") == 2
    assert scrape.value("uwsgi_worker_running_time_seconds", worker_id="1") == 2.5
    assert scrape.value("uwsgi_worker_running_time_seconds", worker_id="2") == 0.75
    assert scrape.value("uwsgi_worker_average_response_time_seconds", worker_id="1") == 0.0015
    assert scrape.value("uwsgi_worker_transmitted_bytes_total", worker_id="1") == 987654
    assert scrape.value("uwsgi_worker_harakiri_count_total", worker_id="1") == 1
    assert scrape.value("uwsgi_worker_last_spawn_time_seconds", worker_id="2") == 1735689500
    assert [scrape.value(f"uwsgi_worker_{s}", worker_id="1") for s in ("busy", "idle", "cheap")] == [1, 0, 0]
    assert [scrape.value(f"uwsgi_worker_{s}", worker_id="2") for s in ("busy", "idle", "cheap")] == [0, 1, 0]
    assert not [s for s in scrape.samples if s[1].get("worker_id") == "0"]
    # The socket listed twice comes out once, with the first entry's values.
    assert scrape.value("uwsgi_socket_queue_length", name="/run/flask-demo/app.sock", proto="uwsgi") == 0
    assert scrape.value("uwsgi_socket_queue_length", name="127.0.0.1:8001", proto="http") == 3
    assert scrape.value("uwsgi_socket_can_offload", name="127.0.0.1:8001") == 1
    assert scrape.value("uwsgi_exporter_scrape_errors_total", app="flask-demo") == 0
    assert 0 <= scrape.value("uwsgi_exporter_scrape_duration_seconds", app="flask-demo") < 2
    assert scrape.value("uwsgi_exporter_build_info") == 1
    assert scrape.find("uwsgi_exporter_build_info")[0][0]["version"]
    assert {name: kind for name, kind in scrape.types.items() if kind == "counter"} == {
        name: "counter" for name in scrape.types if name.endswith("_total")
    }
    # Integers come out as integers, fractions in full.
    assert f'uwsgi_worker_rss_bytes{{app="flask-demo",stats_uri="unix://{server.path}",worker_id="1"}} 52428800\n' in (
        scrape.text
    )
    assert exporter.scrape().value("uwsgi_exporter_scrapes_total") == 3  # the two scrapes above, and this one


def test_an_app_that_is_down_has_only_up_0(
    apps_dir: Path, stats_server: Callable[..., FakeStats], start_exporter: Callable[..., Exporter], tmp_path: Path
) -> None:
    register(apps_dir, "a", stats_server("a").path)
    register(apps_dir, "b", tmp_path / "nothing-here.sock")
    exporter = start_exporter()
    for errors in (1, 2):
        scrape = exporter.scrape()
        assert scrape.value("uwsgi_up", app="a") == 1
        assert scrape.value("uwsgi_up", app="b", stats_uri=f"unix://{tmp_path}/nothing-here.sock") == 0
        assert scrape.families(app="b") == {
            "uwsgi_up",
            "uwsgi_exporter_scrape_duration_seconds",
            "uwsgi_exporter_scrape_errors_total",
        }
        assert scrape.value("uwsgi_exporter_scrape_errors_total", app="b") == errors
        assert scrape.value("uwsgi_exporter_scrape_errors_total", app="a") == 0
        assert scrape.value("uwsgi_workers", app="a") == 2


def test_the_apps_dir_is_read_at_every_scrape(
    apps_dir: Path, stats_server: Callable[..., FakeStats], start_exporter: Callable[..., Exporter]
) -> None:
    first = register(apps_dir, "first", stats_server("first").path)
    exporter = start_exporter()
    assert {labels["app"] for labels, _ in exporter.scrape().find("uwsgi_up")} == {"first"}
    register(apps_dir, "second", stats_server("second").path)
    scrape = exporter.scrape()
    assert {labels["app"]: value for labels, value in scrape.find("uwsgi_up")} == {"first": 1, "second": 1}
    assert scrape.value("uwsgi_workers", app="second") == 2
    first.unlink()
    scrape = exporter.scrape()
    assert {labels["app"] for labels, _ in scrape.find("uwsgi_up")} == {"second"}
    assert not [s for s in scrape.samples if s[1].get("app") == "first"]


def test_a_stuck_app_costs_one_timeout_and_does_not_hide_the_others(
    apps_dir: Path, stats_server: Callable[..., FakeStats], start_exporter: Callable[..., Exporter]
) -> None:
    register(apps_dir, "good", stats_server("good").path)
    register(apps_dir, "stuck1", stats_server("stuck1", None).path)
    register(apps_dir, "stuck2", stats_server("stuck2", trickle=0.2).path)  # the deadline is for the whole read
    register(apps_dir, "stuck3", stats_server("stuck3", None).path)
    exporter = start_exporter(timeout=1)
    start = time.monotonic()
    scrape = exporter.scrape()
    elapsed = time.monotonic() - start
    # Read one after another, the three would take 3 s.
    assert 0.9 <= elapsed < 2.5, "the stuck apps are read at once, each within --timeout"
    up = {labels["app"]: value for labels, value in scrape.find("uwsgi_up")}
    assert up == {"good": 1, "stuck1": 0, "stuck2": 0, "stuck3": 0}
    only_up = {"uwsgi_up", "uwsgi_exporter_scrape_duration_seconds", "uwsgi_exporter_scrape_errors_total"}
    assert scrape.families(app="stuck1") == scrape.families(app="stuck2") == only_up
    assert "stuck1: down (TimeoutError" in exporter.stderr


def test_bad_stats_and_bad_registry_files(
    apps_dir: Path, stats_server: Callable[..., FakeStats], start_exporter: Callable[..., Exporter]
) -> None:
    register(apps_dir, "good", stats_server("good").path)
    register(apps_dir, "garbage", stats_server("garbage", b'{"workers": [{"id": 1,').path)
    register(apps_dir, "array", stats_server("array", b"[1, 2]").path)
    register(apps_dir, "empty", stats_server("empty", b"").path)
    (apps_dir / "broken.json").write_text('{"app": "broken", ')
    (apps_dir / "incomplete.json").write_text('{"app": "incomplete"}')
    (apps_dir / "numbers.json").write_text('{"app": "numbers", "stats": 3}')
    (apps_dir / "list.json").write_text("[]")
    register(apps_dir, "good", stats_server("other").path, filename="twice.json")  # the same app name again
    register(apps_dir, "notes", stats_server("notes").path, filename="notes.txt")  # not a .json file
    register(apps_dir, "temporary", stats_server("tmp").path, filename=".ansible_tmp1234good.json")
    exporter = start_exporter()
    for _ in range(2):
        scrape = exporter.scrape()
        ups = {labels["app"]: value for labels, value in scrape.find("uwsgi_up")}
        assert ups == {"array": 0, "empty": 0, "garbage": 0, "good": 1}
        assert scrape.value("uwsgi_up", app="good", stats_uri=f"unix://{apps_dir.parent}/good.sock") == 1
    for name in ("broken", "incomplete", "numbers", "list", "twice"):
        assert exporter.stderr.count(f"{name}.json: ignored") == 1, exporter.stderr
    assert "garbage: down (JSONDecodeError" in exporter.stderr


def test_missing_or_odd_keys_only_skip_their_samples(
    apps_dir: Path, stats_server: Callable[..., FakeStats], start_exporter: Callable[..., Exporter]
) -> None:
    sparse = {"workers": [{"id": 1, "requests": 3, "status": "idle"}, {"requests": 9}], "sockets": [{"name": "s"}]}
    odd = {"workers": "none", "sockets": [1, "x"], "listen_queue": "3", "signal_queue": None, "listen_queue_errors": 0}
    register(apps_dir, "sparse", stats_server("sparse", json.dumps(sparse).encode()).path)
    register(apps_dir, "odd", stats_server("odd", json.dumps(odd).encode()).path)
    scrape = start_exporter().scrape()
    assert scrape.value("uwsgi_up", app="sparse") == scrape.value("uwsgi_up", app="odd") == 1
    assert scrape.find("uwsgi_worker_requests_total") == [
        ({"app": "sparse", "stats_uri": f"unix://{apps_dir.parent}/sparse.sock", "worker_id": "1"}, 3)
    ]
    assert scrape.value("uwsgi_worker_idle", app="sparse") == 1
    assert scrape.value("uwsgi_workers", app="sparse") == 1
    assert scrape.families(app="sparse") == {
        "uwsgi_up",
        "uwsgi_workers",
        "uwsgi_worker_requests_total",
        "uwsgi_worker_busy",
        "uwsgi_worker_idle",
        "uwsgi_worker_cheap",
        "uwsgi_exporter_scrape_duration_seconds",
        "uwsgi_exporter_scrape_errors_total",
    }
    assert scrape.families(app="odd") == {
        "uwsgi_up",
        "uwsgi_listen_queue_errors",
        "uwsgi_exporter_scrape_duration_seconds",
        "uwsgi_exporter_scrape_errors_total",
    }


def test_label_values_are_escaped(
    apps_dir: Path, stats_server: Callable[..., FakeStats], start_exporter: Callable[..., Exporter]
) -> None:
    name = 'we"ird\\app\nnext'
    server = stats_server('s"\\')
    register(apps_dir, name, server.path, filename="weird.json")
    scrape = start_exporter().scrape()
    assert f'uwsgi_up{{app="we\\"ird\\\\app\\nnext",stats_uri="unix://{apps_dir.parent}/s\\"\\\\.sock"}} 1\n' in (
        scrape.text
    )
    assert scrape.value("uwsgi_up", app=name, stats_uri=f"unix://{server.path}") == 1
    assert scrape.value("uwsgi_exporter_scrape_errors_total", app=name) == 0


def test_http_routes(start_exporter: Callable[..., Exporter]) -> None:
    exporter = start_exporter()
    status, _, body = exporter.get("/")
    assert status == 200
    assert "/metrics" in body
    assert exporter.get("/nope")[0] == 404
    assert exporter.get("/metrics/x")[0] == 404
    assert exporter.get("/metrics?debug=1")[0] == 200
    assert '" 200 ' not in exporter.stderr  # successful requests are not logged
    assert '"GET /nope HTTP/1.1" 404' in exporter.stderr


def test_no_apps_dir_means_no_apps(start_exporter: Callable[..., Exporter], tmp_path: Path) -> None:
    scrape = start_exporter(apps=tmp_path / "missing").scrape()
    assert scrape.families() == {"uwsgi_exporter_scrapes_total", "uwsgi_exporter_build_info"}


def test_listens_on_ipv6(start_exporter: Callable[..., Exporter]) -> None:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback here")
    assert start_exporter(address="::1").scrape().value("uwsgi_exporter_build_info") == 1


def test_sigterm_stops_it_cleanly(start_exporter: Callable[..., Exporter]) -> None:
    exporter = start_exporter()
    exporter.scrape()
    exporter.process.send_signal(signal.SIGTERM)
    assert exporter.process.wait(timeout=5) == 0


def test_logs_only_when_an_app_goes_up_or_down(
    apps_dir: Path, stats_server: Callable[..., FakeStats], start_exporter: Callable[..., Exporter]
) -> None:
    server = stats_server("demo")
    register(apps_dir, "flask-demo", server.path)
    exporter = start_exporter()
    assert exporter.scrape().value("uwsgi_up", app="flask-demo") == 1
    server.stop()
    for _ in range(3):
        assert exporter.scrape().value("uwsgi_up", app="flask-demo") == 0
    lines = exporter.stderr.splitlines()
    assert [line for line in lines if line.startswith("flask-demo:")] == [
        "flask-demo: up",
        "flask-demo: down (ConnectionRefusedError: [Errno 111] Connection refused)",
    ]
    server.path.unlink()
    stats_server("demo")
    assert exporter.scrape().value("uwsgi_up", app="flask-demo") == 1
    assert exporter.stderr.splitlines()[-1] == "flask-demo: up"
