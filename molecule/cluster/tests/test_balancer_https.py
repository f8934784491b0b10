"""HTTPS at the balancer (Debian 12's nginx), with a certificate from a CA made here and its key kept
in Ansible Vault. pytest takes the files in order: these run first, while the apps serve (the last
tests of test_cluster.py remove them), and end with the balancer's site as the inventory has it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from flask_uwsgi_testing import Play, load_during, not_run, recap, request_in_host, run_playbook, task_outcome
from tls_testing import Issued, TestCA, check_tls_policy, https_get, put_ca, served_after_reload, vault_encrypt

NAME = "flask-demo.test"
CERTIFICATE = "/etc/nginx/tls/flask_uwsgi-flask-demo.crt"
KEY = "/etc/nginx/tls/private/flask_uwsgi-flask-demo.key"
SITE = "/etc/nginx/conf.d/flask_uwsgi-flask-demo.conf"


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tls")


@pytest.fixture(scope="module")
def ca(files: Path) -> TestCA:
    return TestCA(files)


@pytest.fixture(scope="module")
def vault_password(files: Path) -> Path:
    path = files / "vault-password"
    path.write_text("a test vault password\n")
    return path


def site(issued: Issued | None = None, **keys: Any) -> dict[str, Any]:
    """The balancer's site of the inventory, over HTTPS with this certificate."""
    https = {"tls_certificate": str(issued.certificate), "tls_key": str(issued.key)} if issued else {}
    return {
        "flask_uwsgi_nginx_sites": [
            {
                "name": "flask-demo",
                "protocol": "http",
                "upstreams": ["flask-uwsgi-cluster-app1:8000", "flask-uwsgi-cluster-app2:8000"],
                "server_name": NAME,
                **https,
                **keys,
            }
        ]
    }


def nginx(extra_vars: dict[str, Any], tmp_path: Path, vault_password: Path, *options: str) -> Play:
    """Run the balancer's play of playbooks/deploy.yml (the app servers are left alone)."""
    return run_playbook(
        "playbooks/deploy.yml",
        extra_vars,
        tmp_path,
        "--limit",
        "load_balancers",
        "--vault-password-file",
        str(vault_password),
        *options,
    )


@pytest.fixture(scope="module")
def first(ca: TestCA, vault_password: Path, files: Path, balancer: Any) -> dict[str, Any]:
    """HTTPS turned on, with HSTS, and the key encrypted with ansible-vault; run with --diff and -vvv."""
    issued = ca.issue("first", NAME)
    key_text = issued.key.read_text()
    vault_encrypt(issued.key, vault_password)
    play = nginx(site(issued, hsts_max_age=600), files, vault_password, "--diff", "-vvv")
    assert play.returncode == 0, play.output[-3000:]
    return {"play": play, "issued": issued, "key_text": key_text, "cafile": put_ca(balancer, ca)}


def test_https_follows_the_tls_policy_and_reaches_the_apps(first: dict[str, Any], balancer: Any) -> None:
    check_tls_policy(balancer, 443, NAME, first["cafile"])
    answer = https_get(balancer, 443, NAME, first["cafile"])
    assert answer["sha256"] == first["issued"].sha256
    assert answer["body"].startswith("Hello from flask-demo"), answer
    assert answer["headers"]["strict-transport-security"] == "max-age=600", answer["headers"]


def test_plain_http_is_redirected_to_https(first: dict[str, Any], balancer: Any) -> None:
    out = balancer.check_output(
        "python3 -c %s",
        "import http.client; c = http.client.HTTPConnection('127.0.0.1', 80); "
        f"c.request('GET', '/visits?x=1', headers={{'Host': '{NAME}'}}); r = c.getresponse(); "
        "print(r.status, r.getheader('Location'), r.getheader('Strict-Transport-Security'))",
    )
    # 308 keeps the method and body of a POST; HSTS is only for answers over HTTPS.
    assert out == f"308 https://{NAME}/visits?x=1 None"


def test_the_key_is_root_s_alone_and_never_printed(first: dict[str, Any], balancer: Any) -> None:
    key = balancer.file(KEY)
    assert (key.user, key.group, key.mode) == ("root", "root", 0o600)
    directory = balancer.file(KEY.rpartition("/")[0])
    assert (directory.user, directory.mode) == ("root", 0o700)
    # The vault-encrypted file was decrypted on the way: the host has the key itself.
    assert key.content_string.strip() == first["key_text"].strip()
    body = "".join(first["key_text"].strip().splitlines()[1:-1])
    for line in first["key_text"].strip().splitlines()[1:-1]:
        assert line not in first["play"].output
    assert body[:40] not in first["play"].output.replace("\n", "")
    # The play did print the certificate's diff, so --diff was on.
    assert "BEGIN CERTIFICATE" in first["play"].output


def test_a_second_run_changes_nothing(first: dict[str, Any], files: Path, vault_password: Path) -> None:
    issued = first["issued"]
    play = nginx(site(issued, hsts_max_age=600), files, vault_password)
    assert play.returncode == 0, play.output[-3000:]
    assert [counts["changed"] for counts in recap(play).values()] == [0], play.output[-3000:]


