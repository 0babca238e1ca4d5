"""Log-probs with gradient through the LM head, chunk by chunk: the [N, V] logits are never materialised.

For a response token y at a position with final hidden state h (after the model's last norm) the log-prob is

    z = (W h + b) / temperature,    log p(y) = z_y - logsumexp(z),    H = logsumexp(z) - sum_v softmax(z)_v z_v

with W [V, H] the LM head. At V = 151,936 (Qwen2) the float32 logits of 8 x 1024 tokens are 5 GB, and
the ordinary path (`model(...).logits` then a log-softmax) keeps them, their float32 copy and their gradient
alive in the backward pass. `chunked_head_logprobs` computes the N positions `chunk` at a time inside one
autograd Function and keeps only h, W and the per-position logsumexp; its backward recomputes each chunk's
logits and uses

    d log p(y) / d z_v = 1[v = y] - softmax(z)_v,

so the extra memory is O(chunk * V) in the forward and the backward. The entropy H (a metric, no gradient) is
computed from the same chunks for free. The values are those of the ordinary path (the same ops per position);
gradients agree to float32 rounding (the sum over positions of W's gradient is taken per chunk).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

AUTO_LOGITS = 1 << 26  # logits per chunk when `logprob_chunk = 0`: 256 MB in float32 (441 tokens at V = 151,936)
# model types whose logits are exactly lm_head(final hidden state) (no soft-capping or logit scale)
HEAD_ONLY_TYPES = frozenset({"llama", "qwen2", "qwen3", "mistral"})


def resolve_chunk(setting: int, n_tokens: int, vocab: int) -> int | None:
    """Tokens per chunk for `setting` (the config key `logprob_chunk`) and a micro-batch of `n_tokens`
    positions, or None for the ordinary full-logits path: -1 = always full logits; 0 = auto (chunks of
    AUTO_LOGITS // vocab tokens); k > 0 = chunks of k tokens. A micro-batch that fits in one chunk takes the
    ordinary path (no extra work, and exactly today's numbers)."""
    if setting < 0:
        return None
    chunk = max(1, AUTO_LOGITS // max(vocab, 1)) if setting == 0 else setting
    return chunk if n_tokens > chunk else None


class _ChunkedHeadLogprob(torch.autograd.Function):
    """(h [N, H], weight [V, H], bias [V] | None, index [N]) -> (logp [N] float32, entropy [N] float32)."""

    @staticmethod
    @torch.amp.custom_fwd(device_type="cuda")  # the backward's recomputation runs under the forward's autocast
    def forward(ctx, h, weight, bias, index, temperature: float, chunk: int):
        N = h.shape[0]
        logp = torch.empty(N, dtype=torch.float32, device=h.device)
        ent = torch.empty(N, dtype=torch.float32, device=h.device)
        lse = torch.empty(N, dtype=torch.float32, device=h.device)
        for s in range(0, N, chunk):
            e = min(s + chunk, N)
            z = _logits(h[s:e], weight, bias, temperature)  # [c, V] float32
            lse[s:e] = torch.logsumexp(z, dim=-1)
            logp[s:e] = z.gather(-1, index[s:e, None]).squeeze(-1) - lse[s:e]
            ent[s:e] = lse[s:e] - (torch.softmax(z, dim=-1) * z).sum(-1)
        ctx.save_for_backward(h, weight, bias, index, lse)
        ctx.temperature, ctx.chunk = temperature, chunk
        ctx.mark_non_differentiable(ent)
        return logp, ent

    @staticmethod
    @torch.amp.custom_bwd(device_type="cuda")
    def backward(ctx, g_logp, _g_ent):
        h, weight, bias, index, lse = ctx.saved_tensors
        need_h, need_w, need_b = ctx.needs_input_grad[:3]
        N = h.shape[0]
        gh = torch.empty_like(h) if need_h else None
        gw = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if need_w else None
        gb = torch.zeros(bias.shape, dtype=torch.float32, device=bias.device) if need_b else None
        for s in range(0, N, ctx.chunk):
            e = min(s + ctx.chunk, N)
            z = _logits(h[s:e], weight, bias, ctx.temperature)  # [c, V], recomputed
            g = g_logp[s:e].float()  # [c]
            gz = torch.exp(z - lse[s:e, None]).mul_(-g[:, None])  # -g * softmax(z)
            gz.scatter_add_(-1, index[s:e, None], g[:, None])  # + g * onehot(y)
            if ctx.temperature != 1.0:
                gz.div_(ctx.temperature)
            gz = gz.to(h.dtype)
            if need_h:
                gh[s:e] = gz @ weight
            if need_w:
                gw.addmm_(gz.t().float(), h[s:e].float())
            if need_b:
                gb += gz.float().sum(0)
        gw = gw.to(weight.dtype) if need_w else None
        gb = gb.to(bias.dtype) if need_b else None
        return gh, gw, gb, None, None, None


def _logits(h, weight, bias, temperature):
    """The ordinary path's numbers: the head in the model's dtype, divided by the temperature, then float32."""
    z = F.linear(h, weight, bias)
    if temperature != 1.0:
        z = z / temperature
    return z.float()


def chunked_head_logprobs(hidden: torch.Tensor, head: torch.nn.Linear, index: torch.Tensor, temperature: float,
                          chunk: int) -> tuple[torch.Tensor, torch.Tensor]:
    """hidden [B, T, H] (final hidden states predicting each token), head: the LM head, index [B, T] long.

    Returns (logp [B, T] float32, differentiable w.r.t. hidden and the head's weights; entropy [B, T] float32,
    no gradient), `chunk` positions at a time (see the module docstring)."""
    B, T, H = hidden.shape
    logp, ent = _ChunkedHeadLogprob.apply(hidden.reshape(B * T, H), head.weight, head.bias,
                                          index.reshape(B * T), float(temperature), int(chunk))
    return logp.view(B, T), ent.view(B, T)


def plain_head(model) -> torch.nn.Linear | None:
    """The model's LM head when its logits are exactly `head(final hidden state)` with local (unsharded)
    weights, else None (the caller then takes the full-logits path): a plain nn.Linear (not wrapped by an
    adapter), of a model type in HEAD_ONLY_TYPES, not an FSDP2 DTensor."""
    model = getattr(model, "module", model)  # DDP: the wrapped model (the hook works through DDP's forward)
    config = getattr(model, "config", None)
    if getattr(config, "model_type", None) not in HEAD_ONLY_TYPES:
        return None
    get = getattr(model, "get_output_embeddings", None)
    head = get() if get is not None else None
    if type(head) is not torch.nn.Linear or hasattr(head.weight, "full_tensor"):
        return None
    return head


class capture_head_input:
    """Context manager: while active, the LM head's input is recorded (`.hidden`) and the head is applied to
    zero positions instead, so the model's own forward (DDP, adapters and hooks included) returns empty logits
    and the caller applies the head chunk by chunk."""

    def __init__(self, head: torch.nn.Module):
        self.head, self.hidden, self._handle = head, None, None

    def _hook(self, _module, args):
        self.hidden = args[0]
        return (args[0][..., :0, :],)

    def __enter__(self):
        self._handle = self.head.register_forward_pre_hook(self._hook)
        return self

    def __exit__(self, *exc):
        self._handle.remove()
        return False
