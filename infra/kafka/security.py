"""SASL_SSL (SCRAM) on the local broker's client listener: TLS files, SCRAM users, the properties that use them.

With ``kafka.security_protocol: SASL_SSL`` the launcher (:mod:`infra.kafka.launcher`) asks this module for

* :meth:`BrokerSecurity.ensure_tls`: a private CA and a broker certificate for 127.0.0.1 / localhost, made once
  with Python's ``cryptography`` under ``<state_dir>/tls`` (``ca.pem``, which clients trust by default, and the
  broker's PKCS#12 keystore with a random password; private files are mode 0600);
* :meth:`BrokerSecurity.format_args`: the SCRAM credentials ``kafka-storage format`` writes into the metadata log,
  the configured user and an internal one the broker itself uses between its listeners.  They are passed as salt
  and salted password (base64), so no password ever appears on a command line;
* :meth:`BrokerSecurity.properties`: the client listener becomes ``SASL_SSL://127.0.0.1:<port>`` (no plaintext
  listener for clients), SCRAM as the only mechanism, inter-broker traffic over the same listener.

The KRaft controller listener stays PLAINTEXT on 127.0.0.1 (loopback only): Kafka's controllers do not take SCRAM.

>>> scram_entry("SCRAM-SHA-512", "alice", "pw", salt=b"0123456789abcdef", iterations=4096)[:40]
'SCRAM-SHA-512=[name="alice",iterations=4'
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import hashlib
import json
import secrets
from pathlib import Path

from streams.adapters.kafka_clients import LOCAL_CA, KafkaConnection, from_settings, write_secret_file
from streams.config import ConfigError, KafkaSettings

INTERNAL_USER = "driftloop-broker"
SCRAM_ITERATIONS = 8192
_HASH = {"SCRAM-SHA-512": "sha512", "SCRAM-SHA-256": "sha256"}


def scram_entry(mechanism: str, user: str, password: str, *, salt: bytes | None = None,
                iterations: int = SCRAM_ITERATIONS) -> str:
    """One ``--add-scram`` value with the salted password (RFC 5802 ``Hi()``), never the password itself."""
    salt = salt or secrets.token_bytes(16)
    salted = hashlib.pbkdf2_hmac(_HASH[mechanism], password.encode("utf-8"), salt, iterations)
    b64 = base64.b64encode
    return (f'{mechanism}=[name="{user}",iterations={iterations},'
            f'salt="{b64(salt).decode()}",saltedpassword="{b64(salted).decode()}"]')


@dataclasses.dataclass(frozen=True)
class BrokerSecurity:
    """SASL_SSL for one local broker: the client user (resolved from the ``kafka`` section) and the TLS folder."""

    client: KafkaConnection
    state_dir: Path

    @classmethod
    def for_broker(cls, settings: KafkaSettings, state_dir: Path) -> "BrokerSecurity | None":
        """None for PLAINTEXT; else the broker's security, with the password read as every client reads it."""
        if settings.security_protocol.upper() == "PLAINTEXT":
            return None
        mechanism = settings.sasl_mechanism.upper()
        if mechanism not in _HASH:
            raise ConfigError(f"the local broker supports SCRAM-SHA-512 or SCRAM-SHA-256, not {settings.sasl_mechanism!r}; "
                              "set kafka.sasl_mechanism")
        ensure_tls(state_dir / "tls")  # made once, before the broker first starts
        ours = dataclasses.replace(settings, ssl_cafile=str(state_dir / LOCAL_CA))  # the broker's own CA
        return cls(from_settings(ours), state_dir)

    @property
    def tls_dir(self) -> Path:
        return self.state_dir / "tls"

    def internal_password(self) -> str:
        """The broker's own SCRAM password (inter-broker traffic), made once, kept in a 0600 file."""
        p = self.tls_dir / "internal-password"
        if not p.is_file():
            write_secret_file(p, secrets.token_hex(24))
        return p.read_text().strip()

    def format_args(self) -> list[str]:
        """``kafka-storage format`` arguments adding the client user and the broker's internal user."""
        m = self.client.mechanism
        return ["--add-scram", scram_entry(m, self.client.username, self.client.password),
                "--add-scram", scram_entry(m, INTERNAL_USER, self.internal_password())]

    def users(self) -> list[str]:
        return sorted({self.client.username, INTERNAL_USER})

    def properties(self, port: int, controller_port: int) -> dict[str, str]:
        """``server.properties`` entries replacing the PLAINTEXT client listener by SASL_SSL."""
        tls = ensure_tls(self.tls_dir)
        m = self.client.mechanism
        jaas = (f'org.apache.kafka.common.security.scram.ScramLoginModule required username="{INTERNAL_USER}" '
                f'password="{self.internal_password()}";')
        return {
            "listeners": f"SASL_SSL://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
            "advertised.listeners": f"SASL_SSL://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
            "inter.broker.listener.name": "SASL_SSL",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL",
            "sasl.enabled.mechanisms": m,
            "sasl.mechanism.inter.broker.protocol": m,
            f"listener.name.sasl_ssl.{m.lower()}.sasl.jaas.config": jaas,
            "ssl.keystore.type": "PKCS12",
            "ssl.keystore.location": str(tls.keystore),
            "ssl.keystore.password": tls.store_password,
            "ssl.key.password": tls.store_password,
            "ssl.truststore.type": "PEM",
            "ssl.truststore.location": str(tls.ca_pem),
            "ssl.endpoint.identification.algorithm": "https",
            "ssl.client.auth": "none",
        }

    def describe(self) -> str:
        """One line for ``driftloop kafka start``: how clients authenticate, and the CA other clients must trust."""
        return (f"clients: SASL_SSL ({self.client.mechanism}) as user {self.client.username!r}; "
                f"CA certificate (kafka.ssl_cafile for clients elsewhere): {self.client.cafile}")

    def redact(self, text: str) -> str:
        """``text`` without any of the passwords this broker knows (for error messages)."""
        for secret in (self.client.password, self.internal_password()):
            if secret:
                text = text.replace(secret, "***")
        return text


