"""The dllm_fork task (hand-checked samples, scoring, splits, knob errors), the fork property on a hand-made
masked LM (AR order explores the fork, confidence order commits the likelier path), and `lengthrl dllm fork`
end to end on micro settings."""

import json

import pytest
import torch

import lengthrl.cli
from lengthrl.dllm.fork import fork_verdicts, per_seed_values
from lengthrl.dllm.model import char_tokenizer
from lengthrl.dllm.passk import correct_counts
from lengthrl.dllm.toytask import ForkTask
from lengthrl.errors import ConfigError
from lengthrl.tasks import TASKS, get_task
from lengthrl.tasks.base import Sample


def test_fork_task_samples_by_hand():
    t = get_task("dllm_fork", options=2, digits=3)
    assert isinstance(t, ForkTask) and "dllm_fork" in TASKS
    for s in t.samples("train", n=300, seed=1) + t.samples("test", n=100, seed=1):
        head, nums = s.prompt[:4], s.prompt[4:-1].split(" ")
        assert head == "max " and s.prompt.endswith("=") and [x[0] for x in nums] == ["a", "b"]
        values = [int(x[1:]) for x in nums]
        assert all(100 <= v <= 999 for v in values) and values[0] != values[1] and values == s.meta["numbers"]
        best = "ab"[values.index(max(values))]
        assert s.answer == s.solution == f"{best}{max(values)}"  # the fork letter, then that option's digits
        assert s.meta["close"] == (str(values[0])[0] == str(values[1])[0])
    close = [s.meta["close"] for s in t.samples("train", n=400)]
    assert 0.35 < sum(close) / len(close) < 0.65  # close_fraction 0.5 (plus the far pairs that tie by chance)
    three = get_task("dllm_fork", options=3, digits=2, close_fraction=1.0).samples("test", n=20)
    assert all(s.prompt.count(" ") == 3 and s.answer[0] in "abc" and s.meta["close"] for s in three)


def test_fork_task_scoring_and_splits():
    t = ForkTask()
    s = Sample(id="x", prompt="max a449 b469=", answer="b469", solution="b469")
    assert t.score(s, "b469").correct and t.score(s, " b469 ").correct
    for wrong in ("a449", "a469", "b449", "b46", "469", ""):
        sc = t.score(s, wrong)
        assert not sc.correct and sc.reward == 0.0
    assert t.score(s, "a449").format_ok and not t.score(s, "469").format_ok
    tr, te = {x.id for x in t.samples("train")}, {x.id for x in t.samples("test")}
    assert len(tr) == 2000 and len(te) == 200 and not tr & te
    assert [x.id for x in t.samples("test", n=5, seed=3)] == [x.id for x in t.samples("test", n=5, seed=3)]
    for bad in (dict(options=1), dict(digits=4), dict(close_fraction=1.5), dict(test_fraction=0.0)):
        with pytest.raises(ConfigError, match="dllm_fork"):
            ForkTask(**bad)
    with pytest.raises(ConfigError, match="split"):
        t.samples("dev")


class _ForkLM(torch.nn.Module):
    """A hand-made masked LM for prompt 'max a1 b2=' on a 3-position canvas: at every masked position it puts
    0.7 on path a ('a', '1', EOS) and 0.3 on path b ('b', '2', EOS); once a letter or digit is committed the
    other masked positions follow its path (a consistent joint: the fork and the digit always agree)."""

    def __init__(self, tok, p_a=0.7):
        super().__init__()
        self.tok, self.p_a = tok, p_a
        self.ids = {c: tok.convert_tokens_to_ids(c) for c in "ab12"}

    def forward(self, input_ids, attention_mask=None, **_):
        B, n = input_ids.shape
        resp = input_ids[:, n - 3:]
        on_a = ((resp == self.ids["a"]) | (resp == self.ids["1"])).any(1)
        on_b = ((resp == self.ids["b"]) | (resp == self.ids["2"])).any(1)
        pa = torch.where(on_a, 1.0, torch.where(on_b, 0.0, self.p_a))[:, None]  # [B, 1]
        logits = torch.full((B, n, len(self.tok)), -30.0)
        for j, (x, y) in enumerate((("a", "b"), ("1", "2"))):
            logits[:, n - 3 + j, self.ids[x]] = pa.clamp(min=1e-9).log()[:, 0]
            logits[:, n - 3 + j, self.ids[y]] = (1 - pa).clamp(min=1e-9).log()[:, 0]
        logits[:, n - 1, self.tok.eos_token_id] = 0.0
        return type("Out", (), {"logits": logits})()


