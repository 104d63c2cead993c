"""The operator-facing files under infra/ and docker-compose.yml stay in step with the code.

Pure and fast: nothing here starts Docker, Kubernetes, Prometheus or Grafana (none of them
runs on the CI machines).  What is checked is what can drift silently:

* every metric name a Grafana panel or a Prometheus rule queries exists in the real registries
  (``streams.adapters.metrics.WorkerMetrics``, ``streams.adapters.parity_step.ParityMetrics`` and the
  dispatcher's ``trainers.dispatch.metrics.DispatcherMetrics``), with the right suffix for its type,
  and every label a query groups by or matches on exists;
* the alerting rules pass ``promtool check rules`` and their unit tests (``promtool test rules``
  infra/prometheus/tests/*.yml); promtool comes with the Debian package ``prometheus``;
* the Prometheus and Grafana provisioning files agree with docker-compose.yml and with
  the worker's default metrics port;
* every Kubernetes manifest parses and names itself; the RayCluster, the RayJob and the
  Ray image are on the installed Ray version; the RayJob's entrypoint is the one the
  dispatcher submits; the config file the pods mount is accepted by the config sections.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
INFRA = ROOT / "infra"
COMPOSE = ROOT / "docker-compose.yml"
DASHBOARDS = INFRA / "grafana" / "dashboards"
PROMETHEUS = INFRA / "prometheus" / "prometheus.yml"
RULES = INFRA / "prometheus" / "rules"
RULE_TESTS = INFRA / "prometheus" / "tests"
K8S = INFRA / "k8s"
RAY_DOCKERFILE = K8S / "ray.Dockerfile"

# PromQL words that look like identifiers but are not metric names.
PROMQL_WORDS = {
    "sum", "min", "max", "avg", "count", "stddev", "stdvar", "topk", "bottomk", "quantile", "group", "count_values",
    "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool", "offset",
    "rate", "irate", "increase", "delta", "idelta", "deriv", "histogram_quantile", "abs", "clamp_min", "clamp_max",
    "label_values", "vector", "scalar", "time", "absent", "changes", "resets", "round", "sort", "sort_desc",
    "avg_over_time", "max_over_time", "min_over_time", "sum_over_time", "last_over_time", "label_replace",
    "inf", "nan", "le",
}


# --------------------------------------------------------------------------- metric registries


def _registered() -> dict[str, tuple[str, frozenset[str]]]:
    """Every sample name the worker can export -> (metric type, label names)."""
    from prometheus_client import CollectorRegistry

    from streams.adapters.metrics import WorkerMetrics
    from streams.adapters.parity_step import ParityMetrics
    from trainers.dispatch.metrics import DispatcherMetrics

    registry = CollectorRegistry()
    worker = WorkerMetrics(registry)
    parity = ParityMetrics(registry)
    dispatcher = DispatcherMetrics(registry)
    labels: dict[str, frozenset[str]] = {}
    for holder in (worker, parity, dispatcher):
        for metric in vars(holder).values():
            if hasattr(metric, "_labelnames") and hasattr(metric, "_name"):
                labels[metric._name] = frozenset(metric._labelnames)
    names: dict[str, tuple[str, frozenset[str]]] = {}
    for family in registry.collect():
        base = family.name
        lab = labels.get(base, labels.get(base + "_total", frozenset()))
        if family.type == "counter":
            names[base + "_total"] = ("counter", lab)
        elif family.type == "histogram":
            names[base + "_bucket"] = ("histogram", lab | {"le"})
            names[base + "_count"] = ("counter", lab)
            names[base + "_sum"] = ("counter", lab)
        elif family.type == "summary":
            names[base + "_count"] = ("counter", lab)
            names[base + "_sum"] = ("counter", lab)
        else:
            names[base] = (family.type, lab)
    return names


@pytest.fixture(scope="module")
def registered() -> dict[str, tuple[str, frozenset[str]]]:
    names = _registered()
    assert "driftloop_events_total" in names, "WorkerMetrics no longer exports driftloop_events_total"
    return names


# --------------------------------------------------------------------------- PromQL helpers

_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_RANGES = re.compile(r"\[[^\]]*\]")
_MATCHERS = re.compile(r"\{([^}]*)\}")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)")
_IDENT = re.compile(r"(?<![\w$.])([A-Za-z_:][A-Za-z0-9_:]*)\b(?!\s*\()")
_FUNC = re.compile(r"\b([A-Za-z_][A-Za-z0-9_]*)\s*\(")


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression (or a Grafana ``label_values(...)`` query)."""
    text = _STRINGS.sub('""', expr)
    text = _RANGES.sub("", text)
    text = _MATCHERS.sub("", text)
    text = _GROUPING.sub("", text)
    text = re.sub(r"\$\{?\w+\}?", "", text)  # Grafana variables
    text = re.sub(r"label_values\(\s*([A-Za-z_:][\w:]*)\s*,\s*\w+\s*\)", r"\1", text)
    return {m for m in _IDENT.findall(text) if m.lower() not in PROMQL_WORDS and not re.fullmatch(r"[0-9e.]+", m)}


