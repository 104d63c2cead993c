"""The deploy files work as far as this machine can tell without a Docker engine or a Kubernetes cluster.

* ``docker-compose config`` (Debian package ``docker-compose``; infra/bootstrap.sh installs it) accepts
  docker-compose.yml, and what it resolves is checked: every published port is on 127.0.0.1; Kafka
  advertises a listener for the host (127.0.0.1:9092) and one for the containers; Grafana needs a login with
  a password from the environment; the dispatcher waits for Ray's health check, not its start; Redis is
  Feast's online store in the containers' config file;
* ``.dockerignore`` keeps the virtual environment, local state, caches and benchmark results out of the
  build context; the CPU images install PyTorch from the CPU wheel index given as a build argument;
* every RayCluster and RayJob in infra/k8s/ validates, strictly (no unknown field), against the
  ``openAPIV3Schema`` of the KubeRay operator's CRDs vendored in infra/k8s/crds/.
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
DOCKERIGNORE = ROOT / ".dockerignore"
K8S = ROOT / "infra" / "k8s"
CRDS = K8S / "crds"
LOOPBACK = "127.0.0.1"
ENV = {"GRAFANA_ADMIN_PASSWORD": "test-only-password"}


# --------------------------------------------------------------------------- docker-compose config


def _docker_compose() -> str:
    path = shutil.which("docker-compose")
    assert path, ("docker-compose is not installed: `docker-compose config` checks docker-compose.yml. Install the "
                  "Debian package (apt-get install -y --no-install-recommends docker-compose; infra/bootstrap.sh "
                  "does it) and run again.")
    return path


def _compose_config(env: dict[str, str]) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("GRAFANA_", "DRIFTLOOP_TORCH", "COMPOSE_"))}
    return subprocess.run([_docker_compose(), "-f", str(COMPOSE), "--project-directory", str(ROOT), "config"],
                          capture_output=True, text=True, timeout=120, env={**clean, **env}, cwd=ROOT)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """docker-compose.yml as `docker-compose config` resolves it (variables substituted, syntax normalised)."""
    proc = _compose_config(ENV)
    assert proc.returncode == 0, f"docker-compose config failed:\n{proc.stdout}\n{proc.stderr}"
    return yaml.safe_load(proc.stdout)


def test_docker_compose_config_accepts_the_file(compose) -> None:
    assert {"kafka", "redis", "ray-head", "worker", "dispatcher", "prometheus", "grafana"} <= set(compose["services"])


def _published(port: Any) -> tuple[str, str, str]:
    """(host ip, host port, container port) of a published port in short or long syntax ('' when unset)."""
    if isinstance(port, dict):
        return (str(port.get("host_ip", "")), str(port.get("published", "")), str(port["target"]))
    parts = str(port).split("/")[0].split(":")
    if len(parts) == 1:
        return ("", "", parts[0])
    if len(parts) == 2:
        return ("", parts[0], parts[1])
    return (":".join(parts[:-2]), parts[-2], parts[-1])


def test_compose_publishes_nothing_beyond_loopback(compose) -> None:
    for name, svc in compose["services"].items():
        for port in svc.get("ports") or []:
            host_ip, host_port, _ = _published(port)
            assert host_ip == LOOPBACK and host_port, \
                f"service {name} publishes {port} on every interface; bind it to {LOOPBACK} (HOST_IP:PORT:PORT)"
    assert not compose["services"]["redis"].get("ports"), "Redis has no authentication here: do not publish it"


def _listeners(value: str) -> dict[str, tuple[str, int]]:
    out = {}
    for item in value.split(","):
        name, rest = item.split("://", 1)
        host, port = rest.rsplit(":", 1)
        out[name] = (host, int(port))
    return out


def test_compose_kafka_advertises_a_listener_for_the_host_and_one_for_containers(compose) -> None:
    kafka = compose["services"]["kafka"]
    env = kafka["environment"]
    bound = _listeners(env["KAFKA_LISTENERS"])
    advertised = _listeners(env["KAFKA_ADVERTISED_LISTENERS"])
    protocols = dict(p.split(":") for p in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    assert set(bound) <= set(protocols), f"listeners without a security protocol: {set(bound) - set(protocols)}"
    published = {_published(p)[2]: _published(p) for p in kafka.get("ports") or []}
    host = [n for n, (h, _) in advertised.items() if h == LOOPBACK]
    inner = [n for n, (h, _) in advertised.items() if h == "kafka"]
    assert host and inner, f"advertised listeners {advertised}: need one on {LOOPBACK} (host) and one on kafka"
    for name in host:
        port = advertised[name][1]
        assert bound[name][1] == port, f"{name} advertises {port} but listens on {bound[name][1]}"
        assert published.get(str(port)) == (LOOPBACK, str(port), str(port)), \
            f"the host listener {name} must be published as {LOOPBACK}:{port}:{port}, got {kafka.get('ports')}"
    assert env["KAFKA_INTER_BROKER_LISTENER_NAME"] in inner
    internal = {f"kafka:{advertised[n][1]}" for n in inner}
    for name in ("worker", "dispatcher"):
        assert compose["services"][name]["environment"]["KAFKA_BOOTSTRAP_SERVERS"] in internal, \
            f"{name} must use Kafka's listener for containers {internal}"


def test_compose_grafana_needs_a_login_with_a_password_from_the_environment(compose) -> None:
    env = compose["services"]["grafana"]["environment"]
    assert str(env.get("GF_AUTH_ANONYMOUS_ENABLED")).lower() == "false"
    assert env.get("GF_SECURITY_ADMIN_PASSWORD") == ENV["GRAFANA_ADMIN_PASSWORD"]
    proc = _compose_config({})
    assert proc.returncode != 0 and "GRAFANA_ADMIN_PASSWORD" in proc.stderr, \
        "without GRAFANA_ADMIN_PASSWORD compose must refuse to start (no default admin password)"


def _depends(svc: dict[str, Any]) -> dict[str, str]:
    deps = svc.get("depends_on") or {}
    if isinstance(deps, list):
        return {d: "service_started" for d in deps}
    return {k: (v or {}).get("condition", "service_started") for k, v in deps.items()}


def test_compose_dispatcher_waits_for_rays_health_not_its_start(compose) -> None:
    services = compose["services"]
    head = services["ray-head"]
    test = head.get("healthcheck", {}).get("test")
    assert test and "8265" in " ".join(test if isinstance(test, list) else [test]), \
        "ray-head needs a healthcheck that asks the dashboard / Jobs API (port 8265)"
    assert _depends(services["dispatcher"]).get("ray-head") == "service_healthy"
    for name in ("worker", "dispatcher"):
        assert _depends(services[name]).get("kafka") == "service_healthy", f"{name} must wait for a healthy Kafka"
    for dep, condition in _depends(services["dispatcher"]).items():
        if condition == "service_healthy":
            assert services[dep].get("healthcheck"), f"{dep} has no healthcheck to wait for"


def test_compose_redis_is_feasts_online_store(compose) -> None:
    from streams import config as C
    from feature_repo.settings import FeaturesSettings

    worker = compose["services"]["worker"]
    target = worker["environment"]["DRIFTLOOP_CONFIG"]
    mounts = {str(v).split(":")[1]: str(v).split(":")[0] for v in worker.get("volumes") or []}
    assert target in mounts, f"the worker's DRIFTLOOP_CONFIG {target} is not mounted"
    raw = yaml.safe_load(Path(mounts[target]).read_text(encoding="utf-8"))
    C.check_all(raw)  # every section and key is one the code knows
    feats = C.section(FeaturesSettings, raw.get("features"), "features")
    assert feats.online_store == "redis"
    host, port = feats.redis_connection.split(":")
    assert host in compose["services"] and compose["services"][host]["image"].startswith("redis:") and port == "6379"
    assert _depends(worker).get(host), "the worker must start after Redis"
    assert "/app/feature_repo/data" in mounts, "the feature repo's data/ (Feast's registry) must outlive a container"
    # the worker's image has the Redis client Feast needs
    dockerfile = (ROOT / worker["build"]["dockerfile"]).read_text(encoding="utf-8")
    assert re.search(r"-e \"?\.\[[^\]]*redis", dockerfile), "the worker image must install the `redis` extra"
    import tomllib

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert any(r.startswith("redis") for r in extras["redis"])


# --------------------------------------------------------------------------- images


def _ignored(path: str, patterns: list[str]) -> bool:
    """Whether Docker's .dockerignore rules exclude ``path`` (or a folder above it); ``!`` re-includes."""
    def regex(pattern: str) -> re.Pattern:
        out, i = "", 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                out, i = out + "(?:.*/)?", i + 3
            elif pattern.startswith("**", i):
                out, i = out + ".*", i + 2
            elif pattern[i] == "*":
                out, i = out + "[^/]*", i + 1
            elif pattern[i] == "?":
                out, i = out + "[^/]", i + 1
            else:
                out, i = out + re.escape(pattern[i]), i + 1
        return re.compile(out)

    parts = path.split("/")
    prefixes = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    excluded = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        rx = regex(pattern.lstrip("!").strip("/"))
        if any(rx.fullmatch(p) for p in prefixes):
            excluded = not negate
    return excluded


