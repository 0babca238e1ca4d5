"""Bias of the approximate log-prob estimators against the exact AR-order log-probs.

For responses sampled from the model itself (what RL scores), each estimator's sequence log-prob
sum_t log p_hat(y_t) is compared with the exact one: bias = mean(estimate - exact), mae = mean |estimate - exact|,
per sequence and per token, and the Pearson correlation of the sequence values.
"""

from __future__ import annotations

import torch

from lengthrl.dllm.logprobs import ESTIMATORS


def estimator_bias(model, prompt_ids, prompt_mask, response_ids, response_mask, mask_token_id: int,
                   names=("mean_field", "random_mask"), seed: int = 0, **hparams) -> dict[str, dict[str, float]]:
    """{estimator: {bias_seq, mae_seq, bias_token, mae_token, corr_seq}} against "exact" on the given batch.
    `hparams` maps an estimator name to its keyword arguments, e.g. ``random_mask={"num_draws": 8}``."""
    kw = dict(prompt_mask=prompt_mask, response_mask=response_mask)
    with torch.no_grad():
        exact = ESTIMATORS["exact"](model, prompt_ids, response_ids, mask_token_id, **kw)  # [B, T]
        m = response_mask.bool()
        out = {}
        for name in names:
            extra = dict(hparams.get(name, {}))
            if name != "exact":
                extra.setdefault("generator", torch.Generator().manual_seed(seed))
            est = ESTIMATORS[name](model, prompt_ids, response_ids, mask_token_id, **kw, **extra)
            d_seq = (est - exact).sum(1)  # [B]
            d_tok = (est - exact)[m]  # [N]
            a, b = est.sum(1), exact.sum(1)
            corr = torch.corrcoef(torch.stack([a, b]))[0, 1] if a.numel() > 1 else torch.tensor(float("nan"))
            out[name] = {"bias_seq": d_seq.mean().item(), "mae_seq": d_seq.abs().mean().item(),
                         "bias_token": d_tok.mean().item(), "mae_token": d_tok.abs().mean().item(),
                         "corr_seq": corr.item(), "exact_seq_mean": b.mean().item()}
    return out
