"""The policy update: epochs × mini-batches × micro-batches, with the loss normalised exactly as on the whole
mini-batch (global token and sequence counts passed to every micro-batch), AdamW, clipping, schedule."""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import torch

from lengthrl.errors import ConfigError
from lengthrl.objectives import LOSSES, policy_loss
from lengthrl.rollout import compute_logprobs


@dataclass
class UpdateBatch:
    """Everything the update needs, B sequences (groups contiguous)."""

    prompt_ids: torch.Tensor  # [B, P] left-padded
    prompt_mask: torch.Tensor  # [B, P]
    response_ids: torch.Tensor  # [B, T] right-padded
    response_mask: torch.Tensor  # [B, T] long: real response tokens, EOS included
    loss_mask: torch.Tensor  # [B, T] float: response tokens (EOS included) that enter the loss
    advantages: torch.Tensor  # [B]
    group_index: torch.Tensor  # [B]
    old_logp: torch.Tensor | None = None  # [B, T]; None: the update's own first forward (one epoch, one mini-batch)
    ref_logp: torch.Tensor | None = None  # [B, T] when beta > 0

    def rows(self, idx: torch.Tensor) -> "UpdateBatch":
        pick = lambda t: None if t is None else t[idx]  # noqa: E731
        return UpdateBatch(*(pick(getattr(self, f)) for f in self.__dataclass_fields__))

    def trim(self, prompt_width: int, response_width: int) -> "UpdateBatch":
        """The batch cut to its last `prompt_width` prompt columns and first `response_width` response columns
        (the columns that hold a real token of some row: nothing the loss sees is dropped)."""
        P, T = self.prompt_ids.shape[1], self.response_ids.shape[1]
        if prompt_width >= P and response_width >= T:
            return self
        cut = lambda t: None if t is None else t[:, :response_width]  # noqa: E731
        return UpdateBatch(self.prompt_ids[:, P - prompt_width:], self.prompt_mask[:, P - prompt_width:],
                           cut(self.response_ids), cut(self.response_mask), cut(self.loss_mask), self.advantages,
                           self.group_index, cut(self.old_logp), cut(self.ref_logp))

    def to(self, device: torch.device | str) -> "UpdateBatch":
        """The batch with every tensor on `device` (itself when they already are): the one copy of a step's
        rollout to the training device."""
        move = lambda t: None if t is None else t.to(device, non_blocking=True)  # noqa: E731
        return UpdateBatch(*(move(getattr(self, f)) for f in self.__dataclass_fields__))


def _amp(precision):
    """The autocast context of `precision` (a `lengthrl.train.device.Precision`), a no-op when None."""
    return contextlib.nullcontext() if precision is None else precision.autocast()


def official_valid(advantages: torch.Tensor, d) -> torch.Tensor:
    """The official JustGRPO normaliser's V + 1e-5 (LeapLabTHU/JustGRPO, grpo.py): V = responses with A_i != 0,
    averaged over the W ranks there (each rank scales by 1 / (gen_length·(mean_r V_r + 1e-5)) and DDP averages
    the gradients), i.e. over the global batch sum_r V_r + W·1e-5 here, where each rank's loss is already global."""
    return d.all_sum((advantages != 0).sum().to(torch.float32)) + d.world_size * 1e-5


def loss_hparams(cfg) -> dict:
    """The loss's keyword hyperparameters from the config; a set key the loss does not take (`dual_clip` for a
    loss without a PPO clip) is a ConfigError naming the loss and the key, never silently dropped."""
    spec = LOSSES[cfg.loss]
    for key in ("dual_clip",):
        if getattr(cfg, key) is not None and key not in spec.extra_hparams:
            takes = [n for n, s in LOSSES.items() if key in s.extra_hparams]
            raise ConfigError(f"config key {key!r}: loss {cfg.loss!r} does not take it (losses that do: "
                              f"{', '.join(takes)}); unset {key} or pick one of those losses")
    hp = {"max_len": cfg.max_new_tokens}
    for key in ("clip_low", "clip_high", "loss_agg_mode", "dual_clip"):
        if getattr(cfg, key) is not None:
            hp[key] = getattr(cfg, key)
    if cfg.justgrpo_loss == "official":  # sum over the canvas / (max_new_tokens · V)
        hp["loss_agg_mode"] = "seq-mean-token-sum-norm"
    if cfg.beta > 0:
        hp["beta"] = cfg.beta
    return hp


