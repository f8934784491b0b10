"""The role's readiness probe speaks both protocols correctly (checked against tiny local servers)."""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from collection_modules import load

probe = load("flask_uwsgi_probe")


def parse_uwsgi(packet: bytes) -> dict[str, str]:
    """Decode a uwsgi request the way uWSGI does: header, then length-prefixed pairs."""
    modifier1, size, modifier2 = struct.unpack("<BHB", packet[:4])
    assert (modifier1, modifier2, size) == (0, 0, len(packet) - 4)
    env, pos = {}, 4
    while pos < len(packet):
        (klen,) = struct.unpack("<H", packet[pos : pos + 2])
        key = packet[pos + 2 : pos + 2 + klen].decode()
        pos += 2 + klen
        (vlen,) = struct.unpack("<H", packet[pos : pos + 2])
        env[key] = packet[pos + 2 : pos + 2 + vlen].decode()
        pos += 2 + vlen
    return env


def test_uwsgi_packet_carries_the_request() -> None:
    env = parse_uwsgi(probe.uwsgi_packet("/health?full=1"))
    assert env["REQUEST_METHOD"] == "GET"
    assert env["PATH_INFO"] == "/health"
    assert env["QUERY_STRING"] == "full=1"
    assert env["REQUEST_URI"] == "/health?full=1"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, list[bytes]]]:
    """A one-connection-at-a-time server on a unix socket that answers 200 with the request's size."""
    path = str(tmp_path / "app.sock")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(path)
    listener.listen()
    received: list[bytes] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                received.append(conn.recv(65536))
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nhello")

    threading.Thread(target=serve, daemon=True).start()
    yield path, received
    listener.close()


def test_request_over_uwsgi_protocol(server: tuple[str, list[bytes]]) -> None:
    path, received = server
    assert probe.request(path, "uwsgi", "/health", timeout=5) == (200, "hello")
    assert parse_uwsgi(received[0])["PATH_INFO"] == "/health"


def test_request_over_http(server: tuple[str, list[bytes]]) -> None:
    path, received = server
    assert probe.request(path, "http", "/x", timeout=5) == (200, "hello")
    assert received[0].startswith(b"GET /x HTTP/1.0\r\n")


def test_answer_that_is_not_http_is_an_error(tmp_path: Path) -> None:
    path = str(tmp_path / "junk.sock")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(path)
    listener.listen()

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(b"not http at all")

    threading.Thread(target=serve, daemon=True).start()
    with pytest.raises(ValueError, match="not an HTTP answer"):
        probe.request(path, "http", "/", timeout=5)
    listener.close()


@pytest.mark.parametrize(("address", "expected"), [("0.0.0.0:8000", "127.0.0.1"), (":8000", "127.0.0.1")])
def test_wildcard_hosts_mean_loopback(monkeypatch: pytest.MonkeyPatch, address: str, expected: str) -> None:
    seen = []
    monkeypatch.setattr(socket, "create_connection", lambda addr, timeout: seen.append(addr))
    probe.connect(address, timeout=1)
    assert seen == [(expected, 8000)]


def uptime() -> float:
    """The host's uptime, as the role notes it before a reload (tasks/service.yml)."""
    return float(Path("/proc/uptime").read_text().split()[0])


def test_workers_started_since_counts_only_new_children(tmp_path: Path) -> None:
    pidfile = tmp_path / "master.pid"
    pidfile.write_text(f"{os.getpid()}\n")
    # No slack: a child started right after the deploy noted the time counts (the boot time of /proc/stat,
    # rounded to a whole second, once made it look up to 1 s older than it was).
    before = uptime()
    with subprocess.Popen(["sleep", "5"]) as child:
        try:
            assert probe.workers_started_since(str(pidfile), before) >= 1
            time.sleep(0.05)
            assert probe.workers_started_since(str(pidfile), uptime()) == 0
        finally:
            child.kill()
