"""Helpers for the HTTPS tests of flask_uwsgi_nginx: a CA made in the test, and clients run in the host."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from flask_uwsgi_testing import ansible_env

# Runs inside the test host: one GET over HTTPS to 127.0.0.1:port, verifying the server's chain
# against cafile and its certificate against name, as a browser does. Prints JSON: the TLS version,
# the SHA-256 of the server's certificate and the answer, or why verification failed.
HTTPS_CLIENT = r"""
import hashlib, json, socket, ssl, sys
port, name, cafile, path = sys.argv[1:5]
context = ssl.create_default_context(cafile=cafile)
try:
    with socket.create_connection(("127.0.0.1", int(port)), timeout=30) as raw:
        with context.wrap_socket(raw, server_hostname=name) as sock:
            sock.sendall(f"GET {path} HTTP/1.0\r\nHost: {name}\r\n\r\n".encode())
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
            certificate = sock.getpeercert(binary_form=True)
            print(json.dumps({"version": sock.version(), "sha256": hashlib.sha256(certificate).hexdigest(),
                              "answer": answer.decode(errors="replace")}))
except ssl.SSLCertVerificationError as error:
    print(json.dumps({"verify_error": error.verify_message}))
"""

NOW = dt.datetime.now(dt.UTC)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _key_usage(**on: bool) -> x509.KeyUsage:
    names = ("digital_signature", "content_commitment", "key_encipherment", "data_encipherment", "key_agreement")
    names += ("key_cert_sign", "crl_sign", "encipher_only", "decipher_only")
    flags = dict.fromkeys(names, False)
    return x509.KeyUsage(**{**flags, **on})


def _pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@dataclass
class Issued:
    """A certificate the test CA issued, as files on the controller: the certificate followed by the
    CA's (a chain, as a real CA delivers it), its key, and the certificate's SHA-256."""

    certificate: Path
    key: Path
    sha256: str


class TestCA:
    """A certificate authority made for one test module, with RFC 5280 extensions strict enough for
    Python 3.13's default verification (Debian 13)."""

    __test__ = False  # not a pytest class

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.certificate = (
            x509.CertificateBuilder()
            .subject_name(_name("flask_uwsgi test CA"))
            .issuer_name(_name("flask_uwsgi test CA"))
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(NOW - dt.timedelta(hours=1))
            .not_valid_after(NOW + dt.timedelta(days=7))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_key_usage(key_cert_sign=True, crl_sign=True), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        self.path = directory / "ca.crt"
        self.path.write_bytes(_pem(self.certificate))

    def issue(self, file_name: str, dns_name: str, *, expired: bool = False) -> Issued:
        """A server certificate for dns_name and its key, written as <file_name>.crt and .key."""
        key = ec.generate_private_key(ec.SECP256R1())
        not_after = NOW - dt.timedelta(days=1) if expired else NOW + dt.timedelta(days=7)
        ca_key_id = self.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        certificate = (
            x509.CertificateBuilder()
            .subject_name(_name(dns_name))
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_after - dt.timedelta(days=8))
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(digital_signature=True), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(dns_name)]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_key_id), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        issued = Issued(
            certificate=self.directory / f"{file_name}.crt",
            key=self.directory / f"{file_name}.key",
            sha256=certificate.fingerprint(hashes.SHA256()).hex(),
        )
        issued.certificate.write_bytes(_pem(certificate) + _pem(self.certificate))
        issued.key.write_bytes(_key_pem(key))
        return issued

    def stray_key(self, file_name: str) -> Path:
        """A key that belongs to no certificate."""
        path = self.directory / f"{file_name}.key"
        path.write_bytes(_key_pem(ec.generate_private_key(ec.SECP256R1())))
        return path


def vault_encrypt(path: Path, password_file: Path) -> None:
    """Encrypt the file in place with ansible-vault, as a user keeps a key in the repository."""
    subprocess.run(
        ["ansible-vault", "encrypt", "--vault-password-file", str(password_file), str(path)],
        env=ansible_env(),
        check=True,
        capture_output=True,
    )


