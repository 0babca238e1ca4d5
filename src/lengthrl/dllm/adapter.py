"""The ``diffusion`` policy of the trainer (`lengthrl.train.policy`): JustGRPO (arXiv 2601.15165) through
`lengthrl train`.

- `DiffusionEngine.generate(prompt_ids: list[list[int]], n, SamplingParams) -> RolloutBatch`: left-to-right
  sampling on a canvas of ``params.max_new_tokens`` masks, one token per forward (block length 1), temperature
  and top-p, rows stop at EOS (`generate_ar`);
- `DiffusionLogprobs`: the trainer's log-prob function, exact AR-order log-probs (`ar_logprobs`) on the same
  canvas (``max_new_tokens`` positions whatever the batch's longest response), with the entropy of each scored
  position. At the sampling temperature it reproduces the rollout's log-probs, so with one update per batch
  (epochs = mini_batches = 1) the importance ratio is exactly 1 and GRPO is REINFORCE with group z-scores.
- ``model = "organism"``: the task's diffusion organism (`lengthrl.dllm.organism`): the shipped build for the
  key of `configs/justgrpo_organism.toml`, otherwise built and cached by task, task arguments and
  ``max_new_tokens``; otherwise a local masked-LM directory (`load_diffusion_model`: our organism,
  a checkpoint of a run, or e.g. LLaDA with ``lengthrl_dllm.json`` giving ``mask_token_id``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import torch

from lengthrl.dllm.logprobs import ESTIMATORS, ar_logprobs
from lengthrl.dllm.model import DLLM_META, load_diffusion_model
from lengthrl.dllm.organism import OrganismRecipe, cached_organism_dir, shipped_organism, task_organism
from lengthrl.dllm.rollout import generate_ar
from lengthrl.errors import ConfigError, DataError
from lengthrl.rollout import RolloutBatch, SamplingParams, left_pad


def resolve(cfg) -> Path:
    """The model directory of `cfg`: for ``model = "organism"`` the shipped diffusion organism when `cfg` has its
    key, else the task's organism built on this CPU and cached."""
    if cfg.model != "organism":
        return Path(cfg.model)
    from lengthrl.tasks import get_task

    recipe = OrganismRecipe(seed=cfg.seed)
    shipped = shipped_organism(cfg.task, cfg.task_args, cfg.max_new_tokens, recipe)
    if shipped is not None:
        return shipped
    out = cached_organism_dir(cfg.task, cfg.task_args, cfg.max_new_tokens, recipe)
    from lengthrl.models.loading import quiet_progress
    from lengthrl.models.organism import CPU_NOTE

    if not (out / "config.json").is_file():
        print(f"diffusion organism: building {out.name} on this CPU; {CPU_NOTE}")

    try:
        with quiet_progress():
            task_organism(out, get_task(cfg.task, **cfg.task_args), cfg.max_new_tokens, recipe, log=print)
    except DataError as e:
        raise ConfigError(f"config key 'max_new_tokens': the diffusion organism's canvas is max_new_tokens = "
                          f"{cfg.max_new_tokens} positions, too short for the task's solutions ({e})") from None
    return out


def is_model_dir(path) -> bool:
    """Whether `path` holds a diffusion LM saved by lengthrl (its ``lengthrl_dllm.json``)."""
    return (Path(path) / DLLM_META).is_file()


def load(path, cfg=None):
    """(model, tokenizer) of a diffusion LM directory (`cfg` unused: the masked LM keeps its own attention); the tokenizer gets the mask id as its mask token (from
    ``lengthrl_dllm.json`` when the tokenizer has none) and EOS as pad when it has no pad token."""
    p = Path(path)
    if not (p / "config.json").is_file():
        raise ConfigError(f"config key 'model': {str(p)!r} is not a model directory (no config.json); give a "
                          "diffusion LM directory or 'organism'")
    from lengthrl.models.loading import quiet_progress

    with quiet_progress():
        lm = load_diffusion_model(p)
    tok = lm.tokenizer
    if tok.mask_token_id is None:
        tok.mask_token = tok.convert_ids_to_tokens(lm.mask_token_id)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    if tok.eos_token_id is None:
        raise ConfigError(f"config key 'model': the tokenizer of {str(p)!r} has no EOS token; the diffusion "
                          "policy stops responses at EOS, add one")
    return lm.model, tok


