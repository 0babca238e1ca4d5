"""Cross-checks against the peer implementations shipped with TRL (the soft overlong punishment and the
cosine-scaled reward): same formula, same numbers."""

import pytest
import torch

from lengthrl.rewards import length_reward

trl_rewards = pytest.importorskip("trl.rewards")


def test_dapo_overlong_matches_trl_soft_overlong_punishment():
    lengths = list(range(0, 90, 3))
    theirs = trl_rewards.get_soft_overlong_punishment(max_completion_len=64, soft_punish_cache=16)(
        completion_ids=[[1] * n for n in lengths]
    )
    ours = length_reward("dapo_overlong", lengths, [1] * len(lengths), 1, max_len=64, cache_len=16)
    assert ours.tolist() == pytest.approx(theirs, abs=1e-6)


def test_cosine_matches_trl_cosine_scaled_reward_below_the_cap():
    # TRL's defaults: correct 1.0 -> 0.5, wrong -1.0 -> -0.5 over [0, max_len]; TRL has no exceed penalty.
    lengths = [0, 10, 25, 50, 75, 99]
    completions = [[{"content": r"\boxed{\frac{1}{3}}"}], [{"content": r"\boxed{\frac{1}{2}}"}]] * 3
    solution = [r"\frac{1}{3}"] * 6
    theirs = trl_rewards.get_cosine_scaled_reward(max_len=100)(completions, solution, [[1] * n for n in lengths])
    correct = [1, 0, 1, 0, 1, 0]
    ours = length_reward("cosine", lengths, correct, 1, max_len=100, r0_correct=1.0, rL_correct=0.5,
                         r0_wrong=-1.0, rL_wrong=-0.5)
    assert ours.tolist() == pytest.approx(theirs, abs=1e-6)
    assert torch.isfinite(ours).all()
