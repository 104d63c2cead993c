"""Seeded fuzz run of the event validator: no input crashes it, and its fast and full paths agree.

For every generated input (bytes), the four validators run with the same fixed clock:
``parse_input`` (msgspec fast path, falling back to the full path), ``_parse_input_full`` (json +
checks: the reference), ``parse_label`` and ``_parse_label_full``.  Counted:

* crash: any of them raises something other than ``InvalidRecord`` (or a reason outside ``REASONS``);
* disagreement: the fast and full paths give different outcomes (accepted with a different
  event, or rejected for a different reason), or ``parse_inputs`` over a micro-batch (every 64
  inputs, then the valid ones of them alone, which takes its bulk path) differs from ``parse_input``
  on a record.

Inputs (each kind a share of the run, all from one ``random.Random(seed)``): valid records;
field-level mutations of valid records (values drawn from a pool of hostile values: lone
surrogates, control characters, huge and non-finite numbers, booleans, nested arrays around the
nesting limit, ISO and numeric-string times, future times, over-long strings, wrong types, unknown
fields); byte-level mutations of valid records (flips, insertions of JSON tokens and escapes,
deletions, truncations); deep nesting (balanced, unbalanced, in strings); random bytes.

    .venv/bin/python bench/validator_fuzz.py --n 10000000 [--seed 11] [--workers 2]
    .venv/bin/python bench/validator_fuzz.py --quick      # 300,000 inputs

Results: ``bench/results/validator_fuzz.json`` and ``.md`` (``--out-dir`` to change); the first
crashing or disagreeing inputs are kept there (base64) for a regression test.  CI does not run it
(tests/test_events_fast_path.py runs the same comparison on Hypothesis examples).
"""

from __future__ import annotations

import argparse
import base64
import json
import multiprocessing as mp
import os
import platform
import random
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from streams.contracts.events import MAX_ID_LEN, MAX_NAME_LEN, MAX_NESTING, MAX_STRING_VALUE_LEN, REASONS, InvalidRecord
from streams.contracts.validate import _parse_input_full, _parse_label_full, parse_input, parse_inputs, parse_label

NOW = 1_764_115_200.0 + 30 * 86_400
FUTURE = 300.0
KEEP = 20  # failing examples kept in the results

KINDS = ("valid", "field", "bytes", "deep", "random")
WEIGHTS = (0.15, 0.45, 0.30, 0.03, 0.07)

HOSTILE_STRINGS = ["", " ", "m\n", "m\r\n", " m", "m ", "\x00", "a\tb", "\x7f", "a\u200bb", "\u2028", "\ufeff", "\u00a0",
                   "fraud|eu", "../x", "/etc/passwd", "..", "C:\\x", "%s%n", "\U0001f600", "é", "\ud7ff", "\ue000",
                   "x" * MAX_NAME_LEN, "x" * (MAX_NAME_LEN + 1), "x" * MAX_ID_LEN, "x" * (MAX_ID_LEN + 1),
                   "s" * MAX_STRING_VALUE_LEN, "s" * (MAX_STRING_VALUE_LEN + 1), "NaN", "Infinity", "1e400", "null",
                   "2025-11-26T00:00:00Z", "2025-11-26T00:00:00", "2499-01-01T00:00:00Z", "1764115200", " 1764115200 ",
                   "-1", "1e10", "0x10", "2025-13-01", "9999-12-31T23:59:59+14:00"]
SURROGATES = ["\ud800", "m\udfff", "\udc00\ud800", "a\ud83d", "\ud83d\ude00"]  # the last one is a valid pair
NUMBERS = [0, -0.0, 1, -1, 0.5, 1e-320, 5e-324, 1.7976931348623157e308, -1.7976931348623157e308, 2**53 + 1, 2**63, 2**64,
           -(2**63) - 1, 10**20, 10**308, 10**400, NOW, NOW + FUTURE - 1, NOW + FUTURE + 1, NOW + 86400, 16_725_225_600,
           16_725_225_601, 1764115200250, -1e-9, 4e9]
RAW_NUMBERS = [b"NaN", b"Infinity", b"-Infinity", b"1e400", b"-1e400", b"1" + b"0" * 400, b"1" + b"0" * 5000, b"1.", b".5",
               b"01", b"-", b"1e", b"0.0000000000000000000000000001", b"1E+2", b"-0"]
