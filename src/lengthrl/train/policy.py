"""Policy adapters: how the trainer loads a policy, samples from it and scores its responses.

The trainer sees a policy only through a `PolicyAdapter` picked by the config key `policy`:

- ``resolve(cfg) -> Path``: the model directory (``model = "organism"`` builds or reuses the built-in one);
- ``load(path, cfg=None) -> (model, tokenizer)``: the trainable module and its tokenizer (also checkpoints and the
  reference), on the CPU in float32 (the trainer moves it to its device; `cfg` gives e.g. attn_implementation);
- ``engine(model, tokenizer, cfg) -> RolloutEngine``: ``generate(prompt_ids: list[list[int]], n, SamplingParams)
  -> RolloutBatch``, with ``state_dict()`` / ``load_state_dict()`` and ``pad_token_id``;
- ``logprob_fn(tokenizer, cfg)``: a function with the signature of `lengthrl.rollout.compute_logprobs`
  ``(model, prompt_ids, prompt_mask, response_ids, response_mask, temperature=, return_entropy=)``;
- ``diagnostics(model, logprob_fn, cfg, roll, step) -> dict`` (optional): extra metrics of a step from its
  rollout, before the update (the diffusion policy's estimator bias, ``dllm_bias_every``);
- ``detect(path) -> bool`` (optional): whether a model directory holds this kind of model, for commands given a
  directory without a config (`lengthrl eval --model DIR`, `policy_of_dir`).

``ar`` is a causal LM (the engine of `rollout_engine`: the lean decoder or `HFEngine`); ``diffusion`` is a masked diffusion LM read as an
AR policy (JustGRPO, arXiv 2601.15165; `lengthrl.dllm.adapter`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lengthrl.registry import Registry


@dataclass(frozen=True)
class PolicyAdapter:
    """The four functions above, and a one-line description for the config docs."""

    help: str
    resolve: Callable  # (cfg) -> Path
    load: Callable  # (path, cfg=None) -> (model, tokenizer)
    engine: Callable  # (model, tokenizer, cfg) -> RolloutEngine
    logprob_fn: Callable  # (tokenizer, cfg) -> compute_logprobs-like function
    detect: Callable | None = None  # (path) -> bool
    diagnostics: Callable | None = None  # (model, logprob_fn, cfg, roll, step) -> dict of metrics


POLICIES: Registry[PolicyAdapter] = Registry("policy")


def _ar_resolve(cfg) -> Path:
    from lengthrl.models.organism import resolve_model_dir

    return resolve_model_dir(cfg.model)


def _ar_load(path, cfg=None):
    from lengthrl.models import load_policy

    return load_policy(path, attn_implementation=cfg.attn_implementation if cfg is not None else None)


def _ar_engine(model, tok, cfg):
    from lengthrl.rollout.fast import make_engine

    return make_engine(cfg.rollout_engine, model, tok, seed=cfg.seed)


def _ar_logprob_fn(tok, cfg):
    from functools import partial

    from lengthrl.rollout import compute_logprobs

    # the lean decoder encodes each group's prompt once (Llama/Qwen2 on one process; with 'auto'
    # compute_logprobs falls back to the model's forward otherwise; 'lean' was checked by the trainer)
    return partial(compute_logprobs, shared_prefix=uses_lean_forward(cfg),
                   logprob_chunk=cfg.logprob_chunk)


def uses_lean_forward(cfg) -> bool:
    """Whether the update asks for the lean decoder's forward (`logprob_impl`; 'auto': unless rollout_engine
    is 'hf')."""
    return cfg.logprob_impl == "lean" or (cfg.logprob_impl == "auto" and cfg.rollout_engine != "hf")


def _lazy(name: str) -> Callable:
    """`lengthrl.dllm.adapter.<name>`, imported on first call (torch-heavy modules stay unloaded for AR runs)."""

    def call(*args, **kw):
        from lengthrl.dllm import adapter

        return getattr(adapter, name)(*args, **kw)

    return call


POLICIES.register("ar", PolicyAdapter("a causal LM (transformers AutoModelForCausalLM), KV-cached sampling",
                                      _ar_resolve, _ar_load, _ar_engine, _ar_logprob_fn))
POLICIES.register("diffusion", PolicyAdapter(
    "a masked diffusion LM read as an AR policy (JustGRPO): left-to-right rollouts, exact AR-order log-probs "
    "(or the estimator of dllm_logprob)",
    _lazy("resolve"), _lazy("load"), _lazy("engine"), _lazy("logprob_fn"), _lazy("is_model_dir"),
    _lazy("diagnostics")))


def policy_of_dir(path) -> str:
    """The registered policy whose `detect` recognises the model directory `path`; 'ar' when none does."""
    return next((name for name, a in POLICIES.items() if a.detect is not None and a.detect(Path(path))), "ar")
