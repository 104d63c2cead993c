"""Label join (streams/worker_state.JoinState + InputStore): pure, no Kafka."""

from __future__ import annotations

import json
import random

import pytest

from streams.worker import state as ws

from streams.worker.label_join import InputStore, JoinState
from streams.judge.drift_config import DriftConfig
from streams.contracts.events import LabelEvent, LabelledExample
from streams.contracts.validate import parse_input
from streams.judge.profile_build import build_profile
from streams.cli.sample import SampleTraffic

GEOM = ws.Geometry(10.0, 10.0, 0.0)
TTL = 120.0


@pytest.fixture(scope="module")
def setup():
    prof = build_profile([parse_input(e) for e in SampleTraffic(seed=123).events(3000)], "fraud", "1")
    return ws.engine_port(DriftConfig(window_seconds=10, min_samples=50)), prof


def labels_for(events, delay=30.0, seed=0):
    tr = SampleTraffic(seed=seed)
    return [LabelEvent(d["event_id"], d["model"], d["ts"], d["label"]) for d in tr.labels(events, delay_s=delay)]


def test_out_of_order_labels_after_their_inputs_are_joined(setup):
    port, prof = setup
    events = SampleTraffic(seed=1).events(1000)
    store, js = InputStore(), JoinState(0)
    js.store_inputs(store, [(i, parse_input(e)) for i, e in enumerate(events)], events[-1]["ts"],
                    raws=[json.dumps(e).encode() for e in events])
    labs = labels_for(events[::2])
    random.Random(3).shuffle(labs)
    out = js.ingest_labels(store, list(enumerate(labs)), GEOM, TTL, port, lambda m, v: prof)
    assert out.matched == len(labs) == len(out.pairs)
    assert {p.event_id for p in out.pairs} == {e["event_id"] for e in events[::2]}
    by_id = {e["event_id"]: e for e in events}
    for p in out.pairs[:20]:
        assert p.features == by_id[p.event_id]["features"] and p.model_version == "1"


def test_label_before_its_input_waits_then_joins(setup):
    port, prof = setup
    ev = SampleTraffic(seed=2).events(5)
    store, js = InputStore(), JoinState(0)
    lab = labels_for(ev[:1])[0]
    out = js.ingest_labels(store, [(0, lab)], GEOM, TTL, port, lambda m, v: prof)
    assert out.matched == 0 and out.waiting == 1 and out.unknown == 0
    js.store_inputs(store, [(i, parse_input(e)) for i, e in enumerate(ev)], ev[-1]["ts"])
    out = js.ingest_labels(store, [], GEOM, TTL, port, lambda m, v: prof)
    assert out.matched == 1 and out.pairs[0].event_id == ev[0]["event_id"]


def test_unknown_label_is_counted_once_inputs_have_passed_it(setup):
    port, prof = setup
    events = SampleTraffic(seed=3).events(200)
    store, js = InputStore(), JoinState(0)
    js.store_inputs(store, [(i, parse_input(e)) for i, e in enumerate(events[:10])], events[9]["ts"])
    ghost = LabelEvent("ghost", "fraud", events[50]["ts"], 1.0)
    out = js.ingest_labels(store, [(0, ghost)], GEOM, TTL, port, lambda m, v: prof)
    assert out.unknown == 0 and out.waiting == 1  # inputs have not reached its time yet: it may still come
    js.store_inputs(store, [(i, parse_input(e)) for i, e in enumerate(events) if i >= 10], events[-1]["ts"])
    out = js.ingest_labels(store, [], GEOM, TTL, port, lambda m, v: prof)
    assert out.unknown == 1 and out.waiting == 0
    assert js.counts["unknown"] == 1


def test_duplicate_label_is_counted_but_a_replayed_one_is_not(setup):
    port, prof = setup
    events = SampleTraffic(seed=4).events(10)
    store, js = InputStore(), JoinState(0)
    js.store_inputs(store, [(i, parse_input(e)) for i, e in enumerate(events)], events[-1]["ts"])
    lab = labels_for(events[:1])[0]
    saved = json.loads(json.dumps(js.to_dict()))
    out = js.ingest_labels(store, [(0, lab)], GEOM, TTL, port, lambda m, v: prof)
    assert out.matched == 1
    # crash before the join state was saved: the same label offset comes again -> joined again, not a duplicate
    again = JoinState(0, saved).ingest_labels(store, [(0, lab)], GEOM, TTL, port, lambda m, v: prof)
    assert again.matched == 1 and again.duplicate == 0
    dup = js.ingest_labels(store, [(1, lab)], GEOM, TTL, port, lambda m, v: prof)
    assert dup.duplicate == 1 and dup.matched == 0


