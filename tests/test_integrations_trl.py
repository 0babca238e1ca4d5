"""lengthrl inside a real TRL GRPOTrainer (trl 1.16) on CPU: a tiny random Qwen2, an in-memory dataset, 2 steps.

For every micro-batch the trainer computes: (a) TRL's per-token log-probs equal lengthrl's `compute_logprobs`;
(b) over one optimizer step (2 accumulated micro-batches), the sum of the micro-batch losses equals
`policy_loss` on the whole window's tensors at once (the normalisers are exact); (c) for the losses TRL also
has (luspo, GSPO = grpo at sequence level, dapo), our loss equals TRL's own `_compute_loss` on the same inputs.
The second step reuses the first step's rollouts (num_iterations = 2), so ratios differ from 1 there.
"""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("trl")
from datasets import Dataset  # noqa: E402
from trl import GRPOConfig, GRPOTrainer  # noqa: E402

from lengthrl.errors import ConfigError, UnknownNameError  # noqa: E402
from lengthrl.integrations.trl import (  # noqa: E402
    LengthRLGRPOTrainer, answer_correct, length_reward_func, length_stats,
)
from lengthrl.models import save_tiny_random_model  # noqa: E402
from lengthrl.objectives import policy_loss  # noqa: E402
from lengthrl.rollout import compute_logprobs  # noqa: E402

MICRO = dict(hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1, intermediate_size=64,
             max_position_embeddings=128)
G, GA = 4, 2
# (ours, TRL loss_type, TRL importance_sampling_level, eps_low, eps_high)
CASES = [("luspo", "luspo", "sequence", 2e-3, 2.5e-3), ("gspo", "grpo", "sequence", 3e-4, 4e-4),
         ("dapo", "dapo", "token", 0.2, 0.28)]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return str(save_tiny_random_model(tmp_path_factory.mktemp("m") / "qwen", arch="qwen2", seed=0, **MICRO))


def dataset():
    return Dataset.from_dict({"prompt": ["1+1=", "2+3=", "4+4=", "9-2="], "answer": ["2", "5", "8", "7"]})