def used_labels(expr: str) -> set[str]:
    """Label names an expression groups by or matches on."""
    out: set[str] = set()
    for group in _GROUPING.findall(expr):
        out |= {x.strip() for x in group.split(",") if x.strip()}
    for body in _MATCHERS.findall(_STRINGS.sub('""', expr)):
        out |= set(re.findall(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)", body))
    m = re.search(r"label_values\(\s*[A-Za-z_:][\w:]*\s*,\s*(\w+)\s*\)", expr)
    if m:
        out.add(m.group(1))
    return out


def test_promql_helpers_find_names_and_labels() -> None:
    expr = ('histogram_quantile(0.99, sum by (le, agent) (rate(driftloop_batch_processing_seconds_bucket'
            '{agent=~"$agent"}[$__rate_interval]))) / on (agent) group_left sum(driftloop_x_total)')
    assert metric_names(expr) == {"driftloop_batch_processing_seconds_bucket", "driftloop_x_total"}
    assert used_labels(expr) == {"le", "agent"}
    assert metric_names("label_values(driftloop_events_total, model)") == {"driftloop_events_total"}
    assert used_labels("label_values(driftloop_events_total, model)") == {"model"}


# --------------------------------------------------------------------------- Grafana


def _dashboards() -> list[Path]:
    return sorted(DASHBOARDS.glob("*.json"))


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for p in panels:
        yield p
        yield from _panels(p.get("panels") or [])


def _queries(dash: dict[str, Any]) -> Iterator[tuple[str, str, str]]:
    """(where, expr, legendFormat) for every panel target and query variable."""
    for p in _panels(dash.get("panels") or []):
        for t in p.get("targets") or []:
            yield f"panel {p.get('title')!r} target {t.get('refId')}", t.get("expr", ""), t.get("legendFormat", "")
    for v in (dash.get("templating") or {}).get("list") or []:
        if v.get("type") == "query":
            q = v.get("query")
            q = q.get("query", "") if isinstance(q, dict) else (q or "")
            yield f"variable {v.get('name')!r}", q, ""


def test_dashboards_exist_and_parse() -> None:
    files = _dashboards()
    assert files, f"no Grafana dashboard under {DASHBOARDS}"
    for f in files:
        dash = json.loads(f.read_text(encoding="utf-8"))
        assert dash.get("uid") and dash.get("title"), f"{f.name}: a dashboard needs a uid and a title"
        ids = [p.get("id") for p in _panels(dash["panels"])]
        assert len(ids) == len(set(ids)), f"{f.name}: panel ids repeat: {ids}"
        assert any(True for _ in _queries(dash)), f"{f.name}: no queries"


@pytest.mark.parametrize("path", _dashboards(), ids=lambda p: p.name)
def test_dashboard_queries_use_real_metrics_and_labels(path: Path, registered) -> None:
    dash = json.loads(path.read_text(encoding="utf-8"))
    problems = _query_problems(_queries(dash), registered)
    assert not problems, "\n".join(problems)


def _query_problems(queries, registered, extra_labels: frozenset[str] = frozenset()) -> list[str]:
    """What is wrong with (where, expr, legend) queries: unknown metrics or labels, counters without rate()."""
    problems: list[str] = []
    for where, expr, legend in queries:
        if not expr.strip():
            problems.append(f"{where}: empty query")
            continue
        names = metric_names(expr)
        if not names:
            problems.append(f"{where}: no metric name in {expr!r}")
        unknown = sorted(n for n in names if n not in registered)
        if unknown:
            problems.append(f"{where}: unknown metric(s) {unknown} (not in WorkerMetrics/ParityMetrics/DispatcherMetrics)")
            continue
        allowed = frozenset().union(*(registered[n][1] for n in names)) | extra_labels
        bad_labels = sorted(used_labels(expr) - allowed)
        if bad_labels:
            problems.append(f"{where}: label(s) {bad_labels} not on {sorted(names)}")
        bad_legend = sorted(set(re.findall(r"\{\{\s*(\w+)\s*\}\}", legend)) - allowed)
        if bad_legend:
            problems.append(f"{where}: legend label(s) {bad_legend} not on {sorted(names)}")
        # rate()/increase() only make sense on counters; histogram_quantile needs _bucket series
        for fn, name in re.findall(r"\b(rate|irate|increase)\(\s*([A-Za-z_:][\w:]*)", expr):
            if registered[name][0] not in ("counter", "histogram"):
                problems.append(f"{where}: {fn}() over {name}, a {registered[name][0]}")
        for name in names if not expr.lstrip().startswith("label_values(") else ():
            kind = registered[name][0]
            if kind in ("counter", "histogram") and not re.search(
                    rf"\b(?:rate|irate|increase)\(\s*{re.escape(name)}\b", expr):
                problems.append(f"{where}: counter {name} used without rate()/increase()")
        if "histogram_quantile" in expr and not any(n.endswith("_bucket") for n in names):
            problems.append(f"{where}: histogram_quantile() without a _bucket series")
    return problems


def test_dashboard_covers_the_worker_metrics(registered) -> None:
    """Every metric family the worker exports appears on some dashboard (new ones need a panel)."""
    used: set[str] = set()
    for f in _dashboards():
        for _, expr, _ in _queries(json.loads(f.read_text(encoding="utf-8"))):
            used |= metric_names(expr)

    def family(n: str) -> str:
        return re.sub(r"_(total|bucket|count|sum)$", "", n)

    skip = {"driftloop_watermark_seconds"}  # shown as event-time lag (wall clock - watermark)
    missing = sorted({family(n) for n in registered} - {family(n) for n in used} - {family(n) for n in skip})
    assert not missing, f"metric families without a dashboard panel: {missing}"


# --------------------------------------------------------------------------- Prometheus alerting rules


def _rule_files() -> list[Path]:
    return sorted(RULES.glob("*.yml")) + sorted(RULES.glob("*.yaml"))


def _rules() -> list[dict[str, Any]]:
    out = []
    for f in _rule_files():
        for group in yaml.safe_load(f.read_text(encoding="utf-8"))["groups"]:
            out.extend(group["rules"])
    return out


def test_rules_query_only_exported_metrics(registered) -> None:
    """Every metric an alert or recording rule reads is exported (recording rules' outputs count as metrics)."""
    rules = _rules()
    assert rules, f"no rules under {RULES}"
    known = dict(registered)
    for r in rules:  # a recording rule's series: the labels it aggregates by (or keeps)
        if "record" in r:
            grouping = _GROUPING.findall(r["expr"])
            labels = frozenset(x.strip() for g in grouping for x in g.split(",") if x.strip())
            known[r["record"]] = ("gauge", labels)
    queries = [(f"rule {r.get('alert') or r.get('record')}", r["expr"], "") for r in rules]
    # instance and job: target labels Prometheus adds to every scraped series
    problems = _query_problems(queries, known, extra_labels=frozenset({"instance", "job"}))
    assert not problems, "\n".join(problems)
    for r in rules:
        if "alert" in r:
            assert r.get("labels", {}).get("severity") in ("page", "ticket", "warning"), r["alert"]
            assert r.get("annotations", {}).get("summary") and r["annotations"].get("description"), r["alert"]


def test_rule_tests_cover_every_alert() -> None:
    alerts = {r["alert"] for r in _rules() if "alert" in r}
    tested: set[str] = set()
    for f in sorted(RULE_TESTS.glob("*.yml")):
        doc = yaml.safe_load(f.read_text(encoding="utf-8"))
        for t in doc["tests"]:
            fired = {a["alertname"] for a in t.get("alert_rule_test") or [] if a.get("exp_alerts")}
            tested |= fired
    assert alerts - tested == set(), f"alerts no promtool test sees firing: {sorted(alerts - tested)}"


def _promtool() -> str:
    import shutil

    path = shutil.which("promtool")
    assert path, ("promtool is not installed: it checks infra/prometheus/rules/. Install the Debian package "
                  "`prometheus` (apt-get install -y prometheus; infra/bootstrap.sh does it) and run again.")
    return path


def _run(args: list[str], cwd: Path | None = None) -> str:
    import subprocess

    proc = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=120)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{' '.join(args)} failed:\n{out}"
    return out


