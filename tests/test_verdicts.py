"""Verdicts over training seeds: t-intervals, Welch intervals and the status rule, by hand and by property."""

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lengthrl.analysis.verdicts import judge_diff, judge_one, status, t975, t_interval, welch_interval
from lengthrl.errors import DataError


def test_t_interval_by_hand():
    # x = 1, 2, 3, 4: mean 2.5, sd sqrt(5/3) = 1.29099, s.e. 0.645497, t(0.975, 3) = 3.182
    m, lo, hi = t_interval([1, 2, 3, 4])
    assert m == 2.5
    assert lo == pytest.approx(2.5 - 3.182 * 0.645497, abs=1e-5) and hi == pytest.approx(4.55397, abs=1e-5)


def test_welch_interval_by_hand():
    # equal variances and sizes: s.e. sqrt(2 * (5/3) / 4) = 0.912871, Welch df = 6 exactly, t = 2.447
    d, lo, hi = welch_interval([1, 2, 3, 4], [3, 4, 5, 6])
    assert d == 2.0
    assert lo == pytest.approx(2 - 2.447 * 0.912871, abs=1e-5) and hi == pytest.approx(2 + 2.447 * 0.912871, abs=1e-5)


def test_fractional_welch_df_rounds_down_to_a_wider_interval():
    # unequal spreads give a non-integer df; the quantile is the one of floor(df), never a smaller one
    a, b = [0.0, 0.1, 0.2, 0.3], [0, 5, 10, 15]
    va, vb = (0.0166667 / 4), (41.6667 / 4)
    df = (va + vb) ** 2 / (va ** 2 / 3 + vb ** 2 / 3)
    assert 3 < df < 4
    d, lo, hi = welch_interval(a, b)
    assert hi - d == pytest.approx(t975(3) * math.sqrt(va + vb), rel=1e-4)


def test_t975_table_and_limits():
    assert t975(1) == 12.706 and t975(3) == 3.182 and t975(3.9) == 3.182 and t975(45) == 2.021
    assert t975(1000) == 1.96
    with pytest.raises(DataError, match="degree of freedom"):
        t975(0)


def test_status_rule():
    assert status(0.1, 0.5, 0.0) == "reproduced"
    assert status(-0.5, -0.1, 0.0) == "not_reproduced"
    assert status(-0.1, 0.5, 0.0) == "inconclusive"
    assert status(-0.5, -0.1, 0.0, "below") == "reproduced"
    assert status(0.1, 0.5, 0.0, "below") == "not_reproduced"
    with pytest.raises(DataError, match="direction"):
        status(0, 1, 0, "sideways")


def test_one_seed_is_an_error_that_names_the_fix():
    with pytest.raises(DataError, match="--seeds 0,1,2,3"):
        t_interval([1.0])
    with pytest.raises(DataError, match="non-finite"):
        t_interval([1.0, float("nan")])


def test_judge_records_what_it_judged():
    v = judge_one("DLER is shorter", "DLER, arXiv 2510.15110", "cut", [0.3, 0.35, 0.4, 0.45], 0.10,
                  seeds=[0, 1, 2, 3])
    assert v.status == "reproduced" and v.n_seeds == 4 and v.per_seed == [0.3, 0.35, 0.4, 0.45]
    j = v.to_json()
    assert set(j) >= {"claim", "paper", "status", "n_seeds", "estimate", "ci", "per_seed"}
    assert "reproduced" in v.text() and "4 training seeds" in v.text()
    w = judge_diff("LUSPO longer", "LUSPO", "len", "gspo", [30, 31, 29, 30], "luspo", [29, 32, 28, 31])
    assert w.status == "inconclusive" and w.per_seed == {"gspo": [30, 31, 29, 30], "luspo": [29, 32, 28, 31]}


finite = st.floats(-1e3, 1e3, allow_nan=False)


@settings(max_examples=200, deadline=None)
@given(st.lists(finite, min_size=2, max_size=12))
def test_interval_contains_the_mean_and_shifts_with_the_data(x):
    m, lo, hi = t_interval(x)
    assert lo <= m + 1e-9 and m <= hi + 1e-9
    m2, lo2, hi2 = t_interval([v + 10 for v in x])
    assert m2 == pytest.approx(m + 10, abs=1e-6) and (hi2 - lo2) == pytest.approx(hi - lo, abs=1e-6)


