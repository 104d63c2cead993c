"""Configuration: one YAML file (optional) plus environment overrides.

Every subsystem owns a typed dataclass for its own section of the file and
builds it with :func:`section`.  Nothing here knows about Kafka clients,
Faust, Feast or Ray; it only reads mappings.

Example file::

    kafka:
      bootstrap_servers: 127.0.0.1:9092
    topics:
      inputs: driftloop.inputs
    drift:
      window_seconds: 60

Lookup order for the file: the ``--config`` argument, then the
``DRIFTLOOP_CONFIG`` environment variable, then no file (embedded defaults).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Mapping, TypeVar

import yaml

T = TypeVar("T")

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"
KAFKA_PROTOCOLS = ("PLAINTEXT", "SASL_SSL")
KAFKA_SASL_MECHANISMS = ("SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN")


class ConfigError(ValueError):
    """A configuration value is missing, unknown or has the wrong type."""


def load_file(path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Read the YAML config file, or return ``{}`` when none is given."""
    path = path or os.environ.get("DRIFTLOOP_CONFIG")
    if not path:
        return {}
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {p} does not exist; pass --config PATH or unset DRIFTLOOP_CONFIG")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:  # where and what, never the line itself (it may hold a secret)
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ConfigError(f"config file {p} is not valid YAML{at}: {_problem(exc)}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {p} must hold a mapping at the top level, got {type(data).__name__}")
    check_sections(data, f"config file {p}")
    return data


def _problem(exc: BaseException) -> str:
    """PyYAML's problem text without the quoted bits of the document it may carry (an alias name, a token)."""
    import re

    problem = str(getattr(exc, "problem", None) or type(exc).__name__)
    return re.sub(r"'[^']*'|\"[^\"]*\"", "'...'", problem)


#: words of a key (split at "_") whose value is never echoed in an error, and whole keys that are secrets
SECRET_WORDS = frozenset({"password", "passwd", "secret", "secrets", "token", "credential", "credentials"})
SECRET_KEYS = frozenset({"hmac_key", "api_key", "private_key", "signing_key"})


def is_secret_key(path: str) -> bool:
    """Whether the value at ``path`` is a secret that must not appear in messages.

    >>> is_secret_key("kafka.sasl_password"), is_secret_key("x.signing_key"), is_secret_key("trainers.tokenizer")
    (True, True, False)
    """
    last = path.rsplit(".", 1)[-1].split("[", 1)[0].lower()
    return last in SECRET_KEYS or bool(SECRET_WORDS & set(last.split("_")))


def _shown(path: str, value: Any) -> str:
    """How an error shows a value: its repr, or only its type for a secret."""
    return f"(a value hidden: {path} is a secret)" if is_secret_key(path) else repr(value)


def section(cls: type[T], raw: Mapping[str, Any] | None, name: str = "") -> T:
    """Build dataclass ``cls`` from a mapping, refusing unknown keys with a clear error.

    Nested dataclass fields are built recursively; missing keys keep their defaults.
    """
    raw = dict(raw or {})
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        where = f"section '{name}'" if name else cls.__name__
        raise ConfigError(f"unknown key(s) {unknown} in {where}; known keys: {sorted(fields)}")
    kwargs: dict[str, Any] = {}
    hints = _resolved_hints(cls)
    for key, value in raw.items():
        ftype = hints.get(key)
        path = f"{name}.{key}" if name else key
        if isinstance(ftype, type) and dataclasses.is_dataclass(ftype) and isinstance(value, Mapping):
            value = section(ftype, value, path)
        elif ftype is not None:
            value = _checked(value, ftype, path)
        kwargs[key] = value
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        where = f"section '{name}'" if name else cls.__name__
        raise ConfigError(f"{where}: {exc}") from None


_SCALARS: dict[type, str] = {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}


