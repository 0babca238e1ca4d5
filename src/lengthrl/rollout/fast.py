"""A lean decoder for Llama / Qwen2-architecture models: the rollout engine that pays on CPU.

For a small model the cost of a decoding step is framework overhead, not arithmetic: building 4-D masks,
growing a dynamic KV cache by concatenation, module hooks and output dataclasses. `FastEngine` runs the same
network in plain torch ops over the transformers model's own parameters (read at every call, never copied, so
optimizer updates are seen at once):

    x = embed(tok); per layer: h = x + o(attn(rope(q(n1(x))), rope(k(n1(x))), v(n1(x)))); x = h + down(silu(gate(n2(h))) * up(n2(h)))
    logits = lm_head(norm(x))

with RMSNorm (Zhang & Sennrich 2019, arXiv 1910.07467), rotary embeddings (Su et al. 2021, arXiv 2104.09864;
cos/sin from the model's own `rotary_emb`, so its rope scaling is respected), grouped-query attention
(Ainslie et al. 2023, arXiv 2305.13245) through `scaled_dot_product_attention(enable_gqa=True)`, and SwiGLU
(Shazeer 2020, arXiv 2002.05202). The KV cache ([rows, H_kv, width, d] per layer) grows by blocks of
`cache_block` columns as the responses lengthen (never wider than P + max_new_tokens) and holds only the rows
still running (see compaction below): every row writes its step-t key at column P + t (prompts are
left-padded to a common width P), so the key padding mask is fixed for the whole call and never rebuilt.

Sampling is HFEngine's (`sampling.py`), on the same rows in the same order, so the random stream is consumed
identically; finished rows stay in the cache until a quarter of the resident rows are finished, then the
cache is compacted. Architectures the decoder does not cover fall back to `HFEngine` (`make_engine`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from lengthrl.errors import ConfigError
from lengthrl.models.lora import base_model, merged_weight
from lengthrl.registry import Registry
from lengthrl.rollout.hf import HFEngine, left_pad
from lengthrl.rollout.sampling import sample_tokens, sampling_logprobs
from lengthrl.rollout.types import RolloutBatch

# model_type -> check(config) returning None when the lean decoder reproduces the model, else the reason
FAST_ARCHITECTURES: Registry[Callable[[object], str | None]] = Registry("fast-decoder architecture")


def _check_llama_like(config) -> str | None:
    """Llama and Qwen2 share the decoder; refuse the options the lean path does not implement."""
    act = getattr(config, "hidden_act", "silu")
    if act not in ("silu", "swish"):
        return f"hidden_act {act!r} (only silu)"
    if getattr(config, "use_sliding_window", False):
        return "sliding-window attention"
    if getattr(config, "pretraining_tp", 1) not in (1, None):
        return "pretraining_tp > 1"
    return None


FAST_ARCHITECTURES.register("llama", _check_llama_like)
FAST_ARCHITECTURES.register("qwen2", _check_llama_like)


def fast_unsupported_reason(model) -> str | None:
    """None when `FastEngine` supports `model`, else a short reason (architecture or option not covered).
    A peft (LoRA) model is judged by its base model: the decoder applies the adapters merged (`bind`)."""
    model = base_model(model)
    config = getattr(model, "config", None)
    mtype = getattr(config, "model_type", None)
    if mtype not in FAST_ARCHITECTURES:
        return f"model_type {mtype!r} (supported: {', '.join(FAST_ARCHITECTURES)})"
    inner = getattr(model, "model", None)
    if inner is None or not hasattr(inner, "layers") or not hasattr(inner, "rotary_emb"):
        return "the model has no .model.layers / .model.rotary_emb"
    return FAST_ARCHITECTURES[mtype](config)


def _rms_norm(x: torch.Tensor, norm: torch.nn.Module) -> torch.Tensor:
    """LlamaRMSNorm: w * x / sqrt(mean(x^2) + eps), computed in float32 like transformers. [..., H]."""
    dtype = x.dtype
    x32 = x.float()
    x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + norm.variance_epsilon)
    return norm.weight * x32.to(dtype)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    d = x.shape[-1] // 2
    return torch.cat((-x[..., d:], x[..., :d]), dim=-1)


@dataclass
class _Layer:
    """References to one decoder layer's modules (no weight copies)."""

    n1: torch.nn.Module
    q: torch.nn.Linear
    k: torch.nn.Linear
    v: torch.nn.Linear
    o: torch.nn.Linear
    n2: torch.nn.Module
    gate: torch.nn.Linear
    up: torch.nn.Linear
    down: torch.nn.Linear