@settings(max_examples=200, deadline=None)
@given(st.lists(finite, min_size=2, max_size=8), st.lists(finite, min_size=2, max_size=8))
def test_welch_is_antisymmetric(a, b):
    d, lo, hi = welch_interval(a, b)
    d2, lo2, hi2 = welch_interval(b, a)
    assert d == pytest.approx(-d2, abs=1e-6) and lo == pytest.approx(-hi2, abs=1e-6)
    assert lo <= d + 1e-9 <= hi + 2e-9


@settings(max_examples=200, deadline=None)
@given(finite, finite, finite)
def test_status_is_one_of_three_and_mirrors(lo, width, thr):
    lo, hi = lo, lo + abs(width)
    s = status(lo, hi, thr)
    assert s in ("reproduced", "not_reproduced", "inconclusive")
    flipped = {"reproduced": "not_reproduced", "not_reproduced": "reproduced", "inconclusive": "inconclusive"}
    assert status(lo, hi, thr, "below") == flipped[s] or lo == thr or hi == thr


def _fake_run(d, length, acc=0.5):
    d.mkdir(parents=True)
    (d / "eval.json").write_text(json.dumps({"metrics": {"len/mean": length, "acc": acc, "note": "x"}, "records": []}))
    return str(d)


def test_verdict_command_judges_two_recipes_over_seeds(tmp_path, capsys):
    from lengthrl.cli import main

    a = [_fake_run(tmp_path / f"g{s}", x) for s, x in enumerate((30, 31, 29, 30))]
    b = [_fake_run(tmp_path / f"l{s}", x) for s, x in enumerate((40, 42, 41, 39))]
    out = tmp_path / "v.json"
    assert main(["verdict", *a, "--vs", *b, "--metric", "len/mean", "--claim", "LUSPO longer", "--out",
                 str(out)]) == 0
    assert capsys.readouterr().out.startswith("reproduced: LUSPO longer")
    v = json.loads(out.read_text())
    assert v["n_seeds"] == 4 and v["estimate"] == pytest.approx(10.5) and v["per_seed"]["vs"] == [40, 42, 41, 39]
    assert main(["verdict", *a, "--metric", "acc", "--threshold", "0.6"]) == 0
    assert capsys.readouterr().out.startswith("not_reproduced")  # all equal: interval [0.5, 0.5] < 0.6


def test_verdict_command_errors_name_the_fix(tmp_path, capsys):
    from lengthrl.cli import main

    a = [_fake_run(tmp_path / f"g{s}", 30 + s) for s in range(2)]
    assert main(["verdict", *a, "--metric", "len/nope"]) == 2
    err = capsys.readouterr().err
    assert "--metric 'len/nope'" in err and "len/mean" in err and "Traceback" not in err
    assert main(["verdict", str(tmp_path / "missing"), *a]) == 2
    assert "has no eval.json" in capsys.readouterr().err
    assert main(["verdict", a[0]]) == 2
    assert ">= 2 seeds" in capsys.readouterr().err


def test_verdict_slope_of_a_training_metric(tmp_path, capsys):
    from lengthrl.analysis.verdict_cli import run_slope
    from lengthrl.cli import main

    def run(name, slope, noise):
        d = tmp_path / name
        d.mkdir()
        rows = [{"step": t, "len/wrong_mean": 20 + slope * t + noise[t % 3]} for t in range(12)]
        rows.insert(5, {"step": 99, "acc": 1.0})  # a row without the metric is left out
        (d / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
        return str(d)

    # y = 20 + 2 t exactly: slope 2; with zero-mean noise of period 3 over 12 steps the fit stays near 2
    assert run_slope(run("exact", 2.0, (0, 0, 0)), "len/wrong_mean") == pytest.approx(2.0)
    assert run_slope(run("from", 2.0, (0, 0, 0)), "len/wrong_mean", from_step=6) == pytest.approx(2.0)
    grpo = [run(f"g{s}", 1.0 + 0.1 * s, (0.5, -0.5, 0)) for s in range(4)]
    dr = [run(f"d{s}", 0.05 * s, (0.3, 0, -0.3)) for s in range(4)]
    assert main(["verdict", *dr, "--vs", *grpo, "--slope", "len/wrong_mean"]) == 0
    assert capsys.readouterr().out.startswith("reproduced")
    assert main(["verdict", *dr, "--slope", "len/nope"]) == 2
    assert "a slope needs >= 2" in capsys.readouterr().err