def _checked(value: Any, hint: Any, path: str) -> Any:
    """``value`` if it fits type ``hint`` (ints are accepted for floats, lists for tuples), else :class:`ConfigError`.

    Checks scalars, ``X | None``, ``tuple[X, ...]``, ``list[X]`` and ``dict``; other hints are left
    to the dataclass's own ``__post_init__``.
    """
    import types
    import typing

    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _checked(value, arg, path)
            except ConfigError as exc:
                errors.append(exc)
        if errors:
            raise errors[0]
        return value
    if hint in _SCALARS:
        ok = isinstance(value, hint) and not (hint is not bool and isinstance(value, bool))
        if hint is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if not ok:
            raise ConfigError(f"{path}: expected {_SCALARS[hint]}, got {type(value).__name__} {_shown(path, value)}")
        return value
    if origin in (tuple, list) or hint in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{path}: expected a list, got {type(value).__name__} {_shown(path, value)}")
        args = typing.get_args(hint)
        item = args[0] if args else None
        if item is not None and item is not Ellipsis:
            value = [_checked(v, item, f"{path}[{i}]") for i, v in enumerate(value)]
        return tuple(value) if (origin is tuple or hint is tuple) else list(value)
    if origin is dict or hint is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{path}: expected a mapping, got {type(value).__name__} {_shown(path, value)}")
        return dict(value)
    return value


#: Top-level sections of the config file and the module that reads each one.
SECTIONS: dict[str, str] = {
    "kafka": "streams.config.KafkaSettings",
    "topics": "streams.config.Topics",
    "drift": "streams.judge.drift_config.DriftConfig",
    "slo": "streams.judge.slo.SloConfig",
    "worker": "streams.worker.state.WorkerConfig",
    "parity": "streams.adapters.parity_step.ParitySettings",
    "features": "feature_repo.settings.FeaturesSettings",
    "dispatcher": "trainers.dispatch.ledger.DispatcherConfig",
    "trainers": "trainers.retrain_job.TrainerConfig",
    "promotion": "trainers.promotion.live_gate.LiveGateConfig",
    "licences": "trainers.licences.LicencePolicy",
    "registry": "trainers.registry_signing.RegistrySettings",
}


def check_all(raw: Mapping[str, Any]) -> None:
    """Build every section of ``raw`` with its dataclass, so that a wrong key or type anywhere in the file is
    refused at start whatever the command (:class:`ConfigError` with the key's path)."""
    import importlib

    check_sections(raw)
    for name, target in SECTIONS.items():
        if raw.get(name) is None:
            continue
        if name == "kafka":
            kafka_settings(raw)
            continue
        module, cls = target.rsplit(".", 1)
        section(getattr(importlib.import_module(module), cls), raw.get(name), name)
    retrain = (raw.get("worker") or {}).get("retrain")
    if retrain is not None:
        from streams.alerts.retrain_policy import RetrainPolicyConfig

        section(RetrainPolicyConfig, retrain, "worker.retrain")


def check_sections(raw: Mapping[str, Any], where: str = "the configuration") -> None:
    """Refuse an unknown top-level section (``topic:`` for ``topics:``) or a section that is not a mapping."""
    unknown = sorted(str(k) for k in raw if k not in SECTIONS)
    if unknown:
        import difflib

        hints = [f"{k!r} (did you mean {m[0]!r}?)" if (m := difflib.get_close_matches(k, SECTIONS, 1)) else repr(k)
                 for k in unknown]
        raise ConfigError(f"unknown section(s) {', '.join(hints)} in {where}; known sections: {sorted(SECTIONS)}")
    for k, v in raw.items():
        if v is not None and not isinstance(v, Mapping):
            raise ConfigError(f"section '{k}' in {where} must be a mapping of keys, got {type(v).__name__} "
                              f"(the value is not shown: it may hold a secret)")


def _resolved_hints(cls: type) -> dict[str, Any]:
    import typing

    try:
        return typing.get_type_hints(cls)
    except Exception:  # pragma: no cover - exotic annotations
        return {}


