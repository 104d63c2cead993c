"""``driftloop models``: list, show, promote, roll back and register base model versions.

    driftloop models list [MODEL]
    driftloop models show MODEL [VERSION] [--json]
    driftloop models promote MODEL VERSION          (publishes a ModelUpdate)
    driftloop models rollback MODEL                 (publishes a ModelUpdate)
    driftloop models shadow MODEL VERSION | reject MODEL VERSION | end-watch MODEL   (the live gate's steps by hand)
    driftloop models sign MODEL [VERSION | --all]   (signs unsigned manifests with the registry key)
    driftloop models register-base MODEL --spec SPEC.json --source URL --licence SPDX
                                   [--weights W.safetensors | --train DATA.jsonl] [--pretrained]
                                   [--tokenizer FEATURE=FILE] [--promote]

The registry folder is ``--registry``, else ``trainers.registry`` from the config, else
``$DRIFTLOOP_HOME/registry``.  Promotion events go to the model-updates topic unless
``--no-publish``.  With a registry signing key (``DRIFTLOOP_REGISTRY_KEY``, ``DRIFTLOOP_REGISTRY_KEY_FILE`` or
``registry.key_file``) new versions are signed, ``show`` checks and prints the signature, and ``sign`` signs the
versions of a registry from before signing (after checking their files).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--registry", help="registry folder (default: trainers.registry, else $DRIFTLOOP_HOME/registry)")
    sub = parser.add_subparsers(dest="models_command", metavar="ACTION", required=True)
    p = sub.add_parser("list", help="models, or the versions of one model")
    p.add_argument("model", nargs="?")
    p.add_argument("--json", action="store_true")
    p = sub.add_parser("show", help="one version: provenance, hashes, gate report (checks integrity)")
    p.add_argument("model")
    p.add_argument("version", nargs="?", help="default: the current version")
    p.add_argument("--json", action="store_true")
    for name, help_text in (("promote", "make a version current"), ("rollback", "go back to the previous promoted version")):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("model")
        if name == "promote":
            p.add_argument("version")
        p.add_argument("--reason", default="", help="why (kept in the serving history: `driftloop models history`)")
        p.add_argument("--no-publish", action="store_true", help="do not publish the ModelUpdate to Kafka")
    for name, help_text in (("shadow", "serve a version in shadow of the live one (the live gate judges it)"),
                            ("reject", "refuse the candidate in shadow: servers stop shadowing it"),
                            ("end-watch", "end the watch of the live version: kept, its parent no longer shadowed")):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("model")
        if name != "end-watch":
            p.add_argument("version")
        p.add_argument("--reason", default="", help="why (kept in the serving history: `driftloop models history`)")
        p.add_argument("--no-publish", action="store_true", help="do not publish the ModelUpdate to Kafka")
    p = sub.add_parser("history", help="which version served when, who promoted or rolled it back and why")
    p.add_argument("model")
    p.add_argument("--at", type=float, help="only say which version was live at this time (epoch seconds)")
    p.add_argument("--json", action="store_true")
    p = sub.add_parser("sign", help="sign unsigned versions with the registry key (after checking their files)")
    p.add_argument("model")
    p.add_argument("version", nargs="?", help="default: the current version")
    p.add_argument("--all", action="store_true", help="every version of the model")
    p = sub.add_parser("register-base", help="register an initial (base) version with its source and licence")
    p.add_argument("model")
    p.add_argument("--spec", required=True, help="ModelSpec JSON (feature_names, n_classes, hidden, categorical[, classes])")
    p.add_argument("--source", required=True, help="where the base model comes from (URL, paper, 'trained here on ...')")
    p.add_argument("--licence", required=True, help="its licence (SPDX id, e.g. Apache-2.0)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--weights", help="safetensors weights of the base model")
    src.add_argument("--train", help="train the base model on this JSONL of labelled examples")
    p.add_argument("--pretrained", action="store_true",
                   help="start from the architecture's pretrained backbone (e.g. wordllama-text: WordLlama embeddings)")
    p.add_argument("--tokenizer", action="append", metavar="FEATURE=FILE",
                   help="tokenizer JSON of a text feature (its sha256 must match the spec)")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--replay-capacity", type=int, default=500)
    p.add_argument("--replay-policy", default="class_balanced", choices=("class_balanced", "reservoir"))
    p.add_argument("--reference-profile", help="id of the drift reference profile of this version")
    p.add_argument("--promote", action="store_true", help="make it current (publishes a ModelUpdate)")
    p.add_argument("--no-publish", action="store_true")


def run(args: argparse.Namespace) -> int:
    from streams import config as C
    from trainers.licences import LicencePolicy
    from trainers.registry import ModelRegistry, RegistryError
    from trainers.registry_signing import RegistrySettings
    from trainers.retrain_job import TrainerConfig

    raw = C.load_file(args.config)
    tcfg = C.section(TrainerConfig, raw.get("trainers"), "trainers")
    args.licence_policy = C.section(LicencePolicy, raw.get("licences"), "licences")
    try:
        reg = ModelRegistry(args.registry or tcfg.registry or C.home() / "registry",
                            settings=C.section(RegistrySettings, raw.get("registry"), "registry"))
        if args.models_command == "sign":
            return _sign(reg, args)
        if args.models_command == "list":
            return _list(reg, args)
        if args.models_command == "show":
            return _show(reg, args)
        if args.models_command == "promote":
            return _publish(raw, reg.promote(args.model, args.version, licence_policy=args.licence_policy,
                                             actor="driftloop models promote", reason=args.reason), args.no_publish)
        if args.models_command == "rollback":
            return _publish(raw, reg.rollback(args.model, actor="driftloop models rollback", reason=args.reason),
                            args.no_publish)
        if args.models_command in ("shadow", "reject", "end-watch"):
            return _live_step(raw, reg, args)
        if args.models_command == "history":
            return _history(reg, args)
        if args.models_command == "register-base":
            from trainers.retrain_job import check_trainer_config

            check_trainer_config(tcfg)
            return _register_base(raw, reg, args)
    except (RegistryError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 2


def _list(reg: Any, args: argparse.Namespace) -> int:
    if not args.model:
        rows = [{"model": m, "current": reg.current(m), "versions": len(reg.versions(m))} for m in reg.models()]
        if args.json:
            print(json.dumps(rows, indent=2))
        elif not rows:
            print(f"no models in {reg.root}")
        for r in rows if not args.json else []:
            print(f"{r['model']:<24} current={r['current']}  versions={r['versions']}")
        return 0
    infos = reg.versions(args.model)
    if args.json:
        print(json.dumps([i.to_dict() for i in infos], indent=2, default=str))
        return 0
    print(f"{'':2}{'version':<8} {'created (UTC)':<20} {'parent':<7} {'gate':<9} {'request':<26} sha256")
    for i in infos:
        prov = i.provenance
        gate = {True: "passed", False: "rejected", None: "-"}[i.promoted]
        created = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(i.created_at))
        print(f"{'* ' if i.current else '  '}{i.version:<8} {created:<20} {str(prov.get('parent_version') or '-'):<7} "
              f"{gate:<9} {str(prov.get('request_id') or '-'):<26} {i.weights_sha256[:16]}")
    return 0


def _sign(reg: Any, args: argparse.Namespace) -> int:
    versions = [v.version for v in reg.versions(args.model)] if args.all else [reg.info(args.model, args.version).version]
    for version in versions:
        before = reg.signature(args.model, version)
        after = reg.sign(args.model, version)
        print(f"{args.model} v{version}: {'already ' if before.signed else ''}{after.describe()}")
    return 0


def _show(reg: Any, args: argparse.Namespace) -> int:
    info = reg.info(args.model, args.version)
    signature = reg.signature(args.model, info.version)
    if signature.signed and signature.valid is False:
        print(f"model {info.model} version {info.version}: signature: {signature.describe()}", file=sys.stderr)
    hashes = reg.verify(args.model, info.version)
    from trainers.registry_records import describe_live, describe_verdict

    d = info.to_dict()
    d["files"] = hashes
    d["integrity"] = "ok"
    d["shadow"], d["watch"] = reg.shadow(args.model), reg.watch(args.model)
    d["signature"] = {"signed": signature.signed, "valid": signature.valid, "key_id": signature.key_id,
                      "text": signature.describe()}
    if args.json:
        print(json.dumps(d, indent=2, default=str))
        return 0
    prov = info.provenance
    print(f"model {info.model} version {info.version}{' (current)' if info.current else ''}")
    print(f"  path:         {info.path}")
    print(f"  created:      {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime(info.created_at))}")
    print(f"  parent:       {prov.get('parent_version')}")
    print(f"  request:      {prov.get('request_id')}  alerts: {', '.join(prov.get('alert_ids') or []) or '-'}")
    print(f"  window:       {prov.get('window')}")
    print(f"  code:         {prov.get('code_version')}")
    base = prov.get("base_model") or {}
    lic = ", ".join(base.get("licences") or [base.get("licence") or "-"])
    if base.get("package"):
        print(f"  backbone:     {base['package']} {base.get('version', '')}: {base.get('file', '')} "
              f"(sha256 {str(base.get('sha256', ''))[:16]}..., licence {lic})")
    else:
        print(f"  base model:   {base.get('source', '-')} (licence {lic})")
    decision = base.get("licence_decision") or {}
    if decision:
        print(f"  licence gate: {'accepted in config: ' + str(decision.get('acceptance')) if decision.get('accepted') else 'allowed'}")
    print(f"  reference:    {prov.get('reference_profile_id')}")
    print(f"  live verdict: {describe_verdict(info.live_verdict)}")
    for earlier in reversed(info.live_verdicts):
        print(f"  before that:  {describe_verdict(earlier)}")
    print(f"  shadow:       {describe_live(d['shadow'], d['watch'], reg.current(args.model))}")
    print("  integrity:    ok (sha256 of every file matches the manifest)")
    print(f"  signature:    {signature.describe()}")
    for name, sha in sorted(hashes.items()):
        print(f"    {name:<20} {sha}")
    text = reg.report_text(args.model, info.version)
    if text:
        print("\n" + text)
    return 0


def _registered(reg: Any, model: str) -> bool:
    """Whether ``model`` is in the registry; if not, says so (with the models that are) on stderr."""
    if model in reg.models():
        return True
    print(f"error: model {model!r} is not in the registry ({', '.join(reg.models()) or 'none registered'})",
          file=sys.stderr)
    return False


def _live_step(raw: dict, reg: Any, args: argparse.Namespace) -> int:
    """``models shadow|reject|end-watch``: the live gate's decisions taken by a person (the dispatcher's gate follows
    the model update: it starts judging the shadow, or stops).  Done already (a re-run after Kafka was down): the
    registry's present state is published again."""
    from trainers.dispatch.live_step import present_update

    actor, cmd, model = f"driftloop models {args.models_command}", args.models_command, args.model
    if not _registered(reg, model):
        return 1
    by_hand = {"decided_by": actor, "reason": args.reason}
    done = {"shadow": lambda: (reg.shadow(model) or {}).get("version") == args.version,
            "reject": lambda: (reg.info(model, args.version).live_verdict or {}).get("verdict") == "rejected",
            "end-watch": lambda: (reg.info(model, reg.current(model)).live_verdict or {}).get("verdict") == "kept"}
    update = None
    if cmd == "shadow":
        update = reg.start_shadow(model, args.version, actor=actor, reason=args.reason,
                                  licence_policy=args.licence_policy)
    elif cmd == "reject" and (reg.shadow(model) or {}).get("version") == args.version:
        update = reg.reject(model, args.version, evidence=by_hand, actor=actor, reason=args.reason)
    elif cmd == "end-watch" and reg.watch(model):
        update = reg.end_watch(model, reg.watch(model)["version"], evidence=by_hand, actor=actor, reason=args.reason)
    elif not done[cmd]():
        shadow = reg.shadow(model)
        print(f"error: v{args.version} of {model} is not in shadow (in shadow: "
              f"{'v' + shadow['version'] if shadow else 'nothing'})" if cmd == "reject" else
              f"error: no promotion of {model} is watched", file=sys.stderr)
        return 1
    if update is None:  # done before: publish the registry's state again (the first publication may have failed)
        print(f"{model}: {cmd} already done; publishing the registry's present state again", file=sys.stderr)
        update = present_update(reg, model, {"end-watch": "watch_end"}.get(cmd, cmd))
    return _publish(raw, update, args.no_publish)


