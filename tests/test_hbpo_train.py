"""HBPO from `lengthrl train` (arXiv 2507.15844): budget sub-groups sampled from budget prompts, the per-response
budget as the `hbpo` reward's target and the `hbpo` advantage's budget, per-budget metrics, config errors."""

from __future__ import annotations

import pytest
import torch

from lengthrl.errors import ConfigError
from lengthrl.rewards import hbpo_advantages, hbpo_budgets, length_reward
from lengthrl.train.validate import build_config
from lengthrl.train.loop import Trainer, train

G, BUDGETS, MAX_NEW = 4, [4, 8], 12


def cfg_for(model_dir, **kw):
    base = dict(model=model_dir, task="arith_chain", train_prompts=64, eval_prompts=0, prompts_per_step=3,
                group_size=G, max_new_tokens=MAX_NEW, steps=2, checkpoint_every=0, sample_every=1, log_every=0,
                lr=1e-2, loss="grpo", advantage="hbpo", hbpo_budgets=BUDGETS,
                hbpo_prompt="{prompt} within {budget} tokens:", reward=[{"name": "hbpo", "beta": 4.0}])
    return build_config(extra=base | kw)


class Recording:
    """An engine wrapper that records the prompts and n of each generate call."""

    def __init__(self, inner):
        self.inner, self.calls = inner, []

    def generate(self, prompt_ids, n, params):
        self.calls.append((prompt_ids, n))
        return self.inner.generate(prompt_ids, n, params)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def test_a_round_samples_budget_sub_groups_and_scores_them_by_budget(micro_dir, tmp_path):
    tr = Trainer(cfg_for(micro_dir), tmp_path, progress=False)
    tr.engine = Recording(tr.engine)
    rd = tr._sample_round(0)
    (prompt_ids, n), = tr.engine.calls
    assert n == G // len(BUDGETS) and len(prompt_ids) == 3 * len(BUDGETS)
    texts = [tr.tok.decode(p, skip_special_tokens=True) for p in prompt_ids]
    for i, s in enumerate(rd.sb.samples):  # each prompt under each budget, in budget order
        for j, b in enumerate(BUDGETS):
            assert texts[i * len(BUDGETS) + j] == f"{s.prompt} within {b} tokens:"
    assert rd.roll.group_index.tolist() == torch.arange(3).repeat_interleave(G).tolist()  # one group per prompt
    budgets = hbpo_budgets(3 * G, G, BUDGETS)  # [4, 4, 8, 8] per group
    assert budgets[:G].tolist() == [4, 4, 8, 8]
    want = length_reward("hbpo", rd.resp.lengths, rd.scored.correct, G, target=budgets, max_len=MAX_NEW, beta=4.0)
    assert torch.allclose(rd.scored.terms["hbpo"].double(), want.double())
    adv = hbpo_advantages(rd.scored.rewards, budgets, G, max_len=MAX_NEW, beta=4.0)
    assert torch.allclose(rd.adv.double(), adv.double(), atol=1e-6)


def test_a_run_logs_per_budget_metrics_and_updates(micro_dir, tmp_path):
    rows = train(cfg_for(micro_dir), tmp_path, progress=False, evaluate=False).metrics.rows()
    assert [r["step"] for r in rows] == [1, 2]
    for r in rows:
        for b in BUDGETS:
            assert 0 <= r[f"hbpo/within_b{b}"] <= 1 and 1 <= r[f"hbpo/len_b{b}"] <= MAX_NEW
        assert r["hbpo/within_b4"] <= r["hbpo/within_b8"] or r["hbpo/len_b4"] != r["hbpo/len_b8"]
    # the random model is never correct: every reward is 0, but HBPO's intra-budget term -f2(b) still differs
    # between budgets, so the advantages are not all zero and the update runs
    assert all(r["optimizer_steps"] == 1 for r in rows)


@pytest.mark.parametrize("kw,match", [
    ({"hbpo_budgets": [4, 8, 12]}, r"config key 'hbpo_budgets': 3 budgets do not split group_size = 4"),
    ({"hbpo_budgets": [4, 16]}, r"config key 'hbpo_budgets': budget 16 is above max_new_tokens = 12"),
    ({"hbpo_budgets": [4, 0]}, r"config key 'hbpo_budgets': budgets are positive token counts"),
    ({"hbpo_budgets": []}, r"config key 'advantage': 'hbpo' needs the budget sub-groups; set hbpo_budgets"),
    ({"hbpo_prompt": "{prompt} {b}"}, r"config key 'hbpo_prompt': not a format string of \{prompt\} and \{budget\}"),
    ({"hbpo_prompt": "{prompt}"}, r"config key 'hbpo_prompt': must contain \{prompt\} and \{budget\}"),
])
def test_config_errors_name_the_key(micro_dir, kw, match):
    with pytest.raises(ConfigError, match=match):
        cfg_for(micro_dir, **kw)
