"""How every driftloop Kafka client connects: one resolved :class:`KafkaConnection`, keyword arguments per library.

The ``kafka`` config section says where the cluster is and how to authenticate; :func:`connection` resolves it
once (the password from ``$DRIFTLOOP_KAFKA_PASSWORD``, ``kafka.sasl_password_file`` or the file itself; the CA
bundle, by default the local broker's) and each client takes its arguments from it, so no call site builds its
own security settings:

* kafka-python (producers, consumers, admin): ``KafkaProducer(**conn.kafka_python(), acks="all")``
* aiokafka: ``AIOKafkaConsumer(**conn.aiokafka(), group_id=None)``
* Faust: ``faust.App(id, **conn.faust(), ...)`` (``broker`` and ``broker_credentials``)

A plain address string still works wherever a connection is accepted (:func:`resolve`): it means PLAINTEXT.
``str(conn)`` is the bootstrap address, so messages that name the cluster stay unchanged; the password never
appears in ``repr``.

>>> conn = KafkaConnection("127.0.0.1:9092")
>>> conn.kafka_python()
{'bootstrap_servers': '127.0.0.1:9092', 'security_protocol': 'PLAINTEXT'}
>>> s = KafkaConnection("b:9094", "SASL_SSL", "SCRAM-SHA-512", "alice", "s3cret", "/ca.pem")
>>> "s3cret" in repr(s), str(s)
(False, 'b:9094')
"""

from __future__ import annotations

import dataclasses
import os
import ssl
from pathlib import Path
from typing import Any, Mapping

from streams.config import KAFKA_PROTOCOLS as PROTOCOLS
from streams.config import KAFKA_SASL_MECHANISMS as MECHANISMS
from streams.config import ConfigError, KafkaSettings, kafka_settings

PASSWORD_ENV = "DRIFTLOOP_KAFKA_PASSWORD"
#: where the local broker's launcher writes its CA certificate, under the broker's state folder
LOCAL_CA = Path("tls") / "ca.pem"


@dataclasses.dataclass(frozen=True)
class KafkaConnection:
    """Where the cluster is and how to authenticate, resolved (the password read, the CA file found)."""

    bootstrap: str
    protocol: str = "PLAINTEXT"
    mechanism: str = ""
    username: str = ""
    password: str = dataclasses.field(default="", repr=False)
    cafile: str = ""  # empty with SASL_SSL: the system's trusted CAs

    def __str__(self) -> str:
        return self.bootstrap

    @property
    def secure(self) -> bool:
        return self.protocol == "SASL_SSL"

    def ssl_context(self) -> ssl.SSLContext:
        """TLS with certificate and host name checks, trusting ``cafile`` (or the system's CAs)."""
        try:
            return ssl.create_default_context(cafile=self.cafile or None)
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError(f"kafka.ssl_cafile {self.cafile} holds no usable CA certificate (PEM) ({exc}); point it "
                              "at the CA that signed the brokers' certificates") from None

    def kafka_python(self) -> dict[str, Any]:
        """Keyword arguments of kafka-python's ``KafkaProducer``, ``KafkaConsumer`` and ``KafkaAdminClient``."""
        kw: dict[str, Any] = {"bootstrap_servers": self.bootstrap, "security_protocol": self.protocol}
        if self.secure:
            kw.update(sasl_mechanism=self.mechanism, sasl_plain_username=self.username,
                      sasl_plain_password=self.password, ssl_context=self.ssl_context())
        return kw

    def aiokafka(self) -> dict[str, Any]:
        """Keyword arguments of aiokafka's ``AIOKafkaProducer``, ``AIOKafkaConsumer`` and admin client (aiokafka
        takes the same names as kafka-python)."""
        return self.kafka_python()

    def faust(self) -> dict[str, Any]:
        """Keyword arguments of ``faust.App``: ``broker`` (one ``kafka://`` URL per address) and its credentials."""
        kw: dict[str, Any] = {"broker": [f"kafka://{b.strip()}" for b in self.bootstrap.split(",") if b.strip()]}
        if self.secure:
            import faust

            kw["broker_credentials"] = faust.SASLCredentials(
                username=self.username, password=self.password, ssl_context=self.ssl_context(),
                mechanism=self.mechanism)
        return kw

    def job_settings(self) -> dict[str, Any]:
        """The ``kafka`` section to hand to another process (a Ray job) without the password: it reads that from
        ``sasl_password_file`` (see :func:`password_file_for`) or its own environment."""
        out: dict[str, Any] = {"bootstrap_servers": self.bootstrap, "security_protocol": self.protocol}
        if self.secure:
            out.update(sasl_mechanism=self.mechanism, sasl_username=self.username, ssl_cafile=self.cafile)
        return out