class DiffusionEngine:
    """`RolloutEngine` over a masked diffusion LM: AR-order sampling (module docstring).

    `logp` of the batch is log softmax(logits / temperature) of the drawn token (top-p not renormalised; greedy:
    temperature 1), what `DiffusionLogprobs` recomputes. top_k is not supported (ConfigError).
    full_canvas (``justgrpo_loss = "official"``): every canvas position is sampled and trained on (see
    `generate_ar`'s stop_at_eos=False); the texts and lengths still end at the first EOS."""

    def __init__(self, model, tokenizer, seed: int = 0, full_canvas: bool = False):
        self.model, self.tok, self.full_canvas = model, tokenizer, full_canvas
        self.mask_token_id, self.eos_token_id = tokenizer.mask_token_id, tokenizer.eos_token_id
        self.pad_token_id = tokenizer.pad_token_id
        self.generator = torch.Generator(device=self._device()).manual_seed(seed)

    def _device(self) -> torch.device:
        p = next(self.model.parameters(), None)
        return torch.device("cpu") if p is None else p.device

    def state_dict(self) -> dict:
        """The generator state (for checkpoints)."""
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        """Restore the generator state saved by `state_dict`."""
        self.generator.set_state(state["generator"])

    @torch.no_grad()
    def generate(self, prompt_ids: list[list[int]], n: int, params: SamplingParams) -> RolloutBatch:
        """n samples per prompt (rows of a prompt contiguous), responses trimmed to the longest."""
        if not isinstance(params, SamplingParams):
            raise ConfigError("generate: params must be a SamplingParams")
        if params.top_k:
            raise ConfigError(f"generate: the diffusion policy takes no top_k (got {params.top_k}); set top_k = 0")
        if not prompt_ids or any(len(p) == 0 for p in prompt_ids):
            raise ConfigError("generate: give at least one prompt, each with at least one token")
        dev = self._device()  # the generator samples where the model's logits are
        gen = torch.Generator(device=dev).manual_seed(params.seed) if params.seed is not None else self.generator
        pids, pmask = left_pad(prompt_ids, self.pad_token_id)  # [Np, P]
        was_training = self.model.training
        self.model.eval()
        try:
            b = generate_ar(self.model, pids, pmask, mask_token_id=self.mask_token_id, eos_token_id=self.eos_token_id,
                            pad_token_id=self.pad_token_id, gen_length=params.max_new_tokens, n=n,
                            temperature=0.0 if params.greedy else params.temperature, top_p=params.top_p,
                            generator=gen, stop_at_eos=not self.full_canvas)
        finally:
            self.model.train(was_training)
        if self.full_canvas:  # [B, max_new_tokens]: every canvas position, post-EOS tokens included
            return b
        T = int(b.lengths.max())  # [B, T] after trimming the canvas to the longest response
        return RolloutBatch(prompt_ids=b.prompt_ids, prompt_mask=b.prompt_mask, response_ids=b.response_ids[:, :T],
                            response_mask=b.response_mask[:, :T], logp=b.logp[:, :T], lengths=b.lengths,
                            truncated=b.truncated, group_index=b.group_index)


def row_seeds(seed: int, prompt_ids, prompt_mask, response_ids, response_mask) -> list[int]:
    """One 63-bit seed per row from (`seed`, the row's real prompt tokens, its real response tokens): the random
    masks of a stochastic estimator are a function of the response, not of the batch it is scored in, so the
    update's, the old policy's and the reference's log-probs of a response see the same masks (the importance
    ratio compares like with like), micro-batching changes nothing and a resumed run is exact."""
    out = []
    for p, pm, r, rm in zip(prompt_ids.cpu(), prompt_mask.cpu(), response_ids.cpu(), response_mask.cpu()):
        h = hashlib.blake2b(digest_size=8)
        h.update(str(seed).encode())
        h.update(p[pm.bool()].numpy().tobytes())
        h.update(b"|")
        h.update(r[rm.bool()].numpy().tobytes())
        out.append(int.from_bytes(h.digest(), "little") >> 1)
    return out