def _publish(raw: dict, update: Any, no_publish: bool) -> int:
    print(update.to_json())
    if no_publish:
        return 0
    from streams import config as C

    try:
        from kafka import KafkaProducer

        from streams.adapters.kafka_clients import connection

        producer = KafkaProducer(**connection(raw).kafka_python(), acks="all", max_block_ms=15000)
        try:
            producer.send(C.topics(raw).model_updates, key=update.model.encode(), value=update.to_json().encode())
            producer.flush(timeout=15)
        finally:
            producer.close()
    except Exception as exc:
        shadow = f", v{update.shadow} in shadow" if update.shadow else ""
        print(f"error: {update.action} of {update.model} is done in the registry (live v{update.version}{shadow}), "
              f"but the model-updates event could not be published ({exc}); publish the line above by hand"
              + (", or re-run the same command when Kafka is up (it publishes the registry's state again)"
                 if update.action in ("shadow", "reject", "watch_end") else ""), file=sys.stderr)
        return 1
    return 0


def _register_base(raw: dict, reg: Any, args: argparse.Namespace) -> int:
    from trainers.training.models import ModelSpec, build_model
    from trainers.registry import Provenance
    from trainers.training.replay import ReplayBuffer

    spec_d = json.loads(Path(args.spec).read_text(encoding="utf-8"))
    classes = spec_d.pop("classes", None)
    if spec_d.get("arch") == "wordllama-text":  # its tokenizer is WordLlama's: the sha256 may be left out
        from trainers.architectures.text import tokenizer_sha256

        for cfg in (spec_d.get("text") or {}).values():
            cfg.setdefault("tokenizer_sha256", tokenizer_sha256())
    spec = ModelSpec.from_dict(spec_d)
    if classes is not None and len(classes) != spec.n_classes:
        raise ValueError(f"{args.spec}: 'classes' has {len(classes)} names but n_classes is {spec.n_classes}")
    for item in args.tokenizer or []:
        feature, eq, path = item.partition("=")
        if not eq or not feature or not path:
            raise ValueError(f"--tokenizer takes FEATURE=FILE (e.g. text=tokenizer.json), got {item!r}")
        spec.attach_tokenizer(feature, Path(path).read_bytes())
    if spec.arch == "wordllama-text" and spec.missing_tokenizers():
        from trainers.architectures.text import tokenizer_json

        for feature in spec.missing_tokenizers():
            spec.attach_tokenizer(feature, tokenizer_json()[0])
    model = build_model(spec, seed=args.seed, pretrained=args.pretrained)
    replay = None
    training: dict[str, Any] = {}
    window = None
    if args.weights:
        from safetensors.torch import load_file

        model.load_state_dict(load_file(args.weights))
    elif args.train:
        from trainers.training.continual import ContinualLearner
        from trainers.data import encode_labels, read_jsonl

        data = read_jsonl(args.train, args.model, 0.0, float("inf"))
        y, known = encode_labels(data.labels(), spec.n_classes, classes)
        rows = [f for f, k in zip(data.features(), known) if k]
        if not rows:
            raise ValueError(f"{args.train} has no usable labelled examples of model {args.model!r}")
        if not spec.scaling:  # standardise numeric inputs on the base training data; versions inherit it
            spec = spec.with_scaling(rows)
            model = build_model(spec, seed=args.seed, pretrained=args.pretrained)
        replay = ReplayBuffer(args.replay_capacity, args.replay_policy, args.seed)
        learner = ContinualLearner(model, replay=replay, epochs=args.epochs, seed=args.seed)
        fit = learner.fit(spec.encode(rows), y[known])
        model = learner.model.to("cpu")
        training = dict(fit.to_dict(), data=data.stats)
        ts = [e.ts for e, k in zip(data.examples, known) if k]
        window = {"start": min(ts), "end": max(ts)}
    from trainers.architectures import origin_of

    base = dict(origin_of(model) or {}, source=args.source)
    base.setdefault("licence", args.licence)
    prov = Provenance(base_model=base, training=training, window=window,
                      reference_profile_id=args.reference_profile)
    info = reg.register(args.model, spec, {k: v for k, v in model.state_dict().items()}, provenance=prov,
                        replay=replay, classes=classes, licence_policy=args.licence_policy)
    print(f"registered {args.model} version {info.version} at {info.path}")
    if args.promote:
        return _publish(raw, reg.promote(args.model, info.version, licence_policy=args.licence_policy),
                        args.no_publish)
    return 0


