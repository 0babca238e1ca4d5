"""Budget forcing at evaluation: a scripted engine gives hand-computed curves; a real tiny model through the
rollout engine is cut at exactly B tokens and keeps the answer cue; the CLI draws curves for two models."""

import json

import pytest
import torch

from lengthrl.errors import ConfigError
from lengthrl.eval.budget import (BudgetPoint, budget_curve, cue_token_ids, force_budget, knee, parse_budgets)
from lengthrl.models import build_char_tokenizer, load_policy, save_tiny_random_model
from lengthrl.rollout import HFEngine, SamplingParams
from lengthrl.rollout.types import RolloutBatch
from lengthrl.tasks.base import Sample, Score, Task
from lengthrl.tasks.procedural import extract_answer

TOK = build_char_tokenizer()
EOS = TOK.eos_token_id
CUE = cue_token_ids(TOK, "\n<answer>")


def enc(text):
    return TOK(text, add_special_tokens=False)["input_ids"]


class ScriptedEngine:
    """Prompt "k\\n" -> the response "." * k + "\\n<answer>7</answer>" + EOS (k + 20 tokens). Once the answer
    is open (the context holds "\\n<answer>"), it finishes "\\n<answer>X</answer>" with X = "7" when at least
    min(k, 8) dots of reasoning were seen, else "0" (so accuracy grows with the budget)."""

    def generate(self, prompt_ids, n, params):
        rows = []
        for p in prompt_ids:
            text = TOK.decode(p, skip_special_tokens=True)
            k = int(text.split("\n")[0])
            if "\n<answer>" in text:
                x = "7" if text.count(".") >= min(k, 8) else "0"
                tail, target = text[text.rfind("\n<answer>"):], f"\n<answer>{x}</answer>"
                full = enc(target[len(tail):] if target.startswith(tail) else x + "</answer>") + [EOS]
            else:
                full = enc("." * k + "\n<answer>7</answer>") + [EOS]
            rows += [full] * n
        T = params.max_new_tokens
        cut = [r[:T] for r in rows]
        width = max(len(r) for r in cut)
        ids = torch.zeros(len(cut), width, dtype=torch.long)
        for i, r in enumerate(cut):
            ids[i, :len(r)] = torch.tensor(r)
        lengths = torch.tensor([len(r) for r in cut])
        B = len(cut)
        return RolloutBatch(prompt_ids=torch.ones(B, 1, dtype=torch.long),
                            prompt_mask=torch.ones(B, 1, dtype=torch.long),
                            response_ids=ids, response_mask=(torch.arange(width)[None] < lengths[:, None]).long(),
                            logp=torch.zeros(B, width), lengths=lengths,
                            truncated=torch.tensor([r[-1] != EOS for r in cut]), group_index=torch.arange(B) // n)


class Seven(Task):
    name = "seven"

    def __init__(self, ks):
        self.ks = ks

    def samples(self, split="test", n=None, seed=0):
        return [Sample(id=f"p{k}", prompt=f"{k}\n", answer="7") for k in self.ks]

    def score(self, sample, response):
        got = extract_answer(response)
        return Score(correct=got == sample.answer, reward=float(got == sample.answer), extracted=got)


def test_scripted_cut_is_exact_and_keeps_the_cue():
    prompts = [TOK(f"{k}\n")["input_ids"] for k in (20, 2, 4)]
    fb = force_budget(ScriptedEngine(), prompts, 1, SamplingParams(temperature=0), budget=24, cue_ids=CUE,
                      answer_tokens=16)
    texts = fb.texts(TOK)
    # k=20 runs 40 tokens: cut; k=2 ends at 22; k=4 ends with its EOS at exactly 24 tokens: not cut
    assert fb.forced == [True, False, False] and fb.cue_added == [True, False, False]
    assert fb.thinking == [24, 22, 24]
    assert fb.tokens[0][:24] == enc("." * 20 + "\n<an") and fb.tokens[0][24:24 + len(CUE)] == CUE
    assert texts[0] == "." * 20 + "\n<an\n<answer>7</answer>"
    assert fb.lengths[0] == 24 + len(CUE) + len(enc("7</answer>")) + 1
    assert texts[1] == "..\n<answer>7</answer>" and fb.truncated == [False] * 3


def test_scripted_cut_inside_an_open_answer_adds_no_second_cue():
    fb = force_budget(ScriptedEngine(), [TOK("0\n")["input_ids"]], 2, SamplingParams(temperature=0), budget=12,
                      cue_ids=CUE)
    assert fb.forced == [True, True] and fb.cue_added == [False, False]
    assert fb.texts(TOK) == ["\n<answer>7</answer>"] * 2 and fb.thinking == [12, 12]


def test_scripted_curve_by_hand():
    """k = 2, 6, 10, 30; natural length k + 20. B=4: all cut after min(k, 4) dots; only k=2 has seen its 2
    dots -> acc 0.25. B=12: all cut; dots seen min(k, 12) >= min(k, 8) for every k -> acc 1 (k=2 is cut
    inside its open answer and just finishes it). B=64: all finish on their own -> acc 1, none cut."""
    pts = budget_curve(ScriptedEngine(), Seven([2, 6, 10, 30]), [64, 4, 12], SamplingParams(temperature=0),
                       tokenizer=TOK)
    assert [p.budget for p in pts] == [4, 12, 64]
    assert [p.acc for p in pts] == [0.25, 1.0, 1.0]
    assert [p.forced_frac for p in pts] == [1.0, 1.0, 0.0]
    assert pts[0].thinking_mean == 4 and pts[2].thinking_mean == pytest.approx((22 + 26 + 30 + 50) / 4)
    assert knee(pts) == 12


def test_real_tiny_model_cut_at_exactly_b(tmp_path):
    d = save_tiny_random_model(tmp_path / "m", arch="qwen2", hidden_size=32, num_layers=1, num_heads=2,
                               num_kv_heads=1, intermediate_size=64, max_position_embeddings=128)
    model, tok = load_policy(d)
    engine = HFEngine(model, tok)
    prompts = [tok("left to right: 3+4\n")["input_ids"], tok("left to right: 1+2\n")["input_ids"]]
    params = SamplingParams(temperature=1.0, seed=5)
    B = 6
    plain = engine.generate(prompts, 3, SamplingParams(temperature=1.0, seed=5, max_new_tokens=B))
    fb = force_budget(engine, prompts, 3, params, budget=B, cue_ids=CUE, answer_tokens=4)
    assert fb.forced == plain.truncated.tolist() and any(fb.forced)
    for r, toks in enumerate(fb.tokens):
        first = plain.response_token_lists()[r]
        if fb.forced[r]:
            assert toks[:B] == first and len(first) == B  # cut at exactly B tokens
            assert toks[B:B + len(CUE)] == CUE  # then the cue
            assert B + len(CUE) < len(toks) <= B + len(CUE) + 4
            assert "\n<answer>" in fb.texts(tok)[r]
        else:
            assert toks == first


def test_budget_argument_errors():
    with pytest.raises(ConfigError, match="--budgets"):
        parse_budgets("16,abc")
    with pytest.raises(ConfigError, match="--budgets"):
        parse_budgets("0,16")
    assert parse_budgets("64, 16,32,16") == [16, 32, 64]
    with pytest.raises(ConfigError, match="budget"):
        force_budget(ScriptedEngine(), [[2]], 1, SamplingParams(), budget=0, cue_ids=CUE)
    with pytest.raises(ConfigError, match="answer-tokens"):
        force_budget(ScriptedEngine(), [[2]], 1, SamplingParams(), budget=3, cue_ids=CUE, answer_tokens=0)
    with pytest.raises(ConfigError, match="answer-cue"):
        cue_token_ids(TOK, "")


def test_knee():
    pts = [BudgetPoint(b, a, 0, 0, 0, 1) for b, a in ((8, 0.2), (16, 0.6), (32, 0.705), (64, 0.71))]
    assert knee(pts) == 32 and knee(pts, tol=0.0) == 64 and knee([]) is None
    assert knee([BudgetPoint(8, 0.0, 0, 0, 0, 1), BudgetPoint(16, 0.0, 0, 0, 0, 1)]) is None


def test_cli_two_models(tmp_path, capsys):
    from lengthrl.cli import main

    dirs = [str(save_tiny_random_model(tmp_path / f"m{i}", arch="qwen2", seed=i, hidden_size=32, num_layers=1,
                                       num_heads=2, num_kv_heads=1, intermediate_size=64,
                                       max_position_embeddings=128)) for i in range(2)]
    out = tmp_path / "curves.json"
    rc = main(["eval", "--model", *dirs, "--task", "arith_chain", "--prompts", "3", "--temperature", "0",
               "--budgets", "4,8", "--answer-tokens", "3", "--out", str(out), "--no-progress"])
    assert rc == 0
    data = json.loads(out.read_text())
    assert list(data) == dirs and [p["budget"] for p in data[dirs[0]]] == [4, 8]
    for pts in data.values():
        for p in pts:
            assert p["n"] == 3 and all(r["thinking"] <= p["budget"] for r in p["records"])
            assert all(r["response"].count("<answer>") >= 1 for r in p["records"] if r["forced"])
    assert out.with_suffix(".png").stat().st_size > 1000
    assert main(["eval", "--model", *dirs, "--task", "arith_chain", "--prompts", "3", "--no-progress"]) == 2
    assert "several together with --budgets" in capsys.readouterr().err
