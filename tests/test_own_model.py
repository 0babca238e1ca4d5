"""A user's own model the way a TRL user expects (issue items: chat templates, the report's length panels, lazy
CLI and `compare`, max_prompt_length, custom reward functions, the Python API, `lengthrl sft`)."""

import json

import numpy as np
import pytest

from lengthrl.eval.metrics import aes, summarize
from lengthrl.eval.records import EvalRecord, EvalResult, save_eval


def _eval_file(path, task, prompts, acc, length, n=4, seed=0):
    rng = np.random.default_rng(seed)
    recs = [EvalRecord(prompt_id=p, sample_idx=j, length=int(rng.integers(length - 5, length + 6)),
                       correct=bool(rng.random() < acc)) for p in prompts for j in range(n)]
    save_eval(EvalResult(model=str(path), task=task, n_samples=n, metrics=summarize(recs, [1]), records=recs), path)
    return path


# ------------------------------------------------------------------ 8. compare: prompt sets and AES intervals

def test_compare_gives_an_aes_interval_around_the_point_value(tmp_path):
    from lengthrl.analysis.compare import compare_runs
    from lengthrl.analysis.runs import load_run

    ids = [f"q{i}" for i in range(40)]
    a = _eval_file(tmp_path / "a.json", "count_letters", ids, 0.5, 60, seed=1)
    b = _eval_file(tmp_path / "b.json", "count_letters", ids, 0.6, 40, seed=2)
    res = compare_runs([load_run(a), load_run(b)])
    t = res["table"]
    lo, hi, point = t["aes_ci95_lo"][1], t["aes_ci95_hi"][1], t["aes_vs_first"][1]
    assert lo < point < hi and hi - lo > 0.05  # 40 prompts x 4 samples: a real spread
    assert t["aes_ci95_lo"][0] is None and res["warnings"] == []


def test_aes_interval_is_paired_on_shared_prompts():
    from lengthrl.analysis.compare import aes_interval

    # the same responses for both: every paired resample gives AES exactly 0
    recs = [EvalRecord(prompt_id=f"q{i}", sample_idx=0, length=10 + i, correct=i % 2 == 0) for i in range(20)]
    assert aes_interval(recs, recs) == (0.0, 0.0)
    # a baseline that is never right: AES is undefined, no interval
    wrong = [EvalRecord(prompt_id=r.prompt_id, sample_idx=0, length=5, correct=False) for r in recs]
    assert aes_interval(recs, wrong) == (None, None)
    assert aes(0.5, 14.5, 0.5, 14.5) == 0.0


def test_compare_warns_on_different_prompt_sets(tmp_path, capsys):
    from lengthrl.analysis.compare import compare_runs, print_comparison
    from lengthrl.analysis.runs import load_run

    a = _eval_file(tmp_path / "a.json", "count_letters", [f"q{i}" for i in range(30)], 0.5, 50)
    b = _eval_file(tmp_path / "b.json", "arith_chain", [f"q{i}" for i in range(10, 40)], 0.5, 50)
    res = compare_runs([load_run(a), load_run(b)])
    assert any("different prompt sets (20 shared, 10 only in b, 10 only in a)" in w for w in res["warnings"])
    assert any("task 'arith_chain'" in w for w in res["warnings"])
    lo, hi = res["table"]["aes_ci95_lo"][1], res["table"]["aes_ci95_hi"][1]
    assert lo is not None and lo < hi  # unpaired bootstrap still gives an interval
    print_comparison(res)
    assert "warning: b and a were evaluated on different prompt sets" in capsys.readouterr().out
