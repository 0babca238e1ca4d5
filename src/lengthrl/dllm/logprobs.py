"""Log-probabilities of responses under a masked diffusion LM read as an autoregressive policy.

JustGRPO (arXiv 2601.15165) scores a response y = (y_0 .. y_{T-1}) to a prompt x left to right:

    log pi(y | x) = sum_t log p_theta(y_t | x, y_<t, MASK at every response position >= t)

The canvas always has T response positions (T = ``response_ids.shape[1]``, the generation length): position t
is scored with positions t..T-1 masked, whatever the response's own length. Because attention is bidirectional
each t needs its own forward; `ar_logprobs` batches those forwards in chunks, runs the LM head only at the
scored position, skips positions outside ``response_mask`` and, when gradients are needed, checkpoints each
chunk so only one chunk's activations are alive at a time.

Cheaper approximations, registered in `ESTIMATORS` ("exact" is `ar_logprobs`):
- ``mean_field`` (d1's diffu-GRPO one-step estimate, arXiv 2504.12216): one forward with the whole response
  masked, log p(y_t | x, MASK^T) for every t; d1 also masks prompt tokens at random (``prompt_mask_prob``, d1
  uses 0.15; the trainer's key ``p_mask_prompt``).
- ``random_mask``: ``num_draws`` forwards; draw s ~ U(0,1) per row, mask each response token with probability s,
  and average log p(y_t | visible context) over the draws in which t was masked (t never masked falls back to the
  mean-field value).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.utils.checkpoint import checkpoint

from lengthrl.dllm.forward import full_logits, logits_at
from lengthrl.errors import ConfigError
from lengthrl.registry import Registry

#: default activation budget of one chunk, in tokens (rows x sequence length)
DEFAULT_CHUNK_TOKENS = 2048


def _check_inputs(prompt_ids, response_ids, prompt_mask, response_mask):
    if prompt_ids.dim() != 2 or response_ids.dim() != 2 or prompt_ids.shape[0] != response_ids.shape[0]:
        raise ConfigError(
            f"prompt_ids {tuple(prompt_ids.shape)} and response_ids {tuple(response_ids.shape)} must be "
            "[B, P] and [B, T] with the same B"
        )
    for name, m, ref in (("prompt_mask", prompt_mask, prompt_ids), ("response_mask", response_mask, response_ids)):
        if m is not None and m.shape != ref.shape:
            raise ConfigError(f"{name} has shape {tuple(m.shape)}; it must match {tuple(ref.shape)}")


def _attention(prompt_ids: torch.Tensor, prompt_mask: torch.Tensor | None, T: int) -> torch.Tensor:
    """attention mask [B, P+T]: the prompt's own mask, every response position visible."""
    pm = torch.ones_like(prompt_ids) if prompt_mask is None else prompt_mask.long()
    return torch.cat([pm, pm.new_ones(pm.shape[0], T)], dim=1)


def _needs_grad(model: torch.nn.Module) -> bool:
    return torch.is_grad_enabled() and any(p.requires_grad for p in model.parameters())


