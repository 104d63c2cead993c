"""The ``slo`` section is refused at load when they are malformed or can never act.

* every objective (and ``default_target``) x burn rate whose factor the error ratio cannot reach (the highest
  burn rate is ``1 / (1 - target)``) is refused with what to change;
* a malformed objective or burn rate is a config error with its key's path, never a traceback, and
  non-finite or non-positive spans, factors and periods are refused;
* no objective unless one is configured (no blanket default target);
* burn rates given as ``budget_percent`` take their factor from ``window_days`` (SRE workbook).
"""

from __future__ import annotations

import math
import re
import types

import pytest

from streams.config import ConfigError, check_all, section
from streams.judge.slo import BurnRate, Objective, SloConfig, SloTracker


def _slo(raw):
    return section(SloConfig, raw, "slo")


# ------------------------------------------------------------------ item: burn rates that can never alarm
@pytest.mark.parametrize("raw, says", [
    ({"default_target": 0.9, "burn_rates": {"fast": {"long_h": 1, "short_h": 0.1, "budget_percent": 2}}},
     [r"slo.burn_rates.fast \(2% of a 30-day budget in 1 h: factor 14.4\) can never be reached for "
      r"slo.default_target 0.9", r"1/\(1-0.9\) = 10 ", "raise the target above 0.9306"]),
    ({"objectives": [{"model": "tweets", "target": 0.9}], "burn_rates": {"fast": {"long_h": 1, "short_h": 0.1,
                                                                                  "factor": 14.4}}},
     [r"slo.burn_rates.fast \(factor 14.4\) can never be reached for model 'tweets''s target 0.9",
      r"highest possible burn rate is 1/\(1-0.9\) = 10 ", "lower the factor below 10,"]),
    ({"objectives": [{"model": "churn", "target": 0.8}], "burn_rates": {
        "fast": {"long_h": 1, "short_h": 0.1, "budget_percent": 2}, "slow": {"long_h": 6, "short_h": 0.5,
                                                                           "budget_percent": 5}}},
     ["slo.burn_rates.fast", "slo.burn_rates.slow", "model 'churn''s target 0.8",
      "budget_percent below 0.694, or window_days below 10.416"]),
])
def test_a_burn_rate_out_of_the_error_ratios_reach_is_refused_with_the_fix(raw, says):
    with pytest.raises(ConfigError) as e:
        _slo(raw)
    for s in says:
        assert re.search(s, str(e.value)), (s, str(e.value))


@pytest.mark.parametrize("target, fast, slow", [(0.93, False, True), (0.8333, False, False),
                                                (0.94, True, True), (0.84, False, True)])
def test_every_objective_and_burn_rate_pair_is_checked(target, fast, slow):
    """Default burn rates (14.4 and 6 at 30 days): fast needs a target above 0.9306, slow above 0.8334."""
    refused = set()
    for name in ("fast", "slow"):
        rates = {name: SloConfig().burn_rates[name]}
        try:
            SloConfig(objectives=(Objective("m", target=target),), burn_rates=rates)
        except ConfigError:
            refused.add(name)
    assert ("fast" not in refused, "slow" not in refused) == (fast, slow)


def test_a_factor_equal_to_the_highest_burn_rate_is_refused_and_just_below_is_accepted():
    with pytest.raises(ConfigError, match="lower the factor below 10"):
        SloConfig(objectives=(Objective("m", target=0.9),), burn_rates={"x": BurnRate(1, 0.1, 10.0)})
    cfg = SloConfig(objectives=(Objective("m", target=0.9),), burn_rates={"x": BurnRate(1, 0.1, 9.9)})
    t = SloTracker(cfg.objective("m"), cfg.burn_rates, min_labelled=1)
    assert [s.burning for s in t.observe(3600.0, 100, 100)] == [True]  # reachable: every prediction wrong


def test_whole_file_check_refuses_a_silent_objective_of_burn_rates_you_set():
    with pytest.raises(ConfigError, match="can never be reached"):
        check_all({"slo": {"objectives": [{"model": "fraud", "target": 0.9}],
                           "burn_rates": {"fast": {"long_h": 1, "short_h": 0.1, "factor": 14.4}}}})


def test_a_default_burn_rate_out_of_reach_is_left_out_for_that_objective_with_a_warning(caplog):
    """Accuracy 0.9 over 30 days (the usual example): the default fast burn (14.4) is out of reach, so that
    objective gets only the slow one, and the load says so; a 0.97 objective keeps both."""
    with caplog.at_level("WARNING", logger="driftloop.slo"):
        cfg = _slo({"objectives": [{"model": "fraud", "target": 0.9}, {"model": "ads", "target": 0.97}]})
    assert sorted(cfg.burn_rates_for(cfg.objective("fraud"))) == ["slow"]
    assert sorted(cfg.burn_rates_for(cfg.objective("ads"))) == ["fast", "slow"]
    assert "the default burn rate fast" in caplog.text and "left out for that objective" in caplog.text


