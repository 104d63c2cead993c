"""Secrets stay secret: config errors, client settings, Ray job submissions (issue 15, locked-down defaults).

A canary password is put where a user would put it; every channel that could echo it is searched for it.
The same canary goes through a real SASL_SSL broker, the worker, produce and alerts in tests/test_kafka_sasl.py.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from streams import config as C
from streams.adapters import kafka_clients as K

CANARY = "canary-7Qx-not-for-logs"
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def cafile(tmp_path: Path) -> str:
    from infra.kafka.security import ensure_tls

    return str(ensure_tls(tmp_path / "tls").ca_pem)


def _sasl(cafile: str, **extra) -> dict:
    return {"kafka": {"bootstrap_servers": "b1:9094", "security_protocol": "SASL_SSL", "sasl_username": "alice",
                      "ssl_cafile": cafile, **extra}}


# --------------------------------------------------------------------------- the config file


@pytest.mark.parametrize("text", [
    f'kafka:\n  sasl_password: "{CANARY}\n  sasl_username: alice\n',  # unclosed quote on the password line
    f"kafka:\n  sasl_password: {CANARY}: x\n",  # a mapping where a scalar was meant
    f"kafka:\n  sasl_password: *{CANARY}\n",  # an alias that does not exist (PyYAML quotes its name)
    f"kafka:\n  sasl_password: [{CANARY}\n",
])
def test_a_yaml_error_never_echoes_the_password_line(tmp_path: Path, text: str) -> None:
    p = tmp_path / "driftloop.yaml"
    p.write_text(text)
    with pytest.raises(C.ConfigError) as err:
        C.load_file(p)
    assert CANARY not in str(err.value) and "not valid YAML at line" in str(err.value)


@pytest.mark.parametrize("kafka", [
    {"sasl_password": [CANARY]},
    {"sasl_password": {"x": CANARY}},
    {"sasl_password": 12345},
])
def test_a_type_error_names_the_key_not_the_secret_value(kafka: dict) -> None:
    with pytest.raises(C.ConfigError) as err:
        C.check_all({"kafka": kafka})
    assert "kafka.sasl_password" in str(err.value)
    assert CANARY not in str(err.value) and "12345" not in str(err.value)


def test_a_section_that_is_not_a_mapping_is_not_echoed() -> None:
    with pytest.raises(C.ConfigError) as err:
        C.check_all({"kafka": CANARY})
    assert CANARY not in str(err.value) and "kafka" in str(err.value)


def test_the_cli_prints_a_bad_config_without_the_password(tmp_path: Path) -> None:
    p = tmp_path / "driftloop.yaml"
    p.write_text(f'kafka:\n  security_protocol: SASL_SSL\n  sasl_password: "{CANARY}\n')
    r = subprocess.run([sys.executable, "-m", "streams.cli", "--config", str(p), "alerts"], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "bad configuration" in r.stderr
    assert CANARY not in r.stdout + r.stderr


# --------------------------------------------------------------------------- resolving the section


def test_password_from_the_environment_then_a_file_then_the_config(tmp_path: Path, cafile: str) -> None:
    f = K.write_secret_file(tmp_path / "pw", CANARY + "-file\n")
    assert stat.S_IMODE(f.stat().st_mode) == 0o600
    raw = _sasl(cafile, sasl_password_file=str(f), sasl_password=CANARY + "-config")
    assert K.connection(raw, env={K.PASSWORD_ENV: CANARY}).password == CANARY
    assert K.connection(raw, env={}).password == CANARY + "-file"
    del raw["kafka"]["sasl_password_file"]
    assert K.connection(raw, env={}).password == CANARY + "-config"


def test_a_missing_password_or_ca_says_what_to_set(tmp_path: Path, cafile: str) -> None:
    with pytest.raises(C.ConfigError, match=K.PASSWORD_ENV):
        K.connection(_sasl(cafile), env={})
    with pytest.raises(C.ConfigError, match="kafka.ssl_cafile"):
        K.connection(_sasl(str(tmp_path / "nope.pem")), env={K.PASSWORD_ENV: CANARY})
    with pytest.raises(C.ConfigError, match="security_protocol"):
        K.connection({"kafka": {"security_protocol": "SSL_PLEASE"}}, env={})
    with pytest.raises(C.ConfigError, match="sasl_mechanism"):
        C.check_all({"kafka": {"security_protocol": "SASL_SSL", "sasl_mechanism": "GSSAPI"}})
    (tmp_path / "junk.pem").write_text("not a certificate\n")
    junk = K.connection(_sasl(str(tmp_path / "junk.pem")), env={K.PASSWORD_ENV: CANARY})
    with pytest.raises(C.ConfigError, match="no usable CA certificate"):
        junk.kafka_python()


def test_every_client_library_gets_the_same_security(cafile: str) -> None:
    conn = K.connection(_sasl(cafile), env={K.PASSWORD_ENV: CANARY})
    for kw in (conn.kafka_python(), conn.aiokafka()):
        assert kw["security_protocol"] == "SASL_SSL" and kw["sasl_mechanism"] == "SCRAM-SHA-512"
        assert kw["sasl_plain_username"] == "alice" and kw["sasl_plain_password"] == CANARY
        assert kw["ssl_context"].check_hostname
    faust_kw = conn.faust()
    assert faust_kw["broker"] == ["kafka://b1:9094"]
    creds = faust_kw["broker_credentials"]
    assert creds.mechanism.value == "SCRAM-SHA-512" and creds.protocol.value == "SASL_SSL"
    assert CANARY not in repr(conn) and CANARY not in repr(creds) and str(conn) == "b1:9094"
    assert CANARY not in repr(C.kafka_settings(_sasl(cafile, sasl_password=CANARY)))


def test_plaintext_stays_the_default() -> None:
    conn = K.connection({}, env={})
    assert conn.kafka_python() == {"bootstrap_servers": C.DEFAULT_BOOTSTRAP, "security_protocol": "PLAINTEXT"}
    assert "broker_credentials" not in conn.faust()


# --------------------------------------------------------------------------- Ray jobs


class _Client:
    def __init__(self) -> None:
        self.calls: list[dict] = []

    def submit_job(self, **kw) -> str:
        self.calls.append(kw)
        return kw["submission_id"]


def test_a_ray_job_gets_a_password_file_never_the_password(tmp_path: Path, cafile: str,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from trainers.cli.dispatcher import JobsAdapter, job_settings
    from trainers.dispatch.ledger import Submit
    from trainers.records import RetrainRequest

    monkeypatch.setenv(K.PASSWORD_ENV, CANARY)
    monkeypatch.setenv("DRIFTLOOP_HOME", str(tmp_path / "home"))
    settings, env, conn = job_settings(_sasl(cafile), str(tmp_path / "registry"), tmp_path / "dispatcher")
    client = _Client()
    jobs = JobsAdapter(client, settings=settings, registry=str(tmp_path / "registry"), extra_env=env)
    req = RetrainRequest.from_dict({"request_id": "rr-1", "model": "fraud", "model_version": "1",
                                    "window_start": 0.0, "window_end": 60.0, "alert_ids": ["a-1"],
                                    "kinds": ["performance"], "reason": "test"})
    jobs.submit(Submit(req, "retrain-fraud-v1-rr-1-a1", 1))
    (call,) = client.calls
    assert CANARY not in json.dumps(call, default=str), "the password reached Ray's job record"
    job_kafka = settings["kafka"]
    pw = Path(job_kafka["sasl_password_file"])
    assert pw.read_text() == CANARY and stat.S_IMODE(pw.stat().st_mode) == 0o600
    # the job resolves the same connection from what it was given (its environment has no password)
    monkeypatch.delenv(K.PASSWORD_ENV)
    again = K.connection({"kafka": job_kafka})
    assert (again.bootstrap, again.username, again.password, again.cafile) == ("b1:9094", "alice", CANARY, cafile)
    assert os.environ.get(K.PASSWORD_ENV) is None