def https_get(host: Any, port: int, name: str, cafile: str, path: str = "/") -> dict[str, Any]:
    """One verified GET over HTTPS from inside the host (see HTTPS_CLIENT), with the answer's status
    line and headers parsed: {"version", "sha256", "status", "headers", "body"} or {"verify_error"}."""
    result = json.loads(host.check_output("python3 -c %s %s %s %s %s", HTTPS_CLIENT, str(port), name, cafile, path))
    if "answer" in result:
        head, _, result["body"] = result.pop("answer").partition("\r\n\r\n")
        status, *lines = head.split("\r\n")
        result["status"] = status
        result["headers"] = {key.lower(): value.strip() for key, _, value in (line.partition(":") for line in lines)}
    return result


def s_client(host: Any, port: int, name: str, *options: str) -> Any:
    """openssl s_client from inside the host against 127.0.0.1:port, offering what options say; the
    command's result (rc, stdout with the handshake's summary, stderr with any alert)."""
    # What the server sends after the handshake (an HTTP/2 SETTINGS frame) is binary: cat -v shows it.
    command = "openssl s_client -connect 127.0.0.1:%s -servername %s " + " ".join(["%s"] * len(options))
    return host.run(
        f"echo | timeout 20 {command} > /tmp/s_client.out; rc=$?; cat -v /tmp/s_client.out; exit $rc",
        str(port),
        name,
        *options,
    )


def put_ca(host: Any, ca: TestCA) -> str:
    """Copy the CA's certificate into the host, for the clients there; its path in the host."""
    path = "/tmp/flask_uwsgi-test-ca.crt"
    host.check_output("printf '%%s' %s > %s", ca.path.read_text(), path)
    return path


def check_tls_policy(host: Any, port: int, name: str, cafile: str) -> None:
    """What the site's TLS settings promise (Mozilla's intermediate): a client verifies the chain and
    the name and gets TLS 1.3 and HTTP/2; TLS 1.2 with a strong cipher works; the server itself
    refuses TLS 1.1 and a weak cipher; a client that expects another name refuses the certificate."""
    answer = https_get(host, port, name, cafile)
    assert answer.get("version") == "TLSv1.3", answer
    assert answer["status"].endswith("200 OK"), answer
    wrong_name = https_get(host, port, f"other-{name}", cafile)
    assert "Hostname mismatch" in wrong_name.get("verify_error", ""), wrong_name

    h2 = s_client(host, port, name, "-alpn", "h2,http/1.1")
    assert "ALPN protocol: h2" in h2.stdout, h2.stdout + h2.stderr
    strong = s_client(host, port, name, "-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256")
    assert "Cipher is ECDHE-ECDSA-AES128-GCM-SHA256" in strong.stdout, strong.stdout + strong.stderr
    # SECLEVEL=0 lets the client really offer TLS 1.1; alert 70 (protocol version) is the server's
    # refusal. OpenSSL's own default level would refuse it with alert 80 instead.
    old = s_client(host, port, name, "-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0")
    assert old.rc != 0, old.stdout
    assert "SSL alert number 70" in old.stderr, old.stdout + old.stderr
    assert "Cipher is (NONE)" in old.stdout, old.stdout
    # A CBC cipher with SHA-1, for the certificate's key type (ECDSA); TLS 1.2, or 1.3 would be chosen.
    weak = s_client(host, port, name, "-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-SHA")
    assert weak.rc != 0, weak.stdout
    assert "SSL alert number 40" in weak.stderr, weak.stdout + weak.stderr
    assert "Cipher is (NONE)" in weak.stdout, weak.stdout
    # nginx -t warns of nothing, such as a deprecated directive.
    test = host.run("nginx -t")
    assert test.rc == 0, test.stderr
    assert "[warn]" not in test.stderr, test.stderr


def served_after_reload(read: Any, expected: str, timeout: float = 10) -> str:
    """What read() returns once it is expected, or after timeout seconds: after a reload, nginx's old
    workers may still take a connection or two, with the old certificate, while the new ones start."""
    deadline = time.monotonic() + timeout
    while (value := read()) != expected and time.monotonic() < deadline:
        time.sleep(0.2)
    return value
