"""Rollouts: the engine interface, the default transformers engine, and log-probs for the policy update."""

from lengthrl.rollout.fast import FastEngine, fast_unsupported_reason, make_engine
from lengthrl.rollout.hf import HFEngine, left_pad, positions_from_mask
from lengthrl.rollout.logprobs import compute_logprobs, entropy_from_logits, selective_log_softmax
from lengthrl.rollout.sampling import sample_tokens, sampling_logprobs
from lengthrl.rollout.types import RolloutBatch, RolloutEngine, SamplingParams

__all__ = [
    "FastEngine",
    "HFEngine",
    "RolloutBatch",
    "RolloutEngine",
    "SamplingParams",
    "compute_logprobs",
    "entropy_from_logits",
    "fast_unsupported_reason",
    "left_pad",
    "make_engine",
    "positions_from_mask",
    "sample_tokens",
    "sampling_logprobs",
    "selective_log_softmax",
]