def extents(b: UpdateBatch) -> tuple[list[int], list[int], list[int]]:
    """Per row, the prompt columns from its first real token to the end, the response columns up to its last
    real token (the widths a micro-batch of these rows needs) and its group, [B] each, read on the host once."""
    P, T = b.prompt_ids.shape[1], b.response_ids.shape[1]
    pm, rm = b.prompt_mask.bool(), b.response_mask.bool()
    first = torch.where(pm.any(-1), pm.to(torch.int8).argmax(-1), torch.full_like(pm[:, 0], P, dtype=torch.long))
    last = (rm * torch.arange(1, T + 1, device=rm.device)).amax(-1) if T else torch.zeros_like(first)
    pw, rw, group = torch.stack([P - first, last, b.group_index.to(last.dtype)]).tolist()
    return pw, rw, group


def token_budget_parts(prompt_w: list[int], response_w: list[int], group: list[int], budget: int,
                       max_rows: int = 0) -> list[list[int]]:
    """Rows packed into micro-batches under a token budget (`micro_batch_tokens`): sorted by response width
    (then prompt width), taken in order while rows x (the micro-batch's prompt width + response width) <= `budget`
    (and at most `max_rows` rows when > 0); a row alone over the budget is a micro-batch by itself. Within a
    micro-batch the rows are in group order, so a group's rows are consecutive (shared-prefix scoring encodes
    each distinct prompt once per micro-batch)."""
    order = sorted(range(len(response_w)), key=lambda i: (response_w[i], prompt_w[i], i))
    parts, cur, wp, wr = [], [], 0, 0
    for i in order:
        p, r = max(wp, prompt_w[i]), max(wr, response_w[i])
        if cur and ((len(cur) + 1) * (p + r) > budget or (max_rows and len(cur) >= max_rows)):
            parts.append(cur)
            cur, p, r = [], prompt_w[i], response_w[i]
        cur.append(i)
        wp, wr = p, r
    if cur:
        parts.append(cur)
    return [sorted(part, key=lambda i: (group[i], i)) for part in parts]


def micro_batches(b: UpdateBatch, micro_rows: int, micro_tokens: int = 0) -> list[tuple[torch.Tensor, int, int]]:
    """How the rows of `b` are split into micro-batches: (row indices, prompt width, response width) per
    micro-batch. `micro_tokens` > 0: packed by `token_budget_parts` (at most `micro_rows` rows when > 0), each cut to
    its own longest row; else consecutive runs of `micro_rows` rows (0 = all) at the batch's full width."""
    B = b.response_ids.shape[0]
    if not B:
        return []
    if micro_tokens <= 0:
        P, T = b.prompt_ids.shape[1], b.response_ids.shape[1]
        return [(idx, P, T) for idx in torch.arange(B, device=b.advantages.device).split(micro_rows or B)]
    pw, rw, group = extents(b)
    out = []
    for part in token_budget_parts(pw, rw, group, micro_tokens, micro_rows):
        idx = torch.tensor(part, dtype=torch.long, device=b.advantages.device)
        out.append((idx, max(1, max(pw[i] for i in part)), max(1, max(rw[i] for i in part))))
    return out


@torch.no_grad()
def batched_logprobs(model, b: UpdateBatch, micro: int, temperature: float, logprob_fn=None,
                     precision=None, micro_tokens: int = 0) -> torch.Tensor:
    """log-probs [B, T] float32 of the batch's responses without gradient, `micro` rows at a time, or packed
    under a budget of `micro_tokens` tokens per forward (`micro_batches`; 0 where a micro-batch is cut);
    `logprob_fn`: the policy's, see `lengthrl.train.policy`; default `compute_logprobs`; `precision`: the run's
    autocast."""
    logprob_fn = logprob_fn or compute_logprobs
    out = torch.zeros(b.response_ids.shape, dtype=torch.float32, device=b.response_ids.device)
    for idx, pw, rw in micro_batches(b, micro, micro_tokens):
        m = b.rows(idx).trim(pw, rw)
        with _amp(precision):
            logp = logprob_fn(model, m.prompt_ids, m.prompt_mask, m.response_ids, m.response_mask,
                              temperature=temperature).float()
        out[idx, :rw] = logp.to(out.device)
    return out


