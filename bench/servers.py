"""The servers that make bench measures: the role's service, and other servers of the same demo app
started beside it in the test host; how they are prepared, started and stopped."""

from __future__ import annotations

from dataclasses import dataclass

from testhosts import in_host

HOST = "flask-uwsgi-bench-serving"
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
    """A way to serve the demo app: its port, and the command that starts it (empty: the role's own service)."""

    name: str
    port: int
    command: str = ""
    ceiling: bool = False  # a candidate for the fastest uWSGI settings for the demo app


def uwsgi_with_role_options(port: int, *options: str) -> str:
    return f"{ROLE} --http-socket 127.0.0.1:{port} {' '.join(options)}"


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