def test_promtool_checks_the_rules() -> None:
    promtool = _promtool()
    files = _rule_files()
    assert files, f"no rule files under {RULES}"
    _run([promtool, "check", "rules", *map(str, files)])
    _run([promtool, "check", "config", str(PROMETHEUS)])  # rule_files resolve and parse too


def test_promtool_unit_tests_of_the_rules_pass() -> None:
    promtool = _promtool()
    tests = sorted(RULE_TESTS.glob("*.yml"))
    assert tests, f"no promtool rule tests under {RULE_TESTS}"
    out = _run([promtool, "test", "rules", *(t.name for t in tests)], cwd=RULE_TESTS)
    assert "SUCCESS" in out, out


def test_prometheus_loads_the_rules_and_compose_mounts_them() -> None:
    prom = yaml.safe_load(PROMETHEUS.read_text(encoding="utf-8"))
    patterns = prom.get("rule_files") or []
    matched = {p for pat in patterns for p in PROMETHEUS.parent.glob(pat)}
    assert set(_rule_files()) <= matched, f"prometheus.yml rule_files {patterns} miss {set(_rule_files()) - matched}"
    mounts = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))["services"]["prometheus"]["volumes"]
    targets = {str(m).split(":")[1]: (ROOT / str(m).split(":")[0]).resolve() for m in mounts}
    for pat in patterns:
        folder = str(Path("/etc/prometheus") / Path(pat).parent)
        assert targets.get(folder) == (PROMETHEUS.parent / Path(pat).parent).resolve(), \
            f"compose does not mount {Path(pat).parent} at {folder} for rule_files {pat}"


