"""Bad input is refused before a host changes, and check mode changes nothing on a bare host.

The refused inputs run as one ansible-playbook: a play per case applies the role to the scenario's
bare Debian 12 and 13 hosts at once with one wrong setting (as a play variable, over the inventory's),
and a rescue lets the next play run. Each case checks, on each host, that exactly one task failed,
with the case's message, and that none changed anything; the hosts' files are compared before and
after all of them. (One ansible-playbook per case took 3 to 4 s each.) The refusals of a whole
deploy (an unsupported release, tags) run `playbooks/deploy.yml` itself. The hosts are still bare
when this file ends; the other files deploy to them, after it (conftest.py runs this file first; the
bare_hosts fixture fails if a deploy ran before).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from flask_uwsgi_testing import ONE_BATCH, Play, deploy, recap, run_playbook

# What could change on the host: accounts, installed packages, configuration, code, units.
FINGERPRINT = "find /etc /opt /srv /usr/local /var/lib/dpkg -xdev -printf '%p %s %T@\\n' | sort | sha256sum"


# Stands for a secret that a wrong setting carries: the refusal must not print it either.
SECRET = "refused-s3cr3t-9d2e"


# (case, the wrong setting, words the message must hold)
BAD_INPUT = [
    ("processes-not-a-number", {"flask_uwsgi_processes": "two"}, ["flask_uwsgi_processes", "int"]),
    ("zero-processes", {"flask_uwsgi_processes": 0}, ["flask_uwsgi_processes must be an integer of at least 1"]),
    ("negative-threads", {"flask_uwsgi_threads": -2}, ["flask_uwsgi_threads must be an integer of at least 1"]),
    ("need-app-not-a-bool", {"flask_uwsgi_need_app": "maybe"}, ["flask_uwsgi_need_app", "bool"]),
    ("no-source", {"flask_uwsgi_app_src": ""}, ["Set exactly one of flask_uwsgi_app_src", "got none"]),
    (
        "two-sources",
        {"flask_uwsgi_app_git_repo": "https://git.example.com/app.git"},
        ["Set exactly one of", "got flask_uwsgi_app_src and flask_uwsgi_app_git_repo"],
    ),
    (
        "artifact-without-checksum",
        {"flask_uwsgi_app_src": "", "flask_uwsgi_app_artifact": "/srv/dist/app-1.0.tar.gz"},
        ["flask_uwsgi_app_artifact_checksum must be the SHA-256 of flask_uwsgi_app_artifact", "got ''"],
    ),
    (
        "git-version-an-option",
        {
            "flask_uwsgi_app_src": "",
            "flask_uwsgi_app_git_repo": "https://git.example.com/app.git",
            "flask_uwsgi_app_git_version": "--upload-pack=touch /tmp/x",
        },
        ["flask_uwsgi_app_git_version must be a branch, tag or commit", "got '--upload-pack=touch /tmp/x'"],
    ),
    ("app-src-missing", {"flask_uwsgi_app_src": "/nonexistent/app"}, ["flask_uwsgi_app_src", "/nonexistent/app"]),
    (
        "module-and-wsgi-file",
        {"flask_uwsgi_module": "app", "flask_uwsgi_wsgi_file": "app.py"},
        ["Set exactly one of flask_uwsgi_module", "flask_uwsgi_wsgi_file"],
    ),
    (
        "no-bind-address",
        {"flask_uwsgi_http_socket": "", "flask_uwsgi_socket": "", "flask_uwsgi_http": ""},
        ["Set at least one of flask_uwsgi_http_socket, flask_uwsgi_socket and flask_uwsgi_http"],
    ),
    ("app-name-with-space", {"flask_uwsgi_app_name": "my app"}, ["flask_uwsgi_app_name must be"]),
    ("app-name-with-dots-and-slash", {"flask_uwsgi_app_name": "../etc"}, ["flask_uwsgi_app_name must be"]),
    ("unknown-uwsgi-package", {"flask_uwsgi_uwsgi_package": "uwsgi2"}, ["flask_uwsgi_uwsgi_package", "uwsgi2"]),
    (
        "pidfile-outside-runtime-dir",
        {"flask_uwsgi_pidfile": "/tmp/app.pid"},
        ["flask_uwsgi_pidfile must be a file directly in /run/flask-demo/"],
    ),
    (
        "socket-outside-runtime-dir",
        {"flask_uwsgi_socket": "/tmp/app.sock"},
        ["flask_uwsgi_socket, when a unix socket path, must be a file directly in /run/flask-demo/"],
    ),
    (
        "listen-queue-over-somaxconn",
        {"flask_uwsgi_listen": 100000},
        ["flask_uwsgi_listen (100000) is larger than this host's net.core.somaxconn"],
    ),
    ("base-dir-climbs-out", {"flask_uwsgi_base_dir": "/opt/../etc"}, ["flask_uwsgi_base_dir must be an absolute path"]),
    ("base-dir-is-a-system-dir", {"flask_uwsgi_base_dir": "/srv"}, ["flask_uwsgi_base_dir must be", "'/srv'"]),
    (
        "writable-path-is-a-system-dir",
        {"flask_uwsgi_writable_paths": ["/etc"]},
        ["flask_uwsgi_writable_paths: '/etc' must be an absolute path", "not a system directory"],
    ),
    ("release-name-unsafe", {"flask_uwsgi_release": "../v2"}, ["flask_uwsgi_release must be empty", "'../v2'"]),
    (
        "keep-no-release",
        {"flask_uwsgi_keep_releases": 0},
        ["flask_uwsgi_keep_releases must be an integer of at least 1"],
    ),
    (
        "log-file-outside-its-directory",
        {"flask_uwsgi_log_file": "/tmp/app.log"},
        ["flask_uwsgi_log_file must be", "/var/log/flask-demo/"],
    ),
    ("log-rotate-unknown", {"flask_uwsgi_log_rotate": "hourly"}, ["flask_uwsgi_log_rotate", "daily, weekly, monthly"]),
    (
        "pip-index-without-scheme",
        {"flask_uwsgi_pip_index_url": "pypi.example.com/simple"},
        ["flask_uwsgi_pip_index_url must be", "'pypi.example.com/simple'"],
    ),
    (
        "pip-wheel-dir-missing",
        {"flask_uwsgi_pip_wheel_dir": "/nonexistent/wheels"},
        ["flask_uwsgi_pip_wheel_dir must be", "'/nonexistent/wheels'"],
    ),
    (
        "pip-ca-bundle-missing",
        {"flask_uwsgi_pip_ca_bundle": "/nonexistent/ca.pem"},
        ["flask_uwsgi_pip_ca_bundle must be", "'/nonexistent/ca.pem'"],
    ),
    ("wheel-cache-relative", {"flask_uwsgi_wheel_cache": "wheels"}, ["flask_uwsgi_wheel_cache must be", "'wheels'"]),
    ("socket-mode-not-octal", {"flask_uwsgi_socket_mode": "999"}, ["flask_uwsgi_socket_mode must be three octal"]),
    (
        "extra-option-bad-name",
        {"flask_uwsgi_extra_options": [{"option": "max requests", "value": 10}]},
        ["flask_uwsgi_extra_options: 'max requests' is not a uWSGI option name"],
    ),
    (
        "extra-option-without-value",
        {"flask_uwsgi_extra_options": [{"option": "harakiri"}]},
        ["flask_uwsgi_extra_options", "value"],
    ),
    ("root-without-opt-in", {"flask_uwsgi_user": "root"}, ["flask_uwsgi_user is root", "flask_uwsgi_allow_root: true"]),
    (
        "port-out-of-range",
        {"flask_uwsgi_http_socket": "127.0.0.1:70000"},
        ["flask_uwsgi_http_socket must be", "a port from 1 to 65535", "'127.0.0.1:70000'"],
    ),
    ("port-zero", {"flask_uwsgi_http": ":0"}, ["flask_uwsgi_http must be", "a port from 1 to 65535", "':0'"]),
    ("address-without-port", {"flask_uwsgi_socket": "localhost"}, ["flask_uwsgi_socket must be", "'localhost'"]),
    (
        "privileged-port-without-opt-in",
        {"flask_uwsgi_http": ":80"},
        ["flask_uwsgi_http must be", "also needs flask_uwsgi_bind_privileged_ports: true", "got ':80'"],
    ),
    (
        "held-address-a-name",
        {"flask_uwsgi_http_socket": "localhost:8000"},
        [
            "flask_uwsgi_http_socket must be an IP address and port",
            "flask_uwsgi_socket_activation",
            "got 'localhost:8000'",
        ],
    ),
    (
        "env-name-invalid",
        {"flask_uwsgi_env": {"API-TOKEN": SECRET}},
        ["flask_uwsgi_env: 'API-TOKEN' is not an environment variable name"],
    ),
    ("env-not-a-mapping", {"flask_uwsgi_env": [f"API_TOKEN={SECRET}"]}, ["flask_uwsgi_env", "dict"]),
    (
        "address-family-invalid",
        {"flask_uwsgi_extra_address_families": ["NETLINK"]},
        ["flask_uwsgi_extra_address_families: 'NETLINK' is not a socket family name"],
    ),
    (
        "shared-dir-outside-the-base-dir",
        {"flask_uwsgi_shared_dirs": ["../uploads"]},
        ["flask_uwsgi_shared_dirs: '../uploads' must be a relative path inside the app's code"],
    ),
    (
        "shared-dir-absolute",
        {"flask_uwsgi_shared_dirs": ["/srv/uploads"]},
        ["flask_uwsgi_shared_dirs: '/srv/uploads' must be a relative path"],
    ),
    (
        "shared-dir-inside-another",
        {"flask_uwsgi_shared_dirs": ["var", "var/uploads"]},
        ["flask_uwsgi_shared_dirs: 'var' must be", "not inside another shared directory"],
    ),
    (
        "release-command-without-command",
        {"flask_uwsgi_release_commands": [{"once": True}]},
        ["flask_uwsgi_release_commands", "command"],
    ),
    (
        "release-command-empty",
        {"flask_uwsgi_release_commands": [{"command": "flask db upgrade"}, {"command": " "}]},
        ["flask_uwsgi_release_commands: item 2 has an empty command"],
    ),
    (
        "worker-without-command",
        {"flask_uwsgi_workers": [{"name": "celery"}]},
        ["flask_uwsgi_workers", "command"],
    ),
    (
        "worker-name-unsafe",
        {"flask_uwsgi_workers": [{"name": "../celery", "command": "celery -A tasks worker"}]},
        ["flask_uwsgi_workers: worker '../celery' needs a name of 1 to 64 letters"],
    ),
    (
        "worker-named-twice",
        {"flask_uwsgi_workers": [{"name": "celery", "command": "celery worker"}, {"name": "celery", "command": "x"}]},
        ["flask_uwsgi_workers: worker 'celery' needs", "used once"],
    ),
    (
        "static-files-from-the-code-and-the-commands",
        {"flask_uwsgi_static_dir": "static", "flask_uwsgi_static_from_commands": True},
        ["flask_uwsgi_static_from_commands", "needs a command in flask_uwsgi_release_commands (got 0)"],
    ),
    (
        "release-command-timeout-zero",
        {"flask_uwsgi_release_command_timeout": 0},
        ["flask_uwsgi_release_command_timeout must be an integer of at least 1"],
    ),
]


def fingerprints(hosts: list[Any]) -> list[str]:
    return [host.check_output(FINGERPRINT) for host in hosts]


def assert_refused_everywhere_unchanged(play: Play, hosts: list[Any], case: str) -> None:
    """Every host failed and changed nothing, by the play's recap."""
    output = play.output
    counts = recap(play)
    for host in hosts:
        name = host.backend.host
        assert name in counts, f"{case}: {name} is not in the play's recap:\n{output[-3000:]}"
        assert (counts[name]["failed"], counts[name]["changed"]) == (1, 0), f"{case}: {name}: {counts[name]}"


