"""A deploy reloads or restarts exactly when the README's table says, check mode tells the truth, and a
service that uWSGI refuses fails the deploy with its journal."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from deploys import PROBES, UNIT, deployed, everywhere, get, main_pid, main_pids, restarted_under_load, unchanged
from flask_uwsgi_testing import ONE_BATCH, demo_release, deploy, not_run, recap


def test_good_release_deploys(deployed_hosts: list[Any]) -> None:
    for host in deployed_hosts:
        assert host.service("flask-demo").is_running
        assert get(host, "/")[0] == 200


def test_check_mode_on_a_converged_host_reports_no_change(
    app_hosts: list[Any], tmp_path: Path, deployed_hosts: list[Any]
) -> None:
    masters = main_pids(app_hosts)
    play = deployed(tmp_path, {}, "--check", "--diff")
    assert unchanged(play, app_hosts), play.output[-3000:]
    assert main_pids(app_hosts) == masters


def test_code_change_is_a_graceful_reload(app_hosts: list[Any], tmp_path: Path, deployed_hosts: list[Any]) -> None:
    """New code reaches the workers through a reload: same master, new answer, no restart."""
    # The hosts serve the first deploy's release (the check mode test changed nothing): new code for them.
    code = str(demo_release(tmp_path, "reloaded", after=PROBES))
    masters = main_pids(app_hosts)
    play = deployed(tmp_path, {"flask_uwsgi_app_src": code, "flask_uwsgi_health_path": "/version"})
    assert everywhere(play, "Reload the app's service", app_hosts) == "changed"
    assert everywhere(play, "Restart the app's service", app_hosts) == "skipping"
    # New code, the same dependencies: the virtualenv built for them before serves again, pip does not run.
    assert not_run(play, "Install uWSGI into the virtualenv")
    assert main_pids(app_hosts) == masters
    for host in app_hosts:
        assert get(host, "/version") == (200, "probes")


def test_unit_change_is_a_restart_that_fails_no_request(app_hosts: list[Any], tmp_path: Path, probes: str) -> None:
    """The restart keeps the port open (socket activation): under load, no request fails."""
    deployed(tmp_path, {"flask_uwsgi_app_src": probes})
    masters = main_pids(app_hosts)
    play, loads = restarted_under_load(
        app_hosts, "a unit change", tmp_path, {"flask_uwsgi_app_src": probes, "flask_uwsgi_restart_sec": 3}
    )
    assert everywhere(play, "Restart the app's service", app_hosts) == "changed"
    assert everywhere(play, "Reload the app's service", app_hosts) == "skipping"
    for host, master, load in zip(app_hosts, masters, loads, strict=True):
        assert main_pid(host) != master
        assert host.check_output(f"systemctl show {UNIT} --property RestartUSec --value") == "3s"
        assert load["failed"] == 0, load["errors"]


def test_config_that_uwsgi_refuses_fails_the_deploy_with_its_journal(
    app_hosts: list[Any], tmp_path: Path, deployed_hosts: list[Any]
) -> None:
    """An ini uWSGI will not run (strict mode, an unknown option): the play fails with the journal,
    and the next deploy of a good ini brings the service back."""
    result = deploy(
        tmp_path,
        {
            **ONE_BATCH,
            "flask_uwsgi_extra_options": [{"option": "no-such-option", "value": 1}],
            "flask_uwsgi_health_timeout": 10,
        },
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "flask-demo.service did not start and answer / on 127.0.0.1:8000" in output, output[-3000:]
    counts = recap(result)
    assert [counts[host.backend.host]["failed"] for host in app_hosts] == [1, 1], counts
    assert "Last lines of its journal" in output
    assert "[strict-mode] unknown config directive: no-such-option" in output
    deployed(tmp_path, {})
    for host in app_hosts:
        assert get(host, "/")[0] == 200
