"""lengthrl.rewards: every length-aware reward of the literature behind one registry.

    r = length_reward("dler", lengths, correct, group_size=8, max_len=4096)    # [N] float tensor

`lengths` [N] int tokens, `correct` [N] bool or {0,1}; the responses to one prompt are contiguous
(N = prompts x group_size). `LENGTH_REWARDS` lists them with formula and paper; stateful ones (HAPO's
history, GRPO-lambda, DRPO) are objects with `state_dict()`/`load_state_dict()`; `CompositeReward` sums
weighted terms and keeps each term's values for metrics. See docs/rewards.md.
"""

from lengthrl.rewards.registry import LENGTH_REWARDS, LengthRewardSpec, length_reward, register_length_reward
# Importing the modules registers their rewards (in this order in the listing).
from lengthrl.rewards import overlong as _overlong  # noqa: F401, I001
from lengthrl.rewards import group as _group  # noqa: F401
from lengthrl.rewards import history as _history  # noqa: F401
from lengthrl.rewards import hbpo as _hbpo  # noqa: F401
from lengthrl.rewards import target as _target  # noqa: F401
from lengthrl.rewards import shaped as _shaped  # noqa: F401
from lengthrl.rewards import drpo as _drpo  # noqa: F401
from lengthrl.rewards.compose import CompositeReward, RewardSpec, term_names
from lengthrl.rewards.filters import dynamic_sampling_filter
from lengthrl.rewards.hbpo import HBPO_BUDGETS, hbpo_advantages, hbpo_budgets
from lengthrl.rewards.overlong import overlong_filter_mask
from lengthrl.rewards.probe import length_pressure
from lengthrl.rewards.stateful import DRPO, HAPO, STATEFUL_REWARDS, GRPOLambda, StatefulLengthReward

__all__ = [
    "LENGTH_REWARDS", "LengthRewardSpec", "length_reward", "register_length_reward",
    "CompositeReward", "RewardSpec", "term_names",
    "dynamic_sampling_filter", "overlong_filter_mask", "length_pressure",
    "HBPO_BUDGETS", "hbpo_advantages", "hbpo_budgets",
    "HAPO", "GRPOLambda", "DRPO", "STATEFUL_REWARDS", "StatefulLengthReward",
]
