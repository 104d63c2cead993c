"""The run report (streams/report, ``driftloop report``): series from a synthetic run directory, and the page
as a real browser draws it (headless Chromium)."""

from __future__ import annotations

import json
import math
import random
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from streams.contracts.validate import parse_input, parse_label
from streams.judge.drift_config import DriftConfig
from streams.report import build_report, render_html, write_report
from streams.report.data import accuracy_series, swap_marks

T0 = 1_700_000_040.0  # a multiple of the window: windows start at T0
WINDOW = 60.0
SHIFT_AT = T0 + 300.0  # amount x3 and a new labelling rule from here
SWAP_AT = T0 + 450.0  # v2 serves from here


def _event(i: int, ts: float, rng: random.Random, version: str, scale: float = 1.0) -> dict:
    amount = math.exp(rng.gauss(4.0, 0.6)) * scale
    cut = 300.0 if version == "2" else 100.0  # v2 learnt the changed world's rule
    pred = int(amount > cut) if rng.random() > 0.05 else int(amount <= cut)
    return {"event_id": f"e-{i:05d}", "model": "fraud", "model_version": version, "ts": ts,
            "features": {"amount": round(amount, 3), "age": round(rng.gauss(40, 8), 2),
                         "country": rng.choice(["DE", "FR", "NL"])},
            "prediction": pred, "scores": [1.0 - pred, float(pred)]}


def make_run_dir(root: Path, n: int = 1200, with_profiles: bool = True, extras: bool = True) -> Path:
    """A run directory as the demo writes it: n events, 2 per second, amount x3 and a new rule after 300 s."""
    from streams.adapters.reference_store import ReferenceStore
    from streams.judge.profile_build import build_profile

    rng = random.Random(7)
    run = root / "run"
    run.mkdir()
    events, labels = [], []
    for i in range(n):
        ts = T0 + i / 2
        shifted = ts >= SHIFT_AT
        ev = _event(i, ts, rng, "2" if ts >= SWAP_AT else "1", 3.0 if shifted else 1.0)
        events.append(ev)
        label = int(ev["features"]["amount"] > (300.0 if shifted else 100.0))
        labels.append({"event_id": ev["event_id"], "model": "fraud", "ts": ts + 5, "label": label})
    with open(run / "inputs.jsonl", "w") as f:
        for ev in events:
            f.write(json.dumps(ev) + "\n")
        f.write("{not json\n")  # a bad line: skipped and counted
    with open(run / "labels.jsonl", "w") as f:
        f.writelines(json.dumps(lab) + "\n" for lab in labels)
    refs = []
    if with_profiles:
        train = [parse_input(_event(100_000 + i, T0 - 3600 + i, rng, "1")) for i in range(2000)]
        store = ReferenceStore(run / "references")
        for version in ("1", "2"):
            prof = build_profile(train, "fraud", version, prediction_column="prediction", source="test")
            refs.append(str(store.save(prof).relative_to(run)))
    info = {"domain": "card payments", "model": "fraud", "window_seconds": WINDOW,
            "started_at": 1_764_000_000.0, "finished_at": 1_764_000_300.0,
            "phases": [{"name": "clean", "start": T0, "end": SHIFT_AT, "description": "the training world"},
                       {"name": "drift", "start": SHIFT_AT, "end": T0 + n / 2, "description": "amount x3, new rule"}],
            "outcome": {"verdict": "v2 promoted", "accuracy_before": 0.45, "accuracy_after": 0.93,
                        "promoted_version": "2"}}
    if refs:
        info["reference_profiles"] = refs
    (run / "run.json").write_text(json.dumps(info))
    if not extras:
        return run
    alert = {"alert_id": "a1", "model": "fraud", "model_version": "1", "kind": "data_drift", "feature": "amount",
             "metric": "psi", "score": 2.5, "threshold": 0.25, "p_value": 1e-12, "severity": "critical",
             "window": {"start": SHIFT_AT, "end": SHIFT_AT + WINDOW, "n": 60},
             "reference": {"id": "ref-1", "n": 2000}, "emitted_at": 1_764_000_100.0}
    perf = dict(alert, alert_id="a2", kind="performance", feature=None, metric="error_rate", score=0.4,
                threshold=0.1, window={"start": SHIFT_AT + WINDOW, "end": SHIFT_AT + 2 * WINDOW, "n": 60},
                explained_by=None)
    (run / "alerts.jsonl").write_text(json.dumps(alert) + "\n" + json.dumps(perf) + "\n[1, 2]\n")
    (run / "retrain_requests.jsonl").write_text(json.dumps(
        {"request_id": "rr-1", "model": "fraud", "model_version": "1", "alert_ids": ["a2"], "kinds": ["performance"],
         "window_start": SHIFT_AT + WINDOW, "window_end": SHIFT_AT + 2 * WINDOW, "n_labelled": 60,
         "reason": "performance alert", "requested_at": 1_764_000_120.0}) + "\n")
    (run / "retrain_results.jsonl").write_text(json.dumps(
        {"request_id": "rr-1", "model": "fraud", "parent_version": "1", "status": "succeeded", "job_id": "raysubmit_1",
         "new_version": "2", "promoted": True, "attempts": 1, "error": None, "report": {}, "at": 1_764_000_200.0}) + "\n")
    (run / "model_updates.jsonl").write_text(json.dumps(
        {"model": "fraud", "version": "2", "previous_version": "1", "action": "promote", "sha256": "ab" * 32,
         "at": 1_764_000_201.0}) + "\n")
    gate = {"promoted": True, "reasons": ["better on new data by 48.0 pts", "forgetting 0.5 pts <= 2.0"],
            "accuracy_new_before": 0.45, "accuracy_new_after": 0.93, "accuracy_old_before": 0.95,
            "accuracy_old_after": 0.945, "improvement_new": 0.48, "forgetting": 0.005, "n_new": 150, "n_old": 300,
            "baseline": {"accuracy_new": 0.9, "accuracy_old": 0.7, "margin_combined": 0.08, "below": False}}
    (run / "gate_reports.jsonl").write_text(json.dumps(
        {"model": "fraud", "version": "2", "promoted": True, "status": "succeeded", "reasons": gate["reasons"],
         "report": gate}) + "\n")
    return run


