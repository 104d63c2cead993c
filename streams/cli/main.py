"""The ``driftloop`` command.

Each subcommand lives in the module that owns it.  A command module exposes
``add_arguments(parser)`` and ``run(args) -> int`` and keeps heavy imports
(torch, ray, faust, feast) inside ``run`` so that ``driftloop --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

# (command, module, one-line help). Order is the order of ``driftloop --help``.
COMMANDS: list[tuple[str, str, str]] = [
    ("demo", "streams.cli.demo", "run the end-to-end demo on embedded defaults"),
    ("kafka", "infra.kafka.launcher", "start, stop or inspect the local Kafka broker"),
    ("produce-sample", "streams.cli.sample", "publish sample inference events (and some bad ones) to Kafka"),
    ("validate", "streams.cli.validate", "consume a topic, validate every record, dead-letter the bad ones"),
    ("reference", "streams.cli.reference", "build a reference profile from training data or the Feast offline store"),
    ("backtest", "streams.cli.backtest", "replay input/label files through the drift engine and write alerts"),
    ("worker", "streams.cli.worker", "run the Faust drift worker on Kafka"),
    ("alerts", "streams.cli.alerts", "follow the alerts topic and print alerts"),
    ("report", "streams.cli.report", "write the HTML run report (plots, alerts, gate reports) of a run directory"),
    ("features", "feature_repo.cli", "apply / materialise the Feast feature repository"),
    ("models", "trainers.cli.models", "list, show, promote or roll back model versions"),
    ("dispatcher", "trainers.cli.dispatcher", "turn retrain requests into Ray jobs"),
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="driftloop",
        description="Watch deployed models for drift, tell pipeline bugs from a changing world, "
        "and retrain continually without forgetting.",
    )
    parser.add_argument("--config", help="YAML config file (default: $DRIFTLOOP_CONFIG, else embedded defaults)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name, help_text in COMMANDS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                continue  # command not built in this checkout
            module, error = None, exc
        except Exception as exc:  # one broken command must not take the others down
            module, error = None, exc
        p = sub.add_parser(name, help=help_text, description=help_text)
        if module is None:
            p.set_defaults(_run=_broken(name, module_name, error))
            continue
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def _broken(name: str, module_name: str, error: BaseException):
    def run(args: argparse.Namespace) -> int:
        print(f"driftloop {name}: cannot load {module_name}: {error!r}; reinstall with `make setup`", file=sys.stderr)
        return 1

    return run


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if not args.verbose:
        for noisy in ("kafka", "aiokafka", "faust", "mode", "ray", "feast"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    from streams.config import ConfigError, check_all, load_file

    try:
        check_all(load_file(getattr(args, "config", None)))  # the whole file, whatever the command reads
        return int(args._run(args) or 0)
    except ConfigError as exc:
        print(f"driftloop {args.command}: bad configuration: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
