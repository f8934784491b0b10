"""The servers that make bench measures: the role's service, and other servers of the same demo app
started beside it in the test host; how they are prepared, started and stopped."""

from __future__ import annotations

import re
from dataclasses import dataclass

from testhosts import in_host

HOST = "flask-uwsgi-bench-serving"
APP_DIR = "/opt/flask-demo/current/app"
UWSGI = "/opt/flask-demo/current/venv/bin/uwsgi"
# The other servers, at the versions these figures were taken with.
PEERS = ["gunicorn==27.0.1", "granian==2.8.9"]
# The role's own ini for the demo, less what would clash with the running service (its address
# and the header that goes with it, pidfile, stop hook) and its request-log switch: the variants
# below add those back as they need.
ROLE_INI = "/opt/bench/role.ini"
ROLE = f"{UWSGI} --ini {ROLE_INI}"
TRIVIAL_APP = """\
def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"Hello"]
"""


@dataclass
class Server:
    """A way to serve the demo app: its port, and the command that starts it (empty: the role's own service)."""

    name: str
    port: int
    command: str = ""
    ceiling: bool = False  # a candidate for the fastest uWSGI settings for the demo app


def uwsgi_with_role_options(port: int, *options: str) -> str:
    """The role's ini on an http-socket at this port, with its Connection: close, and these options."""
    return f"{ROLE} --http-socket 127.0.0.1:{port} --add-header 'Connection: close' {' '.join(options)}"


