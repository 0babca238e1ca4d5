"""lengthrl.dllm: masked diffusion LMs trained as AR policies (JustGRPO, arXiv 2601.15165), exact AR-order
log-probs, LLaDA parallel decoding and the flexibility-trap pass@k analysis. See docs/dllm.md."""

from lengthrl.dllm.justgrpo import JustGRPOConfig, justgrpo_step, justgrpo_train
from lengthrl.dllm.logprobs import ESTIMATORS, ar_logprobs, ar_logprobs_loop, mean_field_logprobs, random_mask_logprobs
from lengthrl.dllm.model import (
    LoadedDiffusionModel, TinyDiffusionConfig, char_tokenizer, load_diffusion_model, save_diffusion_model,
    tiny_diffusion_model,
)
from lengthrl.dllm.parallel import ParallelResult, generate_parallel
from lengthrl.dllm.passk import pass_at_k, passk_curve
from lengthrl.dllm.pretrain import build_diffusion_organism, masked_diffusion_loss, pretrain
from lengthrl.dllm.rollout import DiffusionPolicy, DiffusionRolloutBatch, generate_ar
from lengthrl.dllm.toytask import AdditionTask

__all__ = [
    "AdditionTask", "DiffusionPolicy", "DiffusionRolloutBatch", "ESTIMATORS", "JustGRPOConfig",
    "LoadedDiffusionModel", "ParallelResult", "TinyDiffusionConfig", "ar_logprobs", "ar_logprobs_loop",
    "build_diffusion_organism", "char_tokenizer", "generate_ar", "generate_parallel", "justgrpo_step",
    "justgrpo_train", "load_diffusion_model", "masked_diffusion_loss", "mean_field_logprobs", "pass_at_k",
    "passk_curve", "pretrain", "random_mask_logprobs", "save_diffusion_model", "tiny_diffusion_model",
]
