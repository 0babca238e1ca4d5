"""The training config: one dataclass whose fields carry their docs (cleanrl style).

A config is a TOML file of these keys (reward terms as `[[reward]]` tables), plus `--set key=value` overrides.
Every key is typed and validated; an error names the key and the fix. `lengthrl config show` prints them all.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import logging
import math
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lengthrl.errors import ConfigError
from lengthrl.parsing import parse_value  # the one --set / --arg parser

log = logging.getLogger("lengthrl.train")


def doc(text: str, default: Any = dataclasses.MISSING, factory: Any = dataclasses.MISSING):
    if factory is not dataclasses.MISSING:
        return field(default_factory=factory, metadata={"doc": text})
    return field(default=default, metadata={"doc": text})


@dataclass
class TrainConfig:
    # ---- model and data ------------------------------------------------------------------------------------
    model: str = doc("'organism' (the built-in tiny model, built and cached on first use) or a local model "
                     "directory (transformers format: config, safetensors, tokenizer files)", "organism")
    policy: str = doc("'ar' (a causal LM) or 'diffusion' (a masked diffusion LM trained as an AR policy, JustGRPO "
                      "arXiv 2601.15165: left-to-right rollouts on a max_new_tokens canvas, exact AR-order "
                      "log-probs; 'organism' is then the built-in diffusion organism of the task); see "
                      "docs/dllm.md", "ar")
    ref_model: str | None = doc("reference model for the KL term (default: a frozen copy of the initial model)",
                                None)
    task: str = doc("task name (see `lengthrl tasks`), e.g. 'arith_chain', 'reasoning_gym:basic_arithmetic', "
                    "or 'data' with task_args.path", "count_letters")
    task_args: dict = doc("keyword arguments of the task (difficulty knobs, data path, field mapping)", factory=dict)
    chat_template: str = doc("how prompts are given to the model: 'auto' (the tokenizer's chat template when it "
                             "has one: [system_prompt], the task's prompt as the user turn, then the generation "
                             "prompt; else the prompt text as it is), 'none' (the prompt text as it is) or the "
                             "path of a Jinja chat template file (lengthrl.tasks.chat)", "auto")
    system_prompt: str | None = doc("system turn of every prompt (needs a chat template; unset = none, or the "
                                    "data's own)", None)
    max_prompt_length: int = doc("most prompt tokens (TRL's max_prompt_length); 0 = what the context leaves "
                                 "(max_position_embeddings - max_new_tokens), which also caps it", 0)
    long_prompts: str = doc("a prompt over the limit: 'error' (before step 1, naming it), 'truncate' (keep its "
                            "last max_prompt_length tokens, as TRL) or 'filter' (drop it from the training and "
                            "held-out prompts); the count is logged", "error")
    train_prompts: int = doc("size of the pool of training prompts", 4000)
    eval_prompts: int = doc("held-out prompts evaluated at the end (0 = no evaluation)", 200)
    # ---- rollout -------------------------------------------------------------------------------------------
    prompts_per_step: int = doc("prompts per RL step (each answered group_size times)", 16)
    group_size: int = doc("responses per prompt (G)", 8)
    max_new_tokens: int = doc("response budget in tokens, EOS included (also L_max of dr_grpo)", 96)
    temperature: float = doc("sampling temperature of the rollouts", 1.0)
    top_p: float = doc("nucleus sampling threshold of the rollouts (1 = off)", 1.0)
    top_k: int = doc("top-k of the rollouts (0 = off)", 0)
    rollout_shards: int = doc("sample each step's prompts in this many equal shards, each seeded by (seed, step, "
                              "shard), so samples do not depend on the number of processes; 0 = one stream on "
                              "one process, one shard per rank under torchrun", 0)
    rollout_engine: str = doc("rollout engine: 'auto' (the lean Llama/Qwen2 decoder when the model is supported, "
                              "else transformers), 'hf' (transformers) or 'fast' (the lean decoder; an error "
                              "when the model is not supported)", "auto")
    logprob_impl: str = doc("the differentiable forward of the update (log-probs of the responses): 'auto' (the "
                            "lean decoder, which encodes each group's prompt once, when rollout_engine is not "
                            "'hf' and the model allows it, else the model's own forward), 'model' (always the "
                            "model's own transformers forward) or 'lean' (always the lean decoder; an error "
                            "when the model, gradient checkpointing or several processes rule it out)", "auto")
    # ---- diffusion policy (policy = 'diffusion'; docs/dllm.md) -----------------------------------------------
    dllm_logprob: str = doc("log-prob estimator of the diffusion policy's update: 'exact' (AR-order log-probs, "
                            "one forward per position, JustGRPO), 'mean_field' (d1/diffu-GRPO's one-step "
                            "estimate, arXiv 2504.12216: one forward with the whole response masked, prompt tokens "
                            "masked with probability p_mask_prompt) or 'random_mask' (dllm_mask_draws forwards "
                            "with the response masked at a random rate)", "exact")
    p_mask_prompt: float = doc("probability of masking each prompt token in the 'mean_field' estimate (d1 uses "
                               "0.15; 0 = off); the masks are drawn per response from (seed, prompt, response)",
                               0.0)
    dllm_mask_draws: int = doc("random maskings averaged by the 'random_mask' estimator", 4)
    dllm_bias_every: int = doc("every N steps log the bias of the estimator against the exact log-probs "
                               "(dllm_bias/<estimator>/bias_seq, mae_seq, bias_token, corr_seq; both approximations "
                               "when dllm_logprob = 'exact') on dllm_bias_rows rows of the step's rollout, before "
                               "the update (0 = off)", 0)
    dllm_bias_rows: int = doc("rollout rows the estimator bias is measured on", 16)
    justgrpo_loss: str = doc("normaliser of the diffusion policy's GRPO loss: 'grpo' (the loss of `loss` on the "
                             "response up to its EOS: A_i / (B'·|y_i|) per token with loss = 'grpo') or 'official' "
                             "(the official JustGRPO code, arXiv 2601.15165: every position of the max_new_tokens "
                             "canvas, post-EOS tokens included, sampled and trained on, each weighted "
                             "A_i / (max_new_tokens·V), V = responses with A_i != 0 over all ranks; no length "
                             "bias; needs loss = 'grpo' without loss_agg_mode)", "grpo")
    # ---- objective -----------------------------------------------------------------------------------------
    loss: str = doc("policy loss (see `lengthrl losses`)", "grpo")
    loss_agg_mode: str | None = doc("token aggregation (default: the loss's own)", None)
    clip_low: float | None = doc("lower clip epsilon (default: the loss's own)", None)
    clip_high: float | None = doc("upper clip epsilon (default: the loss's own)", None)
    dual_clip: float | None = doc("dual-clip constant c > 1 for PPO-clip losses (off by default)", None)
    advantage: str = doc("advantage estimator (see `lengthrl advantages`)", "grpo")
    adv_eps: float | None = doc("eps of the std-normalising estimators (default: the estimator's own)", None)
    beta: float = doc("coefficient of the k3 KL to the reference model (0 = no reference model)", 0.0)
    # ---- reward --------------------------------------------------------------------------------------------
    reward: list = doc("reward terms: [{name, weight, ...hyperparameters}] (see `lengthrl rewards`); a length "
                       "reward's max_len defaults to max_new_tokens; --set reward.N.key=value sets one term's key",
                       factory=lambda: [{"name": "correct", "weight": 1.0}])
    reward_funcs: list = doc("your own Python reward functions with TRL's signature, f(prompts=, completions=, "
                             "completion_ids=, **columns) -> [n] numbers: 'package.module:function' (weight 1) or "
                             "{func = '...', weight = w}; added to the reward terms, logged as reward/<function> "
                             "(lengthrl.rewards.python)", factory=list)
    dynamic_sampling: str = doc("DAPO dynamic sampling (arXiv 2503.14476): 'off'; 'drop' (groups whose rewards "
                                "are all equal leave the update, which trains on fewer; true is 'drop'); "
                                "'resample' (sample more prompts until prompts_per_step groups have signal, at "
                                "most max_resample_rounds rounds, then train on what there is)", "off")
    max_resample_rounds: int = doc("dynamic_sampling = 'resample': at most this many sampling rounds of "
                                   "prompts_per_step prompts per step, the first included", 3)
    hbpo_budgets: list = doc("HBPO (arXiv 2507.15844) budget sub-groups, e.g. [16, 32, 64, 128]: each group of "
                             "group_size responses is cut into len(hbpo_budgets) equal sub-groups, sub-group i sampled "
                             "from its prompt rewritten by hbpo_prompt with budget i; that budget is the target of the "
                             "reward terms that take one (the 'hbpo' reward) and the budget of advantage = 'hbpo' "
                             "(docs/rewards.md); [] = off", factory=list)
    hbpo_prompt: str = doc("HBPO: the prompt of a budget sub-group, a format string of {prompt} (the task's prompt) "
                           "and {budget} (tokens)", "{prompt}\nI will answer the question within {budget} tokens.\n")
    overlong_filter: bool = doc("mask truncated responses out of the loss (DAPO overlong filtering)", False)
    truncated_correct: bool = doc("count a truncated response (max_new_tokens reached without EOS) by its "
                                  "verdict; by default it is wrong with task reward 0, in training and in the "
                                  "final evaluation (docs/metrics.md)", False)
    score_timeout_s: float = doc("deadline of one verifier call in seconds; a call that overruns or raises gives "
                                 "reward 0, is counted and logged to score_errors.jsonl (0 = no deadline)", 30.0)
    # ---- length budget (Lagrangian controller, docs/budget.md) ---------------------------------------------
    length_budget: float | None = doc("length budget in tokens (EOS included): maximise reward s.t. the mean (or "
                                      "quantile) length <= budget, by dual ascent on a multiplier (off when unset)",
                                      None)
    length_budget_per_prompt: bool = doc("take each prompt's budget from the task (Sample.target_len), falling "
                                         "back to length_budget", False)
    length_budget_quantile: float | None = doc("constrain this quantile of length/budget (e.g. 0.9) instead of "
                                               "the mean", None)
    lagrange_lr: float = doc("dual learning rate K_I of the multiplier (per step, per unit relative violation)",
                             0.05)
    lagrange_pi: float = doc("proportional gain K_P of PI damping (0 = plain projected dual ascent)", 0.0)
    lagrange_init: float = doc("initial multiplier (>= 0)", 0.0)
    lagrange_max: float | None = doc("upper bound of the multiplier (unset = none)", None)
    # ---- update --------------------------------------------------------------------------------------------
    epochs: int = doc("passes over each rollout batch (PPO epochs)", 1)
    mini_batches: int = doc("optimizer steps per epoch (the batch is split into this many mini-batches)", 1)
    micro_batch_size: int = doc("sequences per forward/backward (gradient accumulation); 0 = the whole "
                                "mini-batch", 0)
    micro_batch_tokens: int = doc("token budget per forward/backward instead of a row count (0 = off): the rows "
                                  "of a mini-batch are sorted by length and packed into micro-batches of rows x "
                                  "padded length <= this budget (at least one row each; at most micro_batch_size "
                                  "rows when that is set too), each padded only to its own longest row; the same "
                                  "objective (normalisers over the whole mini-batch), no FLOPs on padding "
                                  "(docs/performance.md)", 0)
    lr: float = doc("AdamW learning rate", 2e-4)
    weight_decay: float = doc("AdamW weight decay", 0.0)
    warmup_steps: int = doc("linear warm-up, in optimizer steps", 0)
    schedule: str = doc("learning-rate schedule after warm-up: constant, linear or cosine", "constant")
    grad_clip: float = doc("max global gradient norm (0 = off)", 1.0)
    # ---- device and precision (docs/gpu.md) ----------------------------------------------------------------
    device: str = doc("where the model and tensors live: 'auto' (cuda when available, else cpu), 'cpu', 'cuda' "
                      "or 'cuda:N'; under torchrun each rank uses cuda:LOCAL_RANK", "auto")
    dtype: str = doc("compute dtype of forwards and backwards: 'auto' (bfloat16 on a CUDA device that supports "
                     "it, else float32), 'float32', 'bfloat16' or 'float16' (with a dynamic loss scale); master "
                     "weights and AdamW state stay float32, log-probs, ratios and the loss are float32 (autocast; "
                     "under FSDP2 its MixedPrecisionPolicy)", "auto")
    attn_implementation: str = doc("attention of the transformers model: 'sdpa' (PyTorch's scaled_dot_product_"
                                   "attention, flash kernels where they apply), 'eager', or 'flash_attention_2' "
                                   "(needs the flash-attn package)", "sdpa")
    # ---- run -----------------------------------------------------------------------------------------------
    steps: int = doc("RL steps", 40)
    seed: int = doc("seed of everything (data order, sampling, initialisation)", 0)
    checkpoint_every: int = doc("write a checkpoint every N steps (0 = only at the end)", 10)
    keep_checkpoints: int = doc("how many checkpoints to keep", 2)
    checkpoint_format: str = doc("'full': the whole model (safetensors) and optimizer state, written by rank 0 "
                                 "(under FSDP2 gathered to it first); 'sharded': each rank writes its shards "
                                 "(torch.distributed.checkpoint), no gather, resumable on any number of ranks",
                                 "full")
    log_every: int = doc("print a metrics line every N steps", 5)
    sample_every: int = doc("log sample responses every N steps (0 = never)", 10)
    eval_samples: int = doc("samples per held-out prompt in the final evaluation", 1)
    eval_temperature: float = doc("sampling temperature of the final evaluation (0 = greedy)", 0.0)
    threads: int = doc("torch CPU threads (0 = leave torch's default)", 0)
    dist_strategy: str = doc("under torchrun: 'ddp' (every rank holds the whole model, gradients all-reduced) or "
                             "'fsdp' (FSDP2 fully_shard: parameters, gradients and optimizer state sharded "
                             "over ranks; docs/scaling.md); ignored on one process", "ddp")
    gradient_checkpointing: bool = doc("recompute each decoder layer's activations in the backward pass instead "
                                       "of keeping them (transformers' gradient checkpointing, non-reentrant): "
                                       "activation memory of one layer instead of all, ~1/3 more update compute",
                                       False)
    logprob_chunk: int = doc("LM-head chunk of the training forward, in tokens: log-probs and their gradient are "
                             "computed this many positions at a time with a recomputing backward, so the "
                             "[B, T, vocab] float32 logits are never materialised (lengthrl.rollout.chunked; the "
                             "same values). 0 = auto (2^26 logits per chunk: 441 tokens at vocab 151,936; a "
                             "micro-batch that fits in one chunk takes the full-logits path); -1 = off", 0)
    fsdp_param_dtype: str | None = doc("older name of `dtype` under FSDP2 ('bfloat16' or 'float16', only with "
                                       "dist_strategy = 'fsdp'): the same setting, applied as FSDP2's "
                                       "MixedPrecisionPolicy; set dtype instead (an error when both are set and "
                                       "differ)", None)
    # ---- LoRA (peft; docs/gpu.md, "LoRA") --------------------------------------------------------------------
    lora_r: int = doc("LoRA rank: the policy is wrapped with a peft LoRA adapter of this rank and only the "
                      "adapter is trained and checkpointed; the KL reference is the base model with the adapter "
                      "disabled (0 = off, full fine-tuning). Needs the 'lora' extra (peft)", 0)
    lora_alpha: float = doc("LoRA scale numerator: the update is (lora_alpha / lora_r) B A", 16.0)
    lora_dropout: float = doc("dropout on the LoRA branch's input while training", 0.0)
    lora_target_modules: list = doc("names of the linear layers that get an adapter",
                                    factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                                     "up_proj", "down_proj"])
    merge_lora: bool = doc("also write the merged weights (W + (alpha / r) B A) to final/, loadable by "
                           "AutoModelForCausalLM; the adapter alone is always in final/adapter", False)
    max_bad_steps: int = doc("stop after this many consecutive non-finite losses or gradients", 3)


LOGPROB_IMPLS = ("auto", "model", "lean")
DYNAMIC_SAMPLING_MODES = ("off", "drop", "resample")  # lengthrl.train.dynamic runs them
DYNAMIC_SAMPLING_LEGACY = {False: "off", True: "drop"}  # dynamic_sampling's old boolean values


def dynamic_sampling_mode(value) -> str:
    """The mode of a `dynamic_sampling` value: one of DYNAMIC_SAMPLING_MODES, or the old booleans (true = 'drop')."""
    if isinstance(value, bool):
        return DYNAMIC_SAMPLING_LEGACY[value]
    if value not in DYNAMIC_SAMPLING_MODES:
        raise ConfigError(f"config key 'dynamic_sampling': {value!r}; valid: "
                          f"{', '.join(repr(m) for m in DYNAMIC_SAMPLING_MODES)} (true = 'drop', false = 'off')")
    return value
FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}


def _check_type(key: str, value: Any, tp: Any) -> Any:
    """Coerce/validate `value` for the annotated type `tp` (str annotations resolved)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for a in args:
            if a is type(None):
                continue
            try:
                return _check_type(key, value, a)
            except ConfigError:
                pass
        raise ConfigError(f"config key {key!r}: expected {tp}, got {value!r}")
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"config key {key!r}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"config key {key!r}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"config key {key!r}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"config key {key!r}: expected a string, got {value!r}")
    if tp in (list, dict):
        if isinstance(value, tp):
            return value
        raise ConfigError(f"config key {key!r}: expected a {tp.__name__}, got {value!r}")
    return value