def test_prometheus_scrapes_the_dispatcher_port() -> None:
    from trainers.dispatch.ledger import DispatcherConfig

    port = DispatcherConfig().metrics_port
    prom = yaml.safe_load(PROMETHEUS.read_text(encoding="utf-8"))
    targets = [t for j in prom["scrape_configs"] for sc in j.get("static_configs", []) for t in sc["targets"]]
    assert f"dispatcher:{port}" in targets, f"Prometheus does not scrape dispatcher:{port} (dispatcher.metrics_port)"
    compose = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert any(str(p).endswith(f":{port}") for p in compose["services"]["dispatcher"].get("ports", [])), \
        f"the compose dispatcher does not publish {port}"


def test_dashboard_panels_use_the_datasource_variable() -> None:
    for f in _dashboards():
        dash = json.loads(f.read_text(encoding="utf-8"))
        variables = {v["name"]: v for v in dash.get("templating", {}).get("list", [])}
        assert variables.get("datasource", {}).get("type") == "datasource", f"{f.name}: no datasource variable"
        for p in _panels(dash["panels"]):
            if p.get("type") == "row":
                continue
            assert (p.get("datasource") or {}).get("uid") == "${datasource}", f"{f.name}: panel {p.get('title')!r}"


def test_grafana_provisioning_matches_compose() -> None:
    compose = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    mounts = compose["services"]["grafana"]["volumes"]
    targets = {m.split(":")[1]: m.split(":")[0] for m in mounts}
    providers = yaml.safe_load((INFRA / "grafana/provisioning/dashboards/driftloop.yml").read_text())["providers"]
    for p in providers:
        path = p["options"]["path"]
        assert path in targets, f"dashboard provider path {path} is not mounted into the grafana service"
        assert (ROOT / targets[path]).resolve() == DASHBOARDS.resolve()
    datasources = yaml.safe_load((INFRA / "grafana/provisioning/datasources/prometheus.yml").read_text())["datasources"]
    prom = [d for d in datasources if d["type"] == "prometheus"]
    assert prom and "prometheus:9090" in prom[0]["url"] and "prometheus" in compose["services"]


