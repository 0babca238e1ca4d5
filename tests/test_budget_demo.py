"""`lengthrl demo-budget` end to end on a micro random model (2 steps per run), and its pure helpers by hand."""

import json

import pytest

from lengthrl.control.demo import aimed_config, report_table, summarize_run
from lengthrl.models import save_tiny_random_model


def test_summarize_run_by_hand():
    rows = [{"step": i + 1, "len/mean": L, "acc": a} for i, (L, a) in
            enumerate([(60, 0.2), (50, 0.4), (40, 0.5), (30, 0.5), (34, 0.6), (38, 0.7), (36, 0.7)])]
    s = summarize_run(rows, budget=40, window=3, smooth=3)
    # moving averages (3): 60, 55, 50, 40 -> first <= 40 at step 4
    assert s["steps_to_budget"] == 4
    assert s["final_len"] == pytest.approx((34 + 38 + 36) / 3) and s["final_acc"] == pytest.approx(2 / 3)
    assert s["rel_gap"] == pytest.approx((36 - 40) / 40)
    assert summarize_run(rows[:2], budget=40)["steps_to_budget"] is None


def test_aimed_config_sets_the_length_knobs():
    cfg, note = aimed_config("dler", 24, [])
    assert [t["max_len"] for t in cfg.reward if t["name"] == "dler"] == [24] and "max_len=24" in note
    cfg, note = aimed_config("l1_exact", 24, [])
    assert [t["target"] for t in cfg.reward if t["name"] == "l1_exact"] == [24]
    cfg, note = aimed_config("lagrangian", 24, ["lagrange_lr=0.3"])
    assert cfg.length_budget == 24 and cfg.lagrange_lr == 0.3
    cfg, note = aimed_config("kimi", 24, [])
    assert cfg.length_budget is None and "no length knob" in note


def test_demo_end_to_end_on_a_micro_model(tmp_path):
    from lengthrl.control.demo import run_budget_demo

    d = save_tiny_random_model(tmp_path / "m", arch="qwen2", hidden_size=32, num_layers=1, num_heads=2,
                               num_kv_heads=1, intermediate_size=64, max_position_embeddings=160)
    sets = ["prompts_per_step=2", "group_size=2", "max_new_tokens=10", "train_prompts=16", "checkpoint_every=0",
            "sample_every=0"]
    summary = run_budget_demo(tmp_path / "out", budget=6, model=str(d), steps=2, eval_prompts=2, seed=(0, 1),
                              runs=("lagrangian", "dler"), curve_budgets=(4, 8), extra=sets, progress=False)
    assert set(summary) == {"start", "lagrangian", "dler"}
    lag = summary["lagrangian"]
    assert lag["final_lambda"] > 0  # a random model writes ~10 tokens against a budget of 6
    assert set(summary["dler"]["forced_acc"]) == {4, 8}
    for f in ("budget_report.md", "budget_training.png", "budget_curves.png", "budget_curves.json"):
        assert (tmp_path / "out" / f).stat().st_size > 100
    report = (tmp_path / "out" / "budget_report.md").read_text()
    assert "| lagrangian | length_budget=6 |" in report and "dler.max_len=6" in report
    data = json.loads((tmp_path / "out" / "budget_summary.json").read_text())
    assert data["budget"] == 6 and data["seeds"] == [0, 1]
    assert (tmp_path / "out" / "dler-seed1" / "eval.json").exists()
    assert [len(data["per_seed"][n]) for n in ("lagrangian", "dler")] == [2, 2]
    assert data["per_seed"]["dler"][0]["final_len"] == pytest.approx(summary["dler"]["final_len"])
    v = {x["claim"].split()[1]: x for x in data["verdicts"]}
    assert set(v) == {"Lagrangian", "ends"}
    for x in data["verdicts"]:
        assert x["n_seeds"] == 2 and x["status"] in ("reproduced", "not_reproduced", "inconclusive")
        assert x["ci"][0] <= x["estimate"] <= x["ci"][1]
    assert "Claims over seeds 0, 1" in report


def test_budget_verdicts_by_hand():
    from lengthrl.control.demo import budget_verdicts

    per = {"lagrangian": [{"rel_gap": g} for g in (0.02, -0.03, 0.01, 0.04)],
           "dler": [{"rel_gap": g} for g in (0.20, 0.25, 0.22, 0.3)], "kimi": [{"rel_gap": 0.5}] * 4}
    v = budget_verdicts(per, 24, (0, 1, 2, 3))
    assert [x.status for x in v] == ["reproduced", "not_reproduced"]  # kimi has no claim; l1_exact did not run
    assert v[0].per_seed == [0.02, 0.03, 0.01, 0.04] and v[1].per_seed == [0.20, 0.25, 0.22, 0.3]


def test_report_table_marks_a_run_that_never_reaches_the_budget():
    t = report_table({"x": {"aimed": "a", "final_len": 50.0, "rel_gap": 0.25, "steps_to_budget": None,
                            "final_acc": 0.5, "eval": {"acc": 0.4, "len/mean": 48.0}}}, 40)
    assert "| x | a | 50.0 | +25% | never | 0.500 | 0.400 | 48.0 | - |" in t
    t = report_table({"start": {"aimed": "s", "eval": {"acc": 0.4, "len/mean": 48.0}}}, 40)
    assert "| start | s | - | -% | - | - | 0.400 | 48.0 | - |" in t
