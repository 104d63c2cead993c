"""The ``driftloop`` command.

Each subcommand lives in the module that owns it.  A command module exposes
``add_arguments(parser)`` and ``run(args) -> int`` and keeps heavy imports
(torch, ray, faust, feast) inside ``run`` so that ``driftloop --help`` stays fast.
``module:name`` names an object of the module with those two functions (several commands
in one module).  ``NEEDS_KAFKA`` (a bool, or a function of the arguments) on a command makes
``main`` check first that the broker answers, so a missing broker fails in seconds; an optional
``check_args(args)`` runs before that (a missing file is named before a missing broker).

Errors: a command raises :class:`streams.errors.UserError` for whatever the user can fix;
``main`` prints it (and the other known product errors) as one or two lines with the fix and
its exit code, never a traceback.  Kafka clients' connection noise stays out of the output
unless ``-v``.
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
    ("up", "streams.cli.stack:up", "start the local stack (Kafka, worker, dispatcher + Ray) in the background"),
    ("down", "streams.cli.stack:down", "stop the local stack started by `driftloop up`"),
    ("status", "streams.cli.stack:status", "one line per component of the local stack: running, stopped or unhealthy"),
    ("dashboard", "streams.cli.stack:dashboard", "print the Ray dashboard URL and how to log in"),
    ("produce", "streams.cli.produce", "replay a JSONL, CSV or Parquet file to the inputs, labels or any topic"),
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
    for name, target, help_text in COMMANDS:
        module_name, _, attr = target.partition(":")
        try:
            module = importlib.import_module(module_name)
            command = getattr(module, attr) if attr else module
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                continue  # command not built in this checkout
            command, error = None, exc
        except Exception as exc:  # one broken command must not take the others down
            command, error = None, exc
        p = sub.add_parser(name, help=help_text, description=help_text)
        if command is None:
            p.set_defaults(_run=_broken(name, module_name, error))
            continue
        command.add_arguments(p)
        p.set_defaults(_run=command.run, _needs_kafka=getattr(command, "NEEDS_KAFKA", False),
                       _check_args=getattr(command, "check_args", None))
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
        for noisy in ("aiokafka", "faust", "mode", "ray", "feast"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
        # kafka-python logs every refused connection on ERROR/WARNING (several lines a second while a
        # broker is down); commands say themselves when the broker does not answer.
        logging.getLogger("kafka").setLevel(logging.CRITICAL)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    return run_command(args)


def run_command(args: argparse.Namespace) -> int:
    """Run the parsed command; the product's own errors become one or two lines on stderr and an exit code."""
    from streams.config import ConfigError, check_all, kafka_settings, load_file
    from streams.errors import UserError

    def fail(lines: list[str], code: int) -> int:
        print(f"driftloop {args.command}: " + "\n".join(lines), file=sys.stderr)
        return code

    bootstrap = "?"
    try:
        raw = load_file(getattr(args, "config", None))
        check_all(raw)  # the whole file, whatever the command reads
        bootstrap = kafka_settings(raw).bootstrap_servers
        if args._check_args is not None:  # cheap checks first: a missing file is named before a missing broker
            args._check_args(args)
        needs = args._needs_kafka(args) if callable(args._needs_kafka) else args._needs_kafka
        if needs:
            from streams.adapters.kafka_admin import require_broker
            from streams.adapters.kafka_clients import connection

            require_broker(connection(raw))  # a missing password or CA file is a ConfigError, said before anything runs
        return int(args._run(args) or 0)
    except ConfigError as exc:
        return fail([f"bad configuration: {exc}"], 2)
    except UserError as exc:
        return fail(exc.lines(), exc.exit_code)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `driftloop status | head`: the reader left; nothing more to say
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except Exception as exc:
        known = _known_error(exc, bootstrap)
        if known is None:
            raise
        return fail(known.lines(), known.exit_code)


def _known_error(exc: BaseException, bootstrap: str):
    """Errors of the libraries and older modules that the user can fix, as a UserError (None: a bug)."""
    from streams.errors import BrokerUnreachable, MissingFile, UserError

    kind = type(exc).__name__
    if kind == "BrokerUnavailable":  # streams.adapters.kafka_admin
        return BrokerUnreachable(getattr(exc, "bootstrap", "") or bootstrap, getattr(exc, "waited_s", 0.0))
    if kind in ("NoBrokersAvailable", "KafkaConnectionError") and type(exc).__module__.startswith("kafka"):
        return BrokerUnreachable(bootstrap, 0.0, "the client found no broker")
    if kind == "KafkaError" and type(exc).__module__ == "infra.kafka.launcher":
        return UserError(str(exc))  # its messages say what to do
    if isinstance(exc, FileNotFoundError) and exc.filename:
        return MissingFile(exc.filename)
    return None


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