CONFIG = DriftConfig(min_samples=30, reference_events=120)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    return make_run_dir(tmp_path_factory.mktemp("report"))


@pytest.fixture(scope="module")
def report(run_dir):
    return build_report(run_dir, CONFIG)


def test_drifted_feature_score_rises_after_the_shift_and_the_others_stay_low(report):
    amount = report.series("amount", "1", "data_drift")
    assert len(amount) == 1
    s = amount[0]
    before = [v for a, v in zip(s.start, s.values("psi")) if a + WINDOW <= SHIFT_AT]
    after = [v for a, v in zip(s.start, s.values("psi")) if a >= SHIFT_AT]
    assert len(before) >= 4 and after, (s.start, s.values("psi"))
    assert max(before) < 0.25 < min(after), (before, after)
    assert min(after) > 5 * max(before)
    for name in ("age", "country"):  # undrifted: low, and far below the drifted feature
        (other,) = report.series(name, "1", "data_drift")
        assert sorted(other.values("psi"))[len(other.start) // 2] < 0.2, (name, other.values("psi"))
        assert max(other.values("psi")) < min(after) / 3, (name, other.values("psi"))
    v2 = report.series("amount", "2", "data_drift")
    assert v2 and min(v2[0].values("psi")) > 0.25  # v2 serves the shifted world against the training reference
    assert report.series("prediction", "1", "prediction_drift")  # the engine's prediction drift is included
    judged = {(s.version, a) for s in report.drift for a in s.start}
    assert len(judged) == report.engine_summary["windows_judged"]  # the observer saw every judged window once


def test_accuracy_by_served_version_and_swap_moment(report):
    by = {s.version: s for s in report.accuracy}
    assert set(by) == {"1", "2"}
    v1 = dict(zip(by["1"].start, by["1"].accuracy))
    assert all(v1[a] > 0.85 for a in v1 if a + WINDOW <= SHIFT_AT)
    assert all(v1[a] < 0.7 for a in v1 if a >= SHIFT_AT)
    assert all(acc > 0.85 for acc in by["2"].accuracy)
    assert sum(by["1"].n) + sum(by["2"].n) == report.joined == 1200
    (swap,) = report.swaps
    assert (swap.version, swap.action, swap.ts) == ("2", "promote", SWAP_AT)
    assert report.inputs_bad == 1 and report.files["alerts.jsonl"].bad == 1
    assert any("inputs.jsonl: 1 bad line skipped" in n for n in report.notes)


def test_accuracy_on_a_hand_built_case():
    def inp(eid, ts, version, pred):
        return parse_input({"event_id": eid, "model": "m", "model_version": version, "ts": ts,
                            "features": {"x": 1.0}, "prediction": pred}, max_future_s=None)

    def lab(eid, y, model="m"):
        return parse_label({"event_id": eid, "model": model, "ts": 1.0, "label": y}, max_future_s=None)

    inputs = [inp("a", 1, "1", 1), inp("b", 2, "1", 0), inp("c", 3, "1", 1), inp("a", 4, "1", 0),  # "a" again: a retry
              inp("d", 11, "1", "yes"), inp("e", 12, "2", 1.0), inp("f", 13, "2", 0), inp("g", 14, "2", 1),
              inp("h", 15, "2", 1)]
    labels = {x.event_id: x for x in [lab("a", 1), lab("b", 1), lab("c", 1.0), lab("d", "yes"), lab("e", "1"),
                                      lab("f", 1), lab("g", 1, model="other")]}  # h: no label yet
    series, joined = accuracy_series(inputs, labels, 10.0)
    got = {s.version: list(zip(s.start, s.n, s.correct)) for s in series}
    assert got == {"1": [(0.0, 3, 2), (10.0, 1, 1)], "2": [(10.0, 2, 1)]}
    assert joined == 6
    marks, notes = swap_marks(inputs, [{"model": "m", "version": "3", "previous_version": "2", "action": "promote"}])
    assert [(m.version, m.action, m.ts) for m in marks] == [("2", "first served", 12.0), ("3", "promote", None)]
    assert "v3" in notes[0] and "no input was served" in notes[0]


def test_bootstrap_reference_when_the_run_has_no_profiles(tmp_path):
    run = make_run_dir(tmp_path, with_profiles=False, extras=False)
    rep = build_report(run, CONFIG)
    (s,) = rep.series("amount", "1", "data_drift")
    assert min(s.start) >= T0 + 60  # the bootstrap rule: the first 120 events' windows are the reference
    assert max(v for a, v in zip(s.start, s.values("psi")) if a >= SHIFT_AT) > 0.25
    page = render_html(rep)
    for sid in ("alerts", "retrain-requests", "retrain-results", "gate-reports", "model-updates"):
        section = re.search(rf'<section id="{sid}">(.*?)</section>', page, re.S).group(1)
        assert 'class="none">none' in section, sid


def test_a_run_without_a_valid_input_still_gets_a_page(tmp_path):
    (tmp_path / "run.json").write_text(json.dumps({"domain": "d", "model": "m", "window_seconds": 60}))
    (tmp_path / "inputs.jsonl").write_text("garbage\n{}\n")
    rep = build_report(tmp_path)
    assert rep.inputs_read == 0 and rep.inputs_bad == 2 and not rep.drift and not rep.accuracy
    page = render_html(rep)
    assert 'id="drift-scores"><svg' in page and "no window was judged" in page
    assert "inputs.jsonl: 2 bad lines skipped" in page


def test_page_holds_plots_and_tables(report):
    page = render_html(report)
    for fig in ("drift-scores", "accuracy"):
        m = re.search(rf'<figure class="plot" id="{fig}"><svg.*?</svg>', page, re.S)
        assert m and len(m.group(0)) > 5000, fig
    assert not re.search(r'(src|href)="(https?:|//)|url\(\s*["\']?(https?:|//)|<script|<link|@import', page)
    for text in ("v2 promoted", "raysubmit_1", "better on new data by 48.0 pts", "45.0% → 93.0%", "critical"):
        assert text in page, text


def test_cli_writes_the_page_and_refuses_a_missing_run_dir(run_dir, tmp_path, capsys):
    from streams.cli.main import main

    out = tmp_path / "page.html"
    assert main(["report", str(run_dir), "--out", str(out), "--min-samples", "30"]) == 0
    assert 'id="drift-scores"' in out.read_text()
    capsys.readouterr()
    assert main(["report", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "does not exist" in err and "driftloop demo" in err
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err.strip()
    assert "run.json is missing" in err and "driftloop demo" in err and "Traceback" not in err


def test_page_in_headless_chromium(run_dir, tmp_path):
    """The page as a browser draws it: both plots in the DOM with SVG content, and a screenshot that is not blank."""
    page = write_report(run_dir, tmp_path / "report.html", CONFIG)
    shot = check_in_chromium(page, tmp_path / "report.png")
    keep = Path(__file__).resolve().parents[1] / ".driftloop" / "test-report"  # for a person to look at
    keep.mkdir(parents=True, exist_ok=True)
    shutil.copy(shot, keep / "report.png")
    shutil.copy(page, keep / "report.html")


def check_in_chromium(page: Path, shot: Path) -> Path:
    """Render ``page`` in headless Chromium: both plots must be in the DOM with drawn SVG, and the screenshot
    (1200x3000, written to ``shot``) must not be blank.  Fails (no skip) when Chromium is missing."""
    from PIL import Image

    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    assert browser, "chromium is not installed: run infra/bootstrap.sh (as root it installs the Debian package chromium)"
    args = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
            "--window-size=1200,3000"]
    dom = subprocess.run(args + ["--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    for fig in ("drift-scores", "accuracy"):
        m = re.search(rf'<figure class="plot" id="{fig}">\s*<svg(.*?)</svg>', dom.stdout, re.S)
        assert m and len(re.findall(r"<path", m.group(1))) > 20, f"figure {fig} has no drawn SVG in the browser's DOM"
    res = subprocess.run(args + [f"--screenshot={shot}", page.as_uri()], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and shot.is_file(), res.stderr[-2000:]
    img = Image.open(shot).convert("RGB")
    assert img.size == (1200, 3000)
    colours = img.getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 50, "the screenshot is blank or nearly so"
    return shot
