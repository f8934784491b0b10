"""The pre-traffic release check passes a good app and fails a broken one with its own error."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jinja2
import pytest

CHECK = Path(__file__).resolve().parents[1] / "roles" / "flask_uwsgi" / "files" / "helpers" / "check_release.py"

GOOD = """
import os
def application(environ, start_response):
    if environ["PATH_INFO"] == "/health":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [("ok " + os.environ.get("GREETING", "")).encode()]
    start_response("404 Not Found", [])
    return [b"nope"]
"""


def check(app_dir: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(CHECK), str(app_dir), *args],
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    (tmp_path / "wsgi.py").write_text(GOOD)
    return tmp_path


@pytest.mark.parametrize("source", [["--module", "wsgi"], ["--wsgi-file", "wsgi.py"]])
def test_a_good_app_passes(app_dir: Path, source: list[str]) -> None:
    result = check(app_dir, *source, "--path", "/health")
    assert result.returncode == 0, result.stderr
    assert "200 OK" in result.stdout


def test_env_reaches_the_app(app_dir: Path) -> None:
    needs_env = GOOD.replace("    if environ", '    assert os.environ["GREETING"] == "hi"\n    if environ')
    (app_dir / "wsgi.py").write_text(needs_env)
    assert check(app_dir, "--module", "wsgi", "--path", "/health", "--env", "GREETING=hi").returncode == 0
    assert check(app_dir, "--module", "wsgi", "--path", "/health").returncode == 1


def test_an_app_that_cannot_import_fails_with_its_traceback(app_dir: Path) -> None:
    (app_dir / "wsgi.py").write_text("import no_such_package_here\n" + GOOD)
    result = check(app_dir, "--module", "wsgi", "--path", "/health")
    assert result.returncode == 1
    assert "Traceback" in result.stderr
    assert "ModuleNotFoundError: No module named 'no_such_package_here'" in result.stderr


def test_a_missing_callable_fails(app_dir: Path) -> None:
    result = check(app_dir, "--module", "wsgi", "--callable", "app", "--path", "/health")
    assert result.returncode == 1
    assert "no callable named 'app'" in result.stderr


def test_a_health_path_that_does_not_answer_200_fails(app_dir: Path) -> None:
    result = check(app_dir, "--module", "wsgi", "--path", "/elsewhere")
    assert result.returncode == 1
    assert "404 Not Found" in result.stderr


# Values that a naive quoting would mangle: quotes, a backslash, a dollar, a comment sign, a line break.
AWKWARD = {
    "SECRET_KEY": "s3cr3t \"quoted\" 'single' back\\slash $HOME ${PATH} `cmd` #not-a-comment ;",
    "PEM": "-----BEGIN KEY-----\nAAAA\\n\n-----END KEY-----",
    "EMPTY": "",
    "NOTHING": None,
    "CARRIAGE_RETURN": "a\rb",
    "PORT": 5432,
}


def render_environment_file(env: dict[str, object]) -> str:
    """Render the role's templates/environment.j2 as Ansible would (comment filter stubbed)."""
    templates = CHECK.parents[2] / "templates"
    jinja = jinja2.Environment(loader=jinja2.FileSystemLoader(templates), keep_trailing_newline=True, trim_blocks=True)
    jinja.filters["comment"] = lambda text: f"#\n# {text}\n#"
    return jinja.get_template("environment.j2").render(
        flask_uwsgi_env=env, ansible_managed="Ansible managed", __flask_uwsgi_unit="app.service"
    )


def test_environment_file_round_trips_awkward_values(tmp_path: Path) -> None:
    """What the role writes is read back unchanged (systemd's reading is checked in Molecule)."""
    env_file = tmp_path / "app.env"
    env_file.write_text(render_environment_file(AWKWARD))
    app = tmp_path / "app"
    app.mkdir()
    (app / "wsgi.py").write_text(
        "import json, os\n"
        f"EXPECTED = {json.dumps({k: '' if v is None else str(v) for k, v in AWKWARD.items()})!r}\n"
        "def application(environ, start_response):\n"
        "    seen = {k: os.environ.get(k) for k in json.loads(EXPECTED)}\n"
        "    assert seen == json.loads(EXPECTED), seen\n"
        '    start_response("200 OK", [])\n'
        '    return [b"ok"]\n'
    )
    result = check(app, "--module", "wsgi", "--env-file", str(env_file))
    assert result.returncode == 0, result.stderr
    # The role passes the file on stdin, so that the app's user never needs to read it.
    result = check(app, "--module", "wsgi", "--env-file", "-", stdin=env_file.read_bytes().decode())
    assert result.returncode == 0, result.stderr
    assert check(app, "--module", "wsgi").returncode == 1
