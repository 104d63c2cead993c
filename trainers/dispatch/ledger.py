"""The dispatcher's state machine: retrain requests in, job submissions and results out.

Pure: no Kafka, no Ray.  :class:`DispatchLedger` records every request it has seen by
``request_id`` and returns *actions* (:class:`Submit`, :class:`Publish`) for the adapter
(``trainers.cli.dispatcher``) to carry out.  The adapter persists the ledger after every
change (:meth:`DispatchLedger.to_dict`), so a restarted dispatcher picks up where it was:
requests recorded but never submitted are submitted again under the same submission id
(Ray refuses a duplicate id, and the adapter then adopts the existing job), and jobs in
flight are polled again.

Life of a request::

    received --submit ok--> submitted --RUNNING--> running --SUCCEEDED--> succeeded
        |                       |                     |
        +--submit error / job FAILED or STOPPED: attempt+1 (new submission id) while
           attempts < max_attempts, else --> failed

>>> from trainers.records import RetrainRequest
>>> ledger = DispatchLedger(max_attempts=2)
>>> req = RetrainRequest("fraud", "3", ["a1"], ["data_drift"], 0.0, 60.0)
>>> [type(a).__name__ for a in ledger.on_request(req)]
['Submit']
>>> [a.result.status for a in ledger.on_request(req)]   # redelivered: nothing is submitted
['duplicate']
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import time
import unicodedata
from dataclasses import dataclass, field
from typing import Any, Mapping

from trainers.records import RetrainRequest, RetrainResult

# Ray job statuses (ray.job_submission.JobStatus values).
PENDING, RUNNING, SUCCEEDED, FAILED, STOPPED = "PENDING", "RUNNING", "SUCCEEDED", "FAILED", "STOPPED"
TERMINAL_JOB = (SUCCEEDED, FAILED, STOPPED)

# Ledger states of a request.
RECEIVED, SUBMITTED, RUN, DONE, GAVE_UP = "received", "submitted", "running", "succeeded", "failed"
ACTIVE = (RECEIVED, SUBMITTED, RUN)


@dataclass(frozen=True)
class DispatcherConfig:
    """The ``dispatcher`` config section.

    ``ray_address``: the Ray dashboard / Jobs API address (``http://host:8265``); empty
    starts (or reuses) a local cluster with the dashboard on 127.0.0.1 and token auth on.
    ``max_attempts``: submissions per request, first included (failed jobs are retried
    with a new submission id until then).
    """

    ray_address: str = ""
    registry: str = ""  # default: $DRIFTLOOP_HOME/registry (on a shared file system for remote clusters)
    state_dir: str = ""  # ledger and local cluster state; default: $DRIFTLOOP_HOME/dispatcher
    group_id: str = "driftloop-dispatcher"
    max_attempts: int = 3
    poll_interval_s: float = 1.0
    submission_prefix: str = "retrain"  # Ray submission ids: <prefix>-<model>-v<version>-<request>-a<attempt>
    metrics_port: int = 9109  # /metrics of the dispatcher (driftloop_retrain_jobs_total); 0: none
    metrics_host: str = "127.0.0.1"  # its interface; "0.0.0.0" for a Prometheus elsewhere (no authentication)
    entrypoint_python: str = ""  # default: this interpreter (local cluster); "python" on remote clusters
    runtime_env: str = "pythonpath"  # "pythonpath" (shared file system) or "working_dir" (upload the project)
    entrypoint_num_cpus: float = 0.0
    labelled_file: str = ""  # read training data from this JSONL instead of the labelled topic
    local_num_cpus: int | None = None
    local_num_gpus: int | None = None
    local_object_store_mb: int = 200
    local_dashboard_port: int = 0  # 0: a free port
    token_auth: bool = True
    stop_local_cluster_on_exit: bool = False

    def __post_init__(self) -> None:
        if int(self.max_attempts) < 1:
            raise ValueError(f"dispatcher.max_attempts must be >= 1, got {self.max_attempts}")
        if not 0 <= int(self.metrics_port) <= 65535:
            raise ValueError(f"dispatcher.metrics_port must be a TCP port, 0 to 65535 (0: none), got {self.metrics_port}")
        if self.runtime_env not in ("pythonpath", "working_dir"):
            raise ValueError(f"dispatcher.runtime_env must be 'pythonpath' or 'working_dir', got {self.runtime_env!r}")


@dataclass(frozen=True)
class Submit:
    """Submit ``request`` as a Ray job with ``submission_id`` (attempt ``attempt``)."""

    request: RetrainRequest
    submission_id: str
    attempt: int


@dataclass(frozen=True)
class Publish:
    """Publish ``result`` on the retrain-results topic."""

    result: RetrainResult


Action = Submit | Publish

GAVE_UP_PREFIX = "gave up after"
#: outcomes of a request, as counted by ``driftloop_retrain_jobs_total{outcome}``
OUTCOMES = ("promoted", "shadow", "kept", "rejected", "failed", "retried")


def outcome_of(result: RetrainResult) -> str | None:
    """How a published result ends a request (or one attempt: ``retried``); None for ``submitted``, ``running``,
    ``duplicate``.  ``kept``: the candidate passed the gate but was not promoted (the current version moved); ``shadow``: it passed
    and is served in shadow until the live gate decides (:mod:`trainers.promotion.live_gate`)."""
    if result.status == "succeeded":
        return "promoted" if result.promoted else "shadow" if result.shadow else "kept"
    if result.status == "rejected":
        return "rejected"
    if result.status == "failed":
        return "failed" if (result.error or "").startswith(GAVE_UP_PREFIX) else "retried"
    return None


#: the retrain job's exit codes (metadata ``exit_codes`` tells the operator in the Ray dashboard)
EXIT_OK, EXIT_REJECTED = 0, 3
EXIT_CODES_NOTE = (f"{EXIT_OK}: candidate promoted (or kept); {EXIT_REJECTED}: no promotion, the candidate was rejected "
                   "(FAILED in Ray; the last log line says why); other: the job failed")


def _slug(text: str, limit: int) -> str:
    """``text`` as ``[A-Za-z0-9._-]`` (accents dropped, other runs -> ``-``), at most ``limit`` characters."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    out = re.sub(r"[^A-Za-z0-9._]+", "-", ascii_text).strip("-.")[:limit].rstrip("-.")
    return out or "x"


def short_request_id(request_id: str) -> str:
    """10 hex characters naming a request: the start of an ``rr-<hex>`` id, else of its sha256."""
    m = re.fullmatch(r"rr-([0-9a-f]{10,})", request_id)
    return m.group(1)[:10] if m else hashlib.sha256(request_id.encode()).hexdigest()[:10]


def submission_id(req: RetrainRequest, attempt: int, prefix: str = "retrain") -> str:
    """Deterministic Ray submission id of one attempt, readable in the Ray dashboard:
    ``<prefix>-<model>-v<version>-<short request id>-a<attempt>`` (names reduced to ``[A-Za-z0-9._-]``;
    the request part keeps ids apart).  A redelivered request maps to the same id.

    >>> req = RetrainRequest("fraud/EU", "3", ["a1"], ["data_drift"], 0.0, 60.0, request_id="rr-0123456789abcdef0123")
    >>> submission_id(req, 2)
    'retrain-fraud-EU-v3-0123456789-a2'
    """
    return f"{_slug(prefix, 32)}-{_slug(req.model, 48)}-v{_slug(req.model_version, 24)}-{short_request_id(req.request_id)}" \
           f"-a{int(attempt)}"


def job_metadata(req: RetrainRequest, attempt: int, sid: str, max_ids: int = 20) -> dict[str, str]:
    """The Ray job's metadata (strings, fixed at submission): what the request was and how to read the job's end.

    >>> md = job_metadata(RetrainRequest("fraud", "3", ["a1", "a2"], ["data_drift"], 0.0, 60.0, n_labelled=420), 1, "sid")
    >>> md["model"], md["version"], md["alert_ids"], md["kinds"], md["n_labelled"], md["job_name"]
    ('fraud', '3', 'a1,a2', 'data_drift', '420', 'sid')
    """
    ids = list(req.alert_ids)
    alert_ids = ",".join(ids[:max_ids]) + (f",... (+{len(ids) - max_ids} more)" if len(ids) > max_ids else "")
    return {"driftloop": "retrain", "job_name": sid, "model": req.model, "version": req.model_version,
            "request_id": req.request_id, "alert_ids": alert_ids, "kinds": ",".join(req.kinds),
            "n_labelled": str(int(req.n_labelled)), "window": f"{req.window_start:.0f}..{req.window_end:.0f}",
            "reason": req.reason[:200], "attempt": str(int(attempt)), "exit_codes": EXIT_CODES_NOTE}


@dataclass
class Entry:
    """What the ledger knows about one request."""

    request: dict[str, Any]
    state: str = RECEIVED
    attempt: int = 1
    submission_id: str = ""
    job_status: str | None = None
    errors: list[str] = field(default_factory=list)
    result: dict[str, Any] | None = None
    duplicates: int = 0
    verdict: str = ""  # the job's one-line verdict (its last log line), e.g. "candidate v3 rejected by the promotion gate: ..."
    received_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)

    @property
    def req(self) -> RetrainRequest:
        return RetrainRequest.from_dict(self.request)


