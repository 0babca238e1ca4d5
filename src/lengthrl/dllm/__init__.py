"""lengthrl.dllm: masked diffusion LMs trained as AR policies (JustGRPO, arXiv 2601.15165) through the trainer's
``diffusion`` policy (`lengthrl.dllm.adapter`), exact AR-order log-probs and cheaper estimators, LLaDA parallel
decoding and the flexibility-trap pass@k analysis. See docs/dllm.md.

The names below are imported from their modules on first use (PEP 562), so importing one light module of the
package (e.g. `lengthrl.dllm.toytask`, which the task registry imports) does not import torch and transformers."""

from __future__ import annotations

import importlib

_EXPORTS = {
    "lengthrl.dllm.adapter": ("DiffusionEngine", "DiffusionLogprobs"),
    "lengthrl.dllm.logprobs": ("ESTIMATORS", "ar_logprobs", "ar_logprobs_loop", "mean_field_logprobs",
                               "random_mask_logprobs"),
    "lengthrl.dllm.model": ("LoadedDiffusionModel", "TinyDiffusionConfig", "char_tokenizer", "load_diffusion_model",
                            "save_diffusion_model", "tiny_diffusion_model"),
    "lengthrl.dllm.parallel": ("ParallelResult", "generate_parallel"),
    "lengthrl.dllm.passk": ("pass_at_k", "passk_curve"),
    "lengthrl.dllm.pretrain": ("build_diffusion_organism", "masked_diffusion_loss", "pretrain"),
    "lengthrl.dllm.rollout": ("generate_ar",),
    "lengthrl.dllm.toytask": ("AdditionTask",),
}
_WHERE = {name: mod for mod, names in _EXPORTS.items() for name in names}
__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module 'lengthrl.dllm' has no attribute {name!r}")
    value = getattr(importlib.import_module(_WHERE[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
