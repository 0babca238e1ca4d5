"""lengthrl.dllm: masked diffusion LMs trained as AR policies (JustGRPO, arXiv 2601.15165) through the trainer's
``diffusion`` policy (`lengthrl.dllm.adapter`), exact AR-order log-probs and cheaper estimators, LLaDA parallel
decoding and the flexibility-trap pass@k analysis. See docs/dllm.md.

The names below are imported from their modules on first use (PEP 562), so importing one light module of the
package (e.g. `lengthrl.dllm.toytask`, which the task registry imports) does not import torch and transformers."""

from __future__ import annotations

from lengthrl._lazy import lazy_exports

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

__getattr__, __dir__ = lazy_exports(__name__, _WHERE)