class Probe(LengthRLGRPOTrainer):
    """Records, for every loss computation, lengthrl's tensors, our loss, TRL's own loss and lengthrl's log-probs."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.records = []

    def _compute_loss(self, model, inputs):
        loss = super()._compute_loss(model, inputs)
        rec = dict(self._last_lengthrl)
        with torch.no_grad():
            rec["native"] = GRPOTrainer._compute_loss(self, model, inputs).detach()
            rec["our_logp"] = compute_logprobs(model, inputs["prompt_ids"], inputs["prompt_mask"],
                                               inputs["completion_ids"], inputs["completion_mask"])
        rec["returned"] = loss.detach()
        self.records.append(rec)
        return loss


def make_trainer(model_dir, tmp_path, ours, trl_type, level, lo, hi, cls=Probe, **kw):
    correct = answer_correct("answer")
    args = GRPOConfig(
        output_dir=str(tmp_path), per_device_train_batch_size=G, gradient_accumulation_steps=GA,
        num_generations=G, max_completion_length=8, max_steps=2, num_iterations=2, learning_rate=1e-2,
        logging_steps=1, report_to="none", use_cpu=True, save_strategy="no", loss_type=trl_type,
        importance_sampling_level=level, epsilon=lo, epsilon_high=hi, seed=0, temperature=1.0,
        disable_tqdm=True, beta=0.0,
    )
    return cls(model=model_dir, args=args, train_dataset=dataset(),
               reward_funcs=[correct, length_reward_func("kimi", correct, group_size=G),
                             length_reward_func("dapo_overlong", None, group_size=G, max_len=8, cache_len=4)],
               lengthrl_loss=ours, lengthrl_hparams={"clip_low": lo, "clip_high": hi}, **kw)


def _cat(xs, value=0.0):  # list of [b, t_i] -> [sum b, max t] right-padded
    T = max(x.shape[1] for x in xs)
    return torch.cat([torch.nn.functional.pad(x, (0, T - x.shape[1]), value=value) for x in xs])


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_trainer_loss_is_policy_loss(model_dir, tmp_path, case):
    ours, trl_type, level, lo, hi = case
    tr = make_trainer(model_dir, tmp_path, *case)
    tr.train()
    recs = tr.records
    assert len(recs) == 2 * GA  # 2 optimizer steps × 2 micro-batches
    moved = False
    for r in recs:
        assert torch.allclose(r["logp"], r["our_logp"], atol=1e-5), "TRL's log-probs differ from lengthrl's"
        assert torch.allclose(r["returned"], r["native"], atol=1e-6, rtol=1e-5), (ours, r["returned"], r["native"])
        moved |= bool(((r["logp"] - r["old_logp"]).abs() * r["mask"]).max() > 1e-4)
    assert moved, "the second iteration should see ratios != 1"
    for w in range(0, len(recs), GA):  # one optimizer step = GA micro-batches
        win = recs[w:w + GA]
        whole = policy_loss(ours, _cat([r["logp"] for r in win]), _cat([r["old_logp"] for r in win]),
                            torch.cat([r["advantages"] for r in win]), _cat([r["mask"] for r in win]),
                            clip_low=lo, clip_high=hi, max_len=8).loss
        assert torch.allclose(sum(r["returned"] for r in win), whole, atol=1e-6, rtol=1e-5), (ours, w)
    assert any(float(r["advantages"].abs().max()) > 0 for r in recs)  # the length rewards made signal
    logged = {k for h in tr.state.log_history for k in h}
    assert {"len/mean", "len/p90", "trunc_rate", "adv_len_corr", "lengthrl/clip_frac_high"} <= logged


def test_reward_funcs_match_lengthrl():
    """The TRL-facing reward equals lengthrl's length_reward on the same lengths/correctness."""
    from lengthrl.rewards import length_reward

    correct = answer_correct("answer")
    f = length_reward_func("kimi", correct, group_size=2)
    comps = ["<answer>2</answer>", "so the answer is 3", "5", "<answer>5</answer>"]
    ids = [[1] * 5, [1] * 9, [1] * 2, [1] * 3]
    got = f(prompts=["a"] * 4, completions=comps, completion_ids=ids, answer=["2", "2", "5", "5"])
    want = length_reward("kimi", torch.tensor([5, 9, 2, 3]), torch.tensor([1, 0, 1, 1]), 2)
    assert correct(completions=comps, answer=["2", "2", "5", "5"]) == [1.0, 0.0, 1.0, 1.0]
    assert got == pytest.approx(want.tolist())
    assert got[0] == pytest.approx(0.5) and got[1] == pytest.approx(-0.5)  # kimi: shortest 0.5, longest wrong -0.5


def test_bad_input_names_the_fix(model_dir, tmp_path):
    with pytest.raises(ConfigError, match="correct_fn"):
        length_reward_func("kimi", None, group_size=4)
    with pytest.raises(ConfigError, match="max_len"):
        length_reward_func("dler", answer_correct(), group_size=4)
    with pytest.raises(UnknownNameError):
        length_reward_func("no_such_reward", None, group_size=4)
    f = length_reward_func("kimi", answer_correct(), group_size=4)
    with pytest.raises(ConfigError, match="whole groups"):
        f(completions=["1"] * 3, completion_ids=[[1]] * 3, answer=["1"] * 3)
    with pytest.raises(ConfigError, match="no column 'answer'"):
        answer_correct()(completions=["1"])
    with pytest.raises(UnknownNameError):
        make_trainer(model_dir, tmp_path, "nope", "dapo", "token", 0.2, 0.2)


def test_length_stats_by_hand():
    s = length_stats(torch.tensor([2, 4, 6, 8]), torch.tensor([1.0, -1.0, 1.0, -1.0]),
                     torch.tensor([False, False, False, True]), 2)
    assert s["len/mean"] == 5.0 and s["trunc_rate"] == 0.25 and s["len/group_std_mean"] == 1.0
    assert s["len/pos_adv_mean"] == 4.0 and s["len/neg_adv_mean"] == 6.0
    assert s["adv_len_corr"] == pytest.approx(-0.4472136, abs=1e-6)