def test_dockerignore_keeps_local_state_and_caches_out_of_the_build_context() -> None:
    assert DOCKERIGNORE.is_file(), ".dockerignore is missing: the whole .venv would be sent to the Docker engine"
    patterns = [ln.strip() for ln in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
                if ln.strip() and not ln.lstrip().startswith("#")]
    for path in (".venv/bin/python", ".driftloop/registry/fraud/index.json", ".git/HEAD", "bench/results/run.json",
                 "streams/__pycache__/config.cpython-311.pyc", "trainers/cli/__pycache__/x.pyc", ".pytest_cache/v",
                 ".hypothesis/examples/x", ".ruff_cache/x", "driftloop.egg-info/PKG-INFO",
                 "feature_repo/data/online_store.db"):
        assert _ignored(path, patterns), f"{path} is sent to the Docker engine; add it to .dockerignore"
    for dockerfile in (ROOT / "infra/docker/Dockerfile", K8S / "ray.Dockerfile"):
        for src in re.findall(r"^COPY (?:--\S+ )*(.+?) \S+$", dockerfile.read_text(encoding="utf-8"), re.M):
            for item in src.split():
                assert not _ignored(item, patterns), f"{dockerfile.name} copies {item}, which .dockerignore drops"
    for path in ("streams/config.py", "trainers/registry.py", "infra/docker/config.yaml", "pyproject.toml",
                 "README.md", "feature_repo/feature_store.yaml"):
        assert not _ignored(path, patterns), f".dockerignore drops {path}, which the images need"