HINTS = typing.get_type_hints(TrainConfig)


def _unknown(key: str) -> ConfigError:
    close = difflib.get_close_matches(key, FIELDS, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return ConfigError(f"unknown config key {key!r}{hint} (see `lengthrl config show` for every key)")


def parse_config(path: str | Path | None = None, overrides: list[str] | None = None,
                 extra: dict | None = None) -> TrainConfig:
    """TOML file (optional) + `key=value` overrides + a dict, into a TrainConfig whose every value has its key's
    type. Names and cross-key rules are checked by `lengthrl.train.validate.build_config`, the public entry."""
    values: dict[str, Any] = {}
    if path:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file {str(p)!r} does not exist")
        try:
            text = p.read_bytes().decode("utf-8")
        except UnicodeDecodeError as e:
            raise ConfigError(f"config file {str(p)!r} is not UTF-8 text (byte {e.start}); save it as UTF-8") from None
        try:
            values.update(tomllib.loads(text))
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"config file {str(p)!r} is not valid TOML: {e}") from None
        values.pop("meta", None)  # free-form documentation table of recipes (paper, section, scaled down)
    values.update(extra or {})
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected key=value, e.g. --set loss=luspo")
        k, v = item.split("=", 1)
        k = k.strip()
        if k.startswith("task_args."):  # task_args.n_steps=3, task_args.scoring.format_template=hash
            *path, last = k.split(".")[1:]
            d = values.setdefault("task_args", {})
            for part in path:
                d = d.setdefault(part, {})
                if not isinstance(d, dict):
                    raise ConfigError(f"--set {item!r}: task_args.{part} is not a table")
            d[last] = parse_value(v)
        elif k.startswith("reward."):  # reward.2.max_len=64: a hyperparameter of the third term
            _set_reward_term(values, k, parse_value(v), item)
        elif "." in k:
            raise ConfigError(f"--set {item!r}: only task_args.<name> and reward.<index>.<key> take a dotted key")
        else:
            values[k] = parse_value(v)
    for k in values:
        if k not in FIELDS:
            raise _unknown(k)
    if "dynamic_sampling" in values:  # its old values true / false are 'drop' / 'off'
        values["dynamic_sampling"] = dynamic_sampling_mode(values["dynamic_sampling"])
    return TrainConfig(**{k: _check_type(k, v, HINTS[k]) for k, v in values.items()})


