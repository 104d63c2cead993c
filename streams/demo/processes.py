"""The demo's processes: Kafka for the run, driftloop subcommands in the background, and one-shot commands."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

from streams import config as cfg

ROOT = Path(__file__).resolve().parents[2]  # the repository (streams/demo/processes.py)


_T0 = time.monotonic()


def say(msg: str) -> None:
    """One line of the demo's story, with the seconds since the demo started (above any progress bar on screen)."""
    from tqdm import tqdm

    tqdm.write(f"[demo {time.monotonic() - _T0:5.0f}s] {msg}", file=sys.stdout)
    sys.stdout.flush()


@contextlib.contextmanager
def kafka_for_demo(raw: dict, keep_running: bool) -> Iterator[Any]:
    """The connection (``streams.adapters.kafka_clients.KafkaConnection``; ``str()`` is the bootstrap address) of
    the configured cluster, or of a local broker started for the demo."""
    from infra.kafka.launcher import LocalKafka

    kafka = LocalKafka(cfg.kafka_settings(raw))
    res = kafka.start_detailed()
    if res.external:
        say(f"using your Kafka cluster at {res.bootstrap}")
    elif res.already_running:
        say(f"Kafka already running at {res.bootstrap} (pid {res.pid})")
    else:
        say(f"started Kafka at {res.bootstrap} in {res.total_s:.1f}s (state in {kafka.state_dir})")
    started = not (res.external or res.already_running)
    try:
        yield kafka.connection
    finally:
        if started and not keep_running:
            kafka.stop()
            say("stopped the Kafka broker it started")


class Child:
    """A driftloop subcommand running in the background, its output in a log file."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.name, self.log = name, log
        self._out = open(log, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", *argv], cwd=ROOT, env=env, stdout=self._out,
            stderr=subprocess.STDOUT, start_new_session=True,
        )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def tail(self, n: int = 2500) -> str:
        return self.log.read_bytes()[-n:].decode("utf-8", "replace")

    def stop(self, timeout_s: float = 60.0) -> None:
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._out.close()


def cli(argv: list[str], env: dict[str, str]) -> str:
    out = subprocess.run([sys.executable, "-m", "streams.cli", *argv], cwd=ROOT, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"driftloop {' '.join(argv)} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    return out.stdout




def new_run_home() -> tuple[str, "Path"]:
    """A run id (time + random suffix) and its folder ``$DRIFTLOOP_HOME/demo/<run id>`` (created)."""
    import uuid

    run_id = time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:4]
    home = cfg.home() / "demo" / run_id
    home.mkdir(parents=True, exist_ok=True)
    return run_id, home