def _history(reg, args: argparse.Namespace) -> int:
    """``models history MODEL [--at T]``: the serving history, oldest first (wall-clock UTC)."""
    import datetime as dt

    from trainers.registry_records import describe_change

    if not _registered(reg, args.model):
        return 2
    if args.at is not None:
        if not math.isfinite(args.at):
            print(f"--at must be a time in epoch seconds, got {args.at}", file=sys.stderr)
            return 2
        live = reg.served_at(args.model, args.at)
        print(json.dumps({"model": args.model, "at": args.at, "version": live}) if args.json else
              f"{args.model}: version {live} was live at {args.at}" if live else
              f"{args.model}: no version was live at {args.at}")
        return 0 if live else 1
    changes = reg.changes(args.model)
    if args.json:
        print(json.dumps(changes, indent=2, sort_keys=True))
        return 0
    for c in changes:
        when = dt.datetime.fromtimestamp(c["at"], dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
        window = c.get("data_window") or {}
        print(f"{when}  {c['action']:<9} {describe_change(c)}  by {c['actor']}"
              + (f"\n    why: {c['reason']}" if c.get("reason") else "")
              + (f"\n    weights {str(c.get('weights_sha256'))[:12]}"
                 + (f"  replay {c['replay_sha256'][:12]}" if c.get("replay_sha256") else "  no replay buffer")
                 if c["action"] in ("promote", "rollback") else "")
              + (f"  data window [{window.get('start')}, {window.get('end')})" if window else ""))
    if not changes:
        print(f"{args.model}: no promotion recorded yet")
    return 0