def _set_reward_term(values: dict, key: str, value: Any, item: str) -> None:
    """--set reward.N.key=value: set `key` of reward term N (counted from 0) of the file's (or the default)
    reward list, copied first."""
    parts = key.split(".")
    if len(parts) != 3 or not parts[1].isdigit():
        raise ConfigError(f"--set {item!r}: write reward.<index>.<key>=value, e.g. --set reward.1.max_len=64")
    terms = copy.deepcopy(values.get("reward", FIELDS["reward"].default_factory()))
    if not isinstance(terms, list):
        raise ConfigError(f"--set {item!r}: config key 'reward' is not a list of terms")
    i = int(parts[1])
    if i >= len(terms):
        names = ", ".join(f"{j}: {t.get('name')}" for j, t in enumerate(terms) if isinstance(t, dict))
        raise ConfigError(f"--set {item!r}: no reward term {i}; the terms are {names}")
    terms[i] = {**terms[i], parts[2]: value}
    values["reward"] = terms


# key -> [low, high): every step, seed or count must fit the integers torch and numpy use
INT_RANGES = {
    "seed": (0, 2**32, "2**32"),
    "steps": (1, 10**9, "10**9"),
    "threads": (0, 4097, "4097"),
    "train_prompts": (1, 10**9, "10**9"),
    "eval_prompts": (0, 10**9, "10**9"),
    "epochs": (1, 10**6, "10**6"),
    "group_size": (1, 10**6, "10**6"),
    "prompts_per_step": (1, 10**6, "10**6"),
    "max_new_tokens": (1, 10**7, "10**7"),
    "checkpoint_every": (0, 10**9, "10**9"),
    "log_every": (0, 10**9, "10**9"),
    "sample_every": (0, 10**9, "10**9"),
    "warmup_steps": (0, 10**9, "10**9"),
}


