"""HTTPS at Debian 13's nginx: a self-signed certificate for staging beside a certificate from a CA
made here on other ports. Runs last: test_multi_app.py has removed the blog by then, so both sites
pass requests to the shop."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from flask_uwsgi_testing import Play, recap, request_in_host, run_playbook, task_outcome
from tls_testing import TestCA, check_tls_policy, https_get, put_ca, s_client, served_after_reload

SHOP = {"name": "shop", "listen": 80, "upstreams": ["unix:/run/shop/uwsgi.sock"]}
BLOG = {"name": "blog", "listen": 8080, "upstreams": ["unix:/run/shop/uwsgi.sock"]}
SHOP_KEY = "/etc/nginx/tls/private/flask_uwsgi-shop.key"
SHOP_CERTIFICATE = "/etc/nginx/tls/flask_uwsgi-shop.crt"

# Runs inside the host (Debian's python3-cryptography, which the role installed): signs the
# certificate again with its key, the same names, serial and extensions, valid from yesterday for
# the given number of days.
REDATE = r"""
import datetime as dt, sys
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
certificate_path, key_path, days = sys.argv[1], sys.argv[2], int(sys.argv[3])
with open(certificate_path, "rb") as file:
    certificate = x509.load_pem_x509_certificate(file.read())
with open(key_path, "rb") as file:
    key = serialization.load_pem_private_key(file.read(), None)
now = dt.datetime.now(dt.timezone.utc)
builder = (x509.CertificateBuilder().subject_name(certificate.subject).issuer_name(certificate.issuer)
           .public_key(certificate.public_key()).serial_number(certificate.serial_number)
           .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=days)))
for extension in certificate.extensions:
    builder = builder.add_extension(extension.value, extension.critical)
with open(certificate_path, "wb") as file:
    file.write(builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))
"""


def nginx(tmp_path: Path, shop: dict[str, Any], blog: dict[str, Any], *options: str) -> Play:
    """Run the nginx role alone with these two sites (and ansible-playbook options)."""
    play = run_playbook("molecule/multi_app/nginx.yml", {"flask_uwsgi_nginx_sites": [shop, blog]}, tmp_path, *options)
    assert play.returncode == 0, play.output[-3000:]
    return play


def on_disk(host: Any) -> str:
    """The SHA-256 fingerprint of the shop's certificate file, as served() prints it."""
    out = host.check_output("openssl x509 -noout -fingerprint -sha256 -in %s", SHOP_CERTIFICATE)
    return re.search(r"Fingerprint=(\S+)", out)[1]


def served(host: Any, port: int, name: str) -> tuple[str, str]:
    """The certificate the site serves: its host names (subjectAltName) and its SHA-256 fingerprint."""
    out = host.check_output(
        f"echo | openssl s_client -connect 127.0.0.1:{port} -servername {name} 2>/dev/null"
        " | openssl x509 -noout -ext subjectAltName -fingerprint -sha256"
    )
    names = re.search(r"Subject Alternative Name:\s*\n\s*(.+)", out)[1].strip()
    fingerprint = re.search(r"Fingerprint=(\S+)", out)[1]
    return names, fingerprint