class DispatchLedger:
    """Idempotent, bounded-retry bookkeeping of retrain requests (pure)."""

    def __init__(self, max_attempts: int = 3, prefix: str = "retrain",
                 entries: Mapping[str, Entry] | None = None) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        self.max_attempts = int(max_attempts)
        self.prefix = prefix
        self.entries: dict[str, Entry] = dict(entries or {})

    # ------------------------------------------------------------ inputs
    def on_request(self, req: RetrainRequest, now: float | None = None) -> list[Action]:
        """A request arrived (maybe again). New: submit attempt 1. Known: a ``duplicate`` result only."""
        now = time.time() if now is None else now
        known = self.entries.get(req.request_id)
        if known is not None:
            known.duplicates += 1
            known.updated_at = now
            return [Publish(self._result(known, "duplicate", now,
                                         error=f"request {req.request_id} already {known.state}; not trained again"))]
        sid = submission_id(req, 1, self.prefix)
        self.entries[req.request_id] = Entry(request=req.to_dict(), submission_id=sid, received_at=now, updated_at=now)
        return [Submit(req, sid, 1)]

    def on_submitted(self, request_id: str, sid: str, *, adopted: bool = False, now: float | None = None) -> list[Action]:
        """The Jobs API accepted ``sid`` (or already had it: ``adopted``, after a restart)."""
        now = time.time() if now is None else now
        e = self._entry(request_id)
        if e.state not in (RECEIVED,) or e.submission_id != sid:
            return []
        e.state, e.updated_at = SUBMITTED, now
        if adopted:
            return []  # announced before the restart
        return [Publish(self._result(e, "submitted", now))]

    def on_submit_error(self, request_id: str, sid: str, error: str, now: float | None = None) -> list[Action]:
        """Submitting ``sid`` failed for a reason other than "already exists"."""
        return self._failed_attempt(request_id, sid, f"submit failed: {error}", now)

    def on_job_status(self, request_id: str, sid: str, status: str, *, message: str = "",
                      job_result: Mapping[str, Any] | None = None, now: float | None = None) -> list[Action]:
        """The Jobs API reports ``status`` for ``sid``; ``job_result`` is the job's own result record."""
        now = time.time() if now is None else now
        e = self._entry(request_id)
        if e.submission_id != sid or e.state not in (SUBMITTED, RUN, RECEIVED):
            return []  # stale poll of an earlier attempt, or already final
        e.job_status = status
        if status == PENDING:
            if e.state == RECEIVED:
                e.state = SUBMITTED
            return []
        if status == RUNNING:
            if e.state == RUN:
                return []
            e.state, e.updated_at = RUN, now
            return [Publish(self._result(e, "running", now))]
        jr = dict(job_result or {})
        # a rejected candidate ends the job with EXIT_REJECTED (Ray: FAILED, the verdict in its message): final, not retried
        if status == SUCCEEDED or (status == FAILED and jr.get("status") == "rejected"):
            e.state, e.updated_at = DONE, now
            e.result = jr
            e.verdict = str(jr.get("verdict") or "")
            status_out = jr.get("status") if jr.get("status") in ("succeeded", "rejected") else "succeeded"
            return [Publish(self._result(e, status_out, now, new_version=jr.get("new_version"),
                                         promoted=bool(jr.get("promoted", False)), report=jr.get("report") or {},
                                         error=jr.get("error"), shadow=bool(jr.get("shadow", False))))]
        if status in (FAILED, STOPPED):
            return self._failed_attempt(request_id, sid, f"job {status.lower()}: {message}".rstrip(": "), now)
        return []

    # ------------------------------------------------------------ restart
    def recover(self) -> list[Action]:
        """Actions after a restart: resubmit requests recorded but maybe never submitted (same id)."""
        return [Submit(e.req, e.submission_id, e.attempt) for e in self.entries.values() if e.state == RECEIVED]

    def in_flight(self) -> list[tuple[str, str]]:
        """(request_id, submission_id) of jobs to poll."""
        return [(rid, e.submission_id) for rid, e in self.entries.items() if e.state in (SUBMITTED, RUN)]

    # ------------------------------------------------------------ helpers
    def _failed_attempt(self, request_id: str, sid: str, error: str, now: float | None) -> list[Action]:
        now = time.time() if now is None else now
        e = self._entry(request_id)
        if e.submission_id != sid or e.state not in ACTIVE:
            return []
        e.errors.append(f"attempt {e.attempt}: {error}")
        e.updated_at = now
        if e.attempt >= self.max_attempts:
            e.state = GAVE_UP
            return [Publish(self._result(e, "failed", now,
                                         error=f"{GAVE_UP_PREFIX} {e.attempt} attempt(s): " + "; ".join(e.errors)))]
        failed = Publish(self._result(e, "failed", now, error=f"attempt {e.attempt} failed, retrying: {error}"))
        e.attempt += 1
        e.state = RECEIVED
        e.submission_id = submission_id(e.req, e.attempt, self.prefix)
        e.job_status = None
        return [failed, Submit(e.req, e.submission_id, e.attempt)]

    def _entry(self, request_id: str) -> Entry:
        try:
            return self.entries[request_id]
        except KeyError:
            raise KeyError(f"request {request_id!r} is not in the dispatcher ledger") from None

    @staticmethod
    def _result(e: Entry, status: str, now: float, **kw: Any) -> RetrainResult:
        req = e.request
        return RetrainResult(request_id=req["request_id"], model=req["model"], parent_version=req["model_version"],
                             status=status, job_id=e.submission_id or None, attempts=e.attempt, at=now, **kw)

    # ------------------------------------------------------------ persistence
    def to_dict(self) -> dict[str, Any]:
        return {"format": "driftloop.dispatch-ledger/1", "max_attempts": self.max_attempts, "prefix": self.prefix,
                "entries": {k: dataclasses.asdict(v) for k, v in self.entries.items()}}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], max_attempts: int | None = None) -> "DispatchLedger":
        entries = {k: Entry(**v) for k, v in (d.get("entries") or {}).items()}
        return cls(max_attempts or int(d.get("max_attempts", 3)), d.get("prefix", "driftloop"), entries)  # as recorded


def is_duplicate_submission_error(exc: BaseException) -> bool:
    """Whether a Jobs API error means "a job with this submission_id already exists"."""
    return "already exists" in str(exc)


RESULT_MARKER = "DRIFTLOOP_RESULT "


def parse_job_result(logs: str) -> dict[str, Any] | None:
    """The last ``DRIFTLOOP_RESULT {json}`` line a retrain job printed, if any."""
    import json

    for line in reversed(logs.splitlines()):
        i = line.find(RESULT_MARKER)
        if i >= 0:
            try:
                obj = json.loads(line[i + len(RESULT_MARKER):])
            except ValueError:
                continue
            if isinstance(obj, dict):
                return obj
    return None