@dataclasses.dataclass(frozen=True)
class KafkaSettings:
    """Where Kafka is and how driftloop's own local broker is started.

    ``bootstrap_servers``: the cluster to use. ``KAFKA_BOOTSTRAP_SERVERS`` overrides it.
    ``external``: when true (or when the bootstrap address came from the environment or a
    file), ``driftloop kafka start`` does nothing: the user brings their own cluster.
    """

    bootstrap_servers: str = DEFAULT_BOOTSTRAP
    external: bool = False
    state_dir: str = ""  # default: $DRIFTLOOP_HOME/kafka (see infra.kafka.launcher)
    port: int = 9092
    controller_port: int = 9093
    start_timeout_s: float = 90.0
    heap: str = "512m"
    # Local cluster size: 1, or 3 combined controller+broker nodes (node i on port + 2(i-1) and
    # controller_port + 2(i-1)); topics then get replication factor 3 and min.insync.replicas 2.
    nodes: int = 1
    # Security of every client driftloop makes (and of the local broker, which then serves SASL_SSL only on its
    # client port): PLAINTEXT, or SASL_SSL with a SCRAM (or PLAIN) user; see streams/adapters/kafka_clients.py.
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str = "SCRAM-SHA-512"
    sasl_username: str = ""
    #: prefer $DRIFTLOOP_KAFKA_PASSWORD or ``sasl_password_file`` to a password written in the config file
    sasl_password: str = dataclasses.field(default="", repr=False)
    sasl_password_file: str = ""
    ssl_cafile: str = ""  # CA bundle (PEM) that signed the brokers' certificates; default: the local broker's CA

    def __post_init__(self) -> None:
        for key in ("port", "controller_port"):
            if not 1 <= int(getattr(self, key)) <= 65535:
                raise ValueError(f"kafka.{key} must be a TCP port, 1 to 65535, got {getattr(self, key)}")
        if self.security_protocol.upper() not in KAFKA_PROTOCOLS:
            raise ValueError(f"kafka.security_protocol must be one of {list(KAFKA_PROTOCOLS)}, "
                             f"got {self.security_protocol!r}")
        if self.sasl_mechanism.upper() not in KAFKA_SASL_MECHANISMS:
            raise ValueError(f"kafka.sasl_mechanism must be one of {list(KAFKA_SASL_MECHANISMS)}, "
                             f"got {self.sasl_mechanism!r}")

    def local_state_dir(self) -> Path:
        """The local broker's state folder (``state_dir``, else ``$DRIFTLOOP_HOME/kafka``)."""
        return Path(self.state_dir).resolve() if self.state_dir else home() / "kafka"


@dataclasses.dataclass(frozen=True)
class Topics:
    """Topic names (docs/design.md defaults). Dead letters of topic T go to ``T.dlq``."""

    inputs: str = "driftloop.inputs"
    labels: str = "driftloop.labels"
    alerts: str = "driftloop.alerts"
    retrain_requests: str = "driftloop.retrain-requests"
    retrain_results: str = "driftloop.retrain-results"
    labelled: str = "driftloop.labelled"
    model_updates: str = "driftloop.model-updates"
    partitions: int = 4

    @staticmethod
    def dlq(topic: str) -> str:
        return f"{topic}.dlq"


def kafka_settings(raw: Mapping[str, Any]) -> KafkaSettings:
    """The ``kafka`` section, with ``KAFKA_BOOTSTRAP_SERVERS`` taking precedence.

    An address from the environment or from the file means the user brings their own
    cluster, unless the section says ``external: false`` explicitly.
    """
    sect = dict(raw.get("kafka") or {})
    env = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    from_outside = "bootstrap_servers" in sect or bool(env)
    if env:
        sect["bootstrap_servers"] = env
    if from_outside and "external" not in sect:
        sect["external"] = True
    settings = section(KafkaSettings, sect, "kafka")
    if not from_outside and ("port" in sect or settings.nodes > 1):
        port, n = settings.port, max(1, settings.nodes)
        settings = dataclasses.replace(
            settings, bootstrap_servers=",".join(f"127.0.0.1:{port + 2 * i}" for i in range(n)))
    return settings


def topics(raw: Mapping[str, Any]) -> Topics:
    return section(Topics, raw.get("topics"), "topics")


def home() -> Path:
    """driftloop's state folder (local broker data, registry, caches).

    ``DRIFTLOOP_HOME`` overrides the default ``./.driftloop`` under the current directory.
    """
    return Path(os.environ.get("DRIFTLOOP_HOME") or Path.cwd() / ".driftloop").resolve()
