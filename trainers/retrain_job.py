"""The retraining job: one retrain request -> one candidate version, promoted only if it earns it.

Runs as a Ray job (the dispatcher submits ``python -m trainers.retrain_job ...``) or by hand::

    python -m trainers.retrain_job --request '{"model": "fraud", ...}' --registry PATH \\
        [--settings JSON] [--labelled-file FILE.jsonl] [--publish kafka|none] [--no-publish-result]

Steps: load the parent version from the registry (hashes checked); read the labelled
examples of the request window (topic or file); hold out part of the new data and part
of the parent's replay buffer (old data); fine-tune a copy of the parent with
:class:`~trainers.training.continual.ContinualLearner` inside a Ray task that asks for a GPU when
``ray.cluster_resources()`` has one (CPU otherwise), and, in the same task, a second copy by plain
fine-tuning (no replay, no distillation, Adam: the baseline the candidate must not lose to);
evaluate with the promotion gate; register the candidate with its report (always) and promote it
only when the gate passes.
A promotion publishes a ModelUpdate; the job prints its result as one
``DRIFTLOOP_RESULT {json}`` line (the dispatcher reads it from the job logs) and, unless
told not to, publishes it as a RetrainResult.

What the job's log shows (Kafka clients log warnings only): the data read, each training's epochs and
losses, the gate's verdict table, the result line, and last a one-line verdict (:func:`verdict_line`,
e.g. ``candidate v3 rejected by the promotion gate: <first reason>``).  Exit code 0 when a candidate
passed the gate, 3 (``EXIT_REJECTED``) when none did: Ray then marks the job FAILED and its status
message ends with that verdict line, which is what an operator sees in the Ray dashboard
(a job's metadata is fixed at submission and a SUCCEEDED job's message is always Ray's own).

Idempotent: when the registry already holds a version made for this request id, the
job reports that version and trains nothing.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from trainers.dispatch.ledger import EXIT_OK, EXIT_REJECTED
from trainers.job_outcome import JobOutcome, training_progress, verdict_line
from trainers.records import ModelUpdate, RetrainRequest
from streams.contracts.events import json_default

log = logging.getLogger("driftloop.retrain_job")

RESULT_MARKER = "DRIFTLOOP_RESULT "
VERDICT_MARKER = "DRIFTLOOP_VERDICT "
QUIET_LOGGERS = ("kafka", "aiokafka")  # their INFO lines (connections, metadata, coordinators) drown the training


@dataclass(frozen=True)
class TrainerConfig:
    """The ``trainers`` config section (what a retrain job does).

    ``learner``: keyword arguments of ContinualLearner (``strategy``, ``epochs``, ``lr``, ...).
    ``gate``: keyword arguments of GateConfig.  ``slices``: categorical features whose
    values are gate slices.  ``min_examples``: fewer labelled examples in the window and
    the request is answered "rejected: insufficient data" without training.
    ``baseline``: also fine-tune the parent plainly on the same data and let the gate compare
    the candidate with it (:func:`baseline_learner_kwargs` says how it is trained;
    ``baseline_learner`` overrides those ContinualLearner arguments).  It costs a second
    training (without a replay batch: about half the candidate's steps' work).
    """

    registry: str = ""  # default: $DRIFTLOOP_HOME/registry
    min_examples: int = 50
    max_examples: int = 200_000
    holdout_fraction: float = 0.2
    old_holdout_fraction: float = 0.3
    replay_capacity: int = 500  # for a parent that has no buffer yet
    replay_policy: str = "class_balanced"
    timestamp_skew_s: float = 300.0
    #: "window": train on the labelled examples of the request's window; "latest": on every labelled
    #: example from the window's start up to when the job runs (more data once the drift has lasted)
    data_until: str = "window"
    read_timeout_s: float = 120.0
    slices: list[str] = field(default_factory=list)
    learner: dict[str, Any] = field(default_factory=dict)
    gate: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    baseline: bool = True
    baseline_learner: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------- pure pieces


def split_indices(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded (train, held-out) index split; held-out gets ``round(n*fraction)`` rows (at least 1 when n > 1)."""
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n)
    k = int(round(n * fraction))
    if fraction > 0 and n > 1:
        k = min(max(k, 1), n - 1)
    return np.sort(perm[k:]), np.sort(perm[:k])