def test_inputs_without_labels_expire_after_the_ttl_and_the_store_stays_bounded(setup):
    port, prof = setup
    events = SampleTraffic(seed=5).events(3000)  # 60 s
    store, js = InputStore(max_chunk=100), JoinState(0)
    for i in range(0, len(events), 500):
        part = events[i : i + 500]
        js.store_inputs(store, [(i + j, parse_input(e)) for j, e in enumerate(part)], part[-1]["ts"])
    late = LabelEvent(events[-1]["event_id"], "fraud", events[-1]["ts"] + 30 + 20, 0.0)
    out = js.ingest_labels(store, [(0, late)], ws.Geometry(10, 10, 0), 10.0, port, lambda m, v: prof)
    assert out.expired_inputs > 0 and len(store) < len(events)
    assert out.too_late == 1  # its label came 50 s after the input, the TTL is 10 s


def test_labelled_windows_close_on_the_label_watermark_and_carry_error_counts(setup):
    port, prof = setup
    events = SampleTraffic(seed=6).events(2000)  # 40 s
    store, js = InputStore(), JoinState(0)
    js.store_inputs(store, [(i, parse_input(e)) for i, e in enumerate(events)], events[-1]["ts"])
    labs = labels_for(events, delay=5.0)
    out = js.ingest_labels(store, list(enumerate(labs)), GEOM, 10.0, port, lambda m, v: prof)
    parts = [r for _, r in out.records if r["stream"] == ws.LABELS]
    assert parts and all(r["acc"]["n_labelled"] == r["n"] for r in parts)
    # label watermark = last label ts; windows whose end + TTL is behind it are closed
    assert all(ws.win_parse(r["window"])[1] + 10.0 <= labs[-1].ts for r in parts)


def test_without_labels_stored_inputs_leave_after_two_ttls_of_input_time(setup):
    events = SampleTraffic(seed=7).events(5000)  # 100 s
    store, js = InputStore(max_chunk=100), JoinState(0)
    for i in range(0, len(events), 250):
        part = events[i : i + 250]
        js.store_inputs(store, [(i + j, parse_input(e)) for j, e in enumerate(part)], part[-1]["ts"], ttl=10.0)
    assert len(store) <= 50 * 22  # about 2 TTLs (20 s at 50 events/s) plus one chunk
    assert js.counts["expired_inputs"] >= 5000 - 50 * 22


def test_a_store_rebuilt_from_the_inputs_topic_joins_the_same(setup):
    """The inputs topic is the store's changelog: a restarted worker reads it back from store_from."""
    port, prof = setup
    events = SampleTraffic(seed=5).events(1200)
    raws = [json.dumps(e).encode() for e in events]
    live, js = InputStore(max_chunk=500), JoinState(0)
    batch = [(i, parse_input(e)) for i, e in enumerate(events)]
    js.store_inputs(live, batch[:700], events[699]["ts"], raws=raws[:700])
    js.store_inputs(live, batch[700:], events[-1]["ts"], raws=raws[700:])
    saved = JoinState(0, ws.decode_state(ws.encode_state(js.to_dict())))
    assert saved.store_from == 0 and saved.in_offset == len(events) - 1
    log = list(enumerate(raws)) + [(len(raws), b"not json")]  # what the topic holds (a bad record was dead-lettered)
    rebuilt = InputStore(max_chunk=500)
    assert rebuilt.rebuild([(o, r) for o, r in log if saved.store_from <= o <= saved.in_offset]) == len(events)
    assert len(rebuilt) == len(live) == len(events)
    for e in events[::97]:
        ts_live, ev_live = live.get(e["event_id"])
        ts_rec, ev_rec = rebuilt.get(e["event_id"])
        assert ts_live == ts_rec and parse_input(ev_live) == parse_input(ev_rec)
    labs = labels_for(events[::4])
    out_live = JoinState(0, js.to_dict()).ingest_labels(live, list(enumerate(labs)), GEOM, TTL, port, lambda m, v: prof)
    out_reb = saved.ingest_labels(rebuilt, list(enumerate(labs)), GEOM, TTL, port, lambda m, v: prof)
    assert out_live.matched == out_reb.matched == len(labs)
    assert [p.to_dict() for p in out_live.pairs] == [p.to_dict() for p in out_reb.pairs]