# --------------------------------------------------------------------------- compose and Prometheus


def test_compose_parses_and_every_service_has_an_image_or_build() -> None:
    compose = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    services = compose.get("services") or {}
    assert services, "docker-compose.yml has no services"
    for name, svc in services.items():
        assert svc.get("image") or svc.get("build"), f"service {name} has neither image nor build"
        for dep in svc.get("depends_on") or []:
            assert dep in services, f"service {name} depends on unknown service {dep}"
        for vol in svc.get("volumes") or []:
            src = str(vol).split(":")[0]
            if src.startswith("./"):
                assert (ROOT / src).exists(), f"service {name} mounts missing path {src}"


def test_prometheus_config_parses_and_scrapes_the_worker_port() -> None:
    from streams.worker.state import WorkerConfig

    port = WorkerConfig().metrics_port
    prom = yaml.safe_load(PROMETHEUS.read_text(encoding="utf-8"))
    jobs = {j["job_name"]: j for j in prom["scrape_configs"]}
    assert jobs, "no scrape_configs"
    targets = [t for j in jobs.values() for sc in j.get("static_configs", []) for t in sc["targets"]]
    assert f"worker:{port}" in targets, f"Prometheus does not scrape worker:{port} (worker.metrics_port)"
    compose = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert any(str(p).endswith(f":{port}") for p in compose["services"]["worker"].get("ports", [])), \
        f"the compose worker does not publish {port}"
    for t in targets:
        assert t.split(":")[0] in compose["services"], f"scrape target {t} is not a compose service"


def test_compose_ray_head_exports_metrics_where_prometheus_scrapes() -> None:
    prom = yaml.safe_load(PROMETHEUS.read_text(encoding="utf-8"))
    ray_targets = [t for j in prom["scrape_configs"] for sc in j.get("static_configs", []) for t in sc["targets"]
                   if t.startswith("ray-head:")]
    assert ray_targets
    command = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))["services"]["ray-head"]["command"]
    command = " ".join(command) if isinstance(command, list) else command
    for t in ray_targets:
        assert f"--metrics-export-port={t.split(':')[1]}" in command or \
            f"--metrics-export-port {t.split(':')[1]}" in command


def test_compose_ray_head_runs_the_tested_ray() -> None:
    """A tagged Ray image must be the installed Ray; a built one must be the dispatcher's own image."""
    import ray

    services = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))["services"]
    head = services["ray-head"]
    if head.get("image"):
        assert head["image"].split(":", 1)[1].startswith(ray.__version__), \
            f"compose ray-head runs {head['image']} but the project is tested with ray {ray.__version__}"
    else:
        assert head.get("build") == services["dispatcher"].get("build"), \
            "ray-head and the dispatcher must be built from the same Dockerfile (same Ray on client and cluster)"


# --------------------------------------------------------------------------- Kubernetes


def _manifests() -> list[Path]:
    return sorted(K8S.glob("*.yaml")) + sorted(K8S.glob("*.yml"))


def _docs() -> list[tuple[Path, dict[str, Any]]]:
    out = []
    for f in _manifests():
        for doc in yaml.safe_load_all(f.read_text(encoding="utf-8")):
            if doc is not None:
                out.append((f, doc))
    return out


def _by_kind(kind: str) -> list[dict[str, Any]]:
    return [d for _, d in _docs() if d.get("kind") == kind]


def _containers(pod_template: dict[str, Any]) -> list[dict[str, Any]]:
    return list(pod_template.get("spec", {}).get("containers") or [])


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env") or []}


