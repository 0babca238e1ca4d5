"""The default rollout engine: batched sampling with a transformers causal LM and its KV cache.

Prompts are left-padded; each prompt is encoded once and its KV cache repeated n times; then one token per step
is sampled for every unfinished row. Rows that emit EOS leave the batch (their cache rows are dropped), so
short responses do not pay for long ones.
"""

from __future__ import annotations

import torch

from lengthrl.errors import ConfigError
from lengthrl.rollout.sampling import sample_tokens, sampling_logprobs
from lengthrl.rollout.types import RolloutBatch, SamplingParams


def left_pad(seqs: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-pad token lists. Returns ids [B, P] and mask [B, P] (1 on real tokens)."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        if s:
            ids[i, width - len(s):] = torch.tensor(s, dtype=torch.long)
            mask[i, width - len(s):] = 1
    return ids, mask


def positions_from_mask(mask: torch.Tensor) -> torch.Tensor:
    """Position ids that skip left padding: cumsum(mask) - 1, clamped at 0. [B, L] -> [B, L]."""
    return (mask.cumsum(-1) - 1).clamp(min=0)


def _eos_ids(model, tokenizer, eos_token_ids) -> list[int]:
    if eos_token_ids is not None:
        ids = [eos_token_ids] if isinstance(eos_token_ids, int) else list(eos_token_ids)
    else:
        ids = []
        if tokenizer is not None and tokenizer.eos_token_id is not None:
            ids.append(tokenizer.eos_token_id)
        gen = getattr(model, "generation_config", None)
        g = getattr(gen, "eos_token_id", None) if gen is not None else None
        ids += [g] if isinstance(g, int) else list(g or [])
    ids = sorted(set(ids))
    if not ids:
        raise ConfigError("rollout engine: no EOS token id; pass eos_token_ids= or a tokenizer with an eos_token")
    return ids


class HFEngine:
    """`RolloutEngine` over a transformers causal LM.

    Args:
        model: a causal LM (`AutoModelForCausalLM`); it is put in eval mode during generation and restored.
        tokenizer: gives pad/eos ids (optional when `pad_token_id` and `eos_token_ids` are given).
        pad_token_id / eos_token_ids: override the tokenizer's. Generation stops at any of `eos_token_ids`.
        seed: seed of the engine's generator (used when `SamplingParams.seed` is None). Generators live on the
            model's device (`torch.multinomial` needs one there), so a CUDA run samples a different stream
            from a CPU run of the same seed.
        use_cache: False recomputes the whole sequence every step (slow; for models without a KV cache and
            for measuring what the cache buys).
    """

    def __init__(self, model, tokenizer=None, pad_token_id: int | None = None, eos_token_ids=None,
                 seed: int = 0, use_cache: bool = True):
        self.model = model
        self.eos_token_ids = _eos_ids(model, tokenizer, eos_token_ids)
        if pad_token_id is None:
            pad_token_id = tokenizer.pad_token_id if tokenizer is not None else None
        self.pad_token_id = int(pad_token_id if pad_token_id is not None else self.eos_token_ids[0])
        self.use_cache = use_cache
        self.generator = torch.Generator(device=self._device()).manual_seed(seed)

    def state_dict(self) -> dict:
        """The generator state (for checkpoints)."""
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        """Restore the generator state saved by `state_dict` (on the same kind of device)."""
        self.generator.set_state(state["generator"])

    def _device(self) -> torch.device:
        p = next(self.model.parameters(), None)
        return torch.device("cpu") if p is None else p.device

    def _generator(self, params: SamplingParams) -> torch.Generator:
        """The generator of one call: a fresh one on the model's device for `params.seed`, else the engine's
        (moved to the model's device, with its state, if the model has moved since)."""
        dev = self._device()
        if params.seed is not None:
            return torch.Generator(device=dev).manual_seed(params.seed)
        if self.generator.device != dev:  # a generator's state only transfers between devices of one kind
            g = torch.Generator(device=dev)
            if self.generator.device.type == dev.type:
                g.set_state(self.generator.get_state())
            else:
                g.manual_seed(int(torch.randint(2**62, (1,), generator=self.generator)))
            self.generator = g
        return self.generator

    def _forward(self, ids, mask, pos, cache):
        kw = dict(input_ids=ids, attention_mask=mask, position_ids=pos, past_key_values=cache, use_cache=self.use_cache)
        try:
            out = self.model(**kw, logits_to_keep=1)
        except TypeError:  # models without logits_to_keep
            out = self.model(**kw)
        return out.logits[:, -1, :], (out.past_key_values if self.use_cache else None)  # [b, V]

    @torch.no_grad()
    def generate(self, prompt_ids: list[list[int]], n: int, params: SamplingParams) -> RolloutBatch:
        """Sample `n` responses per prompt. See `RolloutBatch` for the layout."""
        if not isinstance(params, SamplingParams):
            raise ConfigError("generate: params must be a SamplingParams")
        if not isinstance(n, int) or n < 1:
            raise ConfigError(f"generate: n (responses per prompt) must be an integer >= 1, got {n!r}")
        if not prompt_ids:
            raise ConfigError("generate: prompt_ids is empty; give at least one prompt")
        for i, p in enumerate(prompt_ids):
            if len(p) == 0:
                raise ConfigError(f"generate: prompt {i} has no tokens; every prompt needs at least one (e.g. BOS)")
        gen = self._generator(params)
        was_training = self.model.training
        self.model.eval()
        try:
            return self._generate(prompt_ids, n, params, gen)
        finally:
            self.model.train(was_training)

    def _generate(self, prompt_ids, n, params, gen) -> RolloutBatch:
        dev = self._device()
        n_prompts, T = len(prompt_ids), params.max_new_tokens
        p_ids, p_mask = left_pad(prompt_ids, self.pad_token_id)  # [Np, P]
        B = n_prompts * n
        eos = torch.tensor(self.eos_token_ids, device=dev)
        banned = eos if params.ignore_eos else None
        # outputs stay on the model's device while decoding and are copied to the host once at the end
        out_ids = torch.full((B, T), self.pad_token_id, dtype=torch.long, device=dev)
        out_logp = torch.zeros((B, T), dtype=torch.float32, device=dev)
        lengths = torch.zeros(B, dtype=torch.long, device=dev)
        finished = torch.zeros(B, dtype=torch.bool, device=dev)

        full_ids = p_ids.repeat_interleave(n, 0).to(dev)  # [B, P] (used without a cache)
        mask = p_mask.repeat_interleave(n, 0).to(dev)  # [B, P(+t)]
        active = torch.arange(B, device=dev)  # rows of the batch still generating
        if self.use_cache:
            logits, cache = self._forward(p_ids.to(dev), p_mask.to(dev), positions_from_mask(p_mask).to(dev), None)
            cache.batch_repeat_interleave(n)
            logits = logits.repeat_interleave(n, 0)  # [B, V]
        else:
            cache = None
            logits, _ = self._forward(full_ids, mask, positions_from_mask(mask), None)
        next_pos = mask.sum(-1, keepdim=True)  # [b, 1] position of the next token

        for t in range(T):
            lp = sampling_logprobs(logits, params, banned)  # [b, V]
            tok = sample_tokens(lp, params, gen)  # [b]
            out_ids[active, t] = tok
            out_logp[active, t] = lp.gather(-1, tok[:, None]).squeeze(-1)
            lengths[active] = t + 1
            done = torch.isin(tok, eos)
            finished[active[done]] = True
            n_done = int(done.sum())  # the one host read per token: whether rows leave the batch
            if t == T - 1 or n_done == len(done):
                break
            if n_done:
                keep = (~done).nonzero().squeeze(-1)  # rows of the current active set that go on
                active, tok, mask, next_pos = active[keep], tok[keep], mask[keep], next_pos[keep]
                if self.use_cache:
                    cache.batch_select_indices(keep)
                else:
                    full_ids = full_ids[keep]
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
            if self.use_cache:
                logits, cache = self._forward(tok[:, None], mask, next_pos, cache)
            else:
                full_ids = torch.cat([full_ids, tok[:, None]], dim=1)
                logits, _ = self._forward(full_ids, mask, positions_from_mask(mask), None)
            next_pos = next_pos + 1

        out_ids, out_logp, lengths, finished = out_ids.cpu(), out_logp.cpu(), lengths.cpu(), finished.cpu()
        T = int(lengths.max())  # trim to the longest response
        resp_mask = (torch.arange(T)[None, :] < lengths[:, None]).long()  # [B, T], includes the EOS
        out_ids = out_ids[:, :T].masked_fill(resp_mask == 0, self.pad_token_id)
        out_logp = out_logp[:, :T] * resp_mask
        return RolloutBatch(
            prompt_ids=p_ids.repeat_interleave(n, 0),
            prompt_mask=p_mask.repeat_interleave(n, 0),
            response_ids=out_ids,
            response_mask=resp_mask,
            logp=out_logp,
            lengths=lengths,
            truncated=~finished,
            group_index=torch.arange(n_prompts).repeat_interleave(n),
        )