@dataclass
class DiffusionLogprobs:
    """The trainer's log-prob function for a diffusion LM (signature of `lengthrl.rollout.compute_logprobs`):
    log-probs [B, T] on a `gen_length` canvas by `estimator` (`lengthrl.dllm.logprobs.ESTIMATORS`, the config key
    ``dllm_logprob``), and the entropy [B, T] of the scored distribution when asked.

    - "exact": AR-order log-probs (`ar_logprobs`, JustGRPO); equal to the rollout's log-probs at the sampling
      temperature;
    - "mean_field": d1's one-step estimate, prompt tokens masked with probability `p_mask_prompt`;
    - "random_mask": `num_draws` random maskings of the response.
    The random draws of the stochastic estimators come from `row_seeds` (seed, prompt, response)."""

    mask_token_id: int
    pad_token_id: int
    gen_length: int
    chunk_size: int | None = None
    estimator: str = "exact"
    p_mask_prompt: float = 0.0
    num_draws: int = 4
    seed: int = 0

    def __post_init__(self):
        ESTIMATORS[self.estimator]  # an unknown name: UnknownNameError listing the valid ones

    def __call__(self, model, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, response_ids: torch.Tensor,
                 response_mask: torch.Tensor, temperature: float = 1.0, return_entropy: bool = False,
                 estimator: str | None = None):
        B, T = response_ids.shape
        if T > self.gen_length:
            raise ConfigError(f"response_ids has {T} positions, more than the canvas max_new_tokens = "
                              f"{self.gen_length}")
        pad = self.gen_length - T  # score on the full canvas, as generated
        rids = torch.nn.functional.pad(response_ids, (0, pad), value=self.pad_token_id)  # [B, gen_length]
        rmask = torch.nn.functional.pad(response_mask, (0, pad), value=0)
        name = estimator or self.estimator
        if name == "exact":
            out = ar_logprobs(model, prompt_ids, rids, self.mask_token_id, self.chunk_size, prompt_mask=prompt_mask,
                              response_mask=rmask, temperature=temperature, return_entropy=return_entropy)
        else:
            kw = self._noise(name, prompt_ids, prompt_mask, rids, rmask)
            out = ESTIMATORS[name](model, prompt_ids, rids, self.mask_token_id, prompt_mask=prompt_mask,
                                   response_mask=rmask, temperature=temperature, return_entropy=return_entropy, **kw)
        if return_entropy:
            return out[0][:, :T], out[1][:, :T]
        return out[:, :T]

    def _noise(self, name: str, prompt_ids, prompt_mask, rids, rmask) -> dict:
        """The estimator's keyword arguments with its uniforms drawn per row from `row_seeds`."""
        seeds = row_seeds(self.seed, prompt_ids, prompt_mask, rids, rmask)
        gens = [torch.Generator().manual_seed(s) for s in seeds]
        dev = rids.device
        if name == "mean_field":
            if not self.p_mask_prompt:
                return {}
            P = prompt_ids.shape[1]
            noise = torch.stack([torch.rand(P, generator=g) for g in gens]).to(dev)  # [B, P]
            return {"prompt_mask_prob": self.p_mask_prompt, "prompt_noise": noise}
        if name == "random_mask":
            K, T = self.num_draws, rids.shape[1]
            s = torch.stack([torch.rand(K, 1, generator=g) for g in gens], 1)  # [K, B, 1]
            u = torch.stack([torch.rand(K, T, generator=g) for g in gens], 1)  # [K, B, T]
            return {"num_draws": K, "noise": (s.to(dev), u.to(dev))}
        raise ConfigError(f"config key 'dllm_logprob': no noise rule for estimator {name!r}")


def estimator_bias_metrics(model, fn: DiffusionLogprobs, roll: RolloutBatch, rows: int,
                           temperature: float = 1.0) -> dict[str, float]:
    """Bias of the approximate estimators against the exact AR-order log-probs on the first `rows` rows of a
    rollout (no gradient): for the configured estimator, or for both approximations when it is "exact".
    Keys ``dllm_bias/<estimator>/<stat>``: bias_seq = mean over rows of sum_t (estimate - exact), mae_seq,
    bias_token, corr_seq (Pearson correlation of the sequence sums; NaN for one row)."""
    names = [fn.estimator] if fn.estimator != "exact" else ["mean_field", "random_mask"]
    p0 = next(model.parameters(), None)
    b = roll.select(torch.arange(min(rows, len(roll))))
    b = b if p0 is None else b.to(p0.device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            args = (model, b.prompt_ids, b.prompt_mask, b.response_ids, b.response_mask)
            exact = fn(*args, temperature=temperature, estimator="exact")  # [r, T]
            m = b.response_mask.bool()
            out = {}
            for name in names:
                est = fn(*args, temperature=temperature, estimator=name)
                a, e = est.sum(1), exact.sum(1)  # [r]
                corr = torch.corrcoef(torch.stack([a, e]))[0, 1] if len(a) > 1 else torch.tensor(float("nan"))
                d_tok = (est - exact)[m]
                out.update({f"dllm_bias/{name}/bias_seq": float((a - e).mean()),
                            f"dllm_bias/{name}/mae_seq": float((a - e).abs().mean()),
                            f"dllm_bias/{name}/bias_token": float(d_tok.mean()),
                            f"dllm_bias/{name}/corr_seq": float(corr)})
    finally:
        model.train(was_training)
    return out


def diagnostics(model, logprob_fn: DiffusionLogprobs, cfg, roll: RolloutBatch, step: int) -> dict[str, float]:
    """The diffusion policy's per-step metrics: the estimator bias every ``dllm_bias_every`` steps (0 = never)
    on ``dllm_bias_rows`` rows of the step's rollout, before the update."""
    if not cfg.dllm_bias_every or step % cfg.dllm_bias_every:
        return {}
    return estimator_bias_metrics(model, logprob_fn, roll, cfg.dllm_bias_rows, cfg.temperature)


def engine(model, tokenizer, cfg) -> DiffusionEngine:
    """The trainer's rollout engine for `cfg`."""
    return DiffusionEngine(model, tokenizer, seed=cfg.seed, full_canvas=cfg.justgrpo_loss == "official")


def logprob_fn(tokenizer, cfg) -> DiffusionLogprobs:
    """The trainer's log-prob function for `cfg` (canvas: cfg.max_new_tokens; estimator: cfg.dllm_logprob)."""
    return DiffusionLogprobs(tokenizer.mask_token_id, tokenizer.pad_token_id, cfg.max_new_tokens,
                             estimator=cfg.dllm_logprob, p_mask_prompt=cfg.p_mask_prompt,
                             num_draws=cfg.dllm_mask_draws, seed=cfg.seed)