@pytest.fixture(scope="module")
def https(host: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The shop self-signed on 443 and still on plain HTTP; the blog with the CA's certificate on 8443,
    its plain HTTP redirected there."""
    files = tmp_path_factory.mktemp("tls")
    ca = TestCA(files)
    issued = ca.issue("blog", "blog.test")
    shop = {**SHOP, "server_name": "shop.test www.shop.test", "tls_self_signed": True, "tls_redirect": False}
    blog = {
        **BLOG,
        "server_name": "blog.test",
        "tls_certificate": str(issued.certificate),
        "tls_key": str(issued.key),
        "tls_port": 8443,
    }
    play = nginx(files, shop, blog)
    return {"play": play, "files": files, "shop": shop, "blog": blog, "cafile": put_ca(host, ca)}


def test_https_follows_the_tls_policy_on_debian_13(https: dict[str, Any], host: Any) -> None:
    check_tls_policy(host, 8443, "blog.test", https["cafile"])
    # OpenSSL 3.5 offers the post-quantum hybrid key exchange first, as Mozilla lists it.
    assert "Negotiated TLS1.3 group: X25519MLKEM768" in s_client(host, 8443, "blog.test").stdout


def test_plain_http_is_redirected_to_the_https_port(https: dict[str, Any], host: Any) -> None:
    out = host.check_output(
        "python3 -c %s",
        "import http.client; c = http.client.HTTPConnection('127.0.0.1', 8080); "
        "c.request('GET', '/a?b=1', headers={'Host': 'blog.test'}); r = c.getresponse(); "
        "print(r.status, r.getheader('Location'))",
    )
    assert out == "308 https://blog.test:8443/a?b=1"


def test_a_self_signed_certificate_names_the_site_and_stays(https: dict[str, Any], host: Any) -> None:
    names, fingerprint = served(host, 443, "shop.test")
    assert names == "DNS:shop.test, DNS:www.shop.test"
    answer = host.check_output(
        "python3 -c %s",
        "import http.client, ssl; c = http.client.HTTPSConnection('127.0.0.1', 443, "
        "context=ssl._create_unverified_context()); c.request('GET', '/', headers={'Host': 'shop.test'}); "
        "print(c.getresponse().read().decode())",
    )
    assert answer.startswith("Hello from flask-demo"), answer
    key = host.file(SHOP_KEY)
    assert (key.user, key.group, key.mode) == ("root", "root", 0o600)
    # tls_redirect false: plain HTTP still serves the app.
    status, body = request_in_host(host, "127.0.0.1:80")
    assert status.endswith("200 OK"), (status, body)
    assert body.startswith("Hello from flask-demo"), body

    # A second run keeps the key and the certificate, and changes nothing; check mode says so first.
    key_before = key.sha256sum
    for options in (["--check", "--diff"], []):
        play = nginx(https["files"], https["shop"], https["blog"], *options)
        assert [counts["changed"] for counts in recap(play).values()] == [0], play.output[-3000:]
    assert served(host, 443, "shop.test")[1] == fingerprint

    # The role's certificate signed again with only its dates changed: with 60 days left it is
    # kept, with 10 days left it is made again, for a year.
    for days, renewed in ((60, False), (10, True)):
        host.check_output("python3 -c %s %s %s %s", REDATE, SHOP_CERTIFICATE, SHOP_KEY, str(days))
        host.check_output("systemctl reload nginx")
        before = on_disk(host)
        assert served_after_reload(lambda: served(host, 443, "shop.test")[1], before) == before
        play = nginx(https["files"], https["shop"], https["blog"])
        assert (task_outcome(play, "self_signed | Make each self-signed certificate") == "changed") is renewed
        after = on_disk(host)
        assert (after != before) is renewed
        assert served_after_reload(lambda: served(host, 443, "shop.test")[1], after) == after
    end = host.run("openssl x509 -noout -checkend %s -in %s", str(300 * 86400), SHOP_CERTIFICATE)
    assert end.rc == 0, end.stdout
    fingerprint = served(host, 443, "shop.test")[1]

    # Other host names: a new certificate naming them, for the same key.
    nginx(https["files"], {**https["shop"], "server_name": "staging.test"}, https["blog"])
    served_after_reload(lambda: served(host, 443, "staging.test")[1], on_disk(host))
    names, new_fingerprint = served(host, 443, "staging.test")
    assert names == "DNS:staging.test"
    assert new_fingerprint != fingerprint
    assert host.file(SHOP_KEY).sha256sum == key_before
    assert https_get(host, 8443, "blog.test", https["cafile"])["status"].endswith("200 OK")
