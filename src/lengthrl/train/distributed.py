"""Several processes on one or more machines: `torchrun --nproc_per_node N -m lengthrl train ...`.

What is split and what is global (W ranks, N = prompts_per_step × G responses per step):

- prompts: every rank walks the same prompt order and keeps a contiguous block of prompts_per_step / W
  prompts, so groups stay whole on one rank;
- rollouts: each rank samples its block; the block is one "rollout shard", seeded by (seed, step, shard),
  so a run's samples do not depend on how many ranks share the work (`rollout_shards` in the config lets one
  process reproduce a W-rank run exactly);
- scoring, rewards, advantages, rollout metrics: each rank verifies its own responses; texts, lengths,
  truncation flags and verdicts are gathered, and every rank computes the rewards of the whole batch.
  Batch-level rewards (GRPO-lambda), stateful ones (HAPO's history) and batch-whitened advantages are
  therefore exact, and every rank holds the same reward state;
- update: mini-batches are the same sets of groups as in one process (one shared generator); each loss is
  normalised by the global token count T_tot and sequence count B' (all-reduced) and passed as
  `num_tokens` / `num_seqs`, so the sum over ranks of the rank losses is the loss of the whole mini-batch.
  DDP and FSDP2 average gradients over ranks, so each rank's loss is multiplied by W: the synchronised
  gradient is then the single-process gradient (bnpo, normalised by its local token count by definition,
  keeps the average);
- FSDP2 (`strategy = "fsdp"`): parameters, gradients and optimizer state are sharded; sampling and the old
  log-probs run inside `Dist.full_weights` (the weights unsharded once, then forwards without collectives, as
  many as each rank needs); checkpoints gather the full state to rank 0 (`full_state`), in the format of one
  process, with the optimizer state keyed by parameter name (`load_optimizer_state` reads either format),
  or, with checkpoint_format = 'sharded', every rank writes its shards (`checkpoint.save_shards`);
- logs, samples, checkpoints and the final evaluation: rank 0 only. Resume reads the checkpoint on every rank
  (the run directory must be on a shared file system across machines).
"""

from __future__ import annotations

import contextlib
import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as tdist

from lengthrl.errors import ConfigError
from lengthrl.rollout.types import RolloutBatch

STRATEGIES = ("ddp", "fsdp")
PARAM_DTYPES = ("bfloat16", "float16")  # FSDP2 mixed precision (Dist.param_dtype)