def test_fork_property_ar_explores_confidence_commits_the_likelier_path():
    """AR order draws the fork at its own probability (0.3 for path b); confidence order commits the most probable
    drawn token first, so path b survives only when both its letter and its digit were drawn (about 0.3^2)."""
    tok = char_tokenizer()
    lm, task = _ForkLM(tok), ForkTask(options=2, digits=1)
    s = Sample(id="f", prompt="max a1 b2=", answer="b2", solution="b2")
    n = 2000
    frac = {}
    for order in ("ar", "confidence"):
        counts, _ = correct_counts(lm, tok, task, [s], order, n, 3, generator=torch.Generator().manual_seed(0))
        frac[order] = counts[0] / n
    assert frac["ar"] == pytest.approx(0.3, abs=0.04)
    assert frac["confidence"] == pytest.approx(0.09, abs=0.03)


def _res(b_ar, b_conf, a_ar, a_conf):
    mk = lambda c: {"passk": {"1": c[0], "4": c[1]}}  # noqa: E731
    return {"config": {"ks": [1, 4]}, "before": {"sampling": {"ar": mk(b_ar), "confidence": mk(b_conf)},
                                                 "greedy": [{"accuracy": 0.5}]},
            "after": {"sampling": {"ar": mk(a_ar), "confidence": mk(a_conf)}, "greedy": [{"accuracy": 0.6}]},
            "train_summary": {"acc_first_2_steps": 0.4, "acc_last_2_steps": 0.5, "seconds": 3.0},
            "seconds_total": 9.0}


def test_fork_verdicts_by_hand():
    per = [per_seed_values(_res((0.5, 0.9), (0.6, 0.8), (0.6, 0.95), (0.7, 0.9))),
           per_seed_values(_res((0.4, 0.8), (0.5, 0.6), (0.42, 0.8), (0.5, 0.7)))]
    assert per[0]["gap_before"] == pytest.approx(0.1) and per[1]["gap_before"] == pytest.approx(0.2)
    assert per[0]["ar_pass1_gain"] == pytest.approx(0.1) and per[1]["ar_pass1_gain"] == pytest.approx(0.02)
    v = fork_verdicts(per, [0, 1], 4)
    assert [x.estimate for x in v] == pytest.approx([0.15, 0.075, 0.06])
    # n = 2: t = 12.706, sd of (0.1, 0.2) = 0.0707, half-width 12.706 * 0.05 = 0.635 -> straddles 0
    assert v[0].ci == pytest.approx([0.15 - 0.6353, 0.15 + 0.6353], abs=1e-3) and v[0].status == "inconclusive"


def test_cli_dllm_fork_micro_run(tmp_path):
    out = tmp_path / "fork"
    rc = lengthrl.cli.main(["dllm", "fork", "--out", str(out), "--seeds", "0,1", "--pretrain-steps", "2",
                            "--n", "2", "--ks", "1,2", "--test-prompts", "2", "--task-arg", "digits=2",
                            "--set", "steps=1", "--set", "group_size=2", "--set", "prompts_per_step=2",
                            "--threads", "1", "--quiet"])
    assert rc == 0
    summary = json.loads((out / "summary.json").read_text())
    assert [p["seed"] for p in summary["per_seed"]] == [0, 1] and len(summary["verdicts"]) == 3
    assert all(v["n_seeds"] == 2 and v["status"] in ("reproduced", "not_reproduced", "inconclusive")
               for v in summary["verdicts"])
    res = json.loads((out / "seed1" / "results.json").read_text())
    assert res["config"]["train"]["task"] == "dllm_fork" and res["config"]["train"]["task_args"]["digits"] == 2
    assert res["config"]["train"]["max_new_tokens"] == 4  # letter, two digits, EOS
    assert (out / "fork.png").stat().st_size > 0 and "verdicts" in (out / "fork.md").read_text()


def test_fork_drops_an_organism_of_other_knobs(tmp_path):
    from lengthrl.dllm.fork import _forget_other_task

    seed = tmp_path / "seed0"
    _forget_other_task(seed, {"digits": 2})
    (seed / "organism").mkdir()
    _forget_other_task(seed, {"digits": 2})
    assert (seed / "organism").is_dir()  # same knobs: kept for reuse
    _forget_other_task(seed, {"digits": 3})
    assert not (seed / "organism").exists()


def test_cli_dllm_fork_bad_input(capsys):
    assert lengthrl.cli.main(["dllm", "fork", "--n", "4", "--ks", "1,8"]) == 2
    assert "--ks" in capsys.readouterr().err