def ar_logprobs(model: torch.nn.Module, prompt_ids: torch.Tensor, response_ids: torch.Tensor, mask_token_id: int,
                chunk_size: int | None = None, *, prompt_mask: torch.Tensor | None = None,
                response_mask: torch.Tensor | None = None, chunk_tokens: int = DEFAULT_CHUNK_TOKENS,
                use_checkpoint: bool | None = None, temperature: float = 1.0, return_entropy: bool = False):
    """Exact AR-order log-probs [B, T] of `response_ids` [B, T] given `prompt_ids` [B, P] (left-padded, see
    `prompt_mask`). Token t is scored on [prompt, y_<t, MASK x (T - t)]; entries outside `response_mask` are 0.

    chunk_size: inputs per forward (default: ``chunk_tokens // (P + T)``, a memory budget).
    use_checkpoint: recompute each chunk in backward instead of storing its activations (default: on whenever
    gradients are needed). temperature: score under softmax(logits / temperature) (the sampling temperature).
    return_entropy: also return the entropy [B, T] of that distribution at each scored position (0 elsewhere),
    H = -sum_v p_v log p_v, from the same forwards."""
    _check_inputs(prompt_ids, response_ids, prompt_mask, response_mask)
    B, P = prompt_ids.shape
    T = response_ids.shape[1]
    n = P + T
    if chunk_size is None:
        chunk_size = max(1, chunk_tokens // max(n, 1))
    if chunk_size < 1:
        raise ConfigError(f"chunk_size must be >= 1, got {chunk_size}")
    if not temperature > 0:
        raise ConfigError(f"temperature must be > 0 to score log-probs, got {temperature}")
    valid = torch.ones_like(response_ids, dtype=torch.bool) if response_mask is None else response_mask.bool()
    rows, cols = valid.nonzero(as_tuple=True)  # [N], [N]: the (sequence, position) pairs scored
    out = torch.zeros(B, T, dtype=torch.float32, device=response_ids.device)
    if rows.numel() == 0:
        return (out, out.clone()) if return_entropy else out
    canvas = torch.cat([prompt_ids, response_ids], dim=1)  # [B, n]
    attn = _attention(prompt_ids, prompt_mask, T)  # [B, n]
    ar = torch.arange(T, device=canvas.device)
    ckpt = _needs_grad(model) if use_checkpoint is None else use_checkpoint

    def score(x: torch.Tensor, a: torch.Tensor, pos: torch.Tensor, tgt: torch.Tensor):
        logits = logits_at(model, x, a, pos).float() / temperature  # [c, V]
        lp = logits.log_softmax(-1)  # [c, V]
        picked = lp.gather(-1, tgt[:, None])[:, 0]  # [c]
        if not return_entropy:
            return picked
        with torch.no_grad():  # a metric: no softmax graph kept alive for the backward
            lpd = lp.detach()
            ent = -(lpd.exp() * lpd).sum(-1)
        return picked, ent  # [c], [c]

    pieces = []
    for s in range(0, rows.numel(), chunk_size):
        r, t = rows[s:s + chunk_size], cols[s:s + chunk_size]  # [c]
        x = canvas[r].clone()  # [c, n]
        x[:, P:] = torch.where(ar[None, :] >= t[:, None], mask_token_id, x[:, P:])
        args = (x, attn[r], P + t, response_ids[r, t])
        pieces.append(checkpoint(score, *args, use_reentrant=False) if ckpt else score(*args))
    if not return_entropy:
        return out.index_put((rows, cols), torch.cat(pieces))
    logp = out.index_put((rows, cols), torch.cat([p[0] for p in pieces]))
    ent = out.index_put((rows, cols), torch.cat([p[1] for p in pieces]))
    return logp, ent


def ar_logprobs_loop(model: torch.nn.Module, prompt_ids: torch.Tensor, response_ids: torch.Tensor,
                     mask_token_id: int, *, prompt_mask: torch.Tensor | None = None,
                     response_mask: torch.Tensor | None = None) -> torch.Tensor:
    """The reference: one forward per position t over the whole batch, full logits sliced. Same result as
    `ar_logprobs` (used by the tests and the benchmark)."""
    _check_inputs(prompt_ids, response_ids, prompt_mask, response_mask)
    P, T = prompt_ids.shape[1], response_ids.shape[1]
    canvas = torch.cat([prompt_ids, response_ids], dim=1)
    attn = _attention(prompt_ids, prompt_mask, T)
    cols = []
    for t in range(T):
        x = canvas.clone()
        x[:, P + t:] = mask_token_id
        lp = full_logits(model, x, attn)[:, P + t].float().log_softmax(-1)  # [B, V]
        cols.append(lp.gather(-1, response_ids[:, t:t + 1])[:, 0])
    out = torch.stack(cols, dim=1) if cols else torch.zeros(response_ids.shape, device=response_ids.device)
    return out if response_mask is None else out * response_mask.to(out.dtype)


def mean_field_logprobs(model, prompt_ids, response_ids, mask_token_id, *, prompt_mask=None, response_mask=None,
                        prompt_mask_prob: float = 0.0, generator: torch.Generator | None = None,
                        prompt_noise: torch.Tensor | None = None, temperature: float = 1.0,
                        return_entropy: bool = False):
    """d1's one-step estimate [B, T] (diffu-GRPO, arXiv 2504.12216): log p(y_t | x', whole response masked), one
    forward for all t, where x' is the prompt with each token replaced by MASK with probability
    `prompt_mask_prob` (d1: 0.15; the draws are `prompt_noise` [B, P] uniforms when given, else drawn from
    `generator`; a token is masked where its uniform < prompt_mask_prob; left padding is never masked).
    temperature: score under softmax(logits / temperature). return_entropy: also the entropy [B, T] of that
    distribution at each position (0 outside `response_mask`)."""
    _check_inputs(prompt_ids, response_ids, prompt_mask, response_mask)
    if not 0.0 <= prompt_mask_prob < 1.0:
        raise ConfigError(f"prompt_mask_prob must be in [0, 1), got {prompt_mask_prob}")
    if not temperature > 0:
        raise ConfigError(f"temperature must be > 0 to score log-probs, got {temperature}")
    P, T = prompt_ids.shape[1], response_ids.shape[1]
    x_prompt = prompt_ids
    if prompt_mask_prob > 0:
        if prompt_noise is None:
            prompt_noise = torch.rand(prompt_ids.shape, generator=generator,
                                      device=_rand_device(generator, prompt_ids)).to(prompt_ids.device)
        if prompt_noise.shape != prompt_ids.shape:
            raise ConfigError(f"prompt_noise has shape {tuple(prompt_noise.shape)}; it must match prompt_ids "
                              f"{tuple(prompt_ids.shape)}")
        hit = prompt_noise.to(prompt_ids.device) < prompt_mask_prob  # [B, P]
        if prompt_mask is not None:
            hit = hit & prompt_mask.bool()
        x_prompt = torch.where(hit, mask_token_id, prompt_ids)
    x = torch.cat([x_prompt, torch.full_like(response_ids, mask_token_id)], dim=1)
    lp = (full_logits(model, x, _attention(prompt_ids, prompt_mask, T))[:, P:].float() / temperature).log_softmax(-1)
    out = lp.gather(-1, response_ids[..., None])[..., 0]  # [B, T]
    keep = torch.ones_like(out) if response_mask is None else response_mask.to(out.dtype)
    if not return_entropy:
        return out * keep
    with torch.no_grad():  # a metric: no softmax graph kept alive for the backward
        lpd = lp.detach()
        ent = -(lpd.exp() * lpd).sum(-1)  # [B, T]
    return out * keep, ent * keep


def random_mask_logprobs(model, prompt_ids, response_ids, mask_token_id, *, prompt_mask=None, response_mask=None,
                         num_draws: int = 4, generator: torch.Generator | None = None,
                         noise: tuple[torch.Tensor, torch.Tensor] | None = None, temperature: float = 1.0,
                         return_entropy: bool = False):
    """Random-mask estimate [B, T]: average over `num_draws` random maskings (rate s ~ U(0,1) per row) of
    log p(y_t | unmasked tokens) at the masked t; never-masked t use the mean-field value.
    noise: the draws (s [num_draws, B, 1], u [num_draws, B, T] uniforms; t is masked in draw k where
    u[k, b, t] < s[k, b]) when given, else drawn from `generator`. temperature: as `mean_field_logprobs`.
    return_entropy: also the entropy [B, T] of the mean-field distribution (the fallback's forward)."""
    _check_inputs(prompt_ids, response_ids, prompt_mask, response_mask)
    if num_draws < 1:
        raise ConfigError(f"num_draws must be >= 1, got {num_draws}")
    if not temperature > 0:
        raise ConfigError(f"temperature must be > 0 to score log-probs, got {temperature}")
    P, T = prompt_ids.shape[1], response_ids.shape[1]
    B = response_ids.shape[0]
    attn = _attention(prompt_ids, prompt_mask, T)
    dev = response_ids.device
    if noise is None:
        rdev = _rand_device(generator, response_ids)
        draws = [(torch.rand(B, 1, generator=generator, device=rdev),
                  torch.rand(B, T, generator=generator, device=rdev)) for _ in range(num_draws)]
        noise = (torch.stack([d[0] for d in draws]), torch.stack([d[1] for d in draws]))
    s_all, u_all = noise
    if s_all.shape != (num_draws, B, 1) or u_all.shape != (num_draws, B, T):
        raise ConfigError(f"noise must be (s [{num_draws}, {B}, 1], u [{num_draws}, {B}, {T}]); got "
                          f"{tuple(s_all.shape)}, {tuple(u_all.shape)}")
    total = torch.zeros(response_ids.shape, device=dev)
    count = torch.zeros(response_ids.shape, device=dev)
    for k in range(num_draws):
        hit = u_all[k].to(dev) < s_all[k].to(dev)  # [B, T]
        x = torch.cat([prompt_ids, torch.where(hit, mask_token_id, response_ids)], dim=1)
        lp = (full_logits(model, x, attn)[:, P:].float() / temperature).log_softmax(-1)
        lp = lp.gather(-1, response_ids[..., None])[..., 0]
        total = total + lp * hit
        count = count + hit
    fallback = mean_field_logprobs(model, prompt_ids, response_ids, mask_token_id, prompt_mask=prompt_mask,
                                   temperature=temperature, return_entropy=return_entropy)
    fb, ent = fallback if return_entropy else (fallback, None)
    out = torch.where(count > 0, total / count.clamp(min=1), fb)
    out = out if response_mask is None else out * response_mask.to(out.dtype)
    if not return_entropy:
        return out
    return out, ent if response_mask is None else ent * response_mask.to(ent.dtype)


def _rand_device(generator: torch.Generator | None, like: torch.Tensor) -> torch.device:
    """Where random draws are made: on the generator's device when one is given, else on `like`'s."""
    return like.device if generator is None else generator.device


ESTIMATORS: Registry[Callable[..., torch.Tensor]] = Registry("log-prob estimator")
ESTIMATORS.register("exact", ar_logprobs)
ESTIMATORS.register("mean_field", mean_field_logprobs)
ESTIMATORS.register("random_mask", random_mask_logprobs)