# ------------------------------------------------------------------ item: malformed slo config
@pytest.mark.parametrize("raw, says", [
    ({"objectives": ["fraud"]}, r"slo.objectives\[0\]: expected a mapping \{model, target, .*got str 'fraud'"),
    ({"objectives": [5]}, r"slo.objectives\[0\]: expected a mapping .*got int 5"),
    ({"objectives": [{"target": 0.96}]}, r"slo.objectives\[0\]: 'model' is missing"),
    ({"objectives": "fraud"}, r"slo.objectives: expected a list"),
    ({"burn_rates": {"fast": 5}}, r"slo.burn_rates.fast: expected a mapping \{long_h, short_h, factor or "),
    ({"burn_rates": {"fast": None}}, r"slo.burn_rates.fast: expected a mapping"),
    ({"burn_rates": ["fast"]}, r"slo.burn_rates: expected a mapping"),
    ({"burn_rates": {"fast": {"long_h": 1, "short_h": 0.1, "factor": math.nan}}}, r"factor must be a finite number > 0, got nan"),
    ({"burn_rates": {"fast": {"long_h": 1, "short_h": 0.1, "factor": math.inf}}}, r"factor must be a finite number > 0, got inf"),
    ({"burn_rates": {"fast": {"long_h": math.inf, "short_h": 0.1, "factor": 2}}}, r"long_h must be a finite number > 0"),
    ({"burn_rates": {"fast": {"long_h": 1, "short_h": math.nan, "factor": 2}}}, r"short_h must be a finite number > 0"),
    ({"burn_rates": {"fast": {"long_h": 1, "short_h": 0, "factor": 2}}}, r"short_h must be a finite number > 0"),
    ({"burn_rates": {"fast": {"long_h": -1, "short_h": 0.1, "factor": 2}}}, r"long_h must be a finite number > 0"),
    ({"burn_rates": {"fast": {"long_h": 1, "short_h": 2, "factor": 2}}}, r"short_h <= long_h"),
    ({"burn_rates": {"fast": {"long_h": 1, "short_h": 0.1, "factor": 0}}}, r"factor must be a finite number > 0"),
    ({"burn_rates": {"fast": {"long_h": 1, "short_h": 0.1}}}, r"needs one of factor .* or budget_percent"),
    ({"burn_rates": {"fast": {"long_h": 1, "short_h": 0.1, "factor": 2, "budget_percent": 2}}}, r"not both"),
    ({"burn_rates": {"fast": {"long_h": 1, "short_h": 0.1, "budget_percent": 120}}}, r"at most 100"),
    ({"burn_rates": {"fast": {"long_h": 1, "short_h": 0.1, "budget_percent": math.nan}}}, r"budget_percent must be a finite"),
    ({"window_days": math.inf}, r"slo.window_days must be a finite number > 0"),
    ({"window_days": 0}, r"slo.window_days must be a finite number > 0"),
    ({"objectives": [{"model": "m", "target": 0.99, "window_days": math.nan}]}, r"window_days must be a finite"),
    ({"objectives": [{"model": "m", "target": math.nan}]}, r"target must be between 0 and 1"),
    ({"default_target": 1.0}, r"slo.default_target must be between 0 and 1 \(exclusive\), or null"),
    ({"default_target": math.nan}, r"slo.default_target must be between 0 and 1"),
    ({"min_labelled": 0}, r"slo.min_labelled must be an integer >= 1"),
])
def test_malformed_slo_config_is_a_config_error_with_its_path(raw, says):
    with pytest.raises(ConfigError, match=says):
        _slo(raw)
    with pytest.raises(ConfigError, match=says):
        check_all({"slo": raw})


@pytest.mark.parametrize("text", ["slo: {objectives: [fraud]}\n", "slo: {burn_rates: {fast: 5}}\n",
                                  "slo: {burn_rates: {fast: {long_h: 1, short_h: 0.1, factor: .nan}}}\n",
                                  "slo: {burn_rates: {fast: {long_h: .inf, short_h: 0.1, factor: 2}}}\n"])