# The cases of another role than flask_uwsgi.
EXPORTER_BAD_INPUT = [
    (
        "exporter-address-a-name",
        {"flask_uwsgi_exporter_address": "localhost"},
        ["flask_uwsgi_exporter_address must be an IPv4 or IPv6 address", "got localhost"],
    ),
    (
        "exporter-port-privileged",
        {"flask_uwsgi_exporter_port": 80},
        ["flask_uwsgi_exporter_port", "1024 to 65535", "got"],
    ),
]
BAD_INPUT += EXPORTER_BAD_INPUT
ROLE_OF = {case: "flask_uwsgi_exporter" for case, _, _ in EXPORTER_BAD_INPUT}


def refusal_plays() -> list[dict[str, Any]]:
    """A play per case: the role with the case's settings, the refusal rescued so that the next play runs."""
    return [
        {
            "name": f"refused: {case}",
            "hosts": "app_servers",
            "become": True,
            # Facts last for the whole run.
            "gather_facts": index == 0,
            "vars": settings,
            "tasks": [
                {
                    "name": "Apply the role with one wrong setting",
                    "block": [
                        {
                            "name": "Apply the role",
                            "ansible.builtin.include_role": {"name": ROLE_OF.get(case, "flask_uwsgi")},
                        }
                    ],
                    "rescue": [{"name": "Go on to the next case", "ansible.builtin.meta": "noop"}],
                }
            ],
        }
        for index, (case, settings, _) in enumerate(BAD_INPUT)
    ]


