"""Run a release's commands (migrations, collectstatic) before it gets traffic, or one of its workers.

Run by flask_uwsgi as the app's user, with the release's own virtualenv:
    python release_commands.py CHDIR --timeout SECONDS [--env-file FILE|-] [--env K=V]... -- COMMAND...
    python release_commands.py CHDIR --exec [--env K=V]... -- COMMAND
Each COMMAND is one string, split like a shell's words (no shell runs it: write sh -c '...' for
pipes or redirections), and run in CHDIR with the app's environment variables (an environment
file as systemd reads it; the role passes it on stdin), the virtualenv first on PATH and the
service's umask 077. Its output and errors go to stdout, in order. A command that fails, or runs
past SECONDS (it and every process it started are killed), ends the run with its exit status (124
for the timeout) and leaves the rest unrun. With --exec (a worker's unit, flask_uwsgi_workers), this
process becomes the one COMMAND, set up the same way, so that systemd signals it directly.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import signal
import subprocess
import sys

# check_release.py sits beside this file (the role installs both): one parser of environment files.
from check_release import read_env_file

TIMED_OUT = 124  # as coreutils' timeout


def run(command: str, timeout: int) -> int:
    argv = shlex.split(command)
    print(f"$ {command}", flush=True)
    try:
        # A session of its own, so a timeout kills whatever the command started too.
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True)
    except OSError as error:
        print(f"cannot run {argv[0]!r}: {error.strerror}", flush=True)
        return 127
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):  # it may have ended meanwhile
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        print(f"{command!r} did not finish within {timeout} s and was killed", flush=True)
        return TIMED_OUT


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("chdir")
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--timeout", type=int, help="seconds each command may run")
    mode.add_argument("--exec", action="store_true", help="become the one command (a worker)")
    parser.add_argument("--env", action="append", default=[], help="K=V, as uWSGI's env option")
    parser.add_argument("--env-file", help="the app's environment file, in systemd's format; - for stdin")
    parser.add_argument("commands", nargs="+")
    args = parser.parse_args()
    if args.env_file:
        handle = sys.stdin.buffer if args.env_file == "-" else open(args.env_file, "rb")  # noqa: SIM115
        with handle:
            os.environ.update(read_env_file(handle.read().decode("utf-8")))
    for pair in args.env:
        key, _, value = pair.partition("=")
        os.environ[key] = value
    # The release's virtualenv, as if activated: `flask`, `python`, `manage.py`'s python are its own.
    venv = os.path.dirname(os.path.dirname(os.path.abspath(sys.executable)))
    os.environ["VIRTUAL_ENV"] = venv
    os.environ["PATH"] = os.path.join(venv, "bin") + os.pathsep + os.environ.get("PATH", os.defpath)
    os.umask(0o077)
    os.chdir(args.chdir)
    if args.exec:
        [command] = args.commands
        argv = shlex.split(command)
        os.execvp(argv[0], argv)
    for command in args.commands:
        status = run(command, args.timeout)
        if status != 0:
            return status
    return 0


if __name__ == "__main__":
    sys.exit(main())