@dataclass
class Dist:
    """This process's place in the job. `Dist()` is the single-process no-op (every collective is identity).

    rank: index of this process (0 writes logs and checkpoints); world_size: number of processes W;
    strategy: how gradients are synchronised, 'ddp' (DistributedDataParallel) or 'fsdp' (FSDP2 fully_shard);
    param_dtype: FSDP2 mixed precision, the dtype ('bfloat16' or 'float16') of the unsharded parameters that
    forwards and backwards compute in (gradients are reduced in float32, the sharded parameters the optimizer
    steps on keep their own dtype); None computes in the parameters' dtype. It is the FSDP2 form of the
    config key `dtype` (`lengthrl.train.device`).
    device: where this rank's tensors live ('cpu', or 'cuda:LOCAL_RANK' with nccl); collectives run there.
    """

    rank: int = 0
    world_size: int = 1
    strategy: str = "ddp"
    param_dtype: str | None = None
    device: str = "cpu"

    @property
    def enabled(self) -> bool:
        """True when there are several processes."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """True on rank 0, the only rank that writes files."""
        return self.rank == 0

    @property
    def sharded(self) -> bool:
        """True when the model's parameters are sharded over ranks (FSDP2 with several processes)."""
        return self.enabled and self.strategy == "fsdp"

    def full_weights(self, model: torch.nn.Module):
        """Context in which `model` holds its full parameters on every rank, so forwards (sampling, old and
        reference log-probs) run without collectives, as many as each rank needs (`unsharded`; a no-op unless
        sharded). Every rank must enter it, at the same point."""
        return unsharded(model) if self.sharded else contextlib.nullcontext(model)

    # ---- collectives (no-ops on one process) -----------------------------------------------------------------
    def all_sum(self, x: torch.Tensor) -> torch.Tensor:
        """Sum of `x` over ranks (a new tensor; `x` is unchanged)."""
        x = x.detach().clone()
        if self.enabled:
            tdist.all_reduce(x, op=tdist.ReduceOp.SUM)
        return x

    def all_reduce(self, x: torch.Tensor, op: str = "sum") -> torch.Tensor:
        """`x` reduced elementwise over ranks by op 'sum', 'min' or 'max' (a new tensor)."""
        x = x.detach().clone()
        if self.enabled:
            tdist.all_reduce(x, op={"sum": tdist.ReduceOp.SUM, "min": tdist.ReduceOp.MIN,
                                    "max": tdist.ReduceOp.MAX}[op])
        return x

    def all_max(self, n: int) -> int:
        """Largest integer `n` over ranks."""
        if not self.enabled:
            return int(n)
        t = torch.tensor([int(n)], dtype=torch.long, device=self.device)
        tdist.all_reduce(t, op=tdist.ReduceOp.MAX)
        return int(t.item())

    def gather_objects(self, obj) -> list:
        """[obj of rank 0, obj of rank 1, ...] on every rank (picklable objects)."""
        if not self.enabled:
            return [obj]
        out = [None] * self.world_size
        tdist.all_gather_object(out, obj)
        return out

    def barrier(self) -> None:
        """Wait for every rank."""
        if self.enabled:
            tdist.barrier()

    # ---- splitting the work ----------------------------------------------------------------------------------
    def block(self, n: int, what: str = "prompts_per_step") -> tuple[int, int]:
        """This rank's contiguous block [lo, hi) of `n` items split into W equal blocks."""
        if n % self.world_size:
            raise ConfigError(
                f"config key {what!r}: {n} does not split evenly over {self.world_size} processes; "
                f"use a multiple of {self.world_size} (groups must stay whole on one rank)"
            )
        k = n // self.world_size
        return self.rank * k, (self.rank + 1) * k

    # ---- the model -------------------------------------------------------------------------------------------
    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """The module to run training forwards through: DDP or FSDP2 over `model` (itself on one process).

        FSDP2 shards `model` in place (its parameters become DTensors); sampling then needs `unsharded(model)`.
        """
        if not self.enabled:
            return model
        if self.strategy == "ddp":
            from torch.nn.parallel import DistributedDataParallel

            on_cuda = torch.device(self.device).type == "cuda"
            return DistributedDataParallel(model, device_ids=[torch.device(self.device).index] if on_cuda else None)
        if self.strategy == "fsdp":
            from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

            mp = MixedPrecisionPolicy()
            if self.param_dtype is not None:
                mp = MixedPrecisionPolicy(param_dtype=getattr(torch, self.param_dtype), reduce_dtype=torch.float32)
            for layer in _decoder_layers(model):
                fully_shard(layer, mp_policy=mp)
            fully_shard(model, mp_policy=mp)
            return model
        raise ConfigError(f"config key 'dist_strategy': {self.strategy!r}; valid: {', '.join(STRATEGIES)}")

    def grad_scale(self, global_norm: bool) -> float:
        """Factor on each rank's loss so that the rank-averaged gradient equals the global-batch gradient."""
        return float(self.world_size) if (self.enabled and global_norm) else 1.0

    def sync(self, model: torch.nn.Module, last: bool):
        """Context for one micro-batch backward: gradients are synchronised only on the last one."""
        if not self.enabled or last:
            if self.enabled and self.strategy == "fsdp":
                model.set_requires_gradient_sync(True)
            return contextlib.nullcontext()
        if self.strategy == "fsdp":
            model.set_requires_gradient_sync(False)
            return contextlib.nullcontext()
        return model.no_sync()


SINGLE = Dist()