@pytest.fixture(scope="module")
def refusals(bare_hosts: list[Any], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Every case of BAD_INPUT, in one ansible-playbook; its output, and each case's outcomes per host."""
    tmp_path = tmp_path_factory.mktemp("refusals")
    before = fingerprints(bare_hosts)
    playbook = tmp_path / "refusals.yml"
    playbook.write_text(json.dumps(refusal_plays(), indent=1))
    play = run_playbook(str(playbook), {}, tmp_path)
    assert play.returncode == 0, play.output[-3000:]
    outcomes: dict[str, dict[str, list[dict[str, str]]]] = {}
    case = None
    for event in play.events:
        if event["event"] == "play":
            case = event["play"].removeprefix("refused: ")
            outcomes[case] = {}
        elif event["event"] == "outcome" and case is not None:
            outcomes[case].setdefault(event["host"], []).append(event)
    return {"output": play.output, "outcomes": outcomes, "changed": fingerprints(bare_hosts) != before}


@pytest.mark.parametrize(("case", "words"), [(c[0], c[2]) for c in BAD_INPUT], ids=[c[0] for c in BAD_INPUT])
def test_bad_input_is_refused_and_host_untouched(
    bare_hosts: list[Any], refusals: dict[str, Any], case: str, words: list[str]
) -> None:
    assert case in refusals["outcomes"], f"{case}: its play did not run:\n{refusals['output'][-3000:]}"
    for host in bare_hosts:
        outcomes = refusals["outcomes"][case].get(host.backend.host, [])
        failed = [outcome["msg"] for outcome in outcomes if outcome["outcome"] == "failed"]
        assert len(failed) == 1, f"{case}: {host.backend.host}: {len(failed)} tasks failed, not 1: {failed}"
        message = " ".join(failed[0].split())
        for word in words:
            assert " ".join(word.split()) in message, f"{case}: {word!r} not in the refusal: {failed[0]}"
        changed = [outcome for outcome in outcomes if outcome["outcome"] == "changed"]
        assert changed == [], f"{case}: {host.backend.host}: a task changed something before the refusal"


def test_no_refusal_changed_a_host_or_printed_the_secret(bare_hosts: list[Any], refusals: dict[str, Any]) -> None:
    assert not refusals["changed"], "a refused input changed a host's files"
    assert SECRET not in refusals["output"], "a refusal printed the secret"
    for host in bare_hosts:
        assert not host.file("/etc/flask_uwsgi").exists


def test_a_debian_release_the_role_does_not_support_is_refused(unsupported_host: Any, tmp_path: Path) -> None:
    """A Debian 11 host, put into app_servers for this play only: refused, naming both releases."""
    inventory = tmp_path / "unsupported.yml"
    inventory.write_text("app_servers:\n  children:\n    unsupported:\n")
    before = unsupported_host.check_output(FINGERPRINT)
    result = deploy(tmp_path, {}, "-i", str(inventory), "--limit", "unsupported")
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-3000:]
    expected = "flask_uwsgi supports Debian 12 (bookworm) and Debian 13 (trixie); this host runs Debian 11."
    assert expected in " ".join(output.split()), output[-3000:]
    assert_refused_everywhere_unchanged(result, [unsupported_host], "debian-11")
    assert unsupported_host.check_output(FINGERPRINT) == before
    assert not unsupported_host.file("/etc/flask_uwsgi").exists