def check_ranges(cfg: TrainConfig) -> None:
    """The checks of single keys and of keys against each other that need no registry (ranges, finiteness,
    combinations of the diffusion keys, batch divisibility); every error names the key. The names that live in
    registries (loss, task, engine, ...) are checked by `lengthrl.train.validate`."""

    def need(ok: bool, key: str, msg: str):
        if not ok:
            raise ConfigError(f"config key {key!r}: {msg} (got {getattr(cfg, key)!r})")

    dynamic_sampling_mode(cfg.dynamic_sampling)  # a TrainConfig built directly is checked here too
    need(cfg.policy != "diffusion" or cfg.top_k == 0, "top_k",
         "the diffusion policy samples with temperature and top_p only; set top_k = 0")
    need(cfg.logprob_impl in LOGPROB_IMPLS, "logprob_impl", f"must be one of {', '.join(LOGPROB_IMPLS)}")
    for key, default in (("dllm_logprob", "exact"), ("p_mask_prompt", 0.0), ("dllm_bias_every", 0)):
        need(cfg.policy == "diffusion" or getattr(cfg, key) == default, key,
             "applies to policy = 'diffusion' only; unset it or set policy = 'diffusion'")
    need(0.0 <= cfg.p_mask_prompt < 1.0, "p_mask_prompt", "must be in [0, 1)")
    need(cfg.p_mask_prompt == 0.0 or cfg.dllm_logprob == "mean_field", "p_mask_prompt",
         "masks prompt tokens in the 'mean_field' estimate only; set dllm_logprob = 'mean_field' or p_mask_prompt = 0")
    need(cfg.justgrpo_loss in ("grpo", "official"), "justgrpo_loss", "must be 'grpo' or 'official'")
    if cfg.justgrpo_loss == "official":
        need(cfg.policy == "diffusion", "justgrpo_loss", "'official' applies to policy = 'diffusion' only")
        need(cfg.loss == "grpo", "loss", "justgrpo_loss = 'official' is the PPO-clip term of 'grpo' with its own "
             "normaliser; set loss = 'grpo' or justgrpo_loss = 'grpo'")
        need(cfg.loss_agg_mode is None, "loss_agg_mode", "justgrpo_loss = 'official' sets the aggregation; unset it")
    need(cfg.dllm_mask_draws >= 1, "dllm_mask_draws", "must be >= 1")
    need(cfg.dllm_bias_every >= 0, "dllm_bias_every", "must be >= 0 (0 = off)")
    need(cfg.dllm_bias_rows >= 1, "dllm_bias_rows", "must be >= 1")
    need(cfg.policy != "diffusion" or cfg.logprob_impl != "lean", "logprob_impl",
         "the diffusion policy scores with its own AR-order forward, not the lean decoder; use 'auto'")
    for key in ("prompts_per_step", "group_size", "max_new_tokens", "steps", "epochs", "mini_batches",
                "eval_samples", "max_bad_steps", "max_resample_rounds"):
        need(getattr(cfg, key) >= 1, key, "must be >= 1")
    for key in ("train_prompts",):
        need(getattr(cfg, key) >= cfg.prompts_per_step, key, "must be at least prompts_per_step")
    need(cfg.rollout_shards <= 0 or cfg.prompts_per_step % cfg.rollout_shards == 0, "rollout_shards",
         f"must divide prompts_per_step={cfg.prompts_per_step} (shards hold whole groups)")
    for key in ("eval_prompts", "micro_batch_size", "micro_batch_tokens", "rollout_shards", "warmup_steps", "checkpoint_every", "log_every",
                "sample_every", "threads"):
        need(getattr(cfg, key) >= 0, key, "must be >= 0")
    for key, (lo, hi, hi_text) in INT_RANGES.items():  # values that torch, numpy or the step counter cannot hold
        need(lo <= getattr(cfg, key) < hi, key, f"must be in [{lo}, {hi_text})")
    for key, v in dataclasses.asdict(cfg).items():
        if isinstance(v, float):
            need(math.isfinite(v), key, "must be a finite number")
    need(cfg.max_prompt_length >= 0, "max_prompt_length", "must be >= 0 (0 = what the context leaves)")
    need(cfg.chat_template in ("auto", "none") or Path(cfg.chat_template).is_file(), "chat_template",
         "must be 'auto', 'none' or the path of a Jinja chat template file that exists")
    need(cfg.logprob_chunk >= -1, "logprob_chunk", "must be -1 (off), 0 (auto) or a number of tokens >= 1")
    need(cfg.keep_checkpoints >= 1, "keep_checkpoints", "must be >= 1")
    need(cfg.checkpoint_format in ("full", "sharded"), "checkpoint_format", "must be 'full' or 'sharded'")
    need(cfg.lr > 0, "lr", "must be > 0")
    need(cfg.temperature >= 0, "temperature", "must be >= 0")
    need(cfg.eval_temperature >= 0, "eval_temperature", "must be >= 0")
    need(0 < cfg.top_p <= 1, "top_p", "must be in (0, 1]")
    need(cfg.beta >= 0, "beta", "must be >= 0")
    need(cfg.grad_clip >= 0, "grad_clip", "must be >= 0")
    need(cfg.score_timeout_s >= 0, "score_timeout_s", "must be >= 0")
    need(cfg.schedule in ("constant", "linear", "cosine"), "schedule", "must be constant, linear or cosine")
    n_seqs = cfg.prompts_per_step * cfg.group_size
    need(cfg.mini_batches <= cfg.prompts_per_step, "mini_batches",
         f"must be at most prompts_per_step={cfg.prompts_per_step} (mini-batches hold whole groups)")
    need(cfg.micro_batch_size <= n_seqs, "micro_batch_size", f"must be at most the batch size {n_seqs}")
    need(cfg.micro_batch_tokens == 0 or cfg.policy == "ar", "micro_batch_tokens",
         "the diffusion policy scores a fixed max_new_tokens canvas; use micro_batch_size")
    if cfg.dual_clip is not None:
        need(cfg.dual_clip > 1, "dual_clip", "must be > 1")


def changed_keys(old: dict, new: dict) -> list[str]:
    """`key: old -> new` for every config key whose value differs between two `to_dict` configs (keys that
    are not config keys are ignored), for the warning of a resume with a changed config."""
    return [f"{k}: {old.get(k)!r} -> {new[k]!r}" for k in FIELDS if k in new and k in old and old[k] != new[k]]


def to_dict(cfg: TrainConfig) -> dict:
    return dataclasses.asdict(cfg)


def describe() -> list[tuple[str, str, str, str]]:
    """(key, type, default, doc) for every field, for `lengthrl config show`."""
    rows = []
    for f in dataclasses.fields(TrainConfig):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        tp = HINTS[f.name]
        rows.append((f.name, getattr(tp, "__name__", str(tp)).replace("typing.", ""), repr(default),
                     f.metadata["doc"]))
    return rows