def minibatch_rows(group_index: torch.Tensor, n_mini: int, g: torch.Generator,
                   groups: torch.Tensor | None = None) -> list[torch.Tensor]:
    """Split rows into `n_mini` mini-batches of whole groups, groups in a random order. `groups`: the ids to
    split (default: those of `group_index`); with several ranks, the global list, so every rank draws the same
    mini-batches and keeps the rows it holds (possibly none)."""
    groups = torch.unique(group_index) if groups is None else groups
    perm = groups[torch.randperm(len(groups), generator=g)]
    return [torch.isin(group_index, chunk).nonzero().flatten() for chunk in perm.chunk(n_mini)]


def prompt_mean_normalisers(mb: UpdateBatch, d) -> tuple[torch.Tensor, torch.Tensor]:
    """The `prompt-mean` normalisers of a mini-batch (this rank's rows `mb`, whole groups: a group's rows are
    on one rank): T_p of each row's group, [b] (its loss tokens in the mini-batch), and the global number P of
    groups with at least one loss token (all-reduced), so micro-batch losses add up to the mini-batch's."""
    tok = mb.loss_mask.sum(-1)  # [b]
    ids, inv = torch.unique(mb.group_index, return_inverse=True)  # groups of this rank's rows
    per_group = torch.zeros(len(ids), dtype=tok.dtype, device=tok.device).index_add_(0, inv, tok)  # [g]
    return per_group[inv], d.all_sum((per_group > 0).sum().to(tok.dtype))


@dataclass(frozen=True)
class UpdateResult:
    """What an update did: its optimizer steps, the steps it skipped on a non-finite loss or gradient (and
    which was non-finite first), and its metrics (loss metrics averaged, `skipped_updates`, `optimizer_steps`,
    `lr`, `nonfinite` when a step was skipped)."""

    optimizer_steps: int
    skipped_steps: int
    nonfinite: str | None  # "loss" or "gradient": the first non-finite quantity of a skipped optimizer step
    metrics: dict