def test_a_new_certificate_reloads_nginx_under_load_without_a_failed_request(
    first: dict[str, Any], ca: TestCA, files: Path, vault_password: Path, balancer: Any
) -> None:
    master = balancer.check_output("systemctl show --property MainPID --value nginx")
    renewed = ca.issue("renewed", NAME)
    vault_encrypt(renewed.key, vault_password)
    play, stats = load_during(
        balancer, 443, lambda: nginx(site(renewed, hsts_max_age=600), files, vault_password), scheme="https"
    )
    print(f"new certificate under load over HTTPS: {stats['figures']}")
    assert play.returncode == 0, play.output[-3000:]
    assert stats["failed"] == 0, stats["errors"]
    assert stats["requests"] > 50, stats
    read = lambda: https_get(balancer, 443, NAME, first["cafile"])["sha256"]  # noqa: E731
    assert served_after_reload(read, renewed.sha256) == renewed.sha256
    # A reload: the same master, new workers.
    assert balancer.check_output("systemctl show --property MainPID --value nginx") == master


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("expired", "the certificate of site 'flask-demo' ({certificate}) expired on"),
        ("stray key", "the key of site 'flask-demo' ({key}) does not belong to its certificate"),
        ("missing", "names a tls_certificate or tls_key that is not a file on the controller: {certificate}"),
        ("not PEM inside", "the certificate or key of site 'flask-demo' could not be read: "),
    ],
)
def test_a_bad_certificate_is_refused_before_nginx_is_touched(
    case: str, message: str, ca: TestCA, files: Path, vault_password: Path, balancer: Any
) -> None:
    good = ca.issue(f"good-{case}", NAME)
    if case == "expired":
        issued = ca.issue("expired", NAME, expired=True)
    elif case == "stray key":
        issued = Issued(good.certificate, ca.stray_key("stray"), good.sha256)
    elif case == "missing":
        issued = Issued(files / "missing.crt", good.key, good.sha256)
    else:
        garbage = files / "garbage.crt"
        garbage.write_text("-----BEGIN CERTIFICATE-----\nAAAAnot a certificate\n-----END CERTIFICATE-----\n")
        issued = Issued(garbage, good.key, good.sha256)
    before = {path: balancer.file(path).sha256sum for path in (CERTIFICATE, KEY, SITE)}
    play = nginx(site(issued), files, vault_password)
    assert play.returncode != 0
    expected = message.format(certificate=issued.certificate, key=issued.key)
    assert expected in " ".join(play.output.split()), play.output[-3000:]
    assert not_run(play, "sites | Write each app's site")
    assert {path: balancer.file(path).sha256sum for path in before} == before


def test_a_quoted_boolean_is_refused(files: Path, vault_password: Path, first: dict[str, Any]) -> None:
    # A string "false" is true to Jinja: the role would redirect when told not to.
    play = nginx(site(first["issued"], tls_redirect="false"), files, vault_password)
    assert play.returncode != 0
    assert "true or false, unquoted, for tls_self_signed and tls_redirect" in " ".join(play.output.split())
    assert not_run(play, "sites | Write each app's site")


def test_a_configuration_nginx_refuses_puts_the_earlier_certificate_and_key_back(
    first: dict[str, Any], ca: TestCA, files: Path, vault_password: Path, balancer: Any
) -> None:
    """A new certificate, or only other modes, with a site nginx refuses (an upstream that does not
    resolve): the earlier files come back, none is lost, and nginx serves what it served."""
    broken = {"name": "broken", "listen": 8081, "upstreams": ["no-such-host.invalid:8000"]}
    # Back to the first certificate (the test before left another), then other modes on the host.
    play = nginx(site(first["issued"], hsts_max_age=600), files, vault_password)
    assert play.returncode == 0, play.output[-3000:]
    read = lambda: https_get(balancer, 443, NAME, first["cafile"])["sha256"]  # noqa: E731
    served = served_after_reload(read, first["issued"].sha256)
    assert served == first["issued"].sha256
    before = {path: balancer.file(path).sha256sum for path in (CERTIFICATE, KEY, SITE)}
    renewed = ca.issue("refused", NAME)
    balancer.check_output(f"chmod 0640 {CERTIFICATE} {KEY}")
    for issued in (first["issued"], renewed):  # first only the modes differ (no backup), then the files too
        settings = site(issued, hsts_max_age=600)
        settings["flask_uwsgi_nginx_sites"].append(broken)
        play = nginx(settings, files, vault_password)
        assert play.returncode != 0
        assert "The nginx sites were not changed" in play.output, play.output[-3000:]
        assert {path: balancer.file(path).sha256sum for path in before} == before
        assert not balancer.file("/etc/nginx/conf.d/flask_uwsgi-broken.conf").exists
        assert balancer.run("nginx -t").rc == 0
    # No backup is left beside the key.
    assert balancer.check_output(f"ls {KEY.rpartition('/')[0]}") == KEY.rpartition("/")[2]
    assert https_get(balancer, 443, NAME, first["cafile"])["sha256"] == served


def test_https_off_removes_the_certificate_and_key_and_serves_plain_http(
    files: Path, vault_password: Path, balancer: Any
) -> None:
    # The site of the inventory (molecule.yml), as the converge left it: the next tests need it.
    play = nginx(
        {"flask_uwsgi_nginx_sites": balancer.ansible.get_variables()["flask_uwsgi_nginx_sites"]}, files, vault_password
    )
    assert play.returncode == 0, play.output[-3000:]
    assert task_outcome(play, "sites | Write each app's site") == "changed"
    assert not balancer.file(CERTIFICATE).exists
    assert not balancer.file(KEY).exists
    status, body = request_in_host(balancer, "127.0.0.1:80")
    assert status.endswith("200 OK"), (status, body)
    assert body.startswith("Hello from flask-demo"), body
    assert balancer.run("echo | timeout 5 openssl s_client -connect 127.0.0.1:443").rc != 0
