"""A throwaway certificate authority and a server certificate for 127.0.0.1, made with the openssl CLI."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class TlsFiles:
    """PEM files: the CA that signed the server certificate, and the server's certificate and key."""

    ca_cert: Path
    cert: Path
    key: Path

    def server_config(self) -> list[str]:
        """redis-server / redis-sentinel config lines serving TLS with these files (clients need no certificate)."""
        return [
            f'tls-cert-file "{self.cert}"',
            f'tls-key-file "{self.key}"',
            f'tls-ca-cert-file "{self.ca_cert}"',
            "tls-auth-clients no",
            # Replicas, and sentinels talking to the servers they watch, use TLS too.
            "tls-replication yes",
        ]


def make_tls_files(directory: Path) -> TlsFiles:
    """A CA and a server certificate valid for IP 127.0.0.1 and localhost, for one day."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise RuntimeError("openssl is not installed")
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca_cert = directory / "ca.key", directory / "ca.crt"
    key, csr, cert = directory / "server.key", directory / "server.csr", directory / "server.crt"
    extensions = directory / "server.ext"
    extensions.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], check=True, capture_output=True, timeout=60)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=jollyjet-test-ca",
        "-keyout", str(ca_key), "-out", str(ca_cert))  # fmt: skip
    run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(csr))
    run("x509", "-req", "-in", str(csr), "-CA", str(ca_cert), "-CAkey", str(ca_key), "-CAcreateserial",
        "-days", "1", "-extfile", str(extensions), "-out", str(cert))  # fmt: skip
    key.chmod(0o600)
    return TlsFiles(ca_cert=ca_cert, cert=cert, key=key)
