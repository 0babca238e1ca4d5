"""lengthrl inside TRL's `GRPOTrainer` (trl 1.16): any lengthrl loss, any length reward, length metrics.

    from lengthrl.integrations.trl import LengthRLGRPOTrainer, length_reward_func, answer_correct

    trainer = LengthRLGRPOTrainer(
        model=..., args=GRPOConfig(num_generations=8, ...), train_dataset=ds,   # ds has an "answer" column
        reward_funcs=[answer_correct("answer"), length_reward_func("kimi", answer_correct("answer"), group_size=8)],
        lengthrl_loss="luspo",                  # any name of lengthrl.objectives.LOSSES
        lengthrl_hparams={"clip_high": 2.5e-3}, # optional: clip_low, clip_high, loss_agg_mode, dual_clip, ...
    )

The loss: `GRPOTrainer._compute_loss` is replaced by `lengthrl.objectives.policy_loss` on the same tensors
(TRL's per-token log-probs, old log-probs, advantages [B] and completion mask). Normalisers follow TRL's
accumulation convention, made exact for every aggregation: one generation batch (all processes) holds
T_gen tokens and S_gen sequences with at least one token; an optimizer step sees the fraction
ga / steps_per_generation of it, and DDP averages over the W processes, so each micro-batch is given

    num_tokens = T_gen · ga / (steps_per_generation · W),   num_seqs = S_gen · ga / (steps_per_generation · W)

(ga = gradient accumulation steps) and the micro-batch losses are summed without further division. This gives
luspo its (1/B) Σ_i |y_i| l_i over the window and gspo its per-sequence mean (DAPO: TRL's own token-mean).
Under evaluation (no accumulation) the micro-batch's own counts are used.

Rewards: `length_reward_func(name, correct_fn, group_size=G, **hparams)` wraps a registered length reward
(DAPO overlong, DLER, Kimi, L1, cosine, ...) as a TRL reward function `f(prompts=, completions=,
completion_ids=, **columns) -> list[float]`; lengths are in tokens (completion_ids, EOS included, as lengthrl
counts). Group-relative rewards need each call's batch to be whole, contiguous groups of `num_generations`
(checked on every call).

Prompts: TRL applies the processing class's chat template itself when the dataset's `prompt` column is
conversational. To prompt as `lengthrl train` does with `chat_template = "auto"` (lengthrl.tasks.chat), give
each row `prompt = lengthrl.tasks.chat.PromptFormat(system_prompt=...).messages(sample)`: [system], the data's
earlier turns, then the task's templated prompt as the user turn; TRL adds the generation prompt after it. Plain
string prompts are tokenized as they are (as lengthrl does for a tokenizer without a template).

Metrics: the length statistics of lengthrl (`len/mean`, `len/p90`, `len/group_std_mean`, `trunc_rate`,
`adv_len_corr`, mean length of positive- and negative-advantage responses) are logged with TRL's metrics.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from trl import GRPOTrainer

from lengthrl.errors import ConfigError
from lengthrl.objectives import COMMON_HPARAMS, LOSSES, policy_loss
from lengthrl.registry import check_hparams
from lengthrl.rewards import LENGTH_REWARDS, length_reward

__all__ = ["LengthRLGRPOTrainer", "length_reward_func", "answer_correct", "length_stats"]

_USER_HPARAMS = COMMON_HPARAMS - {"num_tokens", "num_seqs", "ref_logp", "beta", "check_finite"}


class LengthRLGRPOTrainer(GRPOTrainer):
    """`GRPOTrainer` whose policy loss is `lengthrl.objectives.policy_loss(lengthrl_loss, ...)`.

    Args (beyond GRPOTrainer's): lengthrl_loss: a name of `lengthrl.objectives.LOSSES` (default 'luspo');
    lengthrl_hparams: its hyperparameters (clip_low, clip_high, loss_agg_mode, max_len, dual_clip); max_len
    defaults to `max_completion_length`. TRL's `beta` (KL to the reference model) is passed through as lengthrl's
    k3 term. TRL features that reshape the per-token loss (top-entropy masking, off-policy masking, vLLM
    importance-sampling correction, entropy bonus) are refused with a ConfigError rather than silently dropped.
    """

    def __init__(self, *args, lengthrl_loss: str = "luspo", lengthrl_hparams: dict | None = None, **kwargs):
        spec = LOSSES[lengthrl_loss]  # UnknownNameError lists the valid names
        hp = dict(lengthrl_hparams or {})
        check_hparams("loss", lengthrl_loss, hp, _USER_HPARAMS | set(spec.extra_hparams))
        super().__init__(*args, **kwargs)
        for flag, bad in (("top_entropy_quantile", self.top_entropy_quantile < 1.0),
                          ("off_policy_mask_threshold", self.off_policy_mask_threshold is not None),
                          ("vllm_importance_sampling_correction",
                           self.use_vllm and self.vllm_importance_sampling_correction),
                          ("entropy_coef", self._entropy_bonus_enabled),
                          ("delta", self.args.delta is not None)):
            if bad:
                raise ConfigError(f"LengthRLGRPOTrainer: GRPOConfig.{flag} is not supported with a lengthrl loss; "
                                  "leave it at its default")
        hp.setdefault("max_len", self.max_completion_length)
        self.lengthrl_loss, self.lengthrl_hparams = lengthrl_loss, hp

    # ---- rollouts: add the global sequence count and lengthrl's length metrics ------------------------------
    def _generate_and_score_completions(self, inputs):
        out = super()._generate_and_score_completions(inputs)
        mask = out["completion_mask"] if "tool_mask" not in out else out["completion_mask"] * out["tool_mask"]
        out["num_seqs_in_batch"] = self.accelerator.gather((mask.sum(-1) > 0).sum()).sum()  # S_gen, all processes
        mode = "train" if self.model.training else "eval"
        lengths = self.accelerator.gather(out["completion_mask"].sum(-1))  # [N] tokens, EOS included
        adv = self.accelerator.gather(out["advantages"].reshape(len(out["completion_mask"]), -1)[:, 0])  # [N]
        ids = out["completion_ids"]
        eos = torch.tensor(list(self.eos_token_ids), device=ids.device)
        last = ids.gather(1, (out["completion_mask"].sum(-1, keepdim=True) - 1).clamp(min=0))[:, 0]
        truncated = self.accelerator.gather((out["completion_mask"].sum(-1) >= self.max_completion_length)
                                            & ~torch.isin(last, eos))
        for k, v in length_stats(lengths, adv, truncated, self.num_generations).items():
            self._metrics[mode][k].append(v)
        return out

    # ---- the loss ----------------------------------------------------------------------------------------------
    def _compute_loss(self, model, inputs):
        prompt_ids, prompt_mask = inputs["prompt_ids"], inputs["prompt_mask"]
        completion_ids, completion_mask = inputs["completion_ids"], inputs["completion_mask"]
        mask = completion_mask if "tool_mask" not in inputs else completion_mask * inputs["tool_mask"]
        logp, entropies, _aux = self._get_per_token_logps_and_entropies(
            model, torch.cat([prompt_ids, completion_ids], dim=1), torch.cat([prompt_mask, completion_mask], dim=1),
            completion_ids.size(1), compute_entropy=True)  # logp [B, T]
        old = inputs.get("old_per_token_logps")
        old = logp.detach() if old is None else old  # [B, T]
        adv = inputs["advantages"]  # [B] (or [B, T] from subclasses)
        num_tokens, num_seqs = self.lengthrl_normalisers(inputs, mask)
        extra = {}
        if self.beta != 0.0:
            extra = {"beta": self.beta, "ref_logp": inputs["ref_per_token_logps"]}
        out = policy_loss(self.lengthrl_loss, logp, old, adv, mask.to(logp.dtype), num_tokens=num_tokens,
                          num_seqs=num_seqs, **self.lengthrl_hparams, **extra)
        mode = "train" if self.model.training else "eval"
        self._metrics[mode]["policy_loss"].append(self.accelerator.gather(out.loss.detach()).mean().item())
        ent = (entropies * mask).sum() / mask.sum().clamp(min=1)
        self._metrics[mode]["entropy"].append(self.accelerator.gather(ent.detach()).mean().item())
        for k in ("clip_frac_low", "clip_frac_high", "ratio_mean", "approx_kl", "kl_ref"):
            if k in out.metrics:
                self._metrics[mode][f"lengthrl/{k}"].append(self.accelerator.gather(out.metrics[k]).mean().item())
        self._last_lengthrl = {"logp": logp.detach(), "old_logp": old.detach(), "advantages": adv.detach(),
                               "mask": mask.detach(), "num_tokens": num_tokens, "num_seqs": num_seqs,
                               "loss": out.loss.detach()}
        return out.loss

    def lengthrl_normalisers(self, inputs, mask) -> tuple[torch.Tensor, torch.Tensor]:
        """(num_tokens, num_seqs) for one micro-batch (see the module doc): the generation batch's counts scaled
        to one accumulation window per process; under evaluation the micro-batch's own counts."""
        if not self.model.training:
            return mask.sum().to(torch.float32), (mask.sum(-1) > 0).sum().to(torch.float32)
        frac = self.current_gradient_accumulation_steps / (self.args.steps_per_generation
                                                            * self.accelerator.num_processes)
        return (inputs["num_items_in_batch"].to(torch.float32) * frac,
                inputs["num_seqs_in_batch"].to(torch.float32) * frac)


def length_stats(lengths: torch.Tensor, advantages: torch.Tensor, truncated: torch.Tensor,
                 group_size: int) -> dict[str, float]:
    """lengthrl's length metrics of a generation batch: lengths [N] (tokens), advantages [N], truncated [N]."""
    L, a = lengths.float().cpu(), advantages.float().cpu()
    out = {"len/mean": float(L.mean()), "len/median": float(L.median()), "len/p90": float(torch.quantile(L, 0.9)),
           "trunc_rate": float(truncated.float().mean())}
    if L.numel() % group_size == 0:
        out["len/group_std_mean"] = float(L.view(-1, group_size).std(-1, unbiased=False).mean())
    out["adv_len_corr"] = (float(torch.corrcoef(torch.stack([a, L]))[0, 1])
                           if a.std() > 0 and L.std() > 0 else 0.0)
    for name, sel in (("len/pos_adv_mean", a > 0), ("len/neg_adv_mean", a < 0)):
        if sel.any():
            out[name] = float(L[sel].mean())
    return out


def answer_correct(column: str = "answer", extract: str = "auto") -> Callable[..., list[bool]]:
    """Correctness from a dataset column: the answer extracted from each completion (lengthrl's extractors)
    is compared with `column` by lengthrl's math verifier (numbers exactly, expressions by math-verify).
    Usable as a TRL reward function itself (1.0 / 0.0) and as the `correct_fn` of `length_reward_func`."""
    from lengthrl.verifiers import MathVerifier, extract_answer

    verifier = MathVerifier()

    def correct(prompts=None, completions=None, completion_ids=None, **columns) -> list[float]:
        if column not in columns:
            raise ConfigError(f"answer_correct: the dataset has no column {column!r} (columns: "
                              f"{', '.join(sorted(columns)) or 'none'}); pass column=...")
        texts = [_text(c) for c in completions]
        return [float(verifier.equivalent(extract_answer(t, extract), str(g))) for t, g in zip(texts, columns[column])]

    correct.__name__ = f"correct_{column}"
    return correct


def length_reward_func(name: str, correct_fn: Callable[..., Sequence] | None, *, group_size: int,
                       **hparams) -> Callable[..., list[float]]:
    """A TRL reward function computing lengthrl's length reward `name` (see `lengthrl rewards`).

    correct_fn: called with TRL's reward arguments, gives correctness [N] (bool or 0/1), e.g.
    `answer_correct("answer")`; None only for rewards whose formula ignores it (dapo_overlong).
    group_size: the GRPOConfig's num_generations (each call's batch must hold whole, contiguous groups).
    A per-sample `target` (L1, HBPO) is read from a dataset column `target` when not given.
    """
    spec = LENGTH_REWARDS[name]
    check_hparams("length reward", name, hparams, spec.hparams)
    missing = sorted(spec.required - set(hparams) - {"target"})
    if missing:
        raise ConfigError(f"length reward {name!r} needs {', '.join(missing)}=...")
    if correct_fn is None and name != "dapo_overlong":
        raise ConfigError(f"length_reward_func({name!r}): pass correct_fn (e.g. answer_correct('answer')); "
                          "this reward depends on correctness")

    def reward(prompts=None, completions=None, completion_ids=None, **columns) -> list[float]:
        if completion_ids is None:
            raise ConfigError(f"length reward {name!r}: TRL passed no completion_ids")
        lengths = torch.tensor([len(c) for c in completion_ids], dtype=torch.long)  # [N]
        if len(lengths) % group_size:
            raise ConfigError(f"length reward {name!r}: {len(lengths)} completions are not whole groups of "
                              f"group_size={group_size}; make the per-process batch a multiple of num_generations")
        correct = (torch.tensor([float(x) for x in correct_fn(prompts=prompts, completions=completions,
                                                               completion_ids=completion_ids, **columns)])
                   if correct_fn is not None else torch.zeros(len(lengths)))  # [N]
        hp = dict(hparams)
        if "target" in spec.hparams and "target" not in hp:
            if "target" not in columns:
                raise ConfigError(f"length reward {name!r} needs a per-sample target: a dataset column 'target' "
                                  "or target=...")
            hp["target"] = torch.tensor([float(t) for t in columns["target"]])
        return length_reward(name, lengths, correct > 0.5, group_size, **hp).tolist()

    reward.__name__ = f"length_{name}"
    return reward


def _text(completion) -> str:
    """A completion as text (TRL passes strings, or chat messages [{'role', 'content'}])."""
    if isinstance(completion, str):
        return completion
    return "".join(m.get("content", "") for m in completion)
