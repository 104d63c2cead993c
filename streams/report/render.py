"""The run report as one self-contained HTML page: inline SVG plots (matplotlib), tables, no scripts, no network.

Stable hooks for tests and readers: ``<figure class="plot" id="drift-scores">`` and
``<figure class="plot" id="accuracy">`` each hold one inline ``<svg>``; every section is a
``<section id=...>`` (outcome, drift, accuracy, alerts, retrain-requests, retrain-results,
gate-reports, model-updates, notes); a section without records says "none".
"""

from __future__ import annotations

import html
import io
import warnings
import math
import re
import time
from typing import Any, Iterable

from streams.report.data import RunReport
from streams.report.rundir import ALERTS, GATE_REPORTS, MODEL_UPDATES, RETRAIN_REQUESTS, RETRAIN_RESULTS

PHASE_COLOURS = ("#dbe9f6", "#fde5cc", "#e2f0d9", "#eadcf2", "#f9e0e0", "#e8e8e8")
STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px auto;max-width:1180px;color:#222}
h1{font-size:1.6em;margin-bottom:.2em} h2{font-size:1.25em;border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}
.sub{color:#666;margin-top:0} table{border-collapse:collapse;font-size:.88em;margin:.5em 0;width:100%}
th,td{border:1px solid #ddd;padding:3px 6px;text-align:left;vertical-align:top} th{background:#f3f3f3}
span.num{display:block;text-align:right;font-variant-numeric:tabular-nums} .none{color:#888;font-style:italic}
.verdict{font-size:1.15em;font-weight:600;padding:6px 10px;background:#eef5ee;border-left:4px solid #3a7;display:inline-block}
.verdict.bad{background:#f8ecec;border-color:#c44} .yes{color:#1a7f37;font-weight:600} .no{color:#b42318;font-weight:600}
figure.plot{margin:.5em 0} figure.plot svg{width:100%;height:auto} figcaption{color:#555;font-size:.88em}
ul.reasons{margin:0;padding-left:1.1em} .critical{color:#b42318;font-weight:600} .warning{color:#b26b00}
"""


def _e(v: Any) -> str:
    return html.escape("" if v is None else str(v))


def _num(v: Any, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return f"{v:.{digits}g}" if abs(v) < 1e4 else f"{v:.0f}"
    return str(v)


def _pct(v: Any) -> str:
    return "–" if not isinstance(v, (int, float)) or isinstance(v, bool) or math.isnan(v) else f"{100 * v:.1f}%"


def _pts(v: Any) -> str:
    return "–" if not isinstance(v, (int, float)) or isinstance(v, bool) or math.isnan(v) else f"{100 * v:+.1f} pts"


def _wall(t: Any) -> str:
    """A wall-clock epoch time as UTC; "–" for anything but a number."""
    if not isinstance(t, (int, float)) or isinstance(t, bool) or not math.isfinite(t):
        return "–"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t))


def _table(headers: list[str], rows: Iterable[list[str]], empty: str = "none") -> str:
    """A table of already escaped cells, or ``empty`` in grey when there are no rows."""
    rows = list(rows)
    if not rows:
        return f'<p class="none">{_e(empty)}</p>'
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = []
    for r in rows:
        cells = "".join(f"<td>{c}</td>" for c in r)
        body.append(f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _n(v: Any, digits: int = 3) -> str:
    return f'<span class="num">{_e(_num(v, digits))}</span>'


# ---------------------------------------------------------------------------------------------- plots
def _svg(fig, fig_id: str) -> str:
    import matplotlib

    buf = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": fig_id}):
        fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    text = buf.getvalue()
    return re.sub(r"\s*<metadata>.*?</metadata>", "", text[text.index("<svg"):], count=1, flags=re.S)


def _phase_bands(ax, report: RunReport) -> None:
    t0 = report.t0
    for i, p in enumerate(report.info.phases):
        ax.axvspan(p.start - t0, p.end - t0, color=PHASE_COLOURS[i % len(PHASE_COLOURS)], alpha=0.8, zorder=0, lw=0)
        ax.text((p.start + p.end) / 2 - t0, 1.0, p.name, transform=ax.get_xaxis_transform(), ha="center", va="bottom",
                fontsize=9, color="#444")


def _swap_lines(ax, report: RunReport, label: bool) -> None:
    for m in report.swaps:
        if m.ts is None:
            continue
        ax.axvline(m.ts - report.t0, color="#333", ls="--" if m.action != "first served" else ":", lw=1.2, zorder=3)
        if label:
            ax.text(m.ts - report.t0, 0.03, f" v{m.version} {m.action}", transform=ax.get_xaxis_transform(),
                    va="bottom", ha="left", fontsize=8, color="#333", zorder=7)


def _xlabel(report: RunReport) -> str:
    return f"event time, seconds from {_wall(report.t0)}"


def drift_figure(report: RunReport, metric: str = "psi"):
    """PSI (by default) per feature and judged window, threshold lines, phase bands, alert markers, swaps."""
    from matplotlib.figure import Figure

    kinds = [k for k in ("data_drift", "prediction_drift") if any(s.kind == k for s in report.drift)] or ["data_drift"]
    fig = Figure(figsize=(11, 3.6 * len(kinds)))
    axes = fig.subplots(len(kinds), 1, sharex=True, squeeze=False)[:, 0]
    level = getattr(report.config.thresholds, metric, None)
    versions = sorted({s.version for s in report.drift})
    styles = dict(zip(versions, ("-", "--", "-.", ":") * 8))
    floor = 1e-3
    features = sorted({(s.kind, s.feature) for s in report.drift})
    colours = {f: f"C{i % 10}" for i, f in enumerate(features)}
    for ax, kind in zip(axes, kinds):
        _phase_bands(ax, report)
        ax.set_yscale("log")
        found = False
        for s in report.drift:
            if s.kind != kind:
                continue
            x = [(a + b) / 2 - report.t0 for a, b in zip(s.start, s.end)]
            y = [max(v, floor) if not math.isnan(v) else math.nan for v in s.values(metric)]
            label = s.feature + (f" (v{s.version})" if len(versions) > 1 else "")
            ax.plot(x, y, styles.get(s.version, "-"), marker="o", ms=3.5, lw=1.6, color=colours[(kind, s.feature)],
                    label=label, zorder=4)
            found = True
        if level is not None:
            ax.axhline(level.warning, color="#b26b00", lw=1, ls=(0, (4, 3)), zorder=2)
            ax.axhline(level.critical, color="#b42318", lw=1, ls=(0, (4, 3)), zorder=2)
            ax.text(1.0, level.warning, f" warning {level.warning:g}", transform=ax.get_yaxis_transform(),
                    fontsize=8, color="#b26b00", va="center")
            ax.text(1.0, level.critical, f" critical {level.critical:g}", transform=ax.get_yaxis_transform(),
                    fontsize=8, color="#b42318", va="center")
        for a in report.records(ALERTS):
            if a.get("kind") != kind or not isinstance(a.get("window"), dict):
                continue
            w = a["window"]
            try:
                mid = (float(w["start"]) + float(w["end"])) / 2
            except (KeyError, TypeError, ValueError):
                continue
            y = _value_at(report, a, metric, mid)
            ax.scatter([mid - report.t0], [max(y, floor)], marker="v", s=90, zorder=6, edgecolors="black", linewidths=0.8,
                       color="#b42318" if a.get("severity") == "critical" else "#f0a020")
        _swap_lines(ax, report, label=ax is axes[-1])
        ax.set_ylabel(f"{metric.upper() if metric == 'psi' else metric} ({kind.replace('_', ' ')})")
        ax.grid(True, which="major", alpha=0.3)
        if found:
            ax.legend(loc="upper left", bbox_to_anchor=(1.09, 1.0), fontsize=8, frameon=False)
        else:
            ax.text(0.5, 0.5, "no window was judged (too few events per window, or no reference)",
                    transform=ax.transAxes, ha="center", va="center", color="#888")
    axes[-1].set_xlabel(_xlabel(report))
    _limits(axes[-1], report)
    return fig


def _value_at(report: RunReport, alert: dict[str, Any], metric: str, mid: float) -> float:
    """Where an alert's marker goes: its feature's score in the window holding ``mid``, else its own score."""
    for s in report.series(str(alert.get("feature")), str(alert.get("model_version")), alert.get("kind")):
        for a, b, v in zip(s.start, s.end, s.values(metric)):
            if a <= mid < b and not math.isnan(v):
                return v
    score = alert.get("score")
    return float(score) if isinstance(score, (int, float)) and alert.get("metric") == metric else 1.0


def _limits(ax, report: RunReport) -> None:
    xs = [p.start - report.t0 for p in report.info.phases] + [p.end - report.t0 for p in report.info.phases]
    xs += [e - report.t0 for s in report.accuracy for e in (s.start[0], s.end[-1]) if s.start]
    if xs:
        ax.set_xlim(min(xs), max(xs))


def accuracy_figure(report: RunReport):
    """Accuracy per served version and window, swaps as dashed lines, performance/concept alerts as markers."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 3.8))
    ax = fig.subplots()
    _phase_bands(ax, report)
    for i, s in enumerate(report.accuracy):
        x = [(a + b) / 2 - report.t0 for a, b in zip(s.start, s.end)]
        ax.plot(x, [100 * v for v in s.accuracy], marker="o", ms=4, lw=1.8, color=f"C{i % 10}",
                label=f"{s.model} v{s.version}", zorder=4)
    marked = False
    for a in report.records(ALERTS):
        if a.get("kind") not in ("performance", "concept_drift") or not isinstance(a.get("window"), dict):
            continue
        try:
            mid = (float(a["window"]["start"]) + float(a["window"]["end"])) / 2 - report.t0
        except (KeyError, TypeError, ValueError):
            continue
        ax.scatter([mid], [101], marker="v", s=90, zorder=6, edgecolors="black", linewidths=0.8, clip_on=False,
                   color="#b42318" if a.get("severity") == "critical" else "#f0a020",
                   label=None if marked else "performance / concept alert")
        marked = True
    _swap_lines(ax, report, label=True)
    ax.set_ylim(0, 104)
    ax.set_ylabel("accuracy (%) of labelled predictions")
    ax.set_xlabel(_xlabel(report))
    ax.grid(True, alpha=0.3)
    if report.accuracy:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    else:
        ax.text(0.5, 0.5, "no labelled prediction (no labels, or inputs without a prediction)",
                transform=ax.transAxes, ha="center", va="center", color="#888")
    _limits(ax, report)
    return fig


def _figure(fig_id: str, fig, caption: str) -> str:
    return f'<figure class="plot" id="{fig_id}">{_svg(fig, fig_id)}<figcaption>{_e(caption)}</figcaption></figure>'


# ---------------------------------------------------------------------------------------------- sections
def _phase_of(report: RunReport, t: float) -> str:
    return next((p.name for p in report.info.phases if p.start <= t < p.end), "")


def _rel(report: RunReport, t: Any) -> str:
    return f"{float(t) - report.t0:+.0f} s" if isinstance(t, (int, float)) else "–"


def _outcome(report: RunReport) -> str:
    info, out = report.info, report.info.outcome
    verdict = out.get("verdict")
    bad = isinstance(verdict, str) and any(w in verdict.lower() for w in ("fail", "reject", "error", "timeout"))
    parts = [f'<p class="verdict{" bad" if bad else ""}">{_e(verdict)}</p>' if verdict is not None else ""]
    rows = []
    for k, v in out.items():
        if k == "verdict":
            continue
        if isinstance(v, dict):  # e.g. the demo's checks: one line each
            rows.append([_e(k), "<br>".join(f"{_e('ok' if c is True else 'NOT' if c is False else _num(c))} {_e(n)}"
                                            for n, c in v.items())])
            continue
        shown = _pct(v) if "accuracy" in k and isinstance(v, float) and 0 <= v <= 1 else _num(v)
        rows.append([_e(k), _e(shown)])
    parts.append(_table(["outcome", "value"], rows, "no outcome recorded"))
    dur = (info.finished_at - info.started_at) if info.started_at is not None and info.finished_at is not None else None
    facts = [
        ("domain / model", f"{info.domain} / {info.model}"),
        ("wall clock", f"{_wall(info.started_at)} → {_wall(info.finished_at)}" + (f" ({dur:.0f} s)" if dur else "")),
        ("window", f"{info.window_seconds:g} s of event time"),
        ("inputs", f"{report.inputs_read} read, {report.inputs_bad} bad lines skipped, "
                   f"{report.duplicate_inputs} repeated event ids"),
        ("labels", f"{report.labels_read} read, {report.labels_bad} bad lines skipped, {report.joined} joined to a prediction"),
        ("alerts", f"{len(report.records(ALERTS))}"),
        ("candidates", f"{len(report.records(GATE_REPORTS))} gate reports"),
    ]
    if info.registry:
        facts.append(("model registry", info.registry))
    if info.reference_profiles:
        facts.append(("reference profiles", ", ".join(info.reference_profiles)))
    parts.append(_table(["run", ""], [[_e(a), _e(b)] for a, b in facts]))
    parts.append(_table(["phase", "event time", "description"],
                        [[_e(p.name), _e(f"{_rel(report, p.start)} → {_rel(report, p.end)}"), _e(p.description)]
                         for p in info.phases], "no phases recorded"))
    return "".join(parts)


def _alerts(report: RunReport) -> str:
    rows = []
    for a in sorted(report.records(ALERTS), key=lambda a: (_wstart(a), str(a.get("kind")), str(a.get("feature")))):
        w = a.get("window") if isinstance(a.get("window"), dict) else {}
        sev = str(a.get("severity", ""))
        rows.append([
            _e(f"{_rel(report, w.get('start'))} → {_rel(report, w.get('end'))}"), _e(_phase_of(report, _wstart(a))),
            _e(f"{a.get('model', '')} v{a.get('model_version', '')}"), _e(a.get("kind")), _e(a.get("feature") or "–"),
            _e(a.get("metric")), _n(a.get("score")), _n(a.get("threshold")),
            f'<span class="{_e(sev)}">{_e(sev)}</span>', _e(a.get("explained_by") or "–"), _n(w.get("n")),
        ])
    return _table(["window", "phase", "model", "kind", "feature", "metric", "score", "threshold", "severity",
                   "explained by", "n"], rows)


def _wstart(a: dict[str, Any]) -> float:
    w = a.get("window")
    try:
        return float(w["start"]) if isinstance(w, dict) else math.inf
    except (KeyError, TypeError, ValueError):
        return math.inf


def _requests(report: RunReport) -> str:
    rows = [[_e(r.get("request_id")), _e(f"{r.get('model', '')} v{r.get('model_version', '')}"),
             _e(", ".join(map(str, r.get("kinds") or []))),
             _e(f"{_rel(report, r.get('window_start'))} → {_rel(report, r.get('window_end'))}"),
             _n(r.get("n_labelled")), _e(r.get("reason")), _e(len(r.get("alert_ids") or [])),
             _e(_wall(r.get("requested_at")))]
            for r in report.records(RETRAIN_REQUESTS)]
    return _table(["request", "model", "kinds", "window", "labelled", "reason", "alerts", "requested at"], rows)


def _results(report: RunReport) -> str:
    rows = [[_e(r.get("request_id")), _e(r.get("job_id") or "–"), _e(r.get("status")),
             _e(f"v{r.get('parent_version', '')} → " + (f"v{r['new_version']}" if r.get("new_version") else "–")),
             _yes(r.get("promoted")), _n(r.get("attempts")), _e(r.get("error") or "–"),
             _e(_wall(r.get("at")))]
            for r in report.records(RETRAIN_RESULTS)]
    return _table(["request", "Ray job", "status", "versions", "promoted", "attempts", "error", "at"], rows)


def _yes(v: Any) -> str:
    return '<span class="yes">yes</span>' if v is True else '<span class="no">no</span>' if v is False else "–"


def _gates(report: RunReport) -> str:
    rows = []
    for g in report.records(GATE_REPORTS):
        r = g.get("report") if isinstance(g.get("report"), dict) else {}
        b = r.get("baseline") if isinstance(r.get("baseline"), dict) else None
        base = "–" if b is None else (
            f"new {_pct(b.get('accuracy_new'))}, old {_pct(b.get('accuracy_old'))}, combined margin "
            f"{_pts(b.get('margin_combined'))}: {'candidate loses' if b.get('below') else 'candidate holds'}")
        reasons = g.get("reasons") or r.get("reasons") or []
        rows.append([
            _e(f"{g.get('model', '')} v{g.get('version', '')}"), _yes(g.get("promoted")), _e(g.get("status")),
            _e(f"{_pct(r.get('accuracy_new_before'))} → {_pct(r.get('accuracy_new_after'))} ({r.get('n_new', '?')} rows)"),
            _e(f"{_pct(r.get('accuracy_old_before'))} → {_pct(r.get('accuracy_old_after'))} ({r.get('n_old', '?')} rows)"),
            _e(_pts(r.get("improvement_new"))), _e(_pts(r.get("forgetting"))), _e(base),
            '<ul class="reasons">' + "".join(f"<li>{_e(x)}</li>" for x in reasons) + "</ul>" if reasons else "–",
        ])
    return _table(["candidate", "promoted", "status", "accuracy on new data (current → candidate)",
                   "accuracy on old data (current → candidate)", "improvement", "forgetting", "plain fine-tuned baseline",
                   "reasons"], rows)


def _updates(report: RunReport) -> str:
    placed = {(m.model, m.version, m.action): m.ts for m in report.swaps}

    def served(u: dict[str, Any]) -> str:
        return _rel(report, placed.get((str(u.get("model", "")), str(u.get("version", "")), str(u.get("action", "update")))))

    rows = [[_e(f"{u.get('model', '')} v{u.get('version', '')}"), _e(u.get("action")),
             _e(f"v{u['previous_version']}" if u.get("previous_version") else "–"), _e(served(u)),
             _e(_wall(u.get("at"))), _e(str(u.get("sha256", ""))[:12])]
            for u in report.records(MODEL_UPDATES)]
    return _table(["version", "action", "previous", "first served (event time)", "at", "sha256"], rows)


def render_html(report: RunReport) -> str:
    """The whole page."""
    info = report.info
    title = f"driftloop run report: {info.domain or info.model} ({info.model})"
    with warnings.catch_warnings():  # matplotlib's font and mathtext parsers warn about pyparsing's renamed API
        warnings.simplefilter("ignore")
        drift_fig = drift_figure(report)
        acc_fig = accuracy_figure(report)
    sections = [
        ("outcome", "Outcome", _outcome(report)),
        ("drift", "Drift scores per feature", _figure(
            "drift-scores", drift_fig, "PSI per feature and judged window (the drift engine of the worker and "
            "`driftloop backtest`, log scale); shaded: phases; triangles: alerts (red critical, orange warning), drawn at "
            "their window's PSI: an alert on another metric (e.g. Wasserstein) has its own threshold, in the alerts "
            "table; "
            "dashed lines: model updates (hot-swaps).")),
        ("accuracy", "Live accuracy by served version", _figure(
            "accuracy", acc_fig, "Share of labelled predictions equal to their label, per window and served version; "
            "dashed lines: model updates (hot-swaps); triangles: performance / concept-drift alerts.")),
        ("alerts", "Alerts", _alerts(report)),
        ("retrain-requests", "Retrain requests", _requests(report)),
        ("retrain-results", "Ray job results", _results(report)),
        ("gate-reports", "Promotion gate reports", _gates(report)),
        ("model-updates", "Model updates", _updates(report)),
        ("notes", "Notes", "<ul>" + "".join(f"<li>{_e(n)}</li>" for n in report.notes) + "</ul>"
         if report.notes else '<p class="none">none: every line of every file was read</p>'),
    ]
    body = "".join(f'<section id="{sid}"><h2>{_e(h)}</h2>{content}</section>' for sid, h, content in sections)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>'
            f"<style>{STYLE}</style></head><body><h1>{_e(title)}</h1>"
            f'<p class="sub">{_e(report.run_dir)} · written {_wall(time.time())}</p>{body}</body></html>\n')