def test_any_command_says_bad_configuration_not_a_traceback(tmp_path, monkeypatch, capsys, text):
    from streams.cli.main import main

    monkeypatch.setenv("DRIFTLOOP_HOME", str(tmp_path / "home"))
    cfg = tmp_path / "x.yml"
    cfg.write_text(text)
    assert main(["--config", str(cfg), "models", "list"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("driftloop models: bad configuration:") and "Traceback" not in err, err


def test_a_single_window_burn_rate_is_accepted():
    """short_h == long_h: a one-window alarm (it goes on until the long span clears); nothing to refuse."""
    assert _slo({"burn_rates": {"one": {"long_h": 1, "short_h": 1, "factor": 2}}}).burn_rates["one"].short_h == 1.0


# ------------------------------------------------------------------ item: no objective unless configured
def test_no_model_has_an_objective_unless_configured():
    assert SloConfig().default_target is None and SloConfig().objective("tweets") is None
    cfg = _slo({"objectives": [{"model": "fraud", "target": 0.97}]})
    assert cfg.objective("fraud").target == 0.97 and cfg.objective("tweets") is None
    assert _slo({"default_target": 0.95}).objective("tweets").target == 0.95  # opt in


def test_the_worker_exports_no_objective_for_a_model_without_one():
    """driftloop_slo_objective is what the Prometheus rules alert on: no series, no SLO alert (as in the worker)."""
    from streams.adapters.metrics import WorkerMetrics, parse_metrics
    from streams.worker.aggregator import Aggregator

    for slo, expected in [(SloConfig(), {}),
                          (_slo({"objectives": [{"model": "fraud", "target": 0.97}]}), {"fraud": 0.97})]:
        agg = types.SimpleNamespace(s=types.SimpleNamespace(slo=slo), m=WorkerMetrics())
        for model in ("fraud", "tweets"):
            Aggregator._init_series(agg, model, "1")
        got = {k: v for k, v in parse_metrics(agg.m.render().decode()).items()
               if k.startswith("driftloop_slo_objective{")}
        assert got == {f'driftloop_slo_objective{{metric="accuracy",model="{m}"}}': t for m, t in expected.items()}


# ------------------------------------------------------------------ item: window_days and the factors
def test_default_burn_rates_take_their_factor_from_window_days():
    """SRE workbook: factor = share of the budget spent over the long span * period / long span."""
    cfg = _slo({"objectives": [{"model": "a", "target": 0.99}, {"model": "b", "target": 0.99, "window_days": 7}]})
    fa = {n: r.factor for n, r in SloTracker(cfg.objective("a"), cfg.burn_rates).burn_rates.items()}
    fb = {n: r.factor for n, r in SloTracker(cfg.objective("b"), cfg.burn_rates).burn_rates.items()}
    assert fa == pytest.approx({"fast": 14.4, "slow": 6.0})
    assert fb == pytest.approx({"fast": 0.02 * 7 * 24 / 1, "slow": 0.05 * 7 * 24 / 6})
    # an objective without its own window_days takes the section's; an explicit factor ignores the period
    c7 = _slo({"window_days": 7, "objectives": [{"model": "c", "target": 0.99}],
               "burn_rates": {"fast": {"long_h": 1, "short_h": 0.1, "budget_percent": 2},
                              "fixed": {"long_h": 1, "short_h": 0.1, "factor": 14.4}}})
    assert c7.objective("c").window_days == 7.0
    got = {n: r.factor for n, r in SloTracker(c7.objective("c"), c7.burn_rates).burn_rates.items()}
    assert got == pytest.approx({"fast": 3.36, "fixed": 14.4})


def test_a_shorter_period_makes_a_low_target_reachable():
    """0.9 over 30 days cannot page at 2% of the budget in an hour (14.4 > 10); over 7 days it can (3.36)."""
    cfg = _slo({"objectives": [{"model": "m", "target": 0.9}]})
    assert sorted(cfg.burn_rates_for(cfg.objective("m"))) == ["slow"]
    cfg = _slo({"objectives": [{"model": "m", "target": 0.9, "window_days": 7}]})
    assert sorted(cfg.burn_rates_for(cfg.objective("m"))) == ["fast", "slow"]
    t = SloTracker(cfg.objective("m"), cfg.burn_rates, min_labelled=100)
    burning = [s.name for s in t.observe(3600.0, 600, 240) if s.burning]  # 40% wrong: burn 4, over 3.36 and 1.4
    assert burning == ["fast", "slow"]


def test_an_objective_left_without_any_default_burn_rate_is_refused():
    """0.8 over 30 days: neither 14.4 nor 6 can be reached, so the objective would never alarm."""
    with pytest.raises(ConfigError, match="No burn rate is left for model 'churn''s target 0.8"):
        _slo({"objectives": [{"model": "churn", "target": 0.8}]})
    assert _slo({"objectives": [{"model": "churn", "target": 0.8, "window_days": 7}]})  # 3.36 and 1.4: reachable
