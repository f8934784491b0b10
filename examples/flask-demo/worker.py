"""A background worker for the demo (flask_uwsgi_workers), beside the web app.

Every half second it writes its pid and the release it runs from to data/worker (data/ is a shared
directory, kept across releases); on SIGTERM it finishes the beat it is in, writes "stopped" and
exits, as a job queue's worker finishes its job before it stops.
"""

import os
import signal
import time
from pathlib import Path

HEARTBEAT = Path("data/worker")
RELEASE = Path(__file__).resolve().parent.parent.name
stopping = False


def stop(signum: int, frame: object) -> None:
    global stopping
    stopping = True


signal.signal(signal.SIGTERM, stop)


def beat(text: str) -> None:
    """Replace data/worker at once, so that a reader never sees it half written."""
    HEARTBEAT.with_suffix(".new").write_text(f"{os.getpid()} {text}\n")
    HEARTBEAT.with_suffix(".new").replace(HEARTBEAT)


while not stopping:
    beat(RELEASE)
    time.sleep(0.5)
beat("stopped")