def test_k8s_manifests_parse_and_name_themselves() -> None:
    assert _manifests(), f"no manifests under {K8S}"
    docs = _docs()
    kinds = {d.get("kind") for _, d in docs}
    assert {"RayCluster", "RayJob", "Deployment"} <= kinds, kinds
    for f, doc in docs:
        assert isinstance(doc, dict), f"{f.name}: a document is not a mapping"
        for key in ("apiVersion", "kind"):
            assert doc.get(key), f"{f.name}: a document has no {key}"
        assert (doc.get("metadata") or {}).get("name"), f"{f.name}: {doc['kind']} has no metadata.name"


def _ray_cluster() -> dict[str, Any]:
    clusters = _by_kind("RayCluster")
    assert len(clusters) == 1, "expected one RayCluster manifest"
    return clusters[0]


def _ray_images(spec: dict[str, Any]) -> list[str]:
    images = [c["image"] for c in _containers(spec["headGroupSpec"]["template"])]
    for g in spec.get("workerGroupSpecs") or []:
        images += [c["image"] for c in _containers(g["template"])]
    return images


def test_raycluster_is_on_the_installed_ray_version() -> None:
    import ray

    spec = _ray_cluster()["spec"]
    assert spec["rayVersion"] == ray.__version__, \
        f"RayCluster rayVersion {spec['rayVersion']} but ray {ray.__version__} is installed"
    images = _ray_images(spec)
    for job in _by_kind("RayJob"):
        images += [c["image"] for c in _containers(job["spec"].get("submitterPodTemplate") or {})]
    for d in _by_kind("Deployment"):
        images += [c["image"] for c in _containers(d["spec"]["template"]) if "ray" in c["image"].split(":")[0]]
    assert images
    for image in images:
        assert ":" in image, f"{image}: pin a tag"
        assert image.rsplit(":", 1)[1].startswith(ray.__version__ + "-") or image.rsplit(":", 1)[1] == ray.__version__, \
            f"image {image} is not tagged with the installed ray {ray.__version__}"
    text = RAY_DOCKERFILE.read_text(encoding="utf-8")
    m = re.search(r"^ARG RAY_VERSION=(\S+)", text, re.M)
    assert m and m.group(1) == ray.__version__, f"{RAY_DOCKERFILE.name}: RAY_VERSION is not {ray.__version__}"
    suffix = re.search(r"^ARG RAY_IMAGE_SUFFIX=(\S+)", text, re.M).group(1)
    assert any(i.rsplit(":", 1)[1] == f"{ray.__version__}-{suffix}" for i in images)


def test_raycluster_head_cpu_and_gpu_groups() -> None:
    spec = _ray_cluster()["spec"]
    assert spec.get("enableInTreeAutoscaling") is True
    head = _containers(spec["headGroupSpec"]["template"])[0]
    ports = {p["name"]: p["containerPort"] for p in head.get("ports") or []}
    assert ports.get("dashboard") == 8265 and ports.get("metrics") == 8080, ports
    assert spec["headGroupSpec"]["rayStartParams"].get("dashboard-host") == "0.0.0.0"
    groups = {g["groupName"]: g for g in spec["workerGroupSpecs"]}

    def gpus(g: dict[str, Any]) -> int:
        return int(_containers(g["template"])[0]["resources"]["limits"].get("nvidia.com/gpu", 0))

    gpu_groups = [g for g in groups.values() if gpus(g)]
    cpu_groups = [g for g in groups.values() if not gpus(g)]
    assert cpu_groups and gpu_groups, "need a CPU worker group and a GPU worker group"
    for g in gpu_groups:
        assert gpus(g) == 1 and g["minReplicas"] == 0 and g["maxReplicas"] >= 1
    for g in groups.values():
        assert g["minReplicas"] <= g.get("replicas", 0) <= g["maxReplicas"]
        for key in ("minReplicas", "maxReplicas"):
            assert isinstance(g[key], int)


