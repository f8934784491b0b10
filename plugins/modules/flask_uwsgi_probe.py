#!/usr/bin/python
"""Ansible module: wait until a uWSGI app answers a request, over HTTP or the uwsgi protocol."""

from __future__ import annotations

DOCUMENTATION = r"""
module: flask_uwsgi_probe
short_description: Wait until a uWSGI app answers a GET request
description:
  - Sends GET requests to an address uWSGI listens on, over HTTP or the uwsgi protocol (what nginx's
    uwsgi_pass speaks), until one is answered with the expected status or the timeout passes.
  - Reads only; it never changes the host, so it runs in check mode too.
options:
  address:
    description: A unix socket path, or host:port. An empty or wildcard host means the loopback address.
    type: str
    required: true
  protocol:
    description: What uWSGI speaks on that address (http for http and http-socket, uwsgi for socket).
    type: str
    choices: [http, uwsgi]
    default: http
  path:
    description: The path to request.
    type: str
    default: /
  status:
    description: The HTTP status that counts as an answer.
    type: int
    default: 200
  timeout:
    description: Seconds to keep trying.
    type: int
    default: 60
  pidfile:
    description: The uWSGI master's pidfile; with O(since), whose workers to wait for.
    type: path
  since:
    description:
      - The host's uptime (seconds since boot, the first figure of /proc/uptime), noted just before the
        restart or reload.
        When not 0, wait first until the master has a worker started after it. The uptime is the
        clock that /proc gives start times in; the wall clock would need the boot time, which /proc
        rounds to a whole second. uWSGI forks new workers only once the old ones are gone, so the answer then comes
        from the new code, never from a worker that has not reloaded yet.
    type: float
    default: 0
author: flask_uwsgi maintainers
"""

RETURN = r"""
status:
  description: HTTP status of the last answer (0 if none came).
  type: int
  returned: always
body:
  description: The first 2,000 characters of the last answer's body.
  type: str
  returned: always
attempts:
  description: How many requests were sent.
  type: int
  returned: always
elapsed:
  description: Seconds until the answer came, or until the timeout.
  type: float
  returned: always
"""

import os
import socket
import struct
import time

from ansible.module_utils.basic import AnsibleModule

WILDCARD_HOSTS = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "*": "127.0.0.1", "[::]": "::1", "::": "::1"}


def connect(address: str, timeout: float) -> socket.socket:
    """Open a stream socket to a unix path or a host:port, wildcard hosts mapped to loopback."""
    if address.startswith("/"):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        sock.connect(address)
        return sock
    host, _, port = address.rpartition(":")
    host = WILDCARD_HOSTS.get(host, host).strip("[]")
    return socket.create_connection((host, int(port)), timeout=timeout)


def uwsgi_packet(path: str) -> bytes:
    """A uwsgi-protocol request: a 4-byte header, then the CGI variables as length-prefixed pairs."""
    uri_path, _, query = path.partition("?")
    env = {
        "REQUEST_METHOD": "GET",
        "REQUEST_URI": path,
        "PATH_INFO": uri_path,
        "QUERY_STRING": query,
        "SERVER_PROTOCOL": "HTTP/1.1",
        "SERVER_NAME": "localhost",
        "SERVER_PORT": "80",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": "localhost",
    }
    body = b"".join(
        struct.pack("<H", len(k)) + k.encode() + struct.pack("<H", len(v)) + v.encode() for k, v in env.items()
    )
    return struct.pack("<BHB", 0, len(body), 0) + body


def http_request(path: str) -> bytes:
    return f"GET {path} HTTP/1.0\r\nHost: localhost\r\nUser-Agent: flask_uwsgi_probe\r\n\r\n".encode()


def request(address: str, protocol: str, path: str, timeout: float) -> tuple[int, str]:
    """Send one GET and return the HTTP status and body of the answer."""
    with connect(address, timeout) as sock:
        sock.sendall(uwsgi_packet(path) if protocol == "uwsgi" else http_request(path))
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
    parts = status_line.split()
    if len(parts) < 2 or not parts[1].isdigit():
        raise ValueError(f"not an HTTP answer: {status_line!r}")
    return int(parts[1]), body.decode("utf-8", "replace")


def workers_started_since(pidfile: str, since: float) -> int:
    """Count the children of the master in pidfile that started at or after since, in seconds since boot."""
    with open(pidfile) as f:
        master = f.read().strip()
    ticks = os.sysconf("SC_CLK_TCK")
    count = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                # Fields after the command name, which may hold spaces: state, ppid, ... starttime (22nd).
                fields = f.read().rpartition(")")[2].split()
        except OSError:
            continue
        if fields[1] == master and int(fields[19]) / ticks >= since:
            count += 1
    return count


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "address": {"type": "str", "required": True},
            "protocol": {"type": "str", "choices": ["http", "uwsgi"], "default": "http"},
            "path": {"type": "str", "default": "/"},
            "status": {"type": "int", "default": 200},
            "timeout": {"type": "int", "default": 60},
            "pidfile": {"type": "path"},
            "since": {"type": "float", "default": 0},
        },
        supports_check_mode=True,
    )
    p = module.params
    if p["since"] and not p["pidfile"]:
        module.fail_json(msg="since needs pidfile: the master whose workers to wait for")
    start = time.monotonic()
    deadline = start + p["timeout"]
    attempts, status, body, error = 0, 0, "", "no request sent"
    while True:
        attempts += 1
        try:
            if p["since"] and not workers_started_since(p["pidfile"], p["since"]):
                raise OSError("uWSGI has no worker started since the deploy began")
            status, body = request(p["address"], p["protocol"], p["path"], timeout=5)
            error = f"answered HTTP {status}"
            if status == p["status"]:
                break
        except (OSError, ValueError) as exc:
            status, body, error = 0, "", str(exc)
        if time.monotonic() >= deadline:
            module.fail_json(
                msg=f"no HTTP {p['status']} from {p['address']}{p['path']} ({p['protocol']}) "
                f"after {attempts} attempts: {error}",
                status=status,
                body=body[:2000],
                attempts=attempts,
                elapsed=round(time.monotonic() - start, 2),
            )
        time.sleep(0.5)
    module.exit_json(
        changed=False, status=status, body=body[:2000], attempts=attempts, elapsed=round(time.monotonic() - start, 2)
    )


if __name__ == "__main__":
    main()
