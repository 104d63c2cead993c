"""The dispatcher state machine (pure) and its adapter loop against an in-memory Jobs API fake."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from trainers.records import RetrainRequest
from trainers.dispatch.ledger import (
    DispatchLedger, DispatcherConfig, Publish, Submit, parse_job_result, submission_id,
)
from trainers.cli.dispatcher import Dispatcher, JobsAdapter


def _req(alerts=("a1",), version="3") -> RetrainRequest:
    return RetrainRequest("fraud", version, list(alerts), ["data_drift"], 100.0, 160.0, n_labelled=500)


def _statuses(actions) -> list[str]:
    return [a.result.status for a in actions if isinstance(a, Publish)]


def test_new_request_is_submitted_once_and_duplicates_are_only_reported() -> None:
    ledger = DispatchLedger(max_attempts=3)
    req = _req()
    actions = ledger.on_request(req)
    assert actions == [Submit(req, submission_id(req, 1), 1)]
    assert _statuses(ledger.on_submitted(req.request_id, actions[0].submission_id)) == ["submitted"]
    for _ in range(3):  # redeliveries, before and after the job finished
        again = ledger.on_request(RetrainRequest.from_dict(json.loads(req.to_json())))
        assert _statuses(again) == ["duplicate"] and not [a for a in again if isinstance(a, Submit)]
    sid = actions[0].submission_id
    ledger.on_job_status(req.request_id, sid, "RUNNING")
    done = ledger.on_job_status(req.request_id, sid, "SUCCEEDED",
                                job_result={"status": "succeeded", "new_version": "4", "promoted": True})
    assert _statuses(done) == ["succeeded"]
    assert done[0].result.new_version == "4" and done[0].result.promoted
    assert _statuses(ledger.on_request(req)) == ["duplicate"]
    assert ledger.entries[req.request_id].duplicates == 4


def test_gate_rejection_is_reported_as_rejected_not_retried() -> None:
    ledger = DispatchLedger()
    req = _req()
    sid = ledger.on_request(req)[0].submission_id
    ledger.on_submitted(req.request_id, sid)
    out = ledger.on_job_status(req.request_id, sid, "SUCCEEDED",
                               job_result={"status": "rejected", "new_version": "4", "error": "forgets"})
    assert _statuses(out) == ["rejected"] and out[0].result.error == "forgets"
    assert ledger.in_flight() == []


def test_retries_are_bounded_and_use_new_submission_ids() -> None:
    ledger = DispatchLedger(max_attempts=3)
    req = _req()
    sids = []
    action = ledger.on_request(req)[0]
    for attempt in (1, 2, 3):
        assert isinstance(action, Submit) and action.attempt == attempt
        sids.append(action.submission_id)
        ledger.on_submitted(req.request_id, action.submission_id)
        out = ledger.on_job_status(req.request_id, action.submission_id, "FAILED", message="boom")
        submits = [a for a in out if isinstance(a, Submit)]
        if attempt < 3:
            assert _statuses(out) == ["failed"] and len(submits) == 1
            action = submits[0]
        else:
            assert submits == [] and _statuses(out) == ["failed"]
            assert "gave up after 3 attempt(s)" in out[0].result.error
    assert len(set(sids)) == 3 and sids[0].endswith("-a1") and sids[2].endswith("-a3")
    assert ledger.in_flight() == [] and ledger.recover() == []
    # a late status of an earlier attempt changes nothing
    assert ledger.on_job_status(req.request_id, sids[0], "SUCCEEDED") == []


def test_submit_errors_count_as_attempts() -> None:
    ledger = DispatchLedger(max_attempts=2)
    req = _req()
    a1 = ledger.on_request(req)[0]
    out = ledger.on_submit_error(req.request_id, a1.submission_id, "connection refused")
    a2 = [a for a in out if isinstance(a, Submit)][0]
    out = ledger.on_submit_error(req.request_id, a2.submission_id, "connection refused")
    assert [a for a in out if isinstance(a, Submit)] == [] and _statuses(out) == ["failed"]


def test_restart_recovery_from_the_serialised_ledger() -> None:
    ledger = DispatchLedger(max_attempts=2)
    r1, r2, r3 = _req(["a1"]), _req(["a2"]), _req(["a3"])
    s1 = ledger.on_request(r1)[0].submission_id
    ledger.on_submitted(r1.request_id, s1)
    ledger.on_job_status(r1.request_id, s1, "RUNNING")
    s2 = ledger.on_request(r2)[0].submission_id  # recorded, crash before the submit returned
    s3 = ledger.on_request(r3)[0].submission_id
    ledger.on_submitted(r3.request_id, s3)
    ledger.on_job_status(r3.request_id, s3, "SUCCEEDED", job_result={"status": "succeeded"})

    restored = DispatchLedger.from_dict(json.loads(json.dumps(ledger.to_dict())))
    again = restored.recover()
    assert again == [Submit(r2, s2, 1)]  # same submission id: Ray refuses a second job
    assert restored.on_submitted(r2.request_id, s2, adopted=True) == []  # already announced
    assert sorted(restored.in_flight()) == sorted([(r1.request_id, s1), (r2.request_id, s2)])
    assert _statuses(restored.on_request(r3)) == ["duplicate"]
    assert _statuses(restored.on_job_status(r1.request_id, s1, "SUCCEEDED", job_result={"status": "succeeded"})) == [
        "succeeded"]


def test_parse_job_result_takes_the_last_marker_line() -> None:
    logs = 'noise\nDRIFTLOOP_RESULT {"status": "rejected"}\nmore\n2025 INFO DRIFTLOOP_RESULT {"status": "succeeded"}\n'
    assert parse_job_result(logs) == {"status": "succeeded"}
    assert parse_job_result("DRIFTLOOP_RESULT {broken\n") is None


def test_config_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        DispatcherConfig(max_attempts=0)
    with pytest.raises(ValueError, match="runtime_env"):
        DispatcherConfig(runtime_env="docker")


class FakeJobs:
    """In-memory stand-in for the Ray Jobs API (unit test of the adapter loop only)."""

    def __init__(self, fail_first: int = 0) -> None:
        self.jobs: dict[str, dict] = {}
        self.fail_first = fail_first

    def submit_job(self, *, entrypoint, submission_id, runtime_env, metadata, entrypoint_num_cpus):
        if submission_id in self.jobs:
            raise RuntimeError(f"Job with submission_id {submission_id} already exists. Please use a different one.")
        status = "FAILED" if len(self.jobs) < self.fail_first else "SUCCEEDED"
        self.jobs[submission_id] = {"status": status, "entrypoint": entrypoint, "metadata": metadata,
                                    "runtime_env": runtime_env}
        return submission_id

    def get_job_info(self, sid):
        class Info:
            status = self.jobs[sid]["status"]
            message = "exit 1" if status == "FAILED" else ""
        return Info()

    def get_job_logs(self, sid):
        return 'DRIFTLOOP_RESULT {"status": "succeeded", "new_version": "4", "promoted": true}\n'


def test_adapter_loop_retries_then_succeeds_and_survives_restart(tmp_path: Path) -> None:
    fake = FakeJobs(fail_first=1)
    published = []
    jobs = JobsAdapter(fake, settings={"kafka": {"bootstrap_servers": "x:1"}}, registry=str(tmp_path / "reg"),
                       python="/usr/bin/python3")
    ledger_path = tmp_path / "ledger.json"
    d = Dispatcher.open(ledger_path, jobs, published.append, max_attempts=3)
    req = _req()
    d.handle(req)
    assert json.loads(ledger_path.read_text())["entries"][req.request_id]["state"] == "submitted"
    d.poll()  # attempt 1 failed -> attempt 2 submitted
    d.poll()  # attempt 2 succeeded
    assert [r.status for r in published] == ["submitted", "failed", "submitted", "succeeded"]
    assert published[-1].new_version == "4" and published[-1].attempts == 2
    job = fake.jobs[submission_id(req, 1)]
    assert job["metadata"]["request_id"] == req.request_id and job["metadata"]["alert_ids"] == "a1"
    assert "trainers.retrain_job" in job["entrypoint"] and "PYTHONPATH" in job["runtime_env"]["env_vars"]

    assert json.loads(ledger_path.read_text())["entries"][req.request_id]["state"] == "succeeded"

    # restart: a new dispatcher over the same ledger file trains nothing again and repeats no result
    n = len(published)
    d2 = Dispatcher.open(ledger_path, jobs, published.append, max_attempts=3)
    d2.recover()
    assert len(published) == n
    d2.handle(req)
    assert published[-1].status == "duplicate" and len(fake.jobs) == 2


def test_a_candidate_put_in_shadow_is_reported_as_such() -> None:
    ledger = DispatchLedger()
    req = _req()
    sid = ledger.on_request(req)[0].submission_id
    ledger.on_submitted(req.request_id, sid)
    out = ledger.on_job_status(req.request_id, sid, "SUCCEEDED",
                               job_result={"status": "succeeded", "new_version": "4", "promoted": False, "shadow": True})
    assert [(a.result.status, a.result.promoted, a.result.shadow) for a in out] == [("succeeded", False, True)]
    from trainers.dispatch.ledger import outcome_of

    assert outcome_of(out[0].result) == "shadow"