def test_rayjob_runs_the_dispatchers_entrypoint() -> None:
    from trainers.records import RetrainRequest
    from trainers.cli.dispatcher import JobsAdapter

    jobs = _by_kind("RayJob")
    assert jobs
    cluster = _ray_cluster()["metadata"]["name"]
    for job in jobs:
        spec = job["spec"]
        assert spec.get("clusterSelector", {}).get("ray.io/cluster") == cluster
        argv = shlex.split(spec["entrypoint"])
        assert argv[:3] == ["python", "-m", "trainers.retrain_job"], argv[:3]
        opts: dict[str, str] = {}
        rest = argv[3:]
        for i, a in enumerate(rest):
            if a.startswith("--"):
                nxt = rest[i + 1] if i + 1 < len(rest) else ""
                opts[a] = "" if nxt.startswith("--") else nxt
        req = RetrainRequest.from_dict(json.loads(opts["--request"]))  # a valid request
        reference = shlex.split(JobsAdapter(None, settings={}, registry="/r").entrypoint(req, "sid"))
        known = {a for a in reference if a.startswith("--")}
        assert set(opts) <= known | {"--publish", "--config", "--labelled-file", "--no-ray"}, \
            f"options the retrain job may not take: {set(opts) - known}"
        env = yaml.safe_load(spec.get("runtimeEnvYAML") or "{}").get("env_vars", {})
        assert "KAFKA_BOOTSTRAP_SERVERS" in env and opts["--registry"].startswith(env.get("DRIFTLOOP_HOME", "//"))


def test_deployments_carry_kafka_and_ray_addresses() -> None:
    from streams.worker.state import WorkerConfig

    deployments = {d["metadata"]["name"]: d for d in _by_kind("Deployment")}
    worker = next(d for n, d in deployments.items() if "worker" in n)
    dispatcher = next(d for n, d in deployments.items() if "dispatcher" in n)
    wc = _containers(worker["spec"]["template"])[0]
    dc = _containers(dispatcher["spec"]["template"])[0]
    assert "KAFKA_BOOTSTRAP_SERVERS" in _env(wc) and "KAFKA_BOOTSTRAP_SERVERS" in _env(dc)
    assert "worker" in wc.get("args", [])
    port = WorkerConfig().metrics_port
    assert {p["containerPort"] for p in wc.get("ports") or []} == {port}
    ann = worker["spec"]["template"]["metadata"].get("annotations") or {}
    assert ann.get("prometheus.io/scrape") == "true" and ann.get("prometheus.io/port") == str(port)
    ray_address = _env(dc)["RAY_ADDRESS"]
    cluster = _ray_cluster()["metadata"]["name"]
    assert re.fullmatch(rf"http://{cluster}-head-svc(\.[\w.-]+)?:8265", ray_address), ray_address
    assert "dispatcher" in dc.get("args", []) and "$(RAY_ADDRESS)" in dc.get("args", []), \
        "the dispatcher reads its Ray address from --ray-address / dispatcher.ray_address, not $RAY_ADDRESS"
    labels = worker["spec"]["template"]["metadata"]["labels"]
    assert worker["spec"]["selector"]["matchLabels"].items() <= labels.items()
    for monitor in _by_kind("PodMonitor"):
        sel = monitor["spec"]["selector"]["matchLabels"]
        assert sel.items() <= labels.items() or sel == {"ray.io/cluster": cluster}, sel


def test_k8s_config_file_is_accepted_by_the_config_sections() -> None:
    from streams import config as C
    from streams.worker.state import WorkerConfig
    from trainers.dispatch.ledger import DispatcherConfig
    from trainers.retrain_job import TrainerConfig

    maps = [d for d in _by_kind("ConfigMap") if "config.yaml" in (d.get("data") or {})]
    assert maps, "no ConfigMap with config.yaml"
    raw = yaml.safe_load(maps[0]["data"]["config.yaml"])
    C.section(WorkerConfig, raw.get("worker"), "worker")
    C.section(DispatcherConfig, raw.get("dispatcher"), "dispatcher")
    C.section(TrainerConfig, raw.get("trainers"), "trainers")
    mounted = {c["name"] for d in _by_kind("Deployment") for c in _containers(d["spec"]["template"])
               if _env(c).get("DRIFTLOOP_CONFIG") == "/etc/driftloop/config.yaml"}
    assert len(mounted) == 2, mounted
