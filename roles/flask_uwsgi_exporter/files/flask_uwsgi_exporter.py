#!/usr/bin/python3
"""Prometheus exporter for the uWSGI apps that the flask_uwsgi role deploys on this host.

What it is: one small HTTP server per host. At every `GET /metrics` it reads the stats server of each app
(uWSGI's `stats` option: a unix socket where the master writes one JSON document per connection) and
answers in Prometheus' text format. The metric names, types and HELP texts are those of the well-known Go
exporter (timonwong/uwsgi_exporter), so its dashboards work; each series also carries an `app` label.

How it is run: by the systemd unit of the flask_uwsgi_exporter role, which passes every argument:
    flask_uwsgi_exporter.py --apps-dir DIR --address ADDR --port N --timeout SECONDS

What it reads: every `*.json` file of --apps-dir, `{"app": "<name>", "stats": "/run/<name>/stats/stats.sock"}`,
written by the flask_uwsgi role. The directory is read again at every scrape, so apps come and go without a
restart. An app whose socket cannot be read within --timeout seconds is reported as `uwsgi_up 0`.

Security: it reads the stats sockets as a member of their group, and it only ever reads (it connects, reads
to the end, closes). uWSGI can put the variables of requests in flight (cookies, Authorization headers) in
its stats; the role runs uWSGI with `stats-no-cores`, so they are not there, and this program never exports
anything from the per-core part of the document anyway. It needs nothing but Python's standard library.
"""

from __future__ import annotations

import argparse
import json
import math
import signal
import socket
import socketserver
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

VERSION = "1.0.0"
DEFAULT_APPS_DIR = "/etc/flask_uwsgi/exporter.d"
DEFAULT_ADDRESS = "127.0.0.1"
DEFAULT_PORT = 9117
DEFAULT_TIMEOUT = 2.0
MAX_STATS_BYTES = 16 * 1024 * 1024  # a stats document without cores is a few kB per worker
MAX_PARALLEL_READS = 16
SHUTDOWN_POLL_SECONDS = 0.1  # how soon the server notices a SIGTERM
STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}  # systemd stops with SIGTERM; Ctrl-C when run by hand
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
GAUGE, COUNTER = "gauge", "counter"