def subset_buffer(buf: Any, idx: np.ndarray) -> Any:
    """A copy of replay buffer ``buf`` holding only rows ``idx`` (experience ids kept)."""
    out = copy.deepcopy(buf)
    out.X = None if buf.X is None else buf.X[idx]
    out.y = buf.y[idx]
    out.experience = buf.experience[idx]
    out.logits = None if buf.logits is None else buf.logits[idx]
    return out


#: ContinualLearner arguments the baseline takes from the candidate's (same data, same schedule)
BASELINE_INHERITS = ("transfer", "strategy", "last_n", "epochs", "batch_size", "val_fraction", "patience",
                     "min_val_samples", "restore_best", "min_steps", "seed")
#: plain fine-tuning: no replay (the job passes ``replay=None``), no distillation, no logit adjustment, Adam
BASELINE_PLAIN: dict[str, Any] = {"optimizer": "adam", "lr": 1e-3, "distill": 0.0, "logit_adjust": 0.0, "ewc": 0.0,
                                  "ace": False, "momentum": 0.0, "weight_decay": 0.0}


def check_trainer_config(cfg: TrainerConfig) -> None:
    """Refuse a ``trainers`` section whose ``learner``, ``baseline_learner`` or ``gate`` would fail inside the first
    retrain job (an unknown argument, a bad transfer strategy): ValueError naming the key.  The dispatcher, the
    models command and the job call it at start."""
    import inspect

    from trainers.training.continual import ContinualLearner
    from trainers.training.gate import GateConfig
    from trainers.training.transfer import TransferConfig

    allowed = set(inspect.signature(ContinualLearner.__init__).parameters) - {"self", "model", "replay"}
    for name, kw in (("learner", cfg.learner), ("baseline_learner", cfg.baseline_learner)):
        unknown = sorted(set(kw) - allowed)
        if unknown:
            raise ValueError(f"trainers.{name}: unknown key(s) {unknown}; known: {sorted(allowed)}")
        try:
            if kw.get("transfer") is not None:
                TransferConfig.from_dict(kw["transfer"])
        except (TypeError, ValueError) as exc:
            raise ValueError(f"trainers.{name}.transfer: {exc}") from None
    try:
        GateConfig(**cfg.gate)
    except TypeError as exc:
        raise ValueError(f"trainers.gate: {exc}") from None


