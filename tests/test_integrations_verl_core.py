"""The parts of lengthrl.integrations.verl that need no verl: grouping by uid and batch length rewards."""

import numpy as np
import pytest
import torch

from lengthrl.errors import ConfigError
from lengthrl.integrations.verl import group_order, length_reward_scores, verl_adv_estimator
from lengthrl.rewards import length_reward


def test_group_order_makes_groups_contiguous():
    perm, G = group_order(np.array(["b", "a", "b", "a"], dtype=object))
    assert perm.tolist() == [0, 2, 1, 3] and G == 2
    with pytest.raises(ConfigError, match="equal size"):
        group_order(["a", "a", "b"])


def test_length_reward_scores_equal_length_reward_in_any_order():
    mask = (torch.arange(10)[None] < torch.tensor([3, 9, 5, 2])[:, None]).float()  # lengths 3, 9, 5, 2
    uids = np.array(["x", "y", "x", "y"], dtype=object)
    correct = torch.tensor([1, 0, 0, 1])
    got = length_reward_scores("kimi", mask, uids, correct)
    # groups: x = rows (0, 2) lengths (3, 5); y = rows (1, 3) lengths (9, 2)
    want = length_reward("kimi", torch.tensor([3, 5, 9, 2]), torch.tensor([1, 0, 0, 1]), 2)
    assert got.tolist() == pytest.approx([float(want[i]) for i in (0, 2, 1, 3)])
    assert got.tolist() == pytest.approx([0.5, -0.5, -0.5, 0.5])  # by hand: shortest 0.5, longest -0.5


def test_adv_estimator_without_uids_names_the_fix():
    with pytest.raises(ConfigError, match="uid"):
        verl_adv_estimator("grpo")(torch.zeros(2, 3), torch.ones(2, 3))
