"""The flexibility-trap analysis (arXiv 2601.15165): pass@k of AR-order vs arbitrary-order sampling.

pass@k is estimated without bias from n >= k samples with c correct (Chen et al., Codex, arXiv 2107.03374):

    pass@k = 1 - C(n - c, k) / C(n, k) = 1 - prod_{i = n-c+1}^{n} (1 - k / i)

averaged over prompts. Sampling orders (`ORDERS`): "ar" draws tokens left to right, one per forward, at the
temperature; "confidence" is LLaDA's arbitrary-order sampler (one block over the whole canvas, one token per
step, the position of highest confidence first, tokens drawn at the temperature).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from lengthrl.dllm.parallel import generate_parallel
from lengthrl.dllm.rollout import generate_ar, repeat_prompts
from lengthrl.errors import ConfigError
from lengthrl.registry import Registry
from lengthrl.rollout import RolloutBatch, left_pad
from lengthrl.train.prompts import encode_prompts
from lengthrl.tasks.base import Sample, Task


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples with c correct (see module docstring)."""
    if not (n >= 1 and 0 <= c <= n and 1 <= k <= n):
        raise ConfigError(f"pass_at_k needs n >= 1, 0 <= c <= n, 1 <= k <= n; got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    prod = 1.0
    for i in range(n - c + 1, n + 1):
        prod *= 1.0 - k / i
    return 1.0 - prod


@dataclass
class Decoder:
    """How responses are drawn: fn(model, prompt_ids, prompt_mask, ids, gen_length, n, temperature, generator)
    -> (a RolloutBatch of the response canvas rows [B*n, T], number of forwards)."""

    fn: Callable
    help: str


def _ar(model, pids, pmask, ids, gen_length, n, temperature, generator, **_):
    b = generate_ar(model, pids, pmask, gen_length=gen_length, n=n, temperature=temperature, generator=generator,
                    **ids)
    return b, int(b.lengths.max())  # a row stops after its EOS: forwards = the longest response


def _confidence(model, pids, pmask, ids, gen_length, n, temperature, generator, steps=None, block_length=None,
                remasking="low_confidence"):
    rp, rm, group = repeat_prompts(pids, pmask, n)
    res = generate_parallel(model, rp, gen_length, steps or gen_length, block_length or gen_length, remasking,
                            temperature, prompt_mask=rm, generator=generator, **ids)
    batch = RolloutBatch(prompt_ids=rp, prompt_mask=rm, response_ids=res.response_ids,
                         response_mask=res.response_mask, logp=torch.zeros(res.response_ids.shape),
                         lengths=res.lengths, truncated=res.truncated, group_index=group)
    return batch, res.forwards


ORDERS: Registry[Decoder] = Registry("sampling order")
ORDERS.register("ar", Decoder(_ar, "left to right, one token per forward"))
ORDERS.register("confidence", Decoder(_confidence, "arbitrary order: most confident masked position first"))


def correct_counts(model, tokenizer, task: Task, samples: Sequence[Sample], order: str, n: int, gen_length: int,
                   temperature: float = 1.0, generator: torch.Generator | None = None, batch_prompts: int = 16,
                   **decoder_kw) -> tuple[list[int], dict]:
    """Number of correct responses among `n` samples for each prompt, and stats (mean length, forwards/token)."""
    dec = ORDERS[order]
    ids = dict(mask_token_id=tokenizer.mask_token_id, eos_token_id=tokenizer.eos_token_id,
               pad_token_id=tokenizer.pad_token_id)
    counts, lengths, forwards, tokens = [], [], 0, 0
    model.eval()
    for s in range(0, len(samples), batch_prompts):
        chunk = list(samples[s:s + batch_prompts])
        pids, pmask = left_pad(encode_prompts(tokenizer, chunk, None), tokenizer.pad_token_id)
        batch, fw = dec.fn(model, pids, pmask, ids, gen_length, n, temperature, generator, **decoder_kw)
        ok = [task.score(chunk[g], t).correct for g, t in zip(batch.group_index.tolist(), batch.texts(tokenizer))]
        counts += [sum(ok[i * n:(i + 1) * n]) for i in range(len(chunk))]
        lengths += batch.lengths.tolist()
        forwards += fw
        tokens += gen_length
    return counts, {"mean_length": sum(lengths) / max(len(lengths), 1),
                    "forwards_per_token": forwards / max(tokens, 1)}


def passk_curve(counts: Sequence[int], n: int, ks: Sequence[int]) -> dict[int, float]:
    """Mean pass@k over prompts for each k."""
    if not counts:
        raise ConfigError("passk_curve needs at least one prompt")
    return {k: sum(pass_at_k(n, c, k) for c in counts) / len(counts) for k in ks}


def greedy_accuracy(model, tokenizer, task: Task, samples: Sequence[Sample], gen_length: int, steps: int,
                    block_length: int, remasking: str = "low_confidence") -> dict:
    """Accuracy of deterministic decoding (temperature 0) with the given parallel-decoding setting."""
    counts, stats = correct_counts(model, tokenizer, task, samples, "confidence", 1, gen_length, temperature=0.0,
                                   steps=steps, block_length=block_length, remasking=remasking)
    return {"steps": steps, "block_length": block_length, "accuracy": sum(counts) / len(counts), **stats}