def test_store_from_follows_expiry(setup):
    events = SampleTraffic(seed=8).events(600)  # 12 s of event time
    store, js = InputStore(max_chunk=100), JoinState(0)
    for i in range(0, 600, 100):
        part = events[i : i + 100]
        js.store_inputs(store, [(i + j, parse_input(e)) for j, e in enumerate(part)], part[-1]["ts"], ttl=2.0)
    assert js.store_from == store.first_offset() > 0  # the oldest chunks expired: a rebuild starts later
    assert all(c["first"] >= js.store_from for c in store.chunks.values())


def test_duplicate_event_ids_are_stored_once():
    events = SampleTraffic(seed=6).events(10)
    store, js = InputStore(), JoinState(0)
    batch = [(i, parse_input(e)) for i, e in enumerate(events + events[:3])]
    assert js.store_inputs(store, batch, events[-1]["ts"]) == 10
    assert store.get(events[0]["event_id"])[1] == parse_input(events[0])


def test_chunks_of_the_previous_format_are_still_read_after_an_upgrade():
    ev = SampleTraffic(seed=7).events(1)[0]
    kv = {"c|0|0": {"max_ts": ev["ts"], "rows": {ev["event_id"]: [ev["ts"], json.dumps(ev)]}}}
    store = InputStore(kv)
    assert store.has(ev["event_id"]) and store.get(ev["event_id"]) == (ev["ts"], json.dumps(ev))
    assert store.expire(ev["ts"] + 1) == (1, 0) and len(store) == 0 and kv == {}  # dropped from the changelog too


def test_inputs_wait_for_a_labels_backlog_before_they_expire():
    events = SampleTraffic(seed=9).events(1000)  # 20 s of event time
    batch = [(i, parse_input(e)) for i, e in enumerate(events)]
    for behind, kept in ((False, 0), (True, 1000)):
        store, js = InputStore(), JoinState(0)
        js.label_wm = events[0]["ts"]  # the labels read so far are at the start
        js.store_inputs(store, batch, events[-1]["ts"] + 100.0, ttl=5.0, labels_behind=behind)
        assert len(store) == kept  # behind: their labels may still be in the unread backlog


def with_shadow(events, every=2):
    """Every ``every``-th event with the prediction of version 2 served in shadow."""
    return [dict(e, shadow={"model_version": "2", "prediction": 1 - (e.get("prediction") or 0), "scores": [0.3, 0.7]})
            if i % every == 0 else e for i, e in enumerate(events)]


@pytest.mark.parametrize("kept", ["raw bytes", "parsed events", "rebuilt after a restart"])
def test_the_join_carries_the_shadow_prediction_of_the_input(setup, kept):
    port, prof = setup
    events = with_shadow(SampleTraffic(seed=5).events(200))
    raws = [json.dumps(e).encode() for e in events]
    store, js = InputStore(), JoinState(0)
    if kept == "rebuilt after a restart":
        assert store.rebuild(list(enumerate(raws))) == len(events)
    else:
        js.store_inputs(store, [(i, parse_input(r)) for i, r in enumerate(raws)], events[-1]["ts"],
                        raws=raws if kept == "raw bytes" else None)
    out = js.ingest_labels(store, list(enumerate(labels_for(events))), GEOM, TTL, port, lambda m, v: prof)
    assert out.matched == len(events)
    by_id = {e["event_id"]: e for e in events}
    for p in out.pairs:
        want = by_id[p.event_id].get("shadow")
        assert p.shadow == (None if want is None else {**want, "prediction": float(want["prediction"])})
        assert LabelledExample.from_dict(json.loads(json.dumps(p.to_dict()))) == p
    assert sum(p.shadow is not None for p in out.pairs) == len(events) // 2


def test_the_worker_publishes_labelled_examples_with_their_shadow_across_a_restart(tmp_path):
    from tests.worker_harness import Harness

    h = Harness(tmp_path, partitions=2)
    tr = SampleTraffic(seed=6)
    events = with_shadow(tr.events(600), every=3)
    h.produce("inputs", events)
    h.drain()
    h.start()  # a restarted worker reads its join stores back from the inputs topic
    h.produce("labels", tr.labels(events, delay_s=1.0))
    h.drain()
    labelled = [LabelledExample.from_dict(json.loads(r.value)) for r in h.topics["labelled"].all()]
    assert len(labelled) == len(events)
    shadows = {ex.event_id: ex.shadow for ex in labelled}
    assert all((shadows[e["event_id"]] is not None) == ("shadow" in e) for e in events)
    assert {s["model_version"] for s in shadows.values() if s} == {"2"}