class LeanDecoder:
    """Forward passes of a Llama/Qwen2 `*ForCausalLM` with a preallocated KV cache, in plain torch.

    `prefill` encodes left-padded prompts into a fresh cache; `step` appends one token per row. Both return
    the next-token logits [b, V] of the last position.
    """

    def __init__(self, model):
        reason = fast_unsupported_reason(model)
        if reason is not None:
            raise ConfigError(f"FastEngine does not support this model: {reason}; use rollout_engine = 'hf'")
        self.model = model = base_model(model)  # a peft model: its transformers model, adapted layers included
        self.bind()
        a0 = model.model.layers[0].self_attn
        cfg = model.config
        self.n_heads = cfg.num_attention_heads
        self.n_kv = getattr(cfg, "num_key_value_heads", None) or self.n_heads
        self.head_dim = a0.head_dim
        self.scaling = a0.scaling
        self._rope_len = 0
        self._cos = self._sin = None

    def bind(self) -> None:
        """(Re)collect references to the model's modules; called per generate, so replaced modules are seen.
        LoRA-adapted linears (peft) are read with their adapters merged, W + (alpha / r) B A, computed here
        from the current adapter weights (`lengthrl.models.lora.merged_weight`)."""
        inner, m = self.model.model, merged_weight
        self.embed, self.norm, self.rotary, self.lm_head = (inner.embed_tokens, inner.norm, inner.rotary_emb,
                                                            m(self.model.lm_head))
        self.layers = [
            _Layer(L.input_layernorm, m(L.self_attn.q_proj), m(L.self_attn.k_proj), m(L.self_attn.v_proj),
                   m(L.self_attn.o_proj), L.post_attention_layernorm, m(L.mlp.gate_proj), m(L.mlp.up_proj),
                   m(L.mlp.down_proj))
            for L in inner.layers
        ]

    def _rope_table(self, length: int, device, dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """cos, sin [length, d] from the model's rotary module (its scaling and attention factor included)."""
        if self._rope_len < length or self._cos.device != device or self._cos.dtype != dtype:
            pos = torch.arange(length, device=device)[None]  # [1, L]
            probe = torch.zeros(1, device=device, dtype=dtype)
            cos, sin = self.rotary(probe, pos)  # [1, L, d]
            self._cos, self._sin, self._rope_len = cos[0], sin[0], length
        return self._cos, self._sin

    def new_cache(self, rows: int, width: int, device, dtype) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per layer (K, V), each [rows, H_kv, width, d], uninitialised."""
        shape = (rows, self.n_kv, width, self.head_dim)
        return [(torch.empty(shape, device=device, dtype=dtype), torch.empty(shape, device=device, dtype=dtype))
                for _ in self.layers]

    def _attn_block(self, L: _Layer, x, cos, sin, cache, col: slice, width: int, attn_mask):
        """x [b, s, H] -> x + attention output; writes K/V of the s new positions at cache columns `col`.

        attn_mask: a bool mask, or None (every cached key visible: one new token, no padding), or "causal"
        (a prefill without padding): the mask-free and is_causal forms let SDPA pick its flash kernels."""
        b, s, _ = x.shape
        h = _rms_norm(x, L.n1)
        q = F.linear(h, L.q.weight, L.q.bias).view(b, s, self.n_heads, self.head_dim).transpose(1, 2)
        k = F.linear(h, L.k.weight, L.k.bias).view(b, s, self.n_kv, self.head_dim).transpose(1, 2)
        v = F.linear(h, L.v.weight, L.v.bias).view(b, s, self.n_kv, self.head_dim).transpose(1, 2)
        q = q * cos + _rotate_half(q) * sin  # [b, Hq, s, d]
        k = k * cos + _rotate_half(k) * sin  # [b, Hkv, s, d]
        kc, vc = cache
        kc[:, :, col] = k
        vc[:, :, col] = v
        causal = isinstance(attn_mask, str)
        q = q.to(kc.dtype)  # attention in the cache's dtype (the compute dtype under autocast; a no-op otherwise)
        o = F.scaled_dot_product_attention(q, kc[:, :, :width], vc[:, :, :width],
                                           attn_mask=None if causal else attn_mask, is_causal=causal,
                                           scale=self.scaling, enable_gqa=self.n_kv != self.n_heads)
        o = o.transpose(1, 2).reshape(b, s, self.n_heads * self.head_dim)
        return x + F.linear(o, L.o.weight, L.o.bias)

    def _mlp_block(self, L: _Layer, x):
        h = _rms_norm(x, L.n2)
        g = F.linear(h, L.gate.weight, L.gate.bias)
        u = F.linear(h, L.up.weight, L.up.bias)
        return x + F.linear(F.silu(g) * u, L.down.weight, L.down.bias)

    def _run(self, ids, pos, cache, col: slice, width: int, attn_mask, all_logits: bool = False,
             head: bool = True) -> torch.Tensor:
        """ids, pos [b, s]; returns logits [b, V] of the last of the s positions ([b, s, V] if all_logits);
        head=False: the final hidden states [b, (s,) H] instead (the LM head's input)."""
        x = self.embed(ids)  # [b, s, H]
        cos_t, sin_t = self._rope_table(int(pos.max()) + 1, x.device, x.dtype)
        cos, sin = cos_t[pos][:, None], sin_t[pos][:, None]  # [b, 1, s, d]
        for L, c in zip(self.layers, cache):
            x = self._attn_block(L, x, cos, sin, c, col, width, attn_mask)
            x = self._mlp_block(L, x)
        x = _rms_norm(x if all_logits else x[:, -1], self.norm)  # [b, (s,) H]
        if not head:
            return x
        return F.linear(x, self.lm_head.weight, self.lm_head.bias)  # [b, (s,) V]

    def prefill(self, ids: torch.Tensor, mask: torch.Tensor, cache, head: bool = True) -> torch.Tensor:
        """Left-padded prompts ids/mask [b, P] into cache columns 0..P-1; logits [b, V] of position P-1.

        Causal mask with key padding; every query also sees itself so padded rows never go all -inf.
        """
        P = ids.shape[1]
        pos = (mask.cumsum(-1) - 1).clamp(min=0)  # [b, P]
        if bool(mask.all()):  # no padding: plain causal attention (is_causal, no mask tensor)
            return self._run(ids, pos, cache, slice(0, P), P, "causal")
        causal = torch.ones(P, P, dtype=torch.bool, device=ids.device).tril()  # [P, P]
        eye = torch.eye(P, dtype=torch.bool, device=ids.device)
        am = (causal[None] & mask.bool()[:, None, :]) | eye[None]  # [b, P(query), P(key)]
        return self._run(ids, pos, cache, slice(0, P), P, am[:, None], head=head)

    def step(self, tok: torch.Tensor, pos: torch.Tensor, cache, col: int,
             key_mask: torch.Tensor | None) -> torch.Tensor:
        """One new token per row: tok, pos [b]; written at column `col`; key_mask [b, 1, 1, col + 1] bool, or
        None when every cached key is visible (no left padding)."""
        return self._run(tok[:, None], pos[:, None], cache, slice(col, col + 1), col + 1, key_mask)


    def score_logits(self, prompt_ids, prompt_mask, response_ids, head: bool = True) -> torch.Tensor:
        """Logits [B, T, V] predicting each response token, differentiable, with shared-prefix encoding.

        prompt_ids / prompt_mask [B, P] left-padded, response_ids [B, T] right-padded (RolloutBatch layout).
        Identical consecutive prompts (the G rows of a group) are encoded once and their K/V broadcast to the
        rows (gradients flow back through the broadcast); the responses then attend to the prompt cache and
        causally to themselves. Position t's logits are those of `model(...).logits[:, P - 1 + t]`.
        head=False: the final hidden states [B, T, H] instead (for `chunked_head_logprobs`).
        """
        from lengthrl.models.lora import is_adapted

        if is_adapted(self.model):  # the scorer reads weights directly: it would ignore the adapters' gradient path
            raise ConfigError("config key 'logprob_impl': the lean scorer does not train LoRA adapters (peft "
                              "layers); use logprob_impl = 'model' (what 'auto' picks with lora_r > 0)")
        B, P = prompt_ids.shape
        T = response_ids.shape[1]
        key = torch.cat([prompt_ids, prompt_mask.to(prompt_ids.dtype)], dim=1)  # [B, 2P]
        _, inv, counts = torch.unique_consecutive(key, dim=0, return_inverse=True, return_counts=True)
        first = torch.cumsum(counts, 0) - counts  # [U] first row of each distinct prompt
        ids_u, mask_u = prompt_ids[first], prompt_mask[first]  # [U, P]
        dtype = compute_dtype(self.model, ids_u.device)
        cache = [(k.new_zeros(k.shape), v.new_zeros(v.shape))
                 for k, v in self.new_cache(len(first), P, ids_u.device, dtype)]
        last = self.prefill(ids_u, mask_u, cache, head=head)[inv]  # [B, V]: predicts response token 0
        if T == 1:
            return last[:, None]
        s = T - 1  # response tokens 0..T-2 are inputs
        cache = [(torch.cat([k[inv], k.new_zeros(B, k.shape[1], s, k.shape[3])], 2),
                  torch.cat([v[inv], v.new_zeros(B, v.shape[1], s, v.shape[3])], 2)) for k, v in cache]
        pos = prompt_mask.sum(-1, keepdim=True) + torch.arange(s, device=prompt_ids.device)[None]  # [B, s]
        causal = torch.ones(s, s, dtype=torch.bool, device=prompt_ids.device).tril()  # [s, s]
        am = torch.cat([prompt_mask.bool()[:, None, :].expand(B, s, P), causal[None].expand(B, s, s)], 2)
        rest = self._run(response_ids[:, :s], pos, cache, slice(P, P + s), P + s, am[:, None], all_logits=True,
                         head=head)
        return torch.cat([last[:, None], rest], dim=1)  # [B, T, V]


def compute_dtype(model, device: torch.device) -> torch.dtype:
    """The dtype the KV cache is kept in: autocast's when it is on for `device`, else the parameters'."""
    if torch.is_autocast_enabled(device.type):
        return torch.get_autocast_dtype(device.type)
    return next(model.parameters()).dtype


def _select_cache(cache, rows: torch.Tensor, width: int):
    """Keep `rows` of every layer's K/V; only the first `width` columns are copied into the new buffers."""
    out = []
    for kc, vc in cache:
        nk = kc.new_empty((len(rows),) + kc.shape[1:])
        nv = vc.new_empty((len(rows),) + vc.shape[1:])
        nk[:, :, :width] = kc[rows, :, :width]
        nv[:, :, :width] = vc[rows, :, :width]
        out.append((nk, nv))
    return out


def _grow_cache(cache, width: int, used: int):
    """Every layer's K/V in new buffers of `width` columns, the first `used` columns copied."""
    out = []
    for kc, vc in cache:
        shape = kc.shape[:2] + (width,) + kc.shape[3:]
        nk, nv = kc.new_empty(shape), vc.new_empty(shape)
        nk[:, :, :used] = kc[:, :, :used]
        nv[:, :, :used] = vc[:, :, :used]
        out.append((nk, nv))
    return out


class FastEngine(HFEngine):
    """`RolloutEngine` for Llama/Qwen2 models through `LeanDecoder`; same arguments and output as `HFEngine`.

    compact_frac: compact the cache once this fraction of the resident rows has finished (0 = at every
        finish, as HFEngine does). Finished rows are never sampled, so the choice does not change outputs.
    compile: wrap the decoder's step in `torch.compile` (optional; measured in docs/performance.md).
    cache_block: the KV cache starts at P + cache_block columns and grows by cache_block when a response
        reaches its end, so memory follows the longest running response, not max_new_tokens. Outputs do not
        depend on it.
    """

    def __init__(self, model, tokenizer=None, pad_token_id: int | None = None, eos_token_ids=None,
                 seed: int = 0, compact_frac: float = 0.25, compile: bool = False, cache_block: int = 64):
        super().__init__(model, tokenizer, pad_token_id=pad_token_id, eos_token_ids=eos_token_ids, seed=seed)
        if not 0 <= compact_frac < 1:
            raise ConfigError(f"FastEngine: compact_frac must be in [0, 1), got {compact_frac!r}")
        if not (isinstance(cache_block, int) and cache_block >= 1):
            raise ConfigError(f"FastEngine: cache_block must be an integer >= 1, got {cache_block!r}")
        self.cache_block = cache_block
        self.decoder = LeanDecoder(model)
        self.compact_frac = compact_frac
        self._step = torch.compile(self.decoder.step, dynamic=True) if compile else self.decoder.step

    def _generate(self, prompt_ids, n, params, gen) -> RolloutBatch:
        dev = self._device()
        dtype = compute_dtype(self.model, dev)
        n_prompts, T = len(prompt_ids), params.max_new_tokens
        p_ids, p_mask = left_pad(prompt_ids, self.pad_token_id)  # [Np, P]
        P, B = p_ids.shape[1], n_prompts * n
        eos = torch.tensor(self.eos_token_ids, device=dev)
        banned = eos if params.ignore_eos else None
        self.decoder.bind()
        cache = self.decoder.new_cache(n_prompts, P + min(T, self.cache_block), dev, dtype)  # grows below
        logits = self.decoder.prefill(p_ids.to(dev), p_mask.to(dev), cache)  # [Np, V]
        logits = logits.repeat_interleave(n, 0)  # [B, V]
        cache = [(k.repeat_interleave(n, 0), v.repeat_interleave(n, 0)) for k, v in cache]
        padded = not bool(p_mask.all())  # host tensor: no device read; unpadded prompts decode mask-free
        key_mask = torch.ones(B, P + T, dtype=torch.bool, device=dev)  # [B, P+T], fixed for the call
        key_mask[:, :P] = p_mask.repeat_interleave(n, 0).bool().to(dev)
        next_pos = p_mask.sum(-1).repeat_interleave(n, 0).to(dev)  # [B] position of the next token

        resident = torch.arange(B, device=dev)  # batch row of each cache row
        running = torch.ones(B, dtype=torch.bool, device=dev)  # per cache row: still generating
        toks, lps, rows_t = [], [], []  # per step: sampled tokens, their log-probs, their batch rows
        for t in range(T):
            run_idx = running.nonzero().squeeze(-1)  # cache rows sampled this step
            all_run = len(run_idx) == len(resident)
            lg = logits if all_run else logits[run_idx]
            lp = sampling_logprobs(lg, params, banned)  # [r, V]
            tok = sample_tokens(lp, params, gen)  # [r]
            rows = resident if all_run else resident[run_idx]
            toks.append(tok)
            lps.append(lp.gather(-1, tok[:, None]).squeeze(-1))
            rows_t.append(rows)
            done = torch.isin(tok, eos)
            if t == T - 1 or bool(done.all()):
                break
            if all_run:
                running = ~done
                step_tok = tok
            else:
                running = running.clone()
                running[run_idx] = ~done
                step_tok = torch.full_like(resident, self.pad_token_id)
                step_tok[run_idx] = tok
            n_fin = len(resident) - int(running.sum())
            if n_fin and n_fin > self.compact_frac * len(resident):
                keep = running.nonzero().squeeze(-1)
                cache = _select_cache(cache, keep, P + t)
                resident, running, step_tok = resident[keep], running[keep], step_tok[keep]
                key_mask, next_pos = key_mask[keep], next_pos[keep]
            if P + t >= cache[0][0].shape[2]:  # the next column is past the cache: one more block
                cache = _grow_cache(cache, min(P + T, P + t + self.cache_block), P + t)
            logits = self._step(step_tok, next_pos, cache, P + t,
                                key_mask[:, None, None, : P + t + 1] if padded else None)
            next_pos = next_pos + 1
        return self._assemble(p_ids, p_mask, n, n_prompts, B, toks, lps, rows_t, eos)

    def _assemble(self, p_ids, p_mask, n, n_prompts, B, toks, lps, rows_t, eos) -> RolloutBatch:
        """Scatter the per-step samples into the [B, T] layout of `RolloutBatch` (one copy at the end)."""
        T = len(toks)
        out_ids = torch.full((B, T), self.pad_token_id, dtype=torch.long)
        out_logp = torch.zeros((B, T), dtype=torch.float32)
        lengths = torch.zeros(B, dtype=torch.long)
        finished = torch.zeros(B, dtype=torch.bool)
        steps = torch.cat([torch.full_like(r, t) for t, r in enumerate(rows_t)]).cpu()
        rows = torch.cat(rows_t).cpu()
        tok = torch.cat(toks).cpu()
        out_ids[rows, steps] = tok
        out_logp[rows, steps] = torch.cat(lps).float().cpu()
        lengths.scatter_reduce_(0, rows, steps + 1, reduce="amax")
        finished[rows[torch.isin(tok, eos.cpu())]] = True
        resp_mask = (torch.arange(T)[None, :] < lengths[:, None]).long()  # [B, T], includes the EOS
        return RolloutBatch(
            prompt_ids=p_ids.repeat_interleave(n, 0),
            prompt_mask=p_mask.repeat_interleave(n, 0),
            response_ids=out_ids.masked_fill(resp_mask == 0, self.pad_token_id),
            response_mask=resp_mask,
            logp=out_logp * resp_mask,
            lengths=lengths,
            truncated=~finished,
            group_index=torch.arange(n_prompts).repeat_interleave(n),
        )


# rollout_engine config value -> factory(model, tokenizer, seed) -> engine
ENGINES: Registry[Callable[..., HFEngine]] = Registry("rollout engine")


@ENGINES.register("hf")
def _hf(model, tokenizer=None, seed: int = 0, **kw) -> HFEngine:
    return HFEngine(model, tokenizer, seed=seed, **kw)


@ENGINES.register("fast")
def _fast(model, tokenizer=None, seed: int = 0, **kw) -> HFEngine:
    return FastEngine(model, tokenizer, seed=seed, **kw)


@ENGINES.register("auto")
def _auto(model, tokenizer=None, seed: int = 0, **kw) -> HFEngine:
    if fast_unsupported_reason(model) is None:
        return FastEngine(model, tokenizer, seed=seed, **kw)
    return HFEngine(model, tokenizer, seed=seed, **kw)


def make_engine(kind: str, model, tokenizer=None, seed: int = 0, **kw) -> HFEngine:
    """The rollout engine named `kind`: 'auto' (FastEngine when the model is supported, else HFEngine),
    'hf' or 'fast' (a ConfigError naming the reason when the model is not supported)."""
    return ENGINES[kind](model, tokenizer, seed=seed, **kw)
