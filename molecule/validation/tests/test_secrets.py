"""flask_uwsgi_env reaches the app exactly, appears nowhere else, and a new value restarts the service."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from deploys import ENV_FILE, deployed, everywhere, get, main_pid, main_pids, restarted_under_load, unchanged

# Values a naive quoting would mangle; the first few characters are what the searches look for.
SECRETS = {
    "SECRET_KEY": "s3cr3t-7f1c9a \"quoted\" 'single' back\\slash $HOME ${PATH} `cmd` #hash ;semi",
    "PEM": "-----BEGIN KEY-----\nk3y-b0dy-4e8d\\n\n-----END KEY-----",
}
NEEDLES = ["s3cr3t-7f1c9a", "k3y-b0dy-4e8d"]


def digest(secrets: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps([secrets["SECRET_KEY"], secrets["PEM"]]).encode()).hexdigest()


def with_secrets(probes: str, secrets: dict[str, str]) -> dict[str, Any]:
    """Settings that deploy the secrets; the health path (for the release check and the deploy's
    probe alike) answers 200 only if the app got exactly these values."""
    return {
        "flask_uwsgi_app_src": probes,
        "flask_uwsgi_env": {**secrets, "EXPECTED_DIGEST": digest(secrets)},
        "flask_uwsgi_health_path": "/secret-digest",
    }


def test_secrets_reach_the_app_and_nothing_else(app_hosts: list[Any], tmp_path: Path, probes: str) -> None:
    """flask_uwsgi_env reaches the release check and the app exactly, and no log, file or output holds it."""
    # The most verbose play there is, with diffs: it must still not print a secret.
    output = deployed(tmp_path, with_secrets(probes, SECRETS), "--diff", "-vvv").output
    for needle in NEEDLES:
        assert needle not in output, f"the play printed {needle!r}"
    for host in app_hosts:
        assert get(host, "/secret-digest") == (200, digest(SECRETS))
        env_file = host.file(ENV_FILE)
        assert (env_file.user, env_file.group, env_file.mode) == ("root", "root", 0o600)
        assert host.run(f"runuser -u flask-demo -- cat {ENV_FILE}").rc != 0, "the app's user can read the secrets"
        for needle in NEEDLES:
            # Not in the ini, the unit, the code, the logs, or anything Ansible left behind: only the file.
            found = host.run(f"grep -rlF -- {needle} /etc /opt /run /var/log /tmp /root /usr/local").stdout.split()
            assert found == [ENV_FILE], f"{needle!r} found in {found}"
            assert host.run(f"journalctl --output verbose --no-pager | grep -cF -- {needle}").stdout.strip() == "0"

    again = deployed(tmp_path, with_secrets(probes, SECRETS), "--diff")
    assert unchanged(again, app_hosts), again.output[-3000:]
    assert not any(needle in again.output for needle in NEEDLES)


def test_new_secret_values_alone_restart_the_service_and_fail_no_request(
    app_hosts: list[Any], tmp_path: Path, probes: str
) -> None:
    """A reload would keep the master's environment: new values need a restart, and get one. The hosts
    run with SECRETS, as the test before left them (its last deploy changed nothing)."""
    rotated = {**SECRETS, "SECRET_KEY": SECRETS["SECRET_KEY"].replace("quoted", "rotated")}
    masters = main_pids(app_hosts)
    play, loads = restarted_under_load(app_hosts, "new secret values", tmp_path, with_secrets(probes, rotated))
    assert everywhere(play, "config | Write the app's systemd unit", app_hosts) == "ok", "not a values-only test"
    assert everywhere(play, "config | Write the app's uwsgi.ini", app_hosts) == "ok"
    assert everywhere(play, "Restart the app's service", app_hosts) == "changed"
    for host, master, load in zip(app_hosts, masters, loads, strict=True):
        assert main_pid(host) != master
        assert get(host, "/secret-digest") == (200, digest(rotated))
        # The restart keeps the port open (socket activation): no request fails.
        assert load["failed"] == 0, load["errors"]