def ppo_update(model, optimizer, scheduler, batch: UpdateBatch, cfg, g: torch.Generator, dist=None,
               groups: torch.Tensor | None = None, logprob_fn=None, precision=None,
               scaler=None) -> UpdateResult:
    """Run cfg.epochs × cfg.mini_batches optimizer steps on `batch`.

    Device and precision: `batch` lives on the model's device; `precision` (`lengthrl.train.device.Precision`)
    gives the autocast the forwards run in (log-probs and the loss stay float32); `scaler`: a
    `torch.amp.GradScaler` for float16 (a step whose scaled gradient overflows is skipped and the scale lowered,
    counted in `loss_scale_skips`, not as a non-finite step). Metrics are reduced on the device and read once.

    With several ranks (`dist`, see `lengthrl.train.distributed`), `batch` is this rank's rows and `groups` the
    global group ids to update on; normalisers, losses and metrics are reduced over ranks, and every rank runs
    as many micro-batch passes as the busiest one (idle passes carry zero weight), as DDP and FSDP2 need.
    `logprob_fn`: the policy's log-prob function (signature of `compute_logprobs`, the default)."""
    from lengthrl.train.distributed import SINGLE

    d = dist or SINGLE
    logprob_fn = logprob_fn or compute_logprobs
    spec = LOSSES[cfg.loss]
    hp = loss_hparams(cfg)
    params = [p for p in model.parameters() if p.requires_grad]
    prompt_mean = (hp.get("loss_agg_mode") or spec.agg_mode) == "prompt-mean"
    scale = d.grad_scale(spec.global_norm)
    stats = LossStats(seq_level=spec.level == "sequence")
    n_opt = skipped = 0
    nonfinite = None  # the first non-finite quantity of a skipped update: "loss" or "gradient"
    losses, norms = [], []
    dev = batch.advantages.device
    ent_sum, ent_tok = torch.zeros((), device=dev), torch.zeros((), device=dev)
    scale_skips = 0
    model.train()
    for _epoch in range(cfg.epochs):
        for rows in minibatch_rows(batch.group_index, cfg.mini_batches, g, groups):
            mb = batch.rows(rows)
            num_tokens = d.all_sum(mb.loss_mask.sum())
            num_seqs = d.all_sum((mb.loss_mask.sum(-1) > 0).sum().to(num_tokens.dtype))
            groups_kw = prompt_mean_normalisers(mb, d) if prompt_mean else None  # group_tokens [b], num_groups
            if cfg.justgrpo_loss == "official":
                num_seqs = official_valid(mb.advantages, d)
            parts = micro_batches(mb, cfg.micro_batch_size, cfg.micro_batch_tokens)  # (rows, widths) of mb
            n_parts = d.all_max(len(parts))
            optimizer.zero_grad(set_to_none=True)
            total = torch.zeros((), device=dev)
            for j in range(n_parts):
                if j < len(parts):
                    m = mb.rows(parts[j][0]).trim(*parts[j][1:])
                else:  # this rank holds fewer rows: a zero-weight pass keeps the collectives in step
                    m = batch.rows(torch.zeros(1, dtype=torch.long))
                    m.loss_mask = torch.zeros_like(m.loss_mask)
                group_kw = {}
                if groups_kw is not None:
                    gt = groups_kw[0][parts[j][0]] if j < len(parts) else torch.ones(1, device=dev)
                    group_kw = {"group_tokens": gt, "num_groups": groups_kw[1]}
                with d.sync(model, last=j == n_parts - 1):
                    with _amp(precision):
                        logp, ent = logprob_fn(model, m.prompt_ids, m.prompt_mask, m.response_ids,
                                               m.response_mask, temperature=cfg.temperature, return_entropy=True)
                    logp = logp.float()  # [b, T]: ratios and the loss in float32 whatever the compute dtype
                    old = logp.detach() if m.old_logp is None else m.old_logp
                    out = policy_loss(cfg.loss, logp, old, m.advantages, m.loss_mask, num_tokens=num_tokens,
                                      num_seqs=num_seqs, ref_logp=m.ref_logp, **hp, **group_kw)
                    loss = out.loss if spec.global_norm else out.loss / max(len(parts), 1)
                    (loss * scale if scaler is None else scaler.scale(loss * scale)).backward()
                total = total + loss.detach()
                stats.add(out.metrics)
                ent_sum += (ent.detach() * m.loss_mask).sum()
                ent_tok += m.loss_mask.sum()
            if scaler is not None:
                scaler.unscale_(optimizer)  # true gradients before clipping
            norm = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip if cfg.grad_clip > 0 else math.inf)
            if hasattr(norm, "full_tensor"):  # FSDP2: a DTensor
                norm = norm.full_tensor()
            total = d.all_sum(total) / (1.0 if spec.global_norm else d.world_size)
            finite_loss, finite_norm = bool(torch.isfinite(total)), bool(torch.isfinite(norm))  # one read per step
            if scaler is not None and finite_loss and not finite_norm:  # float16 overflow: lower the scale
                optimizer.zero_grad(set_to_none=True)
                scaler.update()
                scale_skips += 1
                continue
            if not (finite_loss and finite_norm):
                optimizer.zero_grad(set_to_none=True)
                skipped += 1
                nonfinite = nonfinite or ("loss" if not finite_loss else "gradient")
                if scaler is not None:
                    scaler.update()
                continue
            if scaler is None:
                optimizer.step()
            else:
                scaler.step(optimizer)
                scaler.update()
            scheduler.step()
            n_opt += 1
            losses.append(float(total))
            norms.append(float(norm))
    metrics = stats.reduce(d)
    ent_sum, ent_tok = d.all_sum(ent_sum), d.all_sum(ent_tok)
    metrics.update(
        loss=sum(losses) / max(len(losses), 1), grad_norm=sum(norms) / max(len(norms), 1),
        entropy=float(ent_sum / ent_tok.clamp(min=1)), skipped_updates=skipped, optimizer_steps=n_opt,
        lr=scheduler.get_last_lr()[0],
    )
    if scaler is not None:
        metrics.update(loss_scale=float(scaler.get_scale()), loss_scale_skips=scale_skips)
    if nonfinite:
        metrics["nonfinite"] = nonfinite
    return UpdateResult(n_opt, skipped, nonfinite, metrics)


