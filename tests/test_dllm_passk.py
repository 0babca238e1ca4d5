"""pass@k estimator, estimator-bias report, and the `lengthrl dllm passk` command end to end (micro settings)."""

import json
from math import comb

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import lengthrl.cli
from lengthrl.dllm.bias import estimator_bias
from lengthrl.dllm.model import TinyDiffusionConfig, char_tokenizer, tiny_diffusion_model
from lengthrl.dllm.passk import pass_at_k, passk_curve
from lengthrl.dllm.toytask import AdditionTask
from lengthrl.errors import ConfigError


def test_pass_at_k_hand_values():
    assert pass_at_k(4, 1, 1) == pytest.approx(0.25)
    assert pass_at_k(4, 1, 2) == pytest.approx(1 - comb(3, 2) / comb(4, 2))  # 0.5
    assert pass_at_k(5, 0, 3) == 0.0
    assert pass_at_k(5, 3, 3) == 1.0  # n - c < k
    assert passk_curve([0, 2, 4], 4, [1, 4]) == pytest.approx({1: 0.5, 4: 2 / 3})
    for bad in ((0, 0, 1), (4, 5, 1), (4, 1, 5), (4, 1, 0)):
        with pytest.raises(ConfigError, match="pass_at_k"):
            pass_at_k(*bad)
    with pytest.raises(ConfigError):
        passk_curve([], 4, [1])


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 30), data=st.data())
def test_pass_at_k_matches_binomial_form_and_is_monotone(n, data):
    c = data.draw(st.integers(0, n))
    vals = [pass_at_k(n, c, k) for k in range(1, n + 1)]
    for k, v in zip(range(1, n + 1), vals):
        assert v == pytest.approx(1 - comb(n - c, k) / comb(n, k), abs=1e-12)
    assert all(a <= b + 1e-12 for a, b in zip(vals, vals[1:]))
    assert vals[0] == pytest.approx(c / n)


def test_estimator_bias_reports_each_estimator():
    tok = char_tokenizer()
    m = tiny_diffusion_model(tok, TinyDiffusionConfig(hidden_size=32, intermediate_size=64), seed=0)
    g = torch.Generator().manual_seed(0)
    pids = torch.randint(4, len(tok), (3, 4), generator=g)
    rids = torch.randint(4, len(tok), (3, 5), generator=g)
    rmask = torch.tensor([[1] * 5, [1] * 3 + [0] * 2, [1] + [0] * 4])
    out = estimator_bias(m, pids, None, rids, rmask, tok.mask_token_id, names=("exact", "mean_field"))
    assert out["exact"]["mae_seq"] == pytest.approx(0.0, abs=1e-6)
    assert out["mean_field"]["mae_seq"] > 0  # context matters for t >= 1
    assert out["mean_field"]["mae_seq"] >= abs(out["mean_field"]["bias_seq"]) - 1e-9


def test_addition_task_splits_are_disjoint():
    t = AdditionTask(max_operand=9)
    tr, te = {s.id for s in t.samples("train")}, {s.id for s in t.samples("test")}
    assert len(tr) + len(te) == 100 and not tr & te
    s = t.samples("test", n=1)[0]
    assert t.score(s, s.answer).correct and not t.score(s, s.answer + "1").correct
    with pytest.raises(ConfigError, match="split"):
        t.samples("dev")


def test_cli_dllm_passk_micro_run(tmp_path, capsys):
    """`lengthrl dllm passk` builds an organism and trains it through the trainer (checkpoints, metrics.jsonl)."""
    out = tmp_path / "run"
    rc = lengthrl.cli.main(["dllm", "passk", "--out", str(out), "--max-operand", "3", "--pretrain-steps", "10",
                            "--n", "4", "--ks", "1,2,4", "--grpo-steps", "2", "--group-size", "2",
                            "--prompts-per-step", "2", "--set", "checkpoint_every=1", "--quiet"])
    assert rc == 0
    res = json.loads((out / "results.json").read_text())
    for when in ("before", "after"):
        for order in ("ar", "confidence"):
            curve = res[when]["sampling"][order]["passk"]
            vals = [curve[k] for k in ("1", "2", "4")]
            assert all(0 <= v <= 1 for v in vals) and vals == sorted(vals)
    assert res["train_summary"]["steps"] == 2 and [r["step"] for r in res["train_metrics"]] == [1, 2]
    assert res["config"]["train"]["policy"] == "diffusion" and res["config"]["train"]["group_size"] == 2
    assert res["config"]["train"]["model"] == str(out / "organism") and res["config"]["train"]["train_prompts"] == 12
    assert len((out / "train" / "metrics.jsonl").read_text().splitlines()) == 2
    assert (out / "train" / "final" / "config.json").is_file() and (out / "passk.png").stat().st_size > 0
    assert "pass@4" in (out / "passk.md").read_text() and "pass@4" in capsys.readouterr().out
    rc = lengthrl.cli.main(["dllm", "passk", "--out", str(out), "--ks", "1,32", "--n", "4"])
    assert rc == 2  # ConfigError -> message, no traceback
    rc = lengthrl.cli.main(["dllm", "passk", "--out", str(out), "--task", "no_such_task", "--n", "4", "--ks", "1"])
    assert rc == 2 and "task" in capsys.readouterr().err