def resolve(target: "str | KafkaConnection | KafkaSettings") -> KafkaConnection:
    """A connection from an address (PLAINTEXT), a :class:`KafkaSettings`, or a connection (returned as is)."""
    if isinstance(target, KafkaConnection):
        return target
    if isinstance(target, KafkaSettings):
        return from_settings(target)
    return KafkaConnection(str(target))


def connection(raw: Mapping[str, Any], env: Mapping[str, str] | None = None) -> KafkaConnection:
    """The connection the config file (``raw``, as loaded) and the environment describe."""
    return from_settings(kafka_settings(raw), env)


def from_settings(s: KafkaSettings, env: Mapping[str, str] | None = None) -> KafkaConnection:
    """Resolve the ``kafka`` section: check the protocol and mechanism, read the password, find the CA file.

    Raises :class:`ConfigError` saying what to set when something is missing; never with the password in it.
    """
    env = os.environ if env is None else env
    protocol = s.security_protocol.upper()
    if protocol not in PROTOCOLS:
        raise ConfigError(f"kafka.security_protocol must be one of {list(PROTOCOLS)}, got {s.security_protocol!r}")
    if protocol == "PLAINTEXT":
        return KafkaConnection(s.bootstrap_servers)
    mechanism = s.sasl_mechanism.upper()
    if mechanism not in MECHANISMS:
        raise ConfigError(f"kafka.sasl_mechanism must be one of {list(MECHANISMS)}, got {s.sasl_mechanism!r}")
    if not s.sasl_username:
        raise ConfigError("kafka.security_protocol is SASL_SSL but kafka.sasl_username is empty; set it")
    password = read_password(s, env)
    cafile = s.ssl_cafile
    if not cafile and not s.external:
        cafile = str(s.local_state_dir() / LOCAL_CA)
    if cafile and not Path(cafile).is_file():
        hint = ("start the local broker first (`driftloop kafka start` writes it)" if not s.ssl_cafile
                else "point kafka.ssl_cafile at the PEM file of the CA that signed the brokers' certificates")
        raise ConfigError(f"the Kafka CA file {cafile} does not exist: {hint}")
    return KafkaConnection(s.bootstrap_servers, protocol, mechanism, s.sasl_username, password, cafile)


def read_password(s: KafkaSettings, env: Mapping[str, str]) -> str:
    """The SASL password: ``$DRIFTLOOP_KAFKA_PASSWORD``, else ``kafka.sasl_password_file``, else ``kafka.sasl_password``."""
    if env.get(PASSWORD_ENV):
        return env[PASSWORD_ENV]
    if s.sasl_password_file:
        p = Path(s.sasl_password_file).expanduser()
        try:
            text = p.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"kafka.sasl_password_file {p} cannot be read ({exc.strerror}); "
                              f"fix the path or set {PASSWORD_ENV}") from None
        if not text:
            raise ConfigError(f"kafka.sasl_password_file {p} is empty; write the password into it")
        return text
    if s.sasl_password:
        return s.sasl_password
    raise ConfigError(f"kafka.security_protocol is SASL_SSL but no password was given: set {PASSWORD_ENV}, or "
                      "kafka.sasl_password_file to a file (mode 0600) holding it")


def write_secret_file(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` to ``path`` readable by its owner only (mode 0600, also when the file existed)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    return p


def child_section(conn: KafkaConnection, settings: KafkaSettings, folder: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``kafka`` config section for a process driftloop starts (a Ray job, the demo's worker): the address, the
    protocol, the user and the CA file, and the password only as the path of a 0600 file (:func:`password_file_for`)."""
    out = conn.job_settings()
    if conn.secure:
        out["sasl_password_file"] = password_file_for(conn, settings, folder)
    return out


def password_file_for(conn: KafkaConnection, settings: KafkaSettings, folder: str | os.PathLike[str]) -> str:
    """A file holding the connection's password for another process on this machine (or a shared file system):
    ``kafka.sasl_password_file`` when that is where it came from, else a 0600 file written under ``folder``."""
    if not conn.secure:
        return ""
    if settings.sasl_password_file and not os.environ.get(PASSWORD_ENV):
        return str(Path(settings.sasl_password_file).expanduser().resolve())
    return str(write_secret_file(Path(folder) / "kafka-password", conn.password).resolve())