def test_cpu_images_install_pytorch_from_the_cpu_wheel_index(compose) -> None:
    built = {n: s["build"] for n, s in compose["services"].items() if s.get("build")}
    assert built
    for name, build in built.items():
        args = build.get("args") or {}
        cpu = "cpu" in str(args.get("RAY_IMAGE_SUFFIX", "cpu"))
        if cpu:
            assert args.get("TORCH_INDEX_URL"), f"the CPU image of {name} installs PyPI's (CUDA) torch; pass TORCH_INDEX_URL"
        text = (ROOT / build["dockerfile"]).read_text(encoding="utf-8")
        assert re.search(r'^ARG TORCH_INDEX_URL=""$', text, re.M), f"{build['dockerfile']}: no TORCH_INDEX_URL arg"
        torch_at = text.find('--index-url "$TORCH_INDEX_URL" "torch')
        project_at = text.find(" -e ")
        assert 0 <= torch_at < project_at, f"{build['dockerfile']}: install torch from TORCH_INDEX_URL before the project"
    proc = _compose_config({**ENV, "DRIFTLOOP_TORCH_INDEX_URL": ""})  # the way back to PyPI's torch
    assert proc.returncode == 0 and not yaml.safe_load(proc.stdout)["services"]["worker"]["build"]["args"].get(
        "TORCH_INDEX_URL")