TOKENS = [b"[", b"]", b"{", b"}", b'"', b"\\", b",", b":", b"null", b"true", b"\\ud800", b"\\udc00", b"\\u0000", b"\\n",
          b"\xff", b"\xed\xa0\x80", b"\xc0\x80", b"\xf4\x90\x80\x80", b"\x00", b" ", b"\n", b"NaN", b"1e400", b"-0",
          b'"x":1', b'"model":"y"', b'"ts":"2499-01-01"', b"[" * 70, b"]" * 70]
FIELDS_IN = ("event_id", "model", "model_version", "ts", "features", "entity", "prediction", "scores", "shadow")
FIELDS_SHADOW = ("model_version", "prediction", "scores")
FIELDS_LB = ("event_id", "model", "model_version", "ts", "label")


def nested(depth: int, leaf: str = "1", open_: str = "[", close: str = "]") -> str:
    return open_ * depth + leaf + close * depth


def nested_obj(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


class Gen:
    def __init__(self, seed: int) -> None:
        self.r = random.Random(seed)

    def text(self, lo: int = 1, hi: int = 12) -> str:
        r = self.r
        n = r.randint(lo, hi)
        pick = r.random()
        if pick < 0.7:
            return "".join(r.choice("abcdefghijklmnopqrstuvwxyz0123456789_-.") for _ in range(n))
        if pick < 0.9:
            return "".join(chr(r.randint(0x20, 0x2FFF)) for _ in range(n))
        return "".join(chr(r.randint(0, 0x10FFFF)) for _ in range(n))  # includes surrogates and controls

    def hostile(self):
        r = self.r
        k = r.random()
        if k < 0.25:
            return r.choice(HOSTILE_STRINGS)
        if k < 0.35:
            return r.choice(SURROGATES)
        if k < 0.55:
            return r.choice(NUMBERS)
        if k < 0.62:
            return r.choice([True, False, None])
        if k < 0.70:
            return json.loads(nested(r.randint(MAX_NESTING - 4, MAX_NESTING + 2), "[]"))
        if k < 0.78:
            return [r.choice(NUMBERS + [True, None, "x"]) for _ in range(r.randint(0, 3))]
        if k < 0.86:
            return {self.text(0, 4): self.hostile() for _ in range(r.randint(0, 3))}
        if k < 0.93:
            return self.text(0, 20)
        return r.uniform(-1e12, 1e12)

    def features(self) -> dict:
        r = self.r
        out = {}
        for _ in range(r.randint(1, 8)):
            v = r.random()
            out[self.text(1, 10)] = (r.gauss(0, 100) if v < 0.6 else r.randint(-1000, 1000) if v < 0.7
                                     else None if v < 0.8 else self.text(0, 12))
        return out

    def valid_input(self) -> dict:
        r = self.r
        d = {"event_id": f"e-{r.getrandbits(40):x}", "model": r.choice(["fraud", "churn", "fraud|eu", "m", self.text()]),
             "model_version": r.choice(["1", "2", "v3.1", str(r.randint(1, 99))]),
             "ts": r.choice([NOW - r.uniform(0, 1e8), round(NOW - r.uniform(0, 1e6), 3), int(NOW) - r.randint(0, 10**6)]),
             "features": self.features()}
        if r.random() < 0.3:
            d["entity"] = {"customer": self.text(), "n": r.randint(0, 10**9)}
        if r.random() < 0.4:
            d["prediction"] = r.choice([r.random(), r.randint(0, 1), "yes", "no"])
        if r.random() < 0.3:
            d["scores"] = [r.random() for _ in range(r.randint(1, 3))]
        if r.random() < 0.3:  # the prediction of a version served in shadow
            d["shadow"] = {"model_version": r.choice(["2", "v4", str(r.randint(1, 99)), self.text()])}
            if r.random() < 0.7:
                d["shadow"]["prediction"] = r.choice([r.random(), r.randint(0, 1), "yes", "no", None])
            if r.random() < 0.6:
                d["shadow"]["scores"] = r.choice([[r.random() for _ in range(r.randint(1, 3))], None])
        return d

    def valid_label(self) -> dict:
        r = self.r
        d = {"event_id": f"e-{r.getrandbits(40):x}", "model": r.choice(["fraud", "m", self.text()]),
             "ts": NOW - r.uniform(0, 1e6), "label": r.choice([0, 1, 0.5, "cat", "dog"])}
        if r.random() < 0.5:
            d["model_version"] = r.choice(["1", "2"])
        return d

    def valid(self) -> dict:
        return self.valid_input() if self.r.random() < 0.7 else self.valid_label()

    def dumps(self, d: dict) -> bytes:
        r = self.r.random()
        if r < 0.6:
            return json.dumps(d).encode()
        if r < 0.9:
            return json.dumps(d, ensure_ascii=False).encode("utf-8", "surrogatepass")
        return json.dumps(d, separators=(",", ":"), indent=self.r.choice([None, 1])).encode()

    def field_mutation(self) -> bytes:
        r = self.r
        d = self.valid()
        for _ in range(r.choice([1, 1, 1, 2, 3])):
            what = r.random()
            if what < 0.55:
                d[r.choice(FIELDS_IN + FIELDS_LB)] = self.hostile()
            elif what < 0.7 and isinstance(d.get("features"), dict):
                d["features"][r.choice([self.text(), r.choice(HOSTILE_STRINGS + SURROGATES)])] = self.hostile()
            elif what < 0.8:
                d.pop(r.choice(list(d)), None)
            elif what < 0.9:
                d[self.text(1, 6)] = self.hostile()  # unknown field
            elif what < 0.93 and isinstance(d.get("shadow"), dict):  # a shadow field broken (or an unknown one)
                d["shadow"][r.choice(FIELDS_SHADOW + (self.text(1, 4),))] = self.hostile()
            elif what < 0.93 and "label" not in d:
                d["shadow"] = {k: self.hostile() for k in r.sample(FIELDS_SHADOW, r.randint(0, 3))}
            elif isinstance(d.get("entity"), dict) or what < 0.95:
                d["entity"] = {r.choice(HOSTILE_STRINGS + SURROGATES): self.hostile()}
            else:
                d["scores"] = [self.hostile() for _ in range(r.randint(0, 3))]
        try:
            return self.dumps(d)
        except (ValueError, TypeError, RecursionError):  # e.g. int too large for str()
            return json.dumps({k: v for k, v in d.items() if isinstance(v, str)}).encode("utf-8", "surrogatepass")

    def byte_mutation(self) -> bytes:
        r = self.r
        b = bytearray(self.dumps(self.valid()))
        for _ in range(r.choice([1, 1, 2, 3, 5])):
            op = r.random()
            i = r.randint(0, len(b))
            if op < 0.3:
                b[i:i] = r.choice(TOKENS)
            elif op < 0.45 and b:
                b[min(i, len(b) - 1)] = r.randint(0, 255)
            elif op < 0.6:
                del b[i:i + r.randint(1, 8)]
            elif op < 0.7:
                b = b[:i]
            elif op < 0.85:  # replace a number or a string value by a raw token
                j = b.find(b":", i)
                if j >= 0:
                    k = j + 1
                    while k < len(b) and b[k] not in b",}":
                        k += 1
                    b[j + 1:k] = r.choice(RAW_NUMBERS + [b'"\\ud800"', b'"m\\n"', b'"\\u0000"', b"[]", b"{}", b'"2499-01-01T00:00:00Z"'])
            else:  # duplicate a key
                b[i:i] = r.choice([b',"model":"z"', b',"ts":1', b',"features":{"a":1}', b',"model":"m\\ud800"'])
        return bytes(b)

    def deep(self) -> bytes:
        r = self.r
        depth = r.choice([MAX_NESTING - 1, MAX_NESTING, MAX_NESTING + 1, 200, 1000, 5000, r.randint(1, 3000)])
        base = json.dumps(self.valid())
        k = r.random()
        if k < 0.35:
            return (base[:-1] + ', "debug": ' + nested(depth) + "}").encode()
        if k < 0.5:
            return (base[:-1] + ', "debug": ' + nested_obj(depth) + "}").encode()
        if k < 0.6:
            return (base[:-1] + ', "debug": ' + "[" * depth + "}").encode()  # unbalanced
        if k < 0.7:
            return (base[:-1] + ', "debug": "' + "[" * depth + '"}').encode()  # brackets in a string
        if k < 0.8:
            return nested(depth).encode()
        if k < 0.9:
            return (base.replace('"features": {', '"features": {"deep": ' + nested(depth) + ", ", 1)).encode()
        return ("[" * depth).encode()

    def random_bytes(self) -> bytes:
        r = self.r
        n = r.choice([0, 1, 2, 8, 64, 512, 4096])
        if r.random() < 0.5:
            return r.randbytes(n)
        return bytes(r.choice(b'{}[]":,0123456789.eE-+ntrufalsNI\\u') for _ in range(n))

    def one(self) -> tuple[str, bytes]:
        kind = self.r.choices(KINDS, WEIGHTS)[0]
        raw = {"valid": lambda: self.dumps(self.valid()), "field": self.field_mutation, "bytes": self.byte_mutation,
               "deep": self.deep, "random": self.random_bytes}[kind]()
        return kind, raw


def outcome(parse, raw: bytes):
    try:
        return "ok", parse(raw, now=NOW, max_future_s=FUTURE)
    except InvalidRecord as err:
        if err.reason not in REASONS:
            raise RuntimeError(f"reason {err.reason!r} is not in REASONS") from None
        return err.reason, None


PAIRS = ((parse_input, _parse_input_full, "input"), (parse_label, _parse_label_full, "label"))
BATCH = 64  # inputs per parse_inputs batch check


def batch_outcome(r):
    """One record of parse_inputs in outcome()'s form."""
    if isinstance(r, InvalidRecord):
        if r.reason not in REASONS:
            raise RuntimeError(f"reason {r.reason!r} is not in REASONS")
        return r.reason, None
    return "ok", r


def run_chunk(args: tuple[int, int]) -> dict:
    seed, n = args
    g = Gen(seed)
    kinds: Counter = Counter()
    outcomes: Counter = Counter()
    crashes = disagreements = 0
    examples: list[dict] = []
    t_val = 0.0
    t0 = time.perf_counter()
    group: list[tuple[bytes, tuple]] = []  # (input, parse_input's outcome) for the batch check
    for i in range(n):
        kind, raw = g.one()
        kinds[kind] += 1
        for fast, full, what in PAIRS:
            t = time.perf_counter()
            try:
                a, b = outcome(fast, raw), outcome(full, raw)
            except BaseException as exc:  # noqa: BLE001 - this is what the bench looks for
                t_val += time.perf_counter() - t
                crashes += 1
                if len(examples) < KEEP:
                    examples.append({"what": what, "kind": kind, "problem": f"crash: {exc!r}"[:300],
                                     "raw_b64": base64.b64encode(raw[:65536]).decode()})
                continue
            t_val += time.perf_counter() - t
            outcomes[f"{what}:{b[0]}"] += 1
            if what == "input":
                group.append((raw, a))
            if a != b:
                disagreements += 1
                if len(examples) < KEEP:
                    examples.append({"what": what, "kind": kind, "problem": f"fast {a[0]} vs full {b[0]}",
                                     "raw_b64": base64.b64encode(raw[:65536]).decode()})
        if len(group) == BATCH or (i == n - 1 and group):
            # parse_inputs over a micro-batch (mixed, then its valid inputs only: the bulk path) == per record
            for part in (group, [x for x in group if x[1][0] == "ok"]):
                try:
                    got = [batch_outcome(r) for r in parse_inputs([r for r, _ in part], now=NOW, max_future_s=FUTURE)]
                except BaseException as exc:  # noqa: BLE001
                    crashes += 1
                    if len(examples) < KEEP:
                        examples.append({"what": "input batch", "kind": "batch", "problem": f"crash: {exc!r}"[:300],
                                         "raw_b64": base64.b64encode(b"\n".join(r for r, _ in part)[:65536]).decode()})
                    continue
                for (r, want), have in zip(part, got):
                    if have != want:
                        disagreements += 1
                        if len(examples) < KEEP:
                            examples.append({"what": "input batch", "kind": "batch",
                                             "problem": f"batch {have[0]} vs single {want[0]}",
                                             "raw_b64": base64.b64encode(r[:65536]).decode()})
            group = []
    return {"n": n, "crashes": crashes, "disagreements": disagreements, "kinds": kinds, "outcomes": outcomes,
            "examples": examples, "wall_s": time.perf_counter() - t0, "validate_s": t_val}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=10_000_000, help="inputs to generate (default 10,000,000)")
    ap.add_argument("--quick", action="store_true", help="300,000 inputs")
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--workers", type=int, default=1, help="processes (each its own seed stream)")
    ap.add_argument("--chunk", type=int, default=50_000)
    ap.add_argument("--out-dir", default=str(ROOT / "bench" / "results"))
    ap.add_argument("--name", default="validator_fuzz")
    args = ap.parse_args(argv)
    n = 300_000 if args.quick else args.n
    chunks = [(args.seed * 1_000_003 + i, min(args.chunk, n - i * args.chunk)) for i in range((n + args.chunk - 1) // args.chunk)]
    t0 = time.perf_counter()
    total = {"n": 0, "crashes": 0, "disagreements": 0, "kinds": Counter(), "outcomes": Counter(), "examples": [],
             "validate_s": 0.0}
    pool = mp.get_context("fork").Pool(args.workers) if args.workers > 1 else None
    results = pool.imap(run_chunk, chunks) if pool else map(run_chunk, chunks)
    for i, res in enumerate(results, 1):
        for k in ("n", "crashes", "disagreements", "validate_s"):
            total[k] += res[k]
        total["kinds"].update(res["kinds"])
        total["outcomes"].update(res["outcomes"])
        total["examples"].extend(res["examples"][: KEEP - len(total["examples"])])
        if i % 10 == 0 or i == len(chunks):
            el = time.perf_counter() - t0
            print(f"{total['n']:>11,} inputs  crashes {total['crashes']}  disagreements {total['disagreements']}  "
                  f"{total['n'] / el:,.0f} inputs/s", flush=True)
    if pool:
        pool.close()
    wall = time.perf_counter() - t0
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    except OSError:
        commit = ""
    out = {
        "command": "python bench/validator_fuzz.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "commit": commit, "seed": args.seed, "workers": args.workers, "inputs": total["n"],
        "validations": 4 * total["n"], "crashes": total["crashes"], "disagreements": total["disagreements"],
        "wall_s": round(wall, 2), "inputs_per_s": round(total["n"] / wall),
        "validator_s_per_worker": round(total["validate_s"] / max(1, args.workers), 2),
        "validator_inputs_per_s": round(total["n"] / (total["validate_s"] / max(1, args.workers))),
        "kinds": dict(total["kinds"]), "outcomes": dict(sorted(total["outcomes"].items())), "examples": total["examples"],
        "python": platform.python_version(), "cpus": os.cpu_count(), "now": NOW, "max_future_s": FUTURE,
    }
    d = Path(args.out_dir)
    d.mkdir(parents=True, exist_ok=True)
    (d / f"{args.name}.json").write_text(json.dumps(out, indent=2) + "\n")
    md = ["# validator_fuzz", "", f"`{out['command']}` at commit {commit}, Python {out['python']}, {args.workers} worker(s).", "",
          "| inputs | validations | crashes | fast/full disagreements | inputs/s (whole run, incl. generation) | inputs/s (4 validations each, per worker) |",
          "|---:|---:|---:|---:|---:|---:|",
          f"| {out['inputs']:,} | {out['validations']:,} | {out['crashes']} | {out['disagreements']} | {out['inputs_per_s']:,} "
          f"| {out['validator_inputs_per_s']:,} |", "",
          "Inputs by kind: " + ", ".join(f"{k} {v:,}" for k, v in sorted(out["kinds"].items())) + ".", "",
          "Outcomes (full path): " + ", ".join(f"{k} {v:,}" for k, v in out["outcomes"].items()) + "."]
    if out["examples"]:
        md += ["", "First failing inputs (base64, in the JSON): " + "; ".join(e["problem"] for e in out["examples"][:5])]
    (d / f"{args.name}.md").write_text("\n".join(md) + "\n")
    print(f"inputs {out['inputs']:,}  crashes {out['crashes']}  disagreements {out['disagreements']}  "
          f"{out['inputs_per_s']:,} inputs/s  -> {d / (args.name + '.json')}")
    return 0 if out["crashes"] == 0 and out["disagreements"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
