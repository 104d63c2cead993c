"""Readable Ray jobs: submission ids, metadata, the job's verdict line and exit code, and how the dispatcher
records a rejected candidate (pure functions and the adapter loop against an in-memory Jobs API fake)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from trainers.cli.dispatcher import Dispatcher, JobsAdapter
from trainers.dispatch.ledger import (
    EXIT_CODES_NOTE, EXIT_REJECTED, OUTCOMES, DispatchLedger, Publish, job_metadata, outcome_of, short_request_id,
    submission_id,
)
from trainers.dispatch.metrics import DispatcherMetrics
from trainers.records import RetrainRequest, RetrainResult
from trainers.job_outcome import JobOutcome, training_progress, verdict_line

SAFE = re.compile(r"[A-Za-z0-9._-]+")


def _req(model: str = "fraud", version: str = "3", alerts=("a1", "a2"), **kw) -> RetrainRequest:
    return RetrainRequest(model, version, list(alerts), ["data_drift", "concept_drift"], 100.0, 160.0,
                          n_labelled=420, **kw)


def test_submission_id_reads_well_and_is_stable() -> None:
    req = _req()
    sid = submission_id(req, 1)
    assert sid == f"retrain-fraud-v3-{req.request_id[3:13]}-a1"
    assert submission_id(RetrainRequest.from_dict(req.to_dict()), 1) == sid  # a redelivery: the same id
    assert submission_id(req, 2) != sid and submission_id(req, 2).endswith("-a2")
    assert submission_id(req, 1, prefix="dl") == sid.replace("retrain-", "dl-", 1)


@pytest.mark.parametrize("model, version", [
    ("fraud/EU|DE", "3"), ("Betrugserkennung für Zahlungen", "v 12"), ("模型", "1"), ("..//..", "../.."),
    ("x" * 128, "y" * 128), ("a b\tc", "1.2.3-rc1"),
])
def test_submission_id_is_sanitised_and_bounded(model: str, version: str) -> None:
    sid = submission_id(_req(model, version), 1)
    assert SAFE.fullmatch(sid), sid
    assert len(sid) <= 32 + 48 + 24 + 10 + 10, sid
    assert "/" not in sid and ".." not in sid.replace("...", "")


def test_models_whose_names_sanitise_alike_still_get_different_ids() -> None:
    a, b = _req("fraud/EU"), _req("fraud|EU")
    assert submission_id(a, 1) != submission_id(b, 1)


def test_short_request_id_of_other_ids_is_a_hash() -> None:
    assert short_request_id("rr-0123456789abcdef0123") == "0123456789"
    other = short_request_id("my request #7")
    assert re.fullmatch(r"[0-9a-f]{10}", other) and other != short_request_id("my request #8")


def test_job_metadata_says_what_the_job_is_for() -> None:
    req = _req(reason="2 alerts, 420 labelled")
    md = job_metadata(req, 2, "retrain-fraud-v3-x-a2")
    assert all(isinstance(v, str) for v in md.values())
    assert {k: md[k] for k in ("model", "version", "request_id", "alert_ids", "kinds", "n_labelled", "attempt",
                               "job_name")} == {
        "model": "fraud", "version": "3", "request_id": req.request_id, "alert_ids": "a1,a2",
        "kinds": "data_drift,concept_drift", "n_labelled": "420", "attempt": "2", "job_name": "retrain-fraud-v3-x-a2"}
    assert md["exit_codes"] == EXIT_CODES_NOTE and str(EXIT_REJECTED) in md["exit_codes"]
    many = job_metadata(_req(alerts=[f"a{i}" for i in range(50)]), 1, "s")
    assert many["alert_ids"].endswith("(+30 more)") and many["alert_ids"].count(",") == 20


def test_the_adapter_submits_the_readable_id_with_its_metadata(tmp_path: Path) -> None:
    class Jobs:
        def __init__(self) -> None:
            self.calls: list[dict] = []

        def submit_job(self, **kw):
            self.calls.append(kw)
            return kw["submission_id"]

    jobs = Jobs()
    adapter = JobsAdapter(jobs, settings={}, registry=str(tmp_path))
    d = Dispatcher.open(tmp_path / "ledger.json", adapter, lambda r: None)
    req = _req()
    d.handle(req)
    [call] = jobs.calls
    assert call["submission_id"] == submission_id(req, 1)
    assert call["metadata"] == job_metadata(req, 1, call["submission_id"])
    assert call["entrypoint"].split()[3:5] == ["--job-id", call["submission_id"]]


def test_verdict_lines() -> None:
    req = _req(version="2")
    rejected = JobOutcome("rejected", "3", reasons=["forgetting on old data 12.0 pts > 5.0 pts", "ECE 30% > 20%"],
                          error="gate rejected: ...")
    assert verdict_line(rejected, req) == \
        "candidate v3 rejected by the promotion gate: forgetting on old data 12.0 pts > 5.0 pts (fraud, parent v2)"
    assert verdict_line(JobOutcome("succeeded", "3", promoted=True, gate_passed=True), req).startswith(
        "candidate v3 promoted: passed the promotion gate")
    assert "not promoted" in verdict_line(JobOutcome("succeeded", "3", promoted=False, gate_passed=True), req)
    assert verdict_line(JobOutcome("rejected", error="licence gate: GPL-3.0 not accepted"), req) == \
        "no candidate: licence gate: GPL-3.0 not accepted (fraud, parent v2)"
    again = JobOutcome("rejected", "3", report={"note": "version 3 was already made for this request; not trained again"})
    assert verdict_line(again, req).startswith("candidate v3 rejected: version 3 was already made")


def test_training_progress_keeps_a_few_epochs() -> None:
    fit = {"history": [{"epoch": e, "train_loss": 1.0 / e} for e in range(1, 41)], "epochs_run": 40, "steps": 400,
           "stopped_early": True, "device": "cuda"}
    lines = training_progress(fit, "candidate", max_lines=5)
    assert len(lines) == 6 and lines[0].startswith("candidate epoch 1/40: train loss 1.0000")
    assert lines[4].startswith("candidate epoch 40/40") and lines[-1].endswith("on cuda (stopped early)")


def test_a_rejected_job_is_recorded_as_rejected_not_retried() -> None:
    """The job exits EXIT_REJECTED, so Ray says FAILED; its result line says rejected: final, no second attempt."""
    ledger = DispatchLedger(max_attempts=3)
    req = _req()
    sid = ledger.on_request(req)[0].submission_id
    ledger.on_submitted(req.request_id, sid)
    verdict = "candidate v4 rejected by the promotion gate: no improvement on new data (fraud, parent v3)"
    out = ledger.on_job_status(req.request_id, sid, "FAILED", message="Job entrypoint command failed with exit code 3",
                               job_result={"status": "rejected", "new_version": "4", "error": "gate rejected: x",
                                           "verdict": verdict})
    assert [type(a).__name__ for a in out] == ["Publish"]
    assert out[0].result.status == "rejected" and out[0].result.new_version == "4"
    e = ledger.entries[req.request_id]
    assert e.state == "succeeded" and e.verdict == verdict and e.attempt == 1 and ledger.in_flight() == []
    # a FAILED job without a rejected result is a failed attempt (retried)
    req2 = _req(alerts=("b1",))
    sid2 = ledger.on_request(req2)[0].submission_id
    out = ledger.on_job_status(req2.request_id, sid2, "FAILED", message="boom", job_result=None)
    assert [a.result.status for a in out if isinstance(a, Publish)] == ["failed"]
    assert ledger.entries[req2.request_id].attempt == 2


def test_outcomes_and_the_dispatcher_counter() -> None:
    def res(status: str, **kw) -> RetrainResult:
        return RetrainResult("rr-1", "fraud", "3", status, **kw)

    assert [outcome_of(r) for r in (res("submitted"), res("running"), res("duplicate"))] == [None, None, None]
    assert outcome_of(res("succeeded", promoted=True)) == "promoted"
    assert outcome_of(res("succeeded", promoted=False)) == "kept"
    assert outcome_of(res("rejected")) == "rejected"
    assert outcome_of(res("failed", error="attempt 1 failed, retrying: job failed")) == "retried"
    # the ledger's own give-up text
    ledger = DispatchLedger(max_attempts=1)
    req = _req()
    sid = ledger.on_request(req)[0].submission_id
    [gave_up] = ledger.on_job_status(req.request_id, sid, "FAILED", message="boom")
    assert outcome_of(gave_up.result) == "failed"

    m = DispatcherMetrics()
    m.count(res("running"))  # creates the model's series at zero
    text = m.render().decode()
    for outcome in OUTCOMES:
        assert f'driftloop_retrain_jobs_total{{model="fraud",outcome="{outcome}"}} 0.0' in text
    m.count(gave_up.result)
    assert 'driftloop_retrain_jobs_total{model="fraud",outcome="failed"} 1.0' in m.render().decode()