# The metrics read from one JSON key: (family, type, HELP, key, divisor to base units). uWSGI counts time in
# microseconds. Names, types and HELP texts are the Go exporter's.
APP_METRICS = [
    ("uwsgi_listen_queue_length", GAUGE, "Length of listen queue.", "listen_queue", 1),
    ("uwsgi_listen_queue_errors", GAUGE, "Number of listen queue errors.", "listen_queue_errors", 1),
    ("uwsgi_signal_queue_length", GAUGE, "Length of signal queue.", "signal_queue", 1),
]
SOCKET_METRICS = [
    ("uwsgi_socket_queue_length", GAUGE, "Length of socket queue.", "queue", 1),
    ("uwsgi_socket_max_queue_length", GAUGE, "Max length of socket queue.", "max_queue", 1),
    ("uwsgi_socket_shared", GAUGE, "Is shared socket?", "shared", 1),
    ("uwsgi_socket_can_offload", GAUGE, "Can socket offload?", "can_offload", 1),
]
WORKER_METRICS = [
    ("uwsgi_worker_accepting", GAUGE, "Is this worker accepting requests?", "accepting", 1),
    ("uwsgi_worker_delta_requests", GAUGE, "Number of delta requests", "delta_requests", 1),
    ("uwsgi_worker_signal_queue_length", GAUGE, "Length of signal queue.", "signal_queue", 1),
    ("uwsgi_worker_rss_bytes", GAUGE, "Worker RSS bytes.", "rss", 1),
    ("uwsgi_worker_vsz_bytes", GAUGE, "Worker VSZ bytes.", "vsz", 1),
    ("uwsgi_worker_running_time_seconds", GAUGE, "Worker running time in seconds.", "running_time", 1_000_000),
    ("uwsgi_worker_last_spawn_time_seconds", GAUGE, "Last spawn time in seconds since epoch.", "last_spawn", 1),
    ("uwsgi_worker_average_response_time_seconds", GAUGE, "Average response time in seconds.", "avg_rt", 1_000_000),
    ("uwsgi_worker_requests_total", COUNTER, "Total number of requests.", "requests", 1),
    ("uwsgi_worker_exceptions_total", COUNTER, "Total number of exceptions.", "exceptions", 1),
    ("uwsgi_worker_harakiri_count_total", COUNTER, "Total number of harakiri count.", "harakiri_count", 1),
    ("uwsgi_worker_signals_total", COUNTER, "Total number of signals.", "signals", 1),
    ("uwsgi_worker_respawn_count_total", COUNTER, "Total number of respawn count.", "respawn_count", 1),
    ("uwsgi_worker_transmitted_bytes_total", COUNTER, "Worker transmitted bytes.", "tx", 1),
]
# 1 when the worker's "status" is the given one (also "pause" and "sig<N>" exist: 0 on all three).
WORKER_STATUS_METRICS = [
    ("uwsgi_worker_busy", "Is core in busy?", "busy"),
    ("uwsgi_worker_idle", "Is core in idle?", "idle"),
    ("uwsgi_worker_cheap", "Is core in cheap mode?", "cheap"),
]
# Every family, in the order of the output: name -> (type, HELP).
FAMILIES: dict[str, tuple[str, str]] = {
    "uwsgi_up": (GAUGE, "Whether the uWSGI server is up."),
    **{name: (kind, text) for name, kind, text, _, _ in APP_METRICS},
    "uwsgi_workers": (GAUGE, "Number of workers."),
    **{name: (kind, text) for name, kind, text, _, _ in SOCKET_METRICS + WORKER_METRICS},
    **{name: (GAUGE, text) for name, text, _ in WORKER_STATUS_METRICS},
    "uwsgi_exporter_scrape_duration_seconds": (GAUGE, "Seconds the last read of this app's uWSGI stats took."),
    "uwsgi_exporter_scrapes_total": (COUNTER, "Total number of times uWSGI was scraped for metrics."),
    "uwsgi_exporter_scrape_errors_total": (COUNTER, "Total number of times an error occurred scraping a uWSGI."),
    "uwsgi_exporter_build_info": (GAUGE, "A metric with a constant '1' value labeled by the exporter's version."),
}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class App:
    name: str
    stats_path: str

    @property
    def stats_uri(self) -> str:
        return "unix://" + self.stats_path


@dataclass
class Reading:
    """One app's stats in one scrape: the document, or why there is none."""

    app: App
    stats: dict | None
    error: str | None
    seconds: float


class State:
    """What the exporter remembers between scrapes; shared by the request threads, hence the lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._scrapes = 0
        self._errors: dict[str, int] = {}
        self._up: dict[str, bool] = {}
        self._bad_files: dict[str, str] = {}

    def count_scrape(self) -> int:
        with self._lock:
            self._scrapes += 1
            return self._scrapes

    def note_bad_files(self, bad_files: dict[str, str]) -> None:
        """Log each ignored apps-dir file once (again only if the reason changes)."""
        with self._lock:
            for path, reason in bad_files.items():
                if self._bad_files.get(path) != reason:
                    log(f"{path}: ignored ({reason})")
            self._bad_files = bad_files

    def note_reading(self, reading: Reading) -> int:
        """Log when an app goes up or down (not at every scrape); return the app's error count."""
        name, up = reading.app.name, reading.error is None
        with self._lock:
            if self._up.get(name) != up:
                log(f"{name}: up" if up else f"{name}: down ({reading.error})")
            self._up[name] = up
            self._errors[name] = self._errors.get(name, 0) + (0 if up else 1)
            return self._errors[name]