def _decoder_layers(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The transformer blocks of a transformers causal LM (sharded one by one under FSDP2), or []."""
    base = getattr(model, "model", None)
    layers = getattr(base, "layers", None) if base is not None else None
    return list(layers) if layers is not None else []


@contextlib.contextmanager
def unsharded(model: torch.nn.Module):
    """Full parameters for the duration of the block (sampling under FSDP2: no collective per forward)."""
    from torch.distributed.fsdp import FSDPModule

    mods = [m for m in model.modules() if isinstance(m, FSDPModule)]
    if not mods:
        yield model
        return
    for m in mods:
        m.unshard()
    for m in mods:
        m.set_reshard_after_forward(False, recurse=False)  # keep the full parameters between forwards
    try:
        yield model
    finally:
        for m in mods:
            m.set_reshard_after_forward(True, recurse=False)
            m.reshard()


def full_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None) -> tuple[dict, dict | None]:
    """(model state dict, optimizer state dict) with full, unsharded CPU tensors, keyed by parameter name.

    A collective under FSDP2 (every rank calls it; rank 0 receives the tensors, the other ranks empty dicts);
    on one process or under DDP, the plain state dicts. The optimizer's state is keyed by parameter name
    (`torch.distributed.checkpoint.state_dict`), so a checkpoint resumes on any number of ranks and strategies.
    """
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        get_model_state_dict,
        get_optimizer_state_dict,
    )

    opts = StateDictOptions(full_state_dict=True, cpu_offload=True)
    msd = get_model_state_dict(model, options=opts)
    first: dict[int, str] = {}  # a tied parameter (e.g. lm_head = embed_tokens) is saved once, as without FSDP
    for name, p in model.named_parameters(remove_duplicate=False):
        if first.setdefault(id(p), name) != name:
            msd.pop(name, None)
    osd = get_optimizer_state_dict(model, optimizer, options=opts) if optimizer is not None else None
    return msd, osd


def load_optimizer_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer, state: dict) -> None:
    """Load an optimizer state dict written by `full_state` (keyed by parameter name) or by
    `optimizer.state_dict()` (keyed by index, the format of older checkpoints) into `optimizer`, whose
    parameters may be sharded (FSDP2): each rank keeps its shard."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    groups = state.get("param_groups", [])
    if not state.get("state"):  # saved before the first step: the groups' hyperparameters, no moments
        if len(groups) != len(optimizer.param_groups):
            raise ConfigError(f"optimizer state: {len(groups)} parameter groups saved, "
                              f"{len(optimizer.param_groups)} here; resume with the config that wrote it")
        for g, saved in zip(optimizer.param_groups, groups):
            g.update({k: v for k, v in saved.items() if k != "params"})
        return
    by_name = any(isinstance(p, str) for g in groups for p in g.get("params", []))
    if not by_name:
        if not _sharded_params(model):
            optimizer.load_state_dict(state)
            return
        names = [n for n, p in model.named_parameters() if p.requires_grad]  # the optimizer's parameter order
        state = {"state": {names[i]: v for i, v in state["state"].items()},
                 "param_groups": [g | {"params": [names[i] for i in g["params"]]} for g in groups]}
    set_optimizer_state_dict(model, optimizer, state, options=StateDictOptions(full_state_dict=True))


def _sharded_params(model: torch.nn.Module) -> bool:
    return any(hasattr(p, "full_tensor") for p in model.parameters())


def check_strategy(strategy: str, param_dtype: str | None = None) -> None:
    """A ConfigError naming the key unless `strategy` (dist_strategy) and `param_dtype` (fsdp_param_dtype, only
    with 'fsdp') are valid."""
    if strategy not in STRATEGIES:
        raise ConfigError(f"config key 'dist_strategy': {strategy!r}; valid: {', '.join(STRATEGIES)}")
    if param_dtype is not None and (param_dtype not in PARAM_DTYPES or strategy != "fsdp"):
        raise ConfigError(f"config key 'fsdp_param_dtype': {param_dtype!r}; valid: {', '.join(PARAM_DTYPES)}, "
                          "with dist_strategy = 'fsdp' (leave it unset otherwise)")


def init_from_env(strategy: str = "ddp", param_dtype: str | None = None, timeout_s: float = 600.0,
                  device: str = "auto") -> Dist:
    """Join the process group described by torchrun's environment (RANK, WORLD_SIZE, MASTER_ADDR/PORT).

    Without WORLD_SIZE (or with WORLD_SIZE=1) this is the single-process `Dist()`. `device`: the config key
    (`lengthrl.train.device.resolve_device`): on CUDA each rank takes cuda:LOCAL_RANK and the backend is nccl,
    on the CPU gloo. `param_dtype`: FSDP2 mixed precision (see `Dist`), only with strategy 'fsdp'.
    """
    from lengthrl.train.device import local_rank, resolve_device

    check_strategy(strategy, param_dtype)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist(strategy=strategy)
    dev = resolve_device(device, local_rank())
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if not tdist.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        tdist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s))
    return Dist(rank=tdist.get_rank(), world_size=tdist.get_world_size(), strategy=strategy, param_dtype=param_dtype,
                device=str(dev))


def shutdown(d: Dist, wait: bool = True) -> None:
    """Leave the process group; with `wait`, after a barrier, so no rank tears down while another still works
    (without: after an error, when the other ranks may never arrive)."""
    if d.enabled and tdist.is_initialized():
        if wait:
            tdist.barrier()
        tdist.destroy_process_group()


# ---- rollout shards -------------------------------------------------------------------------------------------
def shard_seed(seed: int, step: int, shard: int) -> int:
    """Seed of the sampling of rollout shard `shard` at RL step `step` (0-based), as a 63-bit integer."""
    return (int(seed) * 1_000_003 + int(step) * 10_007 + int(shard) * 7_919 + 12_345) % (2**63 - 1)


def concat_rollouts(batches: list[RolloutBatch], pad_token_id: int) -> RolloutBatch:
    """Stack rollout batches row-wise: prompts re-left-padded and responses re-right-padded to common widths,
    group indices offset so they stay unique (the groups of batch k follow those of batch k-1)."""
    if not batches:
        raise ConfigError("concat_rollouts: no batches")
    P = max(b.prompt_ids.shape[1] for b in batches)
    T = max(b.response_ids.shape[1] for b in batches)

    def left(t, width, value):  # [b, p] -> [b, width], padded on the left
        return torch.nn.functional.pad(t, (width - t.shape[1], 0), value=value)

    def right(t, width, value):  # [b, t] -> [b, width], padded on the right
        return torch.nn.functional.pad(t, (0, width - t.shape[1]), value=value)

    offs, out = 0, {k: [] for k in RolloutBatch.__dataclass_fields__}
    for b in batches:
        out["prompt_ids"].append(left(b.prompt_ids, P, pad_token_id))
        out["prompt_mask"].append(left(b.prompt_mask, P, 0))
        out["response_ids"].append(right(b.response_ids, T, pad_token_id))
        out["response_mask"].append(right(b.response_mask, T, 0))
        out["logp"].append(right(b.logp, T, 0.0))
        out["lengths"].append(b.lengths)
        out["truncated"].append(b.truncated)
        out["group_index"].append(b.group_index + offs)
        offs += b.num_groups
    return RolloutBatch(**{k: torch.cat(v) for k, v in out.items()})
