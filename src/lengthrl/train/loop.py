"""The RL loop, top to bottom:

    prompts -> G responses each (rollout) -> verify -> rewards (task + format + length terms) -> advantages
    -> optional dynamic sampling -> PPO-style update -> metrics, samples, checkpoints -> final evaluation

Each stage is its own module passing plain dataclasses of tensors: rollout (`lengthrl.rollout`), scoring
(`scoring.py`), advantages (`lengthrl.advantages`), update (`update.py`), checkpoints (`checkpoint.py`).
"""

from __future__ import annotations

import copy
import json
import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from lengthrl.advantages import compute_advantages
from lengthrl.control import LagrangeController, lagrange_config, shape_scored, step_budgets
from lengthrl.errors import ConfigError, LengthRLError
from lengthrl.models.organism import resolve_model_dir  # noqa: F401 - also importable from here
from lengthrl.models import lora
from lengthrl.rewards import CompositeReward
from lengthrl.rewards.python import call_rewards, load_rewards
from lengthrl.rollout import SamplingParams
from lengthrl.rollout.logprobs import lean_unsupported_reason
from lengthrl.train import checkpoint as ckpt
from lengthrl.train.config import TrainConfig, changed_keys, dynamic_sampling_mode, to_dict
from lengthrl.train.validate import reward_terms
from lengthrl.train.data import PromptSampler
from lengthrl.train import dynamic, hbpo
from lengthrl.train.batch import Gathered, StepBatch
from lengthrl.train.decision import Update, count_bad_steps, decide_update, skip_metrics
from lengthrl.train.device import cuda_memory, precision_of
from lengthrl.train.distributed import (
    SINGLE,
    Dist,
    concat_rollouts,
    full_state,
    load_optimizer_state,
    shard_seed,
    shutdown,
)
from lengthrl.train.faults import pause_point
from lengthrl.train.metrics import rollout_metrics
from lengthrl.train.prompts import encode_prompts, fit_prompts, prompt_limit
from lengthrl.train.runlog import RunLogger
from lengthrl.train.scoring import reward_batch, verify_batch
from lengthrl.train.update import UpdateBatch, UpdateResult, batched_logprobs, make_optimizer, ppo_update

log = logging.getLogger("lengthrl.train")


class TrainingStopped(LengthRLError):
    """The run stopped on purpose (e.g. too many non-finite updates); the message says why."""


def step_info(m: dict, n_groups: int) -> str:
    """The progress line of one step's metrics; a step without an update says why instead of `ent nan`."""
    head = f"acc {m['acc']:.2f} len {m['len/mean']:.1f} reward {m['reward/mean']:+.2f} "
    if "entropy" in m:
        return head + f"ent {m['entropy']:.2f}"
    if m.get("no_signal"):
        return head + f"no update: all {n_groups} groups had equal rewards"
    if m.get("nonfinite"):
        return head + f"no update: non-finite {m['nonfinite']}"
    return head + "no update"


def check_eval_split(task, eval_prompts: int, eval_samples) -> None:
    """A ConfigError before step 1 when the final evaluation would find no held-out prompts, naming the fixes."""
    if eval_prompts and not eval_samples:
        src = getattr(task, "test_source", None)
        why = f" ({src} selected no rows)" if src else ""
        raise ConfigError(
            f"task {task.name!r} has no test split{why} but eval_prompts = {eval_prompts}; hold out rows with "
            "--set task_args.test_fraction=0.1, give a test file with --set task_args.test_path=test.jsonl, or "
            "skip the final evaluation with --set eval_prompts=0")


@dataclass(frozen=True)
class Round:
    """One sampling round of a step (`Trainer._sample_round`): P prompts and what the stages made of them."""

    sb: StepBatch  # the round's prompts [P] and this rank's block of them
    roll: object  # RolloutBatch of this rank's rows [n, T]
    resp: Gathered  # the whole round's texts, lengths, truncation flags, verdicts [N]
    scored: object  # Scored: rewards [N], terms, correctness
    budgets: torch.Tensor  # [N] the length controller's budgets (empty when it is off)
    adv: torch.Tensor  # [N] advantages (zeros when something was non-finite)
    nonfinite: str | None  # the first non-finite reward term, reward or advantage, else None
    signal: dynamic.RoundSignal  # the groups with reward spread
    rollout_time_s: float