@dataclasses.dataclass(frozen=True)
class TlsFiles:
    ca_pem: Path
    keystore: Path
    store_password: str = dataclasses.field(repr=False)


def ensure_tls(folder: Path, hosts: tuple[str, ...] = ("127.0.0.1", "localhost"), days: int = 825) -> TlsFiles:
    """A private CA and a broker certificate signed by it for ``hosts``, made once in ``folder``.

    Needs Python's ``cryptography`` package (a dependency of Ray and Feast, so normally present).
    """
    folder.mkdir(parents=True, exist_ok=True)
    ca_pem, keystore, meta = folder / "ca.pem", folder / "broker.p12", folder / "keystore.json"
    if ca_pem.is_file() and keystore.is_file() and meta.is_file():
        return TlsFiles(ca_pem, keystore, json.loads(meta.read_text())["store_password"])
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.hazmat.primitives.serialization import pkcs12
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    except ImportError:
        raise ConfigError("a SASL_SSL local broker needs Python's `cryptography` package to make its certificates: "
                          "pip install cryptography (or bring your own cluster with KAFKA_BOOTSTRAP_SERVERS)") from None
    import ipaddress

    now = datetime.datetime.now(datetime.timezone.utc)
    start = now - datetime.timedelta(minutes=5)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (x509.CertificateBuilder().subject_name(name("driftloop local Kafka CA")).issuer_name(name("driftloop local Kafka CA"))
               .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(start).not_valid_after(now + datetime.timedelta(days=days))
               .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
               .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
               .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    sans = [x509.IPAddress(ipaddress.ip_address(h)) if h[0].isdigit() else x509.DNSName(h) for h in hosts]
    cert = (x509.CertificateBuilder().subject_name(name(hosts[-1])).issuer_name(ca_cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    password = secrets.token_hex(16)
    p12 = pkcs12.serialize_key_and_certificates(b"broker", key, cert, [ca_cert],
                                                serialization.BestAvailableEncryption(password.encode()))
    keystore.write_bytes(p12)
    keystore.chmod(0o600)
    write_secret_file(meta, json.dumps({"store_password": password}))
    ca_pem.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))  # last: its presence means "done"
    return TlsFiles(ca_pem, keystore, password)