@pytest.mark.parametrize("tag", ["flask_uwsgi_release", "flask_uwsgi_config", "flask_uwsgi_service"])
def test_a_tag_that_needs_a_deployed_app_is_refused_on_a_bare_host(
    bare_hosts: list[Any], tmp_path: Path, tag: str
) -> None:
    before = fingerprints(bare_hosts)
    result = deploy(tmp_path, ONE_BATCH, "--tags", tag)
    assert result.returncode != 0, result.output[-3000:]
    expected = f"--tags {tag} needs flask-demo deployed on this host, and it is not"
    assert expected in " ".join(result.output.split()), result.output[-3000:]
    assert_refused_everywhere_unchanged(result, bare_hosts, tag)
    assert fingerprints(bare_hosts) == before


def test_a_tag_the_role_does_not_have_is_refused(bare_hosts: list[Any], tmp_path: Path) -> None:
    """flask_uwsgi_install was a tag of an earlier version: it would select nothing and report success."""
    before = fingerprints(bare_hosts)
    result = deploy(tmp_path, ONE_BATCH, "--tags", "flask_uwsgi_install")
    assert result.returncode != 0, result.output[-3000:]
    expected = (
        "--tags flask_uwsgi_install: flask_uwsgi has no such tag; its tags are flask_uwsgi, flask_uwsgi_accounts,"
    )
    assert expected in " ".join(result.output.split()), result.output[-3000:]
    assert_refused_everywhere_unchanged(result, bare_hosts, "flask_uwsgi_install")
    assert fingerprints(bare_hosts) == before