def load_apps(apps_dir: Path, state: State) -> list[App]:
    """The apps registered in apps_dir, sorted by name; invalid files are logged and skipped."""
    apps: dict[str, App] = {}
    bad_files: dict[str, str] = {}
    # Names starting with a dot are temporary files (Ansible writes .ansible_tmp<random><name>.json first).
    for path in sorted(p for p in apps_dir.glob("*.json") if not p.name.startswith(".")):
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            bad_files[str(path)] = f"{type(exc).__name__}: {exc}"
            continue
        if not isinstance(doc, dict) or not all(isinstance(doc.get(k), str) and doc[k] for k in ("app", "stats")):
            bad_files[str(path)] = 'not a {"app": "<name>", "stats": "<socket path>"} document'
        elif doc["app"] in apps:
            bad_files[str(path)] = f"app {doc['app']!r} is already registered by another file"
        else:
            apps[doc["app"]] = App(doc["app"], doc["stats"])
    state.note_bad_files(bad_files)
    return [apps[name] for name in sorted(apps)]


def read_stats(path: str, timeout: float) -> dict:
    """Connect to a stats socket and read its JSON document, all within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    chunks: list[bytes] = []
    size = 0
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(path)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no complete answer within {timeout:g} s")
            sock.settimeout(remaining)
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
            if size > MAX_STATS_BYTES:
                raise ValueError(f"stats document larger than {MAX_STATS_BYTES} bytes")
    if not chunks:
        raise ValueError("empty answer")
    stats = json.loads(b"".join(chunks).decode("utf-8", errors="replace"))
    if not isinstance(stats, dict):
        raise ValueError("the stats document is not a JSON object")
    return stats


def read_app(app: App, timeout: float) -> Reading:
    start = time.monotonic()
    try:
        stats, error = read_stats(app.stats_path, timeout), None
    except Exception as exc:  # whatever goes wrong with one app only makes that app down
        stats, error = None, f"{type(exc).__name__}: {exc}"
    return Reading(app, stats, error, time.monotonic() - start)


def escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def format_value(value: float) -> str:
    if isinstance(value, int):
        return str(int(value))  # int() turns a JSON true/false into 1/0
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value)


def number(obj: object, key: str, divisor: int = 1) -> int | float | None:
    """obj[key] if obj is a JSON object holding a number there (divided to base units), else None."""
    value = obj.get(key) if isinstance(obj, dict) else None
    if not isinstance(value, int | float):
        return None
    return value if divisor == 1 else value / divisor


class Exposition:
    """Samples collected family by family, rendered in the text format with each family once, in order."""

    def __init__(self) -> None:
        self._samples: dict[str, list[str]] = {name: [] for name in FAMILIES}

    def add(self, family: str, labels: dict[str, str], value: float | None) -> None:
        if value is None:
            return  # a key this uWSGI version does not emit: skip the sample
        text = ",".join(f'{key}="{escape_label(val)}"' for key, val in labels.items())
        name = f"{family}{{{text}}}" if text else family
        self._samples[family].append(f"{name} {format_value(value)}")

    def render(self) -> str:
        lines = []
        for family, samples in self._samples.items():
            if samples:
                kind, help_text = FAMILIES[family]
                lines += [f"# HELP {family} {escape_help(help_text)}", f"# TYPE {family} {kind}", *samples]
        return "\n".join(lines) + "\n"


def list_of_objects(value: object) -> list[dict]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def spawned_workers(stats: dict) -> list[dict]:
    """The workers that exist: uWSGI also lists never-spawned ones (cheaper mode), with id 0."""
    return [w for w in list_of_objects(stats.get("workers")) if isinstance(w.get("id"), int) and w["id"] != 0]


def add_app_stats(out: Exposition, app: App, stats: dict) -> None:
    base = {"app": app.name, "stats_uri": app.stats_uri}
    for family, _, _, key, divisor in APP_METRICS:
        out.add(family, base, number(stats, key, divisor))
    workers = spawned_workers(stats)
    out.add("uwsgi_workers", base, len(workers) if isinstance(stats.get("workers"), list) else None)
    seen_sockets: set[tuple[str, str]] = set()
    for sock in list_of_objects(stats.get("sockets")):
        name, proto = str(sock.get("name", "")), str(sock.get("proto", ""))
        if (name, proto) in seen_sockets:
            continue  # uWSGI may list a socket twice: the first entry wins, as in the Go exporter
        seen_sockets.add((name, proto))
        for family, _, _, key, divisor in SOCKET_METRICS:
            out.add(family, {**base, "name": name, "proto": proto}, number(sock, key, divisor))
    for worker in workers:
        labels = {**base, "worker_id": str(worker["id"])}
        for family, _, _, key, divisor in WORKER_METRICS:
            out.add(family, labels, number(worker, key, divisor))
        status = worker.get("status")
        for family, _, wanted in WORKER_STATUS_METRICS:
            out.add(family, labels, int(status == wanted) if isinstance(status, str) else None)


class Exporter:
    def __init__(self, apps_dir: Path, timeout: float) -> None:
        self.apps_dir, self.timeout, self.state = apps_dir, timeout, State()

    def read_all(self, apps: list[App]) -> list[Reading]:
        """Read every app at once, so a stuck app costs at most one timeout for the whole scrape."""
        if not apps:
            return []
        with ThreadPoolExecutor(max_workers=min(len(apps), MAX_PARALLEL_READS)) as pool:
            return list(pool.map(lambda app: read_app(app, self.timeout), apps))

    def scrape(self) -> str:
        scrapes = self.state.count_scrape()
        out = Exposition()
        for reading in self.read_all(load_apps(self.apps_dir, self.state)):
            app, errors = reading.app, self.state.note_reading(reading)
            out.add("uwsgi_up", {"app": app.name, "stats_uri": app.stats_uri}, int(reading.stats is not None))
            if reading.stats is not None:
                add_app_stats(out, app, reading.stats)
            out.add("uwsgi_exporter_scrape_duration_seconds", {"app": app.name}, reading.seconds)
            out.add("uwsgi_exporter_scrape_errors_total", {"app": app.name}, errors)
        out.add("uwsgi_exporter_scrapes_total", {}, scrapes)
        out.add("uwsgi_exporter_build_info", {"version": VERSION}, 1)
        return out.render()


class Handler(BaseHTTPRequestHandler):
    server: Server
    server_version = f"flask_uwsgi_exporter/{VERSION}"
    timeout = 30  # a client that sends nothing does not hold a thread forever

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            self.answer(200, self.server.exporter.scrape(), CONTENT_TYPE)
        elif path == "/":
            self.answer(200, "flask_uwsgi_exporter: the metrics are at /metrics\n", "text/plain; charset=utf-8")
        else:
            self.answer(404, "not found; the metrics are at /metrics\n", "text/plain; charset=utf-8")

    def answer(self, code: int, text: str, content_type: str) -> None:
        body = text.encode("utf-8")
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        if isinstance(code, int) and code >= 400:  # successful requests are not worth a journal line
            super().log_request(code, size)

    def log_message(self, format: str, *args: object) -> None:
        log(f"{self.address_string()}: {format % args}")


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], exporter: Exporter) -> None:
        self.exporter = exporter
        super().__init__(address, Handler)

    def server_bind(self) -> None:
        socketserver.TCPServer.server_bind(self)  # without HTTPServer's reverse DNS lookup of the address
        self.server_name, self.server_port = str(self.server_address[0]), int(self.server_address[1])


class Server6(Server):
    address_family = socket.AF_INET6


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--apps-dir", type=Path, default=Path(DEFAULT_APPS_DIR), help="the apps' registry")
    parser.add_argument("--address", default=DEFAULT_ADDRESS, help="IPv4 or IPv6 address to listen on")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="TCP port to listen on")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds to read one app's stats")
    args = parser.parse_args(argv)
    if not args.timeout > 0:
        parser.error("--timeout must be more than 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # Only the sigwait() below receives these: every thread inherits the mask, so no handler can interrupt them.
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    host = args.address.strip("[]")
    server_class = Server6 if ":" in host else Server
    try:
        server = server_class((host, args.port), Exporter(args.apps_dir, args.timeout))
    except OSError as exc:
        log(f"cannot listen on {args.address} port {args.port}: {exc}")
        return 1
    threading.Thread(target=server.serve_forever, args=(SHUTDOWN_POLL_SECONDS,), name="http", daemon=True).start()
    log(f"flask_uwsgi_exporter {VERSION} listening on {args.address} port {args.port}, apps in {args.apps_dir}")
    signal.sigwait(STOP_SIGNALS)
    server.shutdown()
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
