"""Check a release before it gets traffic: its app loads, and answers a GET with 200.

Run by flask_uwsgi as the app's user, with the release's own virtualenv:
    python check_release.py CHDIR (--module NAME | --wsgi-file FILE) --callable NAME --path /health
                            [--env-file FILE|-] [--env K=V]...
It sets the app's environment variables (an environment file as systemd reads it; the role passes
it on stdin), loads the app the way uWSGI does (from CHDIR, by module or file) and calls the WSGI
callable in-process, so no port or socket is needed. On failure it prints the app's traceback and
exits 1.
"""

from __future__ import annotations

import argparse
import importlib
import os
import runpy
import sys
import traceback
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.util import setup_testing_defaults

ESCAPED = '"\\`$'  # what a backslash escapes inside double quotes, as in systemd's env-file.c


def read_env_file(text: str) -> dict[str, str]:
    """Parse the KEY="value" lines flask_uwsgi writes, the way systemd's EnvironmentFile= does.

    Lines starting with '#' or ';' are comments. A double-quoted value may span lines, and a
    backslash in it escapes one of " \\ ` $; before any other character it stays. Unquoted values
    run to the end of the line, stripped.
    """
    env: dict[str, str] = {}
    lines = iter(text.split("\n"))
    for line in lines:
        if not line.strip() or line.lstrip()[0] in "#;":
            continue
        name, _, rest = line.partition("=")
        rest = rest.lstrip()
        if not rest.startswith('"'):
            env[name.strip()] = rest.strip()
            continue
        value, rest, i = [], rest[1:], 0
        while True:
            if i >= len(rest):  # the quoted value goes on on the next line
                value.append("\n")
                rest, i = next(lines), 0
                continue
            char = rest[i]
            if char == '"':
                break
            if char == "\\" and i + 1 < len(rest):
                i += 1
                value.append(rest[i] if rest[i] in ESCAPED else "\\" + rest[i])
            else:
                value.append(char)
            i += 1
        env[name.strip()] = "".join(value)
    return env


def load(args: argparse.Namespace) -> Callable[..., Iterable[bytes]]:
    os.chdir(args.chdir)
    sys.path.insert(0, args.chdir)
    if args.module:
        namespace = vars(importlib.import_module(args.module))
    else:
        namespace = runpy.run_path(args.wsgi_file, run_name="uwsgi_file_" + os.path.basename(args.wsgi_file))
    if args.callable not in namespace:
        raise LookupError(f"no callable named {args.callable!r} in {args.module or args.wsgi_file}")
    return namespace[args.callable]


def get(app: Callable[..., Iterable[bytes]], path: str) -> tuple[str, bytes]:
    environ: dict[str, Any] = {}
    setup_testing_defaults(environ)
    environ["PATH_INFO"], _, environ["QUERY_STRING"] = path.partition("?")
    status = []

    def start_response(line: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[[bytes], None]:
        status.append(line)
        return lambda data: None

    result = app(environ, start_response)
    try:
        body = b"".join(result)
    finally:
        if hasattr(result, "close"):
            result.close()
    return status[-1], body


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("chdir")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--module")
    source.add_argument("--wsgi-file")
    parser.add_argument("--callable", default="application")
    parser.add_argument("--path", default="/")
    parser.add_argument("--env", action="append", default=[], help="K=V, as uWSGI's env option")
    parser.add_argument("--env-file", help="the app's environment file, in systemd's format; - for stdin")
    args = parser.parse_args()
    if args.env_file:
        # Bytes, decoded as they are: a carriage return in a value stays one, as with systemd.
        if args.env_file == "-":
            raw = sys.stdin.buffer.read()
        else:
            with open(args.env_file, "rb") as env_file:
                raw = env_file.read()
        os.environ.update(read_env_file(raw.decode("utf-8")))
    for pair in args.env:
        key, _, value = pair.partition("=")
        os.environ[key] = value
    try:
        status, body = get(load(args), args.path)
    except BaseException:
        traceback.print_exc()
        return 1
    if not status.startswith("200"):
        print(f"GET {args.path} answered {status!r}:\n{body[:2000].decode('utf-8', 'replace')}", file=sys.stderr)
        return 1
    print(f"GET {args.path}: {status}")
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # do not wait for threads the app may have started
