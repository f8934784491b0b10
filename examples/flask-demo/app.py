"""A small Flask app for the demo and the tests: a greeting and a health endpoint."""

import os
import time
from pathlib import Path

from flask import Flask, request

app = Flask(__name__)


@app.get("/")
def index() -> str:
    return f"Hello from flask-demo (pid {os.getpid()})\n"


@app.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/slow")
def slow() -> str:
    """Answers after ?seconds=N (default 3): a long request for the stop and timeout tests."""
    seconds = float(request.args.get("seconds", 3))
    time.sleep(seconds)
    return f"Slept {seconds:g} s in pid {os.getpid()}\n"


_held: list[bytes] = []


@app.get("/leak")
def leak() -> str:
    """Holds ?mb=N MiB for the rest of the worker's life: a leak, for the memory-limit test."""
    megabytes = int(request.args.get("mb", 64))
    _held.append(b"\x01" * (megabytes << 20))
    return f"Holding {sum(map(len, _held)) >> 20} MiB in pid {os.getpid()}\n"


# Deployed with flask_uwsgi_shared_dirs: [data], data/ is kept across releases in <base_dir>/shared.
DATA = Path(__file__).parent / "data"


@app.get("/visits")
def visits() -> str:
    """Counts this visit in data/visits: a count that outlives releases when data/ is shared."""
    with (DATA / "visits").open("a") as log:
        log.write(f"{os.getpid()}\n")
    return f"Visit {len((DATA / 'visits').read_text().splitlines())}\n"