# The role's service: the baseline, against which the report takes the other servers' ratios.
SERVICE = Server("role defaults (the service: http-socket, 2 processes, no request lines)", 8000, ceiling=True)
BASELINE = SERVICE.name
GUNICORN = Server(
    "gunicorn sync, 2 workers", 9003, "/opt/bench/venv/bin/gunicorn --workers 2 --bind 127.0.0.1:9003 app:app"
)
# The role's service, then what it is compared with: the blog post this project grew from, gunicorn,
# and the role's own ini run beside the service (so outside its systemd sandbox) with one change
# each; those and the service are the candidates for the fastest uWSGI settings for this app.
NO_SANDBOX = "role's ini outside the unit's sandbox"
SERVERS = [
    SERVICE,
    Server(
        "blog post (http router, 2 processes x 2 threads, lazy-apps)",
        9002,
        f"{UWSGI} --http 127.0.0.1:9002 --master --processes 2 --threads 2 --lazy-apps --module app --callable app",
    ),
    GUNICORN,
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


def with_listen(listen: int, port: int) -> Server:
    """The role's ini with this listen queue."""
    return Server(
        f"{NO_SANDBOX}, listen {listen}", port, uwsgi_with_role_options(port, f"--disable-logging --listen {listen}")
    )


# The role's ini under a burst, with uWSGI's own listen queue (100: the burst's baseline) and the
# role's default (1024).
UWSGI_LISTEN = with_listen(100, 9012)
BURST_BASELINE = UWSGI_LISTEN.name
BURST_SERVERS = [UWSGI_LISTEN, with_listen(1024, 9013)]

# The role's ini with the app loaded in each worker instead of once in the master (lazy-apps).
LAZY = Server(f"{NO_SANDBOX}, lazy-apps", 9014, uwsgi_with_role_options(9014, "--disable-logging --lazy-apps"))


# Keep-alive: the same app served to clients that keep their connection (as browsers, balancers and
# nginx with upstream keepalive do), and to clients that open one per request; each server with 2
# workers. uWSGI's workers keep connections on http11-socket: a worker then serves one connection
# until that client goes quiet for socket-timeout (4 s), and nobody else meanwhile. Its http router
# keeps them instead, in a process of its own (one more beside the 2 workers), and passes each
# request to the workers over a unix socket; they keep none. (Its gevent loop, the one other way,
# fails on the first connection in uWSGI 2.0.31 with gevent 24.2.1 and 26.9.0: "'io' object has no
# attribute 'stop'".)
BENCH_VENV = "/opt/bench/venv/bin"
# The unix sockets of the servers started beside the service (prepare_servers() makes the directory).
SOCKET_DIR = "/run/bench"
UWSGI_KEEPALIVE = Server(
    "uWSGI keeping connections (the role's ini on http11-socket)",
    9020,
    f"{ROLE} --http11-socket 127.0.0.1:9020 --disable-logging",
)
UWSGI_ROUTER = Server(
    "uWSGI's http router keeping connections, the role's ini behind it on a unix socket",
    9024,
    f"{ROLE} --http 127.0.0.1:9024 --http-keepalive=1 --socket {SOCKET_DIR}/router.sock --disable-logging",
)
GTHREAD = Server(
    "gunicorn gthread, 2 workers x 4 threads",
    9021,
    f"{BENCH_VENV}/gunicorn --worker-class gthread --workers 2 --threads 4 --bind 127.0.0.1:9021 app:app",
)
GRANIAN = Server(
    "Granian (WSGI), 2 workers x 1 blocking thread",
    9022,
    f"{BENCH_VENV}/granian --interface wsgi --workers 2 --blocking-threads 1 --no-ws"
    " --host 127.0.0.1 --port 9022 app:app",
)
KEEPALIVE_SERVERS = [SERVICE, UWSGI_KEEPALIVE, UWSGI_ROUTER, GUNICORN, GTHREAD, GRANIAN]
# The ways of serving with uWSGI among them: the fastest is set against Granian.
UWSGI_WAYS = [SERVICE, UWSGI_KEEPALIVE, UWSGI_ROUTER]
# For nginx's uwsgi_pass: the role's ini on a unix socket that nginx (www-data) may use, as
# flask_uwsgi_socket with flask_uwsgi_socket_group: www-data gives (here outside the unit's sandbox,
# which costs 1 to 3 %; its http-socket only tells start() that it answers).
UNIX_SOCKET = f"{SOCKET_DIR}/uwsgi.sock"
UWSGI_UNIX = Server(
    "the role's ini on a unix socket (uwsgi protocol)",
    9023,
    f"{ROLE} --socket {UNIX_SOCKET} --chmod-socket=666 --http-socket 127.0.0.1:9023 --disable-logging",
)


@dataclass
class NginxPath:
    """nginx in front of a server: the site's port, the server behind it, and whether nginx keeps its
    connections to that server (upstream keepalive, which flask_uwsgi_nginx does not write)."""

    name: str
    port: int
    server: Server
    upstream: str  # unix:/path or 127.0.0.1:port
    protocol: str = "http"
    keepalive: bool = False

    @property
    def site(self) -> str:
        return f"bench{self.port}"


NGINX_PATHS = [
    NginxPath("nginx → uwsgi protocol, unix socket → uWSGI (the role's production path)", 8101, UWSGI_UNIX,
              f"unix:{UNIX_SOCKET}", "uwsgi"),
    NginxPath("nginx → HTTP → the role's service", 8102, SERVICE, f"127.0.0.1:{SERVICE.port}"),
    NginxPath("nginx → HTTP, upstream keep-alive → uWSGI on http11-socket", 8103, UWSGI_KEEPALIVE,
              f"127.0.0.1:{UWSGI_KEEPALIVE.port}", keepalive=True),
    NginxPath("nginx → HTTP → gunicorn sync", 8104, GUNICORN, f"127.0.0.1:{GUNICORN.port}"),
    NginxPath("nginx → HTTP, upstream keep-alive → gunicorn gthread", 8105, GTHREAD,
              f"127.0.0.1:{GTHREAD.port}", keepalive=True),
    NginxPath("nginx → HTTP → Granian", 8106, GRANIAN, f"127.0.0.1:{GRANIAN.port}"),
    NginxPath("nginx → HTTP, upstream keep-alive → Granian", 8107, GRANIAN, f"127.0.0.1:{GRANIAN.port}",
              keepalive=True),
]  # fmt: skip
NGINX_BASELINE = NGINX_PATHS[0].name
# Idle connections nginx keeps to one upstream, per nginx worker (nginx's documentation's example).
UPSTREAM_KEEPALIVE = 16


def prepare_servers() -> None:
    """wrk, gunicorn and Granian (in their own virtualenv, with the app's requirements), the trivial
    app, the role's ini for the servers started beside the service, and the unix socket's directory."""
    in_host(HOST, "DEBIAN_FRONTEND=noninteractive apt-get install --yes --quiet wrk >/dev/null")
    in_host(
        HOST,
        "mkdir -p /opt/bench && python3 -m venv /opt/bench/venv"
        f" && /opt/bench/venv/bin/pip install --quiet {' '.join(PEERS)} -r {APP_DIR}/requirements.txt",
    )
    in_host(HOST, f"cat > /opt/bench/trivial.py <<'EOF'\n{TRIVIAL_APP}EOF")
    in_host(
        HOST,
        "grep -Ev '^(http-socket|add-header|pidfile|hook-master-start|disable-logging|stats) '"
        f" /etc/flask_uwsgi/flask-demo.ini > {ROLE_INI}",
    )
    in_host(HOST, f"install -d -o flask-demo -m 0755 {SOCKET_DIR}")


def start(server: Server) -> None:
    """Start the server as a transient unit, as the app's user, and wait until it answers."""
    if server.command:
        in_host(
            HOST,
            # SIGINT stops uWSGI without die-on-term (SIGTERM would reload it) and gunicorn alike. A
            # server that exits non-zero on it (Granian) is unloaded all the same, to start again.
            f"systemd-run --quiet --collect --unit bench-{server.port} --uid flask-demo --gid flask-demo"
            f" --property KillSignal=SIGINT --working-directory {APP_DIR} {server.command}",
        )
    wait_until_answers(server.port)


def stop(server: Server) -> None:
    if server.command:
        in_host(HOST, f"systemctl stop bench-{server.port}")


def start_service() -> None:
    """Start the role's service again after a stop, and wait until it answers."""
    in_host(HOST, "systemctl start flask-demo")
    wait_until_answers(SERVICE.port)


def wait_until_answers(port: int) -> None:
    in_host(
        HOST,
        "python3 -c 'import sys, time, urllib.request\n"
        "for _ in range(300):\n"
        "    try: urllib.request.urlopen(sys.argv[1], timeout=2).read(); break\n"
        "    except OSError: time.sleep(0.1)\n"
        'else: sys.exit("no answer")\' ' + f"http://127.0.0.1:{port}/",
    )


def nginx_sites() -> list[dict[str, object]]:
    """flask_uwsgi_nginx_sites for NGINX_PATHS: a plain site each, as the role writes it."""
    return [
        {"name": path.site, "listen": path.port, "protocol": path.protocol, "upstreams": [path.upstream]}
        for path in NGINX_PATHS
    ]


def keep_upstream_connections() -> None:
    """Turn on upstream keep-alive in the sites of the paths that ask for it, the way nginx's
    documentation does it: keepalive in the upstream block, HTTP/1.1 and no Connection header."""
    for path in NGINX_PATHS:
        if path.keepalive:
            site = f"/etc/nginx/conf.d/flask_uwsgi-{path.site}.conf"
            text = with_upstream_keepalive(in_host(HOST, f"cat {site}"))
            in_host(HOST, f"cat > {site} <<'EOF'\n{text}EOF")
    in_host(HOST, "nginx -t -q && systemctl reload nginx")


def with_upstream_keepalive(site: str) -> str:
    """A site of flask_uwsgi_nginx's (protocol http), with keepalive connections to its upstream."""
    keepalive = rf"\1    keepalive {UPSTREAM_KEEPALIVE};\n}}"
    site, upstreams = re.subn(r"^(upstream .*?)^}", keepalive, site, count=1, flags=re.MULTILINE | re.DOTALL)
    http11 = r'\1\2\n\1proxy_http_version 1.1;\n\1proxy_set_header Connection "";'
    site, passes = re.subn(r"^( *)(proxy_pass .*;)$", http11, site, flags=re.MULTILINE)
    if (upstreams, passes) != (1, 1):
        raise ValueError(f"not a site of one upstream and one proxy_pass:\n{site}")
    return site