class Trainer:
    """Holds the state of one run; `run()` executes the loop. Public so tests and the demo can drive it."""

    def __init__(self, cfg: TrainConfig, out_dir: str | Path, resume: bool = False, progress: bool = True,
                 dist: Dist | None = None):
        from lengthrl.tasks import get_task
        from lengthrl.tasks.chat import prompt_format
        from lengthrl.train.policy import POLICIES

        self.dist = dist or SINGLE  # several processes: see lengthrl.train.distributed
        self.cfg, self.out, self.progress = cfg, Path(out_dir), progress and self.dist.is_main
        self.block = self.dist.block(cfg.prompts_per_step)  # this rank's prompts [lo, hi) of each step
        self.n_shards = cfg.rollout_shards or (self.dist.world_size if self.dist.enabled else 0)
        if self.n_shards % self.dist.world_size:
            raise ConfigError(f"config key 'rollout_shards': {cfg.rollout_shards} is not a multiple of the "
                              f"{self.dist.world_size} processes; use 0 (one shard per process) or a multiple")
        self.out.mkdir(parents=True, exist_ok=True)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        torch.manual_seed(cfg.seed)
        # device and compute dtype, set once (docs/gpu.md); under FSDP2 the dtype is its param_dtype
        self.precision = precision_of(cfg, self.dist)
        self._fsdp_dtype_agrees()
        self.policy = POLICIES[cfg.policy]  # how to load, sample and score the model (AR or diffusion)
        if cfg.policy != "ar" and self.dist.sharded:
            raise ConfigError(f"config key 'dist_strategy': policy {cfg.policy!r} runs under 'ddp' only (FSDP2 "
                              "would shard the masked LM as one unit, as it has no causal-LM model.layers, and its "
                              "chunked, checkpointed AR-order forward is untested there); set dist_strategy = 'ddp'")
        self.model_dir = self.policy.resolve(cfg)
        self.resume_from = ckpt.latest_valid(self.out) if resume else None
        if resume and self.resume_from is None:
            log.warning("no valid checkpoint in %s: starting from scratch", self.out)
        # on resume the weights come from the checkpoint, before the optimizer is built over them (a sharded
        # checkpoint has no weights file: they are loaded into the wrapped model in _resume)
        # (a LoRA run checkpoints its adapter only: the base weights always come from `model`)
        full_ckpt = self.resume_from is not None and ckpt.has_full_weights(self.resume_from) and not cfg.lora_r
        self.model, self.tok = self.policy.load(self.resume_from / "model" if full_ckpt else self.model_dir, cfg)
        self.model.to(self.precision.device)  # float32 master weights; autocast computes in cfg.dtype
        if cfg.gradient_checkpointing:
            enable_gradient_checkpointing(self.model)
        if cfg.lora_r:  # only the adapter is trained (docs/gpu.md, "LoRA"); on resume its weights are restored
            if self.dist.sharded:
                raise ConfigError("config key 'lora_r': LoRA runs with dist_strategy = 'ddp' (or one process), "
                                  "not 'fsdp'")
            # (a sharded checkpoint holds the whole peft model's state in its shards, loaded in _resume)
            adapter = None if self.resume_from is None or (self.resume_from / ckpt.SHARDS).is_dir() \
                else self.resume_from / "model"
            self.model = lora.wrap(self.model, cfg, adapter)
        self.ref = None
        if cfg.beta > 0 and cfg.lora_r and not cfg.ref_model:  # the base model: the policy, adapter disabled
            self.ref = lora.AdapterDisabled(self.model)
        elif cfg.beta > 0:  # the KL reference: `ref_model`, else the initial policy (also when resuming)
            if cfg.ref_model or self.resume_from is not None:
                self.ref = self.policy.load(Path(cfg.ref_model) if cfg.ref_model else self.model_dir, cfg)[0]
                self.ref.to(self.precision.device)
            else:
                self.ref = copy.deepcopy(self.model)
            self.ref.requires_grad_(False).eval()
        self.task = get_task(cfg.task, **cfg.task_args)
        # prompts: plain text or the chat template (lengthrl.tasks.chat), at most max_prompt_tokens each
        self.prompt_format = prompt_format(self.tok, cfg.chat_template, cfg.system_prompt)
        ctx = getattr(self.model.config, "max_position_embeddings", None)
        self.max_prompt_tokens = prompt_limit(cfg.max_prompt_length, ctx, cfg.max_new_tokens)
        eval_samples = self.task.samples("test", cfg.eval_prompts, seed=cfg.seed) if cfg.eval_prompts else []
        check_eval_split(self.task, cfg.eval_prompts, eval_samples)  # before any compute is spent
        pool, n_long = fit_prompts(self.tok, self.task.samples("train", cfg.train_prompts, seed=cfg.seed),
                                   self.max_prompt_tokens, self.prompt_format, cfg.long_prompts, "training")
        if len(pool) < cfg.prompts_per_step:
            raise ConfigError(f"config key 'long_prompts': only {len(pool)} training prompts fit in "
                              f"{self.max_prompt_tokens} tokens, fewer than prompts_per_step = "
                              f"{cfg.prompts_per_step}; raise max_prompt_length or use long_prompts = 'truncate'")
        self.eval_samples, _ = fit_prompts(self.tok, eval_samples, self.max_prompt_tokens, self.prompt_format,
                                           cfg.long_prompts, "held-out")
        check_eval_split(self.task, cfg.eval_prompts, self.eval_samples)
        self.sampler = PromptSampler(pool, cfg.seed)
        self.long_prompts_found = n_long  # training prompts over the limit (truncated or dropped)
        self.reward = CompositeReward.from_config(reward_terms(cfg))
        self.reward_funcs = load_rewards(cfg.reward_funcs, reserved=self.reward.keys)  # the user's, TRL signature
        lag_cfg = lagrange_config(cfg)  # the length-budget controller (docs/budget.md), None when off
        self.lagrange = LagrangeController(lag_cfg) if lag_cfg is not None else None
        self.engine = self.policy.engine(self.model, self.tok, cfg)
        self.logprob_fn = self.policy.logprob_fn(self.tok, cfg)  # the update's differentiable forward
        if cfg.logprob_impl == "lean":
            reason = "several processes" if self.dist.enabled else lean_unsupported_reason(self.model, training=True)
            if reason is not None:
                raise ConfigError(f"config key 'logprob_impl': 'lean' cannot be used here: {reason}; "
                                  "use 'auto' or 'model'")
        self.params = SamplingParams(temperature=cfg.temperature, top_p=cfg.top_p, top_k=cfg.top_k,
                                     max_new_tokens=cfg.max_new_tokens)
        total_opt = cfg.steps * cfg.epochs * cfg.mini_batches
        self.train_model = self.dist.wrap(self.model)  # DDP over the model with several processes
        self.opt, self.sched = make_optimizer(self.model, cfg, total_opt)
        self.scaler = self.precision.grad_scaler()  # float16: dynamic loss scale (None otherwise)
        self.update_gen = torch.Generator().manual_seed(cfg.seed + 17)  # mini-batch order: CPU on every device
        self.runlog = RunLogger(self.out, enabled=self.dist.is_main, sample_every=cfg.sample_every)
        self.metrics = self.runlog.metrics  # metrics.jsonl
        self.step, self.bad_steps = 0, 0
        self.last_nonfinite: str | None = None  # what was non-finite in the last skipped step
        if self.dist.is_main and self.resume_from is not None and (self.out / "config.json").is_file():
            changed = changed_keys(json.loads((self.out / "config.json").read_text()), to_dict(cfg))
            if changed:  # allowed (e.g. more steps), but never silently
                log.warning("resuming %s with a changed config: %s", self.out, "; ".join(changed))
        if self.dist.is_main:
            (self.out / "config.json").write_text(json.dumps(to_dict(cfg) | {"model_dir": str(self.model_dir)},
                                                             indent=1))
        if self.resume_from is not None:
            self._resume(self.resume_from)
        else:
            self.runlog.fresh()

    # ---- checkpoints -----------------------------------------------------------------------------------------
    def _state(self, optimizer: dict | None = None) -> dict:
        return {
            "step": self.step, "bad_steps": self.bad_steps, "last_nonfinite": self.last_nonfinite,
            "optimizer": self.opt.state_dict() if optimizer is None else optimizer,
            "scheduler": self.sched.state_dict(), "rng": ckpt.rng_state(), "engine": self.engine.state_dict(),
            "sampler": self.sampler.state_dict(), "reward": self.reward.state_dict(),
            "update_gen": self.update_gen.get_state(), "config": to_dict(self.cfg),
            "lagrange": self.lagrange.state_dict() if self.lagrange is not None else None,
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
        }

    def save(self) -> Path | None:
        """Checkpoint (rank 0 writes the directory; every rank waits until it is complete).

        checkpoint_format 'full': rank 0 writes the whole model (safetensors) and optimizer state; under FSDP2
        they are first gathered to it. 'sharded': every rank writes its own shards of both with
        torch.distributed.checkpoint into the same temporary directory, then rank 0 adds the rest."""
        path = tmp = None
        model_sd = opt_sd = None
        # an optimizer that has not stepped yet is saved as its plain (empty) state dict: reading it through
        # torch.distributed.checkpoint would initialise its moments and step count
        opt = self.opt if self.opt.state else None
        if self.cfg.checkpoint_format == "sharded":
            tmp = ckpt.begin(self.out, self.step) if self.dist.is_main else None
            tmp = Path(self.dist.gather_objects(str(tmp) if tmp else None)[0])  # rank 0's directory, everywhere
            ckpt.save_shards(tmp / ckpt.SHARDS, self.model, opt)  # a collective
        elif self.dist.sharded:  # FSDP2: full weights and optimizer state (by parameter name) to rank 0
            model_sd, opt_sd = full_state(self.model, opt)
        if self.dist.is_main:
            state = self._state(opt_sd)
            if tmp is not None and opt is not None:
                state["optimizer"] = "shards"  # the optimizer state is in the shards
            path = ckpt.save_checkpoint(self.out, self.step, self.model, self.tok, state,
                                        self.cfg.keep_checkpoints, state_dict=model_sd, tmp=tmp)
        self.dist.barrier()
        return path

    def _resume(self, path: Path) -> None:
        s = torch.load(path / "trainer_state.pt", weights_only=False)
        in_shards = s["optimizer"] == "shards"
        if (path / ckpt.SHARDS).is_dir():  # weights (and optimizer) from the shards, resharded to this job
            ckpt.load_shards(path / ckpt.SHARDS, self.model, self.opt if in_shards else None)
        if not in_shards:
            load_optimizer_state(self.model, self.opt, s["optimizer"])  # index- or name-keyed, sharded or not
        self.sched.load_state_dict(s["scheduler"])
        ckpt.set_rng_state(s["rng"])
        self.engine.load_state_dict(s["engine"])
        self.sampler.load_state_dict(s["sampler"])
        self.reward.load_state_dict(s["reward"])
        self.update_gen.set_state(s["update_gen"])
        if self.lagrange is not None and s.get("lagrange"):
            self.lagrange.load_state_dict(s["lagrange"])
        if self.scaler is not None and s.get("scaler"):
            self.scaler.load_state_dict(s["scaler"])
        self.step, self.bad_steps = s["step"], s["bad_steps"]
        self.last_nonfinite = s.get("last_nonfinite")
        self.dist.barrier()  # every rank has read the checkpoint before rank 0 edits the logs
        self.runlog.resume(self.step)
        if self.dist.is_main:
            log.info("resumed from %s (step %d)", path, self.step)

    # ---- one step ------------------------------------------------------------------------------------------
    def train_step(self) -> dict:
        """One RL step: rollout -> verify -> reward -> advantages -> (dynamic sampling) -> update -> log. Returns
        its metrics.

        P = prompts_per_step, G = group_size, N = P·G rows of the whole batch, n of them on this rank (all N on
        one process), T = response tokens; `sb` maps between the two (lengthrl.train.batch). With
        dynamic_sampling = 'resample' the first four stages run in rounds of P fresh prompts until P groups
        carry a signal (lengthrl.train.dynamic); the update trains on the kept groups of every round."""
        cfg, G, P = self.cfg, self.cfg.group_size, self.cfg.prompts_per_step
        t0 = time.perf_counter()
        mode = dynamic_sampling_mode(cfg.dynamic_sampling)
        rounds: list[Round] = []
        while not rounds or dynamic.more_rounds(mode, [r.signal for r in rounds], P, cfg.max_resample_rounds):
            rounds.append(self._sample_round(len(rounds)))
        keeps = dynamic.keep_masks(mode, [r.signal for r in rounds], P, G)  # per round [N] bool
        diag = {}  # the policy's own metrics of the step's first rollout (the estimator bias), pre-update
        if self.policy.diagnostics is not None:
            diag = self.policy.diagnostics(self.model, self.logprob_fn, cfg, rounds[0].roll, self.step + 1)
        nonfinite = next((r.nonfinite for r in rounds if r.nonfinite is not None), None)
        lag = {}
        if self.lagrange is not None:  # the dual step on every response the step sampled
            lag = self.lagrange.dual_step(torch.cat([r.resp.lengths for r in rounds]),
                                          torch.cat([r.budgets for r in rounds]))

        # ---- this rank's rows of every round, stacked: [n_all] rows, group ids global over the rounds
        roll = rounds[0].roll if len(rounds) == 1 else concat_rollouts([r.roll for r in rounds],
                                                                        self.engine.pad_token_id)
        group_ids = torch.cat([r.sb.global_groups(r.roll.group_index) + i * P for i, r in enumerate(rounds)])
        adv_local = torch.cat([r.sb.local(r.adv) for r in rounds])  # [n_all]
        keep_local = torch.cat([r.sb.local(k) for r, k in zip(rounds, keeps)])  # [n_all] bool
        kept_groups = torch.cat([r.sb.kept_groups(k) + i * P for i, (r, k) in enumerate(zip(rounds, keeps))])
        adv_kept = torch.cat([r.adv[k] for r, k in zip(rounds, keeps)])
        loss_mask = roll.response_mask.float()  # [n_all, T]
        if cfg.overlong_filter:
            loss_mask = loss_mask * (~roll.truncated).float()[:, None]
        rows = keep_local.nonzero().flatten()  # this rank's kept rows
        loss_tokens = float(self.dist.all_sum(loss_mask[rows].sum()))  # over every rank
        decision = decide_update(nonfinite, cfg.beta, adv_kept, loss_tokens)

        # ---- update
        pause_point(self.out, "update", self.step + 1)
        if decision.kind is Update.UPDATE:
            ub = UpdateBatch(roll.prompt_ids, roll.prompt_mask, roll.response_ids, roll.response_mask, loss_mask,
                             adv_local, group_ids)  # [n_all] rows
            ub = ub.to(self.precision.device)  # the one copy of the rollout to the training device
            result = self._update(ub, rows, kept_groups)
            update_metrics = result.metrics
        else:
            result, update_metrics = None, skip_metrics(decision, self.sched.get_last_lr()[0])
        self.bad_steps, self.last_nonfinite = count_bad_steps(
            self.bad_steps, self.last_nonfinite, decision, result.optimizer_steps if result else 0,
            result.skipped_steps if result else 0, result.nonfinite if result else None)

        # ---- log: the rollout metrics of every response the step sampled
        samples = [s for r in rounds for s in r.sb.samples]
        lengths = torch.cat([r.resp.lengths for r in rounds])
        correct = torch.cat([r.scored.correct for r in rounds])
        rewards = torch.cat([r.scored.rewards for r in rounds])
        adv_all = torch.cat([r.adv for r in rounds])
        m = rollout_metrics(lengths, correct, torch.cat([r.resp.truncated for r in rounds]), rewards,
                            dynamic.cat_terms([r.scored.terms for r in rounds]), adv_all, G)
        m.update(lag)
        m.update(diag)
        if cfg.hbpo_budgets:  # per budget sub-group: does the policy follow the budget in its prompt?
            m.update(hbpo.budget_metrics(lengths, correct, hbpo.row_budgets(len(lengths), cfg), cfg))
        if mode != "off" and nonfinite is None:
            signal = torch.cat([r.signal.signal for r in rounds])
            m["kept_groups_frac"] = float(signal.to(torch.float64).mean())  # groups with signal / sampled
        if mode == "resample":
            m.update(resample_rounds=len(rounds), resample_prompts=len(samples), batch_groups=len(kept_groups))
        m.update(update_metrics)
        t_roll = sum(r.rollout_time_s for r in rounds)
        m.update(step=self.step + 1, step_time_s=time.perf_counter() - t0, rollout_time_s=t_roll,
                 tokens_per_s=float(lengths.sum()) / max(t_roll, 1e-9),
                 verifier_errors=sum(r.scored.verifier_errors for r in rounds),
                 verifier_timeouts=sum(r.scored.verifier_timeouts for r in rounds),
                 bad_steps=self.bad_steps, **cuda_memory(self.precision.device))
        failures = [{**f, "index": f["index"] + i * P * G} for i, r in enumerate(rounds) for f in r.scored.failures]
        self.runlog.score_errors(self.step + 1, failures)
        self.runlog.samples(self.step + 1, samples, [t for r in rounds for t in r.resp.texts], lengths, correct,
                            rewards, adv_all, G)
        return m

    def _sample_round(self, index: int) -> "Round":
        """One sampling round of a step: P prompts -> rollout -> verify -> reward (and the length controller's
        shaping with the current multiplier) -> advantages. `index`: the round in the step (0 = the first)."""
        cfg, G = self.cfg, self.cfg.group_size
        t0 = time.perf_counter()
        sb = StepBatch(self.sampler.next(cfg.prompts_per_step), G, *self.block, dist=self.dist)  # [P] prompts

        # ---- rollout: G responses to each of this rank's prompts (HBPO: G/k to each of its k budget prompts)
        targets = None
        if cfg.hbpo_budgets:
            k = len(cfg.hbpo_budgets)
            roll = self._generate(self._encode(hbpo.budget_samples(sb.local_samples, cfg)), index, G // k)  # [n, T]
            roll = replace(roll, group_index=roll.group_index // k)  # sub-groups of a prompt: one group
            targets = hbpo.row_budgets(sb.n_rows, cfg)  # [N] the budget of each response
        else:
            roll = self._generate(self._encode(sb.local_samples), index)  # [n, T]
        t_roll = time.perf_counter() - t0

        # ---- verify: each rank its own responses; rewards need the whole batch, so verdicts are gathered
        local_texts = roll.texts(self.tok)  # [n]
        verdicts, fails = verify_batch(self.task, sb.local_samples, local_texts, G, timeout_s=cfg.score_timeout_s)
        py = self._python_rewards(sb.local_samples, local_texts, roll)  # the user's reward functions, {key: [n]}
        resp = sb.gather(local_texts, roll.lengths, roll.truncated, verdicts, fails, py)  # texts, lengths, ... [N]

        # ---- reward: task and length terms, then the length controller's shaping
        scored = reward_batch(self.reward, sb.samples, resp.verdicts, resp.failures, resp.lengths, G,
                              resp.truncated, truncated_correct=cfg.truncated_correct,
                              extra={r.key: (r.weight, resp.extra[r.key]) for r in self.reward_funcs},
                              targets=targets)  # [N]
        budgets = torch.zeros(0)
        if self.lagrange is not None:
            budgets = step_budgets(self.lagrange, sb.samples, G)  # [N] tokens
            scored = shape_scored(self.lagrange, scored, resp.lengths, budgets)  # with the previous step's lambda

        # ---- advantages (zeros when a reward is non-finite) and the groups with signal
        adv, nonfinite = self._advantages(scored, targets)  # [N]
        signal = dynamic.round_signal(scored.rewards, G, finite=nonfinite is None)
        return Round(sb, roll, resp, scored, budgets, adv, nonfinite, signal, t_roll)

    def _python_rewards(self, samples, texts: list[str], roll) -> dict[str, list[float]]:
        """The user's reward functions (lengthrl.rewards.python) on this rank's responses: {key: [n] values}."""
        if not self.reward_funcs:
            return {}
        ids = [row[mask].tolist() for row, mask in zip(roll.response_ids, roll.response_mask.bool())]  # [n]
        return call_rewards(self.reward_funcs, samples, texts, ids, self.cfg.group_size)

    def _encode(self, samples) -> list[list[int]]:
        """Prompt token ids of `samples` (the prompt format, cut to max_prompt_tokens with long_prompts =
        'truncate')."""
        return encode_prompts(self.tok, samples, self.max_prompt_tokens, self.prompt_format, self.cfg.long_prompts)

    def _advantages(self, scored, targets: torch.Tensor | None = None) -> tuple[torch.Tensor, str | None]:
        """The advantages [N] of the batch's rewards, and the first non-finite reward term, reward or advantage
        (None when all are finite; the advantages are then zeros, so nothing non-finite goes further).
        `targets` [N]: HBPO's per-response budgets (the `budget` of advantage = 'hbpo')."""
        cfg = self.cfg
        n = len(scored.rewards)
        nonfinite = _nonfinite_term(scored)
        if nonfinite is not None:
            return torch.zeros(n), nonfinite
        hp = {"eps": cfg.adv_eps} if cfg.adv_eps is not None else {}
        if cfg.advantage == "hbpo":
            hp |= {"budget": targets} | hbpo.advantage_hparams(cfg, reward_terms(cfg))
        adv = compute_advantages(cfg.advantage, scored.rewards, cfg.group_size, **hp)  # [N]
        if not bool(torch.isfinite(adv).all()):
            return torch.zeros(n), f"advantages ({cfg.advantage})"
        return adv, None

    def _update(self, ub: UpdateBatch, rows: torch.Tensor, groups: torch.Tensor) -> UpdateResult:
        """The PPO update on this rank's kept `rows` of `ub` ([n] rows), over the kept `groups` (global ids)."""
        cfg = self.cfg
        if len(rows):
            ub = ub.rows(rows)
        else:  # nothing kept here: one zero-weight row keeps this rank in the collectives
            ub = ub.rows(torch.zeros(1, dtype=torch.long))
            ub.loss_mask = torch.zeros_like(ub.loss_mask)
        micro = cfg.micro_batch_size or len(ub.advantages)
        if cfg.epochs > 1 or cfg.mini_batches > 1:
            with self.dist.full_weights(self.model):  # FSDP2: ranks may need different numbers of forwards
                ub.old_logp = batched_logprobs(self.model, ub, micro, cfg.temperature, self.logprob_fn,
                                               self.precision, cfg.micro_batch_tokens)  # [b, T]
        if self.ref is not None:
            ub.ref_logp = batched_logprobs(self.ref, ub, micro, cfg.temperature, self.logprob_fn,
                                           self.precision, cfg.micro_batch_tokens)  # [b, T]
        return ppo_update(self.train_model, self.opt, self.sched, ub, cfg, self.update_gen, dist=self.dist,
                          groups=groups, logprob_fn=self.logprob_fn, precision=self.precision, scaler=self.scaler)

    def _generate(self, prompt_ids: list[list[int]], round_index: int = 0, n: int | None = None):
        """This rank's rollouts: one stream (single process, rollout_shards = 0) or its rollout shards, each
        sampled with the seed of (seed, step, shard) (shard + round · shards for a resampling round), then
        stacked."""
        with self.dist.full_weights(self.model), self.precision.autocast():  # FSDP2: one all-gather, then
            return self._generate_shards(prompt_ids, round_index, n or self.cfg.group_size)  # no collectives

    def _generate_shards(self, prompt_ids: list[list[int]], round_index: int, G: int):
        """`G` responses to each of `prompt_ids` (this rank's), in this rank's rollout shards."""
        if not self.n_shards:
            return self.engine.generate(prompt_ids, G, self.params)
        per_rank = self.n_shards // self.dist.world_size
        k = len(prompt_ids) // per_rank
        out = []
        for i in range(per_rank):
            shard = self.dist.rank * per_rank + i + round_index * self.n_shards
            params = replace(self.params, seed=shard_seed(self.cfg.seed, self.step, shard))
            out.append(self.engine.generate(prompt_ids[i * k:(i + 1) * k], G, params))
        return out[0] if len(out) == 1 else concat_rollouts(out, self.engine.pad_token_id)

    # ---- the loop ------------------------------------------------------------------------------------------
    def run(self) -> list[dict]:
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        cfg = self.cfg
        t_start = time.perf_counter()
        cols = [TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[info]}")]
        collapse = self._collapse_detector()
        self.runlog.open_tensorboard(self.step)
        with Progress(*cols, disable=not self.progress, transient=False) as bar:
            job = bar.add_task(f"train {cfg.loss}", total=cfg.steps, completed=self.step, info="")
            while self.step < cfg.steps:
                m = self.train_step()
                self.step += 1
                m["time_s"] = time.perf_counter() - t_start
                warning = self._watch_collapse(collapse, m)
                if warning is not None and self.dist.is_main:
                    log.warning("%s", warning.message)
                    bar.console.print(f"[yellow]warning: {warning.message}")
                self.runlog.step_metrics(self.step, m)
                pause_point(self.out, "metrics", self.step)
                info = step_info(m, m.get("resample_prompts", cfg.prompts_per_step))
                bar.update(job, completed=self.step, info=info)
                if self.progress and cfg.log_every and self.step % cfg.log_every == 0:
                    bar.console.print(f"step {self.step:4d}  {info}  clip_hi {m.get('clip_frac_high', 0):.3f} "
                                      f"trunc {m['trunc_rate']:.2f}  {m['step_time_s']:.2f}s/step")
                if self.bad_steps >= cfg.max_bad_steps:
                    self.save()
                    raise TrainingStopped(
                        f"{self.bad_steps} consecutive steps had a non-finite value (last at step {self.step}: "
                        f"{self.last_nonfinite}; loss {cfg.loss}); weights were left unchanged by those steps "
                        f"(max_bad_steps = {cfg.max_bad_steps}). Lower lr or check the rewards; the last good "
                        "state is checkpointed"
                    )
                if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0 and self.step < cfg.steps:
                    self.save()
        self.save()
        model_sd = full_state(self.model)[0] if self.dist.sharded else None
        try:
            if self.dist.is_main and cfg.lora_r:  # final/adapter, and the merged model in final/ with merge_lora
                lora.save_final(self.model, self.tok, self.out / "final", merge=cfg.merge_lora)
            elif self.dist.is_main:
                from lengthrl.models.loading import quiet_progress

                with quiet_progress():  # no per-shard progress bar in the training output
                    self.model.save_pretrained(self.out / "final", safe_serialization=True, state_dict=model_sd)
                self.tok.save_pretrained(self.out / "final")
        except ckpt.WRITE_ERRORS as e:  # a full disk: one line; the last checkpoint holds this state
            raise ckpt.final_write_error(self.out, e) from None
        self.dist.barrier()
        return self.metrics.rows()

    def _collapse_detector(self):
        """The live length-collapse detector (lengthrl.analysis.collapse), fed with the steps already logged when
        resuming, so a resumed run warns exactly as an uninterrupted one."""
        from lengthrl.analysis.collapse import CollapseDetector

        det = CollapseDetector(window=max(2, min(20, self.cfg.steps // 3)))
        for row in self.metrics.rows():
            self._watch_collapse(det, dict(row))
        return det

    @staticmethod
    def _watch_collapse(det, m: dict):
        """Update the detector with step metrics `m`, add its collapse/* metrics to `m`; the warning or None."""
        from lengthrl.errors import DataError

        try:
            warning = det.update(m)
        except DataError:  # a NaN metric: the non-finite guards report it, the detector skips the step
            return None
        m.update(det.metrics())
        return warning

    def evaluate(self, name: str = "eval", samples=None, temperature: float | None = None, n: int | None = None):
        """Held-out evaluation with lengthrl.eval.run_eval; writes OUT/<name>.json."""
        from lengthrl.eval import run_eval

        t = self.cfg.eval_temperature if temperature is None else temperature
        params = SamplingParams(temperature=t, max_new_tokens=self.cfg.max_new_tokens, seed=self.cfg.seed + 99)
        engine = self.engine
        if self.dist.sharded:  # the sharded model needs every rank: evaluate the saved final weights instead
            final = self.policy.load(self.out / "final", self.cfg)[0].to(self.precision.device)
            engine = self.policy.engine(final, self.tok, self.cfg)
        with self.precision.autocast():
            return run_eval(engine, self.task, n_samples=n or self.cfg.eval_samples, sampling=params,
                            samples=samples if samples is not None else self.eval_samples, tokenizer=self.tok,
                            out=self.out / f"{name}.json", progress=self.progress, model_name=str(self.model_dir),
                            truncated_correct=self.cfg.truncated_correct, prompt_format=self.prompt_format,
                            max_prompt_length=self.max_prompt_tokens)

    def _fsdp_dtype_agrees(self) -> None:
        """Under FSDP2 the compute dtype is the process group's `Dist.param_dtype`: it must be cfg's."""
        if not self.dist.sharded:
            return
        want = None if self.precision.dtype == torch.float32 else self.precision.name
        if self.dist.param_dtype != want:
            if self.dist.param_dtype is None:
                self.dist = replace(self.dist, param_dtype=want)
            else:
                raise ConfigError(f"config key 'dtype': {self.precision.name!r}, but the process group was set up "
                                  f"with FSDP2 param_dtype {self.dist.param_dtype!r}; use one setting")


def enable_gradient_checkpointing(model) -> None:
    """transformers' gradient checkpointing (non-reentrant, so it composes with DDP and FSDP2), or a ConfigError
    when the model class has none."""
    if not getattr(model, "supports_gradient_checkpointing", False):
        raise ConfigError(f"config key 'gradient_checkpointing': {type(model).__name__} does not support it; "
                          "set gradient_checkpointing = false")
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


def _nonfinite_term(scored) -> str | None:
    """The first reward term (or the total) with a NaN/inf value, named for the metrics and the stop message."""
    for k, v in scored.terms.items():
        bad = (~torch.isfinite(v.float())).nonzero().flatten()
        if len(bad):
            return f"reward term {k!r} (response {int(bad[0])})"
    bad = (~torch.isfinite(scored.rewards.float())).nonzero().flatten()
    return f"reward (response {int(bad[0])})" if len(bad) else None


def train(cfg: TrainConfig, out_dir: str | Path, resume: bool = False, progress: bool = True,
          evaluate: bool = True, dist: Dist | None = None) -> Trainer:
    """Run a whole training (and the final held-out evaluation when cfg.eval_prompts > 0, on rank 0)."""
    tr = Trainer(cfg, out_dir, resume=resume, progress=progress, dist=dist)
    tr.run()
    if evaluate and cfg.eval_prompts:
        # several processes: every collective is done, so the others leave now instead of waiting (up to the
        # process group's timeout) while rank 0 evaluates alone
        shutdown(tr.dist)
        if tr.dist.is_main:
            tr.evaluate()
    return tr