TOKEN_WEIGHTED = ("kl_ref", "clip_frac_tok")  # averaged over tokens whatever the loss's level
SEQ_WEIGHTED = ("clip_frac_seq",)  # averaged over responses whatever the loss's level


class LossStats:
    """The loss metrics of an update, reduced so that they do not depend on how the rows were split into
    micro-batches or ranks: `*_min` / `*_max` by min / max, the others as means weighted by the number of
    entries they average (tokens; sequences for the sequence-level ratios of gspo / luspo; tokens for kl_ref and
    clip_frac_tok, sequences for clip_frac_seq)."""

    def __init__(self, seq_level: bool):
        self.seq_level = seq_level
        # per metric, float64 scalars on the metrics' device: folded in without reading them on the host
        self.sums: dict[str, torch.Tensor] = {}
        self.weights: dict[str, torch.Tensor] = {}
        self.lo: dict[str, torch.Tensor] = {}
        self.hi: dict[str, torch.Tensor] = {}

    def add(self, metrics: dict[str, torch.Tensor]) -> None:
        """Fold in one micro-batch's `policy_loss` metrics (with its `tokens` and `seqs` counts), on the device
        (no host sync: a micro-batch with no weight contributes nothing, chosen by `torch.where`)."""
        for k, v in metrics.items():
            if k in ("tokens", "seqs"):
                continue
            per_seq = k in SEQ_WEIGHTED or (self.seq_level and k not in TOKEN_WEIGHTED)
            w = torch.as_tensor(metrics["seqs"] if per_seq else metrics["tokens"])
            w = w.detach().to(torch.float64)
            v = torch.as_tensor(v, device=w.device).detach().to(torch.float64)
            zero = torch.zeros((), dtype=torch.float64, device=w.device)
            if k not in self.sums:
                self.sums[k], self.weights[k] = zero, zero
                self.lo[k], self.hi[k] = zero + math.inf, zero - math.inf
            on = w > 0
            self.sums[k] = self.sums[k] + torch.where(on, v * w, zero)
            self.weights[k] = self.weights[k] + torch.where(on, w, zero)
            # fmin / fmax: a NaN value does not replace the extreme, as Python's min / max did before
            self.lo[k] = torch.where(on, torch.fmin(self.lo[k], v), self.lo[k])
            self.hi[k] = torch.where(on, torch.fmax(self.hi[k], v), self.hi[k])

    def reduce(self, d) -> dict[str, float]:
        """The metrics over every micro-batch of every rank (`d`: a `Dist`; the same keys on every rank), read
        on the host once."""
        keys = sorted(self.sums)
        if not keys:
            return {}
        stack = lambda xs: torch.stack([xs[k] for k in keys])  # noqa: E731
        sums = d.all_reduce(stack(self.sums)).tolist()
        weights = d.all_reduce(stack(self.weights)).tolist()
        lo = d.all_reduce(stack(self.lo), "min").tolist()
        hi = d.all_reduce(stack(self.hi), "max").tolist()
        out = {}
        for i, k in enumerate(keys):
            if k.endswith("_min"):
                v = lo[i]
            elif k.endswith("_max"):
                v = hi[i]
            else:
                v = sums[i] / weights[i] if weights[i] > 0 else 0.0
            out[k] = v if math.isfinite(v) else 0.0
        return out


def make_optimizer(model, cfg, total_steps: int):
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.lr,
                            weight_decay=cfg.weight_decay)

    def factor(step: int) -> float:
        if cfg.warmup_steps and step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        frac = (step - cfg.warmup_steps) / max(1, total_steps - cfg.warmup_steps)
        frac = min(max(frac, 0.0), 1.0)
        if cfg.schedule == "linear":
            return 1.0 - frac
        if cfg.schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * frac))
        return 1.0

    return opt, torch.optim.lr_scheduler.LambdaLR(opt, factor)
