"""The sandbox holds by default, each switch relaxes only what it names, and the master switch drops it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from deploys import ENV_FILE, UNIT, deployed, get, main_pid
from flask_uwsgi_testing import exposure, request_in_host


def app_may(host: Any, what: str, address: str = "127.0.0.1:8000") -> bool:
    status, body = get(host, f"/{what}", address)
    assert status in (200, 403), (status, body)
    return status == 200


def capabilities(host: Any) -> int:
    """The effective capabilities of the uWSGI master, as a bit mask."""
    status = host.check_output(f"grep CapEff /proc/{main_pid(host)}/status")
    return int(status.split()[1], 16)


def test_the_sandbox_holds_by_default(app_hosts: list[Any], tmp_path: Path, probes: str) -> None:
    # Also a unix socket, which systemd creates and holds with the HTTP port (no chown-socket).
    socket = "/run/flask-demo/uwsgi.sock"
    deployed(tmp_path, {"flask_uwsgi_app_src": probes, "flask_uwsgi_socket": socket})
    for host in app_hosts:
        held = host.check_output("systemctl show flask-demo.socket --property Listen --value").splitlines()
        assert held == ["127.0.0.1:8000 (Stream)", f"{socket} (Stream)"], held
        sock = host.file(socket)
        assert (sock.is_socket, sock.user, sock.group, sock.mode) == (True, "flask-demo", "flask-demo", 0o660)
        status, body = request_in_host(host, socket, "/version", "uwsgi")
        assert (status.split()[1], body.strip()) == ("200", "probes")
        assert "\nchown-socket =" not in host.file("/etc/flask_uwsgi/flask-demo.ini").content_string
        score = exposure(host, UNIT)
        print(f"{host.backend.host}: systemd-analyze security by default, with a unix socket of its own group: {score}")
        assert score <= 1.2
        assert not host.file(ENV_FILE).exists, "an app without variables keeps no environment file"
        # Each probe is refused by its own directive: RestrictAddressFamilies=, MemoryDenyWriteExecute=,
        # SystemCallFilter=~@privileged and ~@resources.
        assert [app_may(host, what) for what in ("netlink", "write-execute", "chown", "affinity")] == [False] * 4
        assert capabilities(host) == 0
        # Port 80 is privileged in this host (the scenario sets the sysctl), so the next test can fail.
        assert host.check_output("sysctl --values net.ipv4.ip_unprivileged_port_start") == "1024"
        bind_80 = "import socket; socket.socket().bind(('127.0.0.1', 80))"
        assert host.run("runuser -u flask-demo -- python3 -c %s", bind_80).rc != 0


def test_each_relaxation_grants_only_what_it_names(app_hosts: list[Any], tmp_path: Path, probes: str) -> None:
    """Without socket activation, uWSGI binds port 80 itself (systemd, as root, needs no capability):
    the switch off removes the socket unit, and the next test's deploy brings it back."""
    settings = {
        "flask_uwsgi_app_src": probes,
        "flask_uwsgi_http_socket": "127.0.0.1:80",
        "flask_uwsgi_socket_activation": False,
        "flask_uwsgi_bind_privileged_ports": True,
        "flask_uwsgi_extra_address_families": ["AF_NETLINK"],
        "flask_uwsgi_memory_deny_write_execute": False,
        "flask_uwsgi_extra_system_calls": ["@resources"],
    }
    deployed(tmp_path, settings)
    cap_net_bind_service = 1 << 10
    for host in app_hosts:
        assert not host.file("/etc/systemd/system/flask-demo.socket").exists
        assert "\nhttp-socket = 127.0.0.1:80\n" in host.file("/etc/flask_uwsgi/flask-demo.ini").content_string
        assert get(host, "/", "127.0.0.1:80")[0] == 200
        allowed = {what: app_may(host, what, "127.0.0.1:80") for what in ("netlink", "write-execute", "affinity")}
        assert allowed == dict.fromkeys(allowed, True)
        assert not app_may(host, "chown", "127.0.0.1:80"), "@resources does not allow chown"
        assert capabilities(host) == cap_net_bind_service
        score = exposure(host, UNIT)
        print(
            f"{host.backend.host}: systemd-analyze security with port 80, AF_NETLINK, write+execute memory",
            f"and @resources allowed: {score}",
        )
        assert score <= 2.5


def test_the_sandbox_switch_drops_it_all(app_hosts: list[Any], tmp_path: Path, probes: str) -> None:
    deployed(tmp_path, {"flask_uwsgi_app_src": probes, "flask_uwsgi_sandbox": False})
    for host in app_hosts:
        # Socket activation is back on: systemd holds the port again.
        assert host.check_output("systemctl is-active flask-demo.socket") == "active"
        allowed = {what: app_may(host, what) for what in ("netlink", "write-execute", "chown", "affinity")}
        assert allowed == dict.fromkeys(allowed, True)
        score = exposure(host, UNIT)
        print(f"{host.backend.host}: systemd-analyze security with flask_uwsgi_sandbox: false: {score}")
        assert score > 8