# --------------------------------------------------------------------------- KubeRay CRDs


def _crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> openAPIV3Schema of every served version of the vendored CRDs."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    out = {}
    for f in sorted(CRDS.glob("*.yaml")):
        crd = yaml.load(f.read_text(encoding="utf-8"), Loader=loader)
        assert crd["kind"] == "CustomResourceDefinition", f.name
        for v in crd["spec"]["versions"]:
            if v.get("served"):
                out[(f"{crd['spec']['group']}/{v['name']}", crd["spec"]["names"]["kind"])] = v["schema"]["openAPIV3Schema"]
    return out


def _strict(schema: Any) -> Any:
    """The schema with unknown fields refused wherever it lists properties (as ``kubectl --validate=strict``)."""
    if isinstance(schema, list):
        return [_strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _strict(v) for k, v in schema.items()}
    if "properties" in out and "additionalProperties" not in out and not out.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    return out


@pytest.fixture(scope="module")
def crd_validators() -> dict[tuple[str, str], Any]:
    from jsonschema import Draft7Validator

    schemas = _crd_schemas()
    assert {k for _, k in schemas} >= {"RayCluster", "RayJob"}, f"vendored CRDs in {CRDS}: {sorted(schemas)}"
    return {key: Draft7Validator(_strict(s)) for key, s in schemas.items()}


def _ray_docs() -> list[tuple[str, dict[str, Any]]]:
    docs = []
    for f in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(f.read_text(encoding="utf-8")):
            if doc and str(doc.get("apiVersion", "")).startswith("ray.io/"):
                docs.append((f.name, doc))
    return docs


def _errors(validator: Any, doc: dict[str, Any]) -> list[str]:
    return [f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message[:300]}"
            for e in sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.absolute_path)))]


def test_kuberay_manifests_validate_against_the_operators_crds(crd_validators) -> None:
    docs = _ray_docs()
    assert {d["kind"] for _, d in docs} >= {"RayCluster", "RayJob"}
    for name, doc in docs:
        key = (doc["apiVersion"], doc["kind"])
        assert key in crd_validators, f"{name}: {key} is not served by the vendored KubeRay CRDs"
        errors = _errors(crd_validators[key], doc)
        assert not errors, f"{name} {doc['kind']} {doc['metadata']['name']} does not match the CRD:\n" + "\n".join(errors)


def test_the_crd_check_catches_a_misspelt_field_and_a_wrong_type(crd_validators) -> None:
    cluster = next(d for _, d in _ray_docs() if d["kind"] == "RayCluster")
    typo = copy.deepcopy(cluster)
    typo["spec"]["workerGroupSpecs"][0]["minReplica"] = typo["spec"]["workerGroupSpecs"][0].pop("minReplicas")
    assert any("minReplica" in e for e in _errors(crd_validators[("ray.io/v1", "RayCluster")], typo))
    wrong = copy.deepcopy(cluster)
    wrong["spec"]["workerGroupSpecs"][0]["maxReplicas"] = "four"
    assert _errors(crd_validators[("ray.io/v1", "RayCluster")], wrong)
    container = copy.deepcopy(cluster)
    container["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    assert any("imagePullPolicyy" in e for e in _errors(crd_validators[("ray.io/v1", "RayCluster")], container))


def test_vendored_crds_carry_their_licence_and_origin() -> None:
    assert "Apache License" in (CRDS / "LICENSE").read_text(encoding="utf-8")
    readme = (CRDS / "README.md").read_text(encoding="utf-8")
    assert "github.com/ray-project/kuberay/ray-operator" in readme and "v1.6.2" in readme
    assert ">= 1.6.2" in (K8S / "raycluster.yaml").read_text(encoding="utf-8")
