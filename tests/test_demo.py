"""The demo pipeline end to end on a micro model (the real demo uses the organism; see `make demo`)."""

import json

import pytest

from lengthrl.demo import run_demo, verdicts
from lengthrl.models import save_tiny_random_model


def v_len(d):
    return json.loads((d / "eval.json").read_text())["metrics"]["len/mean"]


def test_demo_writes_report_summary_and_audit(tmp_path):
    d = save_tiny_random_model(tmp_path / "m", arch="qwen2", hidden_size=32, num_layers=1, num_heads=2,
                               num_kv_heads=1, intermediate_size=64, max_position_embeddings=128)
    extra = ["prompts_per_step=2", "group_size=4", "max_new_tokens=12", "train_prompts=16", "checkpoint_every=0",
             "log_every=0"]
    s = run_demo(tmp_path / "demo", steps=2, eval_prompts=4, seed=(0, 1), model=str(d), extra=extra,
                 progress=False)
    out = tmp_path / "demo"
    assert set(s["results"]) == {"sft", "gspo", "luspo", "dler"} and s["seeds"] == [0, 1]
    assert (out / "luspo-seed1" / "eval.json").exists()
    for name in ("gspo", "luspo", "dler"):  # held-out records pooled: 2 seeds x 4 prompts x 4 samples
        assert s["results"][name]["n_records"] == 2 * 4 * 4
    for name in ("sft", "gspo", "luspo", "dler"):
        assert json.loads((out / name / "eval.json").read_text())["metrics"]["n_prompts"] == 4
    assert (out / "report.html").read_text().count("data:image/png;base64") >= 3
    md = (out / "report.md").read_text()
    assert "Does the organism reproduce" in md and "LUSPO ends with longer responses" in md
    summary = json.loads((out / "summary.json").read_text())
    assert summary["verdicts"] == s["verdicts"] and len(summary["verdicts"]) == 3
    for v in summary["verdicts"]:
        assert v["status"] in ("reproduced", "not_reproduced", "inconclusive") and v["n_seeds"] == 2
        assert v["ci"][0] <= v["estimate"] <= v["ci"][1] and len(v["ci"]) == 2
    assert summary["per_seed"]["luspo"][1]["len/mean"] == v_len(out / "luspo-seed1")
    assert (out / "sft-seed1" / "eval.json").exists()
    assert (out / "audit.png").exists()


def test_verdicts_are_judged_over_seeds():
    def m(acc, length):
        return {"acc": acc, "len/mean": length}

    seeds = (0, 1, 2, 3)
    base = [m(0.5, 100.0)] * 4
    per = {"sft": base, "gspo": [m(0.5, x) for x in (50, 52, 48, 51)],
           "luspo": [m(0.6, x) for x in (80, 79, 83, 81)], "dler": [m(a, 40.0 + i) for i, a in enumerate((.49, .5, .52, .5))]}
    v = verdicts(per, seeds)
    assert [x.status for x in v] == ["reproduced", "reproduced", "reproduced"]
    assert v[0].n_seeds == 4 and v[0].per_seed["luspo"] == [80, 79, 83, 81] and v[0].ci[0] > 0
    assert v[1].per_seed == pytest.approx([0.60, 0.59, 0.58, 0.57])
    # GSPO longer on every seed: not reproduced; DLER losing 0.3 accuracy: not reproduced
    per2 = {**per, "gspo": [m(0.5, x) for x in (90, 92, 88, 91)], "dler": [m(0.2, 40.0), m(0.21, 41), m(0.19, 40),
                                                                           m(0.2, 42)]}
    v = verdicts(per2, seeds)
    assert v[0].status == "not_reproduced" and v[2].status == "not_reproduced" and v[1].status == "reproduced"
    # a difference inside the run-to-run spread is inconclusive, however many eval samples each run had
    per3 = {"gspo": [m(0.5, x) for x in (28, 30, 27, 29)], "luspo": [m(0.5, x) for x in (31, 26, 29, 28.5)]}
    assert verdicts(per3, seeds)[0].status == "inconclusive"


def test_runs_side_by_side_give_the_same_figures(tmp_path):
    """`jobs=2` trains the independent runs in two processes, each with one torch thread: every per-seed held-out
    figure equals the one-process demo's."""
    d = save_tiny_random_model(tmp_path / "m", arch="qwen2", hidden_size=32, num_layers=1, num_heads=2,
                               num_kv_heads=1, intermediate_size=64, max_position_embeddings=128)
    extra = ["prompts_per_step=2", "group_size=2", "max_new_tokens=8", "train_prompts=8", "checkpoint_every=0",
             "log_every=0"]
    one, two = (run_demo(tmp_path / f"demo{j}", steps=1, eval_prompts=2, seed=(0, 1), model=str(d), runs=("gspo",),
                         extra=extra, progress=False, jobs=j) for j in (1, 2))
    assert one["per_seed"] == two["per_seed"] and two["jobs"] == 2
    assert "threads=1" in two["overrides"] and set(two["per_seed"]) == {"sft", "gspo"}