def baseline_learner_kwargs(learner: Mapping[str, Any], overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """ContinualLearner arguments of the plain fine-tuned baseline.

    The schedule keys of ``learner`` (:data:`BASELINE_INHERITS`: epochs, batch size, validation
    split, patience, seed, trained layers: ``transfer`` or ``strategy``/``last_n``) are kept, so
    the baseline trains the same parameters on the same rows for as long; then :data:`BASELINE_PLAIN` (Adam, lr 1e-3, no distillation or logit adjustment), then
    ``overrides`` (``TrainerConfig.baseline_learner``).  ``replay`` and ``device`` are the job's
    to set and are refused here (ValueError).

    >>> kw = baseline_learner_kwargs({"epochs": 5, "lr": 0.1, "distill": 0.3}, {"lr": 3e-3})
    >>> kw["epochs"], kw["lr"], kw["distill"], kw["optimizer"]
    (5, 0.003, 0.0, 'adam')
    """
    overrides = dict(overrides or {})
    bad = sorted({"replay", "device"} & set(overrides))
    if bad:
        raise ValueError(f"trainers.baseline_learner cannot set {bad}: the baseline never replays, and runs "
                         "on the candidate's device")
    kw = {k: learner[k] for k in BASELINE_INHERITS if k in learner}
    kw.update(BASELINE_PLAIN)
    kw.update(overrides)
    return kw


def train_and_gate(payload: Mapping[str, Any]) -> dict[str, Any]:
    """Fine-tune a copy of the parent, and the plain baseline, and run the promotion gate (inside a Ray task).

    Pure: arrays in, weights/buffer/reports out.  Uses CUDA when the task was given a GPU.
    ``payload``: ``spec`` (ModelSpec dict), ``state_dict`` (parent weights, numpy), ``replay``
    (ReplayBuffer to train with; the candidate's fit adds the new experience to it),
    ``X_train``/``y_train`` (n, input_dim) float32 / (n,) int64, held-out ``X_new``/``y_new`` and
    ``X_old``/``y_old``, ``slices_new``, ``learner`` and ``gate`` (keyword dicts), ``seed``, and
    optionally ``baseline`` (bool, default True) and ``baseline_learner`` (overrides).
    Returns ``state_dict``, ``replay``, ``fit``, ``gate`` (GateReport dict), ``gate_text``,
    ``promoted``, ``device``, ``device_name`` and ``baseline``: None when switched off, else
    ``{"learner": kwargs used, "fit": its FitReport dict, "time_s": wall seconds, "cpu_s": process
    CPU seconds}``.
    """
    import torch

    from trainers.training.continual import ContinualLearner
    from trainers.training.gate import GateConfig, PromotionGate
    from trainers.training.models import ModelSpec, build_model

    spec = ModelSpec.from_dict(payload["spec"])
    parent = build_model(spec)
    # copies: arrays from the Ray object store are read-only (torch warns about those in the job log)
    parent.load_state_dict({k: torch.tensor(v) for k, v in payload["state_dict"].items()})
    device = "cuda" if torch.cuda.is_available() else "cpu"
    learner_kw = dict(payload.get("learner") or {})
    learner_kw.setdefault("seed", payload.get("seed", 0))
    gate = PromotionGate(GateConfig(**(payload.get("gate") or {})))  # a bad gate config fails before training

    baseline = base_model = base_training = None
    if payload.get("baseline", True):
        base_kw = baseline_learner_kwargs(learner_kw, payload.get("baseline_learner"))
        c0, t0 = time.process_time(), time.perf_counter()
        base_learner = ContinualLearner(copy.deepcopy(parent), replay=None, device=device, **base_kw)
        # the same experience number as the candidate's, hence the same seeded validation split
        base_learner.experiences_seen = payload["replay"].n_experiences if payload["replay"] is not None else 0
        base_fit = base_learner.fit(payload["X_train"], payload["y_train"])
        base_model = base_learner.model.to("cpu").eval()
        baseline = {"learner": base_kw, "fit": base_fit.to_dict(), "time_s": time.perf_counter() - t0,
                    "cpu_s": time.process_time() - c0}
        base_training = {k: v for k, v in baseline["fit"].items() if k != "history"}

    learner_kw["device"] = device
    candidate = copy.deepcopy(parent)
    learner = ContinualLearner(candidate, replay=payload["replay"], **learner_kw)
    fit = learner.fit(payload["X_train"], payload["y_train"])
    model = learner.model.to("cpu").eval()
    parent.eval()
    report = gate.evaluate(parent, model, payload["X_new"], payload["y_new"], payload["X_old"], payload["y_old"],
                           slices_new=payload.get("slices_new") or None,
                           training=dict(fit.to_dict(), device=device),
                           baseline=base_model, baseline_training=base_training)
    return {
        "state_dict": {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()},
        "replay": learner.replay,
        "fit": fit.to_dict(),
        "gate": report.to_dict(),
        "gate_text": report.to_text(),
        "promoted": bool(report.promoted),
        "device": device,
        "device_name": torch.cuda.get_device_name(0) if device == "cuda" else "cpu",
        "baseline": baseline,
    }


# --------------------------------------------------------------------------- the job


def run_job(req: RetrainRequest, registry: Any, cfg: TrainerConfig, data: Any, *, use_ray: bool,
            licence_policy: Any = None, references: str | os.PathLike | None = None,
            reference_options: Mapping[str, int] | None = None, promotion: Any = None) -> JobOutcome:
    """Everything between "request" and "outcome", given the training data (``WindowData``).

    ``licence_policy`` (the ``licences`` config section; default OSI only) is applied when the
    candidate is registered and promoted; its decision goes into the gate report.

    ``references``: the folder the worker reads reference profiles from (None: build none).  A candidate that
    passed the gate gets its own profile there (:mod:`trainers.reference`: its predictions on the window's
    labelled examples), saved under (model, new version) before it can be promoted, and named in its provenance;
    a rejected candidate gets none (it is never served), nor does one trained on pre-encoded (npz) data.
    ``reference_options``: the profile's ``n_bins``/``fine_bins``/``top_k`` (the worker's ``drift`` section).
    ``promotion`` (the ``promotion`` section, :class:`trainers.promotion.live_gate.LiveGateConfig`): with ``shadow``,
    a candidate that passed the gate is put in shadow (``registry.start_shadow``: the live gate in the dispatcher
    promotes or rejects it on live traffic) instead of promoted; with ``watch``, a promotion is watched."""
    from trainers.registry import Provenance, code_version
    from trainers.training.replay import ReplayBuffer
    from trainers.training.evaluation import slices_by_value
    from trainers.data import encode_labels

    existing = registry.find_by_request(req.model, req.request_id)
    if existing is not None:
        info = registry.info(req.model, existing)
        update = None
        if info.current and info.promoted:
            update = ModelUpdate(req.model, existing, info.provenance.get("parent_version"), "promote", info.weights_sha256)
        return JobOutcome("succeeded" if info.promoted else "rejected", existing, bool(info.current and info.promoted),
                          error=None, report={"note": f"version {existing} was already made for this request; not trained again",
                                              "metrics": info.provenance.get("metrics", {})}, update=update)

    parent = registry.load(req.model, req.model_version)
    spec, classes = parent.spec, parent.classes
    if data.X is not None:  # pre-encoded (npz)
        if data.X.shape[1] != spec.input_dim:
            raise ValueError(f"training data has {data.X.shape[1]} columns, model {req.model} v{req.model_version} "
                             f"expects {spec.input_dim} ({spec.columns()[:5]}...)")
        known = (data.y >= 0) & (data.y < spec.n_classes)
        X_all, y_all, rows = data.X[known], data.y[known], None
    else:
        y_all, known = encode_labels(data.labels(), spec.n_classes, classes)
        rows = [f for f, k in zip(data.features(), known) if k]
        y_all = y_all[known]
        X_all = spec.encode(rows) if rows else np.zeros((0, spec.input_dim), np.float32)
    n = int(len(y_all))
    stats = dict(data.stats, unknown_label=int((~known).sum()))
    if n < cfg.min_examples:
        return JobOutcome("rejected", error=f"insufficient data: {n} labelled examples in window "
                          f"[{req.window_start}, {req.window_end}], need {cfg.min_examples} (trainers.min_examples)",
                          report={"data": stats})
    tr, ho = split_indices(n, cfg.holdout_fraction, cfg.seed)
    slices_new = {}
    for feat in cfg.slices if rows is not None else []:  # gate slices: "country=DE" -> mask over held-out rows
        values = ["" if rows[i].get(feat) is None else str(rows[i].get(feat)) for i in ho]
        slices_new.update({f"{feat}={k}": m for k, m in slices_by_value(values).items()})

    replay = parent.replay
    if replay is None or len(replay) == 0:
        replay = replay if replay is not None else ReplayBuffer(cfg.replay_capacity, cfg.replay_policy, cfg.seed)
        held_old = None
        X_old = np.zeros((0, spec.input_dim), np.float32)
        y_old = np.zeros(0, np.int64)
        train_replay = replay
    else:
        rtr, rho = split_indices(len(replay), cfg.old_holdout_fraction, cfg.seed + 1)
        train_replay, held_old = subset_buffer(replay, rtr), subset_buffer(replay, rho)
        X_old, y_old = held_old.X, held_old.y

    payload = {
        "spec": spec.to_dict(),
        "state_dict": {k: v.numpy() for k, v in parent.state_dict.items()},
        "replay": train_replay,
        "X_train": X_all[tr], "y_train": y_all[tr],
        "X_new": X_all[ho], "y_new": y_all[ho],
        "X_old": X_old, "y_old": y_old,
        "slices_new": slices_new,
        "learner": cfg.learner, "gate": cfg.gate, "seed": cfg.seed,
        "baseline": cfg.baseline, "baseline_learner": cfg.baseline_learner,
    }
    base_model = {k: v for k, v in parent.provenance.base_model.items() if k != "licence_decision"}
    licence = None
    if base_model:  # the licence gate, before any training: a refused backbone trains nothing
        from trainers.licences import LicencePolicy

        licence = (licence_policy or LicencePolicy()).check(base_model)
        if not licence.allowed:
            return JobOutcome("rejected", error=f"licence gate: {licence.reason}", report={"licence": licence.to_dict()})
    t0 = time.perf_counter()
    out, resources = _run_training(payload, use_ray)
    wall = time.perf_counter() - t0

    new_buf = out["replay"] if held_old is None else out["replay"].merge(held_old)
    import torch

    state = {k: torch.tensor(v) for k, v in out["state_dict"].items()}  # a copy: Ray's arrays are read-only
    training = dict(out["fit"], wall_time_s=wall, device=out["device"], device_name=out["device_name"],
                    cluster_resources=resources, n_new=n, n_train=int(len(tr)), n_holdout_new=int(len(ho)),
                    n_holdout_old=int(len(y_old)), data=stats)
    base = out.get("baseline")
    if base is not None:
        training["baseline"] = {"wall_s": base["time_s"], "cpu_s": base["cpu_s"], "learner": base["learner"],
                                **{k: base["fit"][k] for k in ("epochs_run", "steps", "val_accuracy", "time_s",
                                                               "stopped_early", "lr", "optimizer") if k in base["fit"]}}
    report = dict(out["gate"], training=training)
    if licence is not None:
        report["licence"] = licence.to_dict()
    from trainers.reference import build_candidate_reference, save_candidate_reference

    cref = build_candidate_reference(req, data, known, X_all, y_all, spec=spec, classes=classes, state_dict=state,
                                     gate_passed=bool(out["promoted"]), folder=references, options=reference_options,
                                     held_out=ho)
    report["reference_profile"] = cref.to_dict()
    prov = Provenance(parent_version=parent.info.version, request_id=req.request_id, alert_ids=list(req.alert_ids),
                      window={"start": req.window_start, "end": req.window_end}, metrics=out["gate"],
                      training=training, code_version=code_version(),
                      base_model=base_model,
                      reference_profile_id=cref.id)
    text = out["gate_text"] + f"\ntraining: {training['wall_time_s']:.2f}s on {out['device_name']} ({out['device']})\n"
    text += cref.line() + "\n"
    if "licence" in report:
        lic = report["licence"]
        text += (f"licence: {', '.join(lic['licences'])}: "
                 f"{'accepted in config (' + str(lic['acceptance']) + ')' if lic['accepted'] else 'allowed'}\n")
    info = registry.register(req.model, spec, state, provenance=prov, replay=new_buf, classes=classes,
                             report=report, report_text=text, gate_passed=out["promoted"],
                             licence_policy=licence_policy)
    save_candidate_reference(cref, info.version, references)  # before any promotion: v<new> is judged from its first event
    update = None
    if out["promoted"] and out["gate"].get("reasons"):  # promoted, with something to say (e.g. below the baseline)
        log.warning("candidate %s of %s passes the gate with reasons: %s", info.version, req.model,
                    "; ".join(out["gate"]["reasons"]))
    if out["promoted"]:
        from trainers.promotion.stage import put_forward

        update = put_forward(registry, req, info.version, out["gate"].get("reasons", []), promotion, licence_policy)
    summary = {"gate": out["gate"], "training": {k: training[k] for k in ("wall_time_s", "device", "device_name",
                                                                        "n_train", "n_holdout_new", "n_holdout_old",
                                                                        "baseline") if k in training},
               "reference_profile": report["reference_profile"]}
    progress = training_progress(out["fit"], "candidate")
    if base is not None:
        progress += training_progress(base["fit"], "baseline (plain fine-tuning)")
    shadow = update is not None and update.action == "shadow"
    return JobOutcome("succeeded" if out["promoted"] else "rejected", info.version, update is not None and not shadow,
                      report=summary, update=update,
                      error=None if out["promoted"] else "gate rejected: " + "; ".join(out["gate"].get("reasons", [])),
                      text="\n".join(progress) + f"\n\npromotion gate, candidate v{info.version} of {req.model}:\n" + text,
                      gate_passed=bool(out["promoted"]), reasons=[str(r) for r in out["gate"].get("reasons", [])],
                      shadow=shadow)


def _run_training(payload: dict[str, Any], use_ray: bool) -> tuple[dict[str, Any], dict[str, float]]:
    if not use_ray:
        import torch

        return train_and_gate(payload), {"CPU": float(os.cpu_count() or 1), "GPU": float(torch.cuda.device_count())}
    import ray

    from trainers.dispatch.ray_cluster import cluster_gpus

    resources = {k: float(v) for k, v in ray.cluster_resources().items() if k in ("CPU", "GPU", "memory")}
    gpus = cluster_gpus(resources)
    task = ray.remote(train_and_gate).options(num_cpus=1, num_gpus=1 if gpus >= 1 else 0, max_retries=0)
    log.info("training in a Ray task (%s)", "GPU" if gpus >= 1 else "CPU: the cluster has no GPU")
    return ray.get(task.remote(ray.put(payload))), resources


# --------------------------------------------------------------------------- command line


def _load_request(text: str) -> RetrainRequest:
    if text.startswith("@"):
        text = Path(text[1:]).read_text(encoding="utf-8")
    return RetrainRequest.from_dict(json.loads(text))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m trainers.retrain_job", description=__doc__.splitlines()[0])
    p.add_argument("--request", required=True, help="RetrainRequest JSON, or @FILE")
    p.add_argument("--registry", help="registry folder (default: trainers.registry or $DRIFTLOOP_HOME/registry)")
    p.add_argument("--settings", default="{}", help="config as JSON ({kafka, topics, trainers}), or @FILE")
    p.add_argument("--config", help="YAML config file (merged under --settings)")
    p.add_argument("--labelled-file", help="read training data from this JSONL instead of the labelled topic")
    p.add_argument("--publish", choices=("kafka", "none"), default="kafka", help="where ModelUpdate/RetrainResult go")
    p.add_argument("--no-publish-result", action="store_true",
                   help="print the result only (the dispatcher publishes it)")
    p.add_argument("--no-ray", action="store_true", help="train in this process, not in a Ray task")
    p.add_argument("--job-id", help="the Ray submission id (the dispatcher passes it; goes into the result)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)

    from streams import config as C
    from trainers.registry import ModelRegistry
    from trainers import data as training_data

    raw = C.load_file(args.config) if args.config else {}
    settings = json.loads(Path(args.settings[1:]).read_text() if args.settings.startswith("@") else args.settings)
    raw = {**raw, **settings}
    cfg = C.section(TrainerConfig, raw.get("trainers"), "trainers")
    check_trainer_config(cfg)
    from trainers.licences import LicencePolicy

    licence_policy = C.section(LicencePolicy, raw.get("licences"), "licences")
    req = _load_request(args.request)
    from trainers.promotion.live_gate import LiveGateConfig
    from trainers.reference import reference_settings

    references, reference_options = reference_settings(raw)  # where the worker reads them, by the worker's rule
    from trainers.registry_signing import RegistrySettings

    registry = ModelRegistry(args.registry or cfg.registry or C.home() / "registry",
                             settings=C.section(RegistrySettings, raw.get("registry"), "registry"))
    job_id = args.job_id
    use_ray = not args.no_ray
    if use_ray:
        import ray

        ray.init(address=os.environ.get("RAY_ADDRESS") or "auto", log_to_driver=True)

    producer = None
    topics = C.topics(raw)
    if args.publish == "kafka":
        from kafka import KafkaProducer

        from streams.adapters.kafka_clients import connection

        producer = KafkaProducer(**connection(raw).kafka_python(), acks="all", enable_idempotence=True)
    if cfg.data_until not in ("window", "latest"):
        raise SystemExit(f"trainers.data_until must be 'window' or 'latest', got {cfg.data_until!r}")
    data_end = req.window_end if cfg.data_until == "window" else float("inf")
    try:
        if args.labelled_file and args.labelled_file.endswith(".npz"):
            data = training_data.read_npz(args.labelled_file, req.window_start, data_end, cfg.max_examples)
        elif args.labelled_file:
            data = training_data.read_jsonl(args.labelled_file, req.model, req.window_start, data_end,
                                            cfg.max_examples)
        elif producer is not None or args.publish == "kafka":
            from streams.adapters.kafka_clients import connection

            data = training_data.read_topic(connection(raw), topics.labelled, req.model,
                                            req.window_start, data_end, skew_s=cfg.timestamp_skew_s,
                                            max_examples=cfg.max_examples, timeout_s=cfg.read_timeout_s)
        else:
            raise SystemExit("no training data source: give --labelled-file or use --publish kafka (labelled topic)")
        log.info("request %s: %d labelled examples in window (%s)", req.request_id, len(data), data.stats)
        outcome = run_job(req, registry, cfg, data, use_ray=use_ray, licence_policy=licence_policy,
                          references=references, reference_options=reference_options,
                          promotion=C.section(LiveGateConfig, raw.get("promotion"), "promotion"))
        result = outcome.result(req, job_id)
        if outcome.text:
            print(outcome.text.rstrip("\n"), flush=True)
        if outcome.update is not None:
            log.info("promoted %s version %s", req.model, outcome.update.version)
            if producer is not None:
                producer.send(topics.model_updates, key=req.model.encode(), value=outcome.update.to_json().encode())
        if producer is not None and not args.no_publish_result:
            producer.send(topics.retrain_results, key=req.request_id.encode(), value=result.to_json().encode())
        if producer is not None:
            producer.flush(timeout=30)
        verdict = verdict_line(outcome, req)
        line = result.to_dict()
        line["model_update"] = outcome.update.to_dict() if outcome.update else None
        line["verdict"] = verdict
        print(RESULT_MARKER + json.dumps(line, sort_keys=True, default=json_default), flush=True)
    finally:
        if producer is not None:
            producer.close()
    print(VERDICT_MARKER + verdict, flush=True)  # last: Ray's status message of a FAILED job ends with it
    return EXIT_OK if outcome.status == "succeeded" else EXIT_REJECTED


if __name__ == "__main__":
    sys.exit(main())