def test_an_option_that_kills_the_workers_on_python_3_13_is_refused_there(
    bare_hosts: list[Any], tmp_path: Path
) -> None:
    """py-call-osafterfork works on Debian 12's Python 3.11; on Debian 13's 3.13 every worker dies at fork."""
    before = fingerprints(bare_hosts)
    option = {"flask_uwsgi_extra_options": [{"option": "py-call-osafterfork", "value": True}]}
    result = deploy(tmp_path, {**ONE_BATCH, **option})
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-3000:]
    assert "flask_uwsgi_extra_options: py-call-osafterfork kills every worker as it forks on Python 3.13" in " ".join(
        output.split()
    ), output[-3000:]
    counts = recap(result)
    # Refused on Debian 13; the play then stops on Debian 12 too (any_errors_fatal), before any change.
    assert {
        host.backend.host: (counts[host.backend.host]["failed"], counts[host.backend.host]["changed"])
        for host in bare_hosts
    } == {
        "flask-uwsgi-validation-debian12": (0, 0),
        "flask-uwsgi-validation-debian13": (1, 0),
    }
    assert fingerprints(bare_hosts) == before


def test_check_mode_on_a_bare_host_shows_the_files_and_changes_nothing(bare_hosts: list[Any], tmp_path: Path) -> None:
    before = fingerprints(bare_hosts)
    # With every step a deploy can have: shared data, a release command and a worker.
    steps = {
        "flask_uwsgi_shared_dirs": ["data"],
        "flask_uwsgi_release_commands": [{"command": "python -c pass", "once": True}],
        "flask_uwsgi_workers": [{"name": "heartbeat", "command": "python worker.py"}],
    }
    result = deploy(tmp_path, {**ONE_BATCH, **steps, "flask_uwsgi_env": {"API_TOKEN": SECRET}}, "--check", "--diff")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    # The diff holds the ini and the unit that a real run would write, for each host, and never the secret.
    for line in [
        "+[uwsgi]",
        "+module = app",
        "+http-socket = fd://3",
        "+ListenStream=127.0.0.1:8000",
        "+ExecStart=/opt/flask-demo/current/venv/bin/uwsgi --ini /etc/flask_uwsgi/flask-demo.ini",
        "+Description=heartbeat worker of flask-demo",
    ]:
        assert output.count(line) == len(bare_hosts), f"{line!r} not in the diff for each host:\n{output[-3000:]}"
    # In the service's unit and in the worker's.
    assert output.count("+EnvironmentFile=/etc/flask_uwsgi/flask-demo.env") == 2 * len(bare_hosts), output[-3000:]
    assert SECRET not in output
    assert fingerprints(bare_hosts) == before, "check mode changed a host"
    for host in bare_hosts:
        assert not host.file("/etc/flask_uwsgi").exists
