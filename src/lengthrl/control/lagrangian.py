"""A Lagrangian length controller: maximise task reward subject to a length budget, by dual ascent.

The constrained problem (per-prompt budgets B_i, or one global budget B_i = B):

    max_pi  E[R(y)]   s.t.   g(pi) = S(|y_i| / B_i - 1) <= 0

where S is the mean over the batch (the constraint E[|y|/B - 1] <= 0, i.e. E[length] <= budget for a global
budget) or its q-quantile (the constraint "q of the responses fit in their budget", e.g. q = 0.9 for p90).
Its Lagrangian is E[R] - lambda * g with a multiplier lambda >= 0. The policy step maximises it for a fixed
lambda, which is plain RL on the shaped per-response reward

    r'_i = r_i - lambda * (|y_i| - B_i) / B_i                                   (normalised by the budget)

and the dual step moves lambda along the measured violation g_t of the step's batch. With PI damping
(Stooke, Achiam & Abbeel, "Responsive Safety in RL by PID Lagrangian Methods", arXiv 2007.03964, Alg. 2):

    I_t      = max(0, I_{t-1} + g_t)                                            (projected integral)
    lambda_t = min(lambda_max, max(0, K_I * I_t + K_P * g_t))

K_I is the dual learning rate (`lagrange_lr`), K_P the proportional gain (`lagrange_pi`). With K_P = 0 this
is exactly projected dual ascent, lambda_t = max(0, lambda_{t-1} + K_I * g_t) (Bertsekas; RCPO, Tessler et al.
arXiv 1805.11074). The proportional term reacts to the current violation at once and does not accumulate, so
the multiplier overshoots less and oscillates less than with the integral term alone.

Lengths are response tokens, EOS included (as everywhere in lengthrl). A batch shapes its rewards with the
multiplier *before* its own update (the lambda of the previous step), then updates it. Because the shaping is
applied to the total reward it composes with any reward terms (other length rewards included) and any loss.
Within a group with one budget the constant part +lambda cancels under group-relative advantages, so the
effective penalty is -lambda * |y_i| / B_i.
"""

from __future__ import annotations

import math
import dataclasses
from dataclasses import asdict, dataclass

import torch

from lengthrl.errors import ConfigError, DataError


@dataclass
class LagrangeConfig:
    """Hyperparameters of the controller (the trainer reads them from the `length_budget*`/`lagrange_*` keys).

    budget: global budget in tokens (EOS included); None when every prompt brings its own (per_prompt).
    per_prompt: take B_i from `Sample.target_len`, falling back to `budget` for prompts without one.
    quantile: None constrains the mean of |y|/B - 1; q in (0, 1) constrains its q-quantile.
    lr: K_I, the dual learning rate (integral gain), > 0.
    pi: K_P, the proportional gain of PI damping (0 = plain dual ascent), >= 0.
    init: initial multiplier (>= 0). max: upper bound on the multiplier (None = unbounded).
    """

    budget: float | None = None
    per_prompt: bool = False
    quantile: float | None = None
    lr: float = 0.05
    pi: float = 0.0
    init: float = 0.0
    max: float | None = None

    def validate(self, prefix: str = "") -> None:
        """Raise ConfigError naming the offending key (with `prefix`, e.g. the config key names)."""
        names = {"budget": "length_budget", "per_prompt": "length_budget_per_prompt",
                 "quantile": "length_budget_quantile", "lr": "lagrange_lr", "pi": "lagrange_pi",
                 "init": "lagrange_init", "max": "lagrange_max"}

        def bad(key: str, msg: str) -> ConfigError:
            return ConfigError(f"config key {names[key]!r}: {msg} (got {getattr(self, key)!r})")

        if self.budget is None and not self.per_prompt:
            raise ConfigError("the length controller needs a budget: set length_budget (tokens) or "
                              "length_budget_per_prompt = true for a task with Sample.target_len")
        if self.budget is not None and not (math.isfinite(self.budget) and self.budget > 0):
            raise bad("budget", "must be a positive number of tokens")
        if self.quantile is not None and not (0 < self.quantile < 1):
            raise bad("quantile", "must be in (0, 1), e.g. 0.9 for the p90, or unset for the mean")
        for key in ("lr",):
            if not (math.isfinite(getattr(self, key)) and getattr(self, key) > 0):
                raise bad(key, "must be a finite number > 0")
        for key in ("pi", "init"):
            if not (math.isfinite(getattr(self, key)) and getattr(self, key) >= 0):
                raise bad(key, "must be a finite number >= 0")
        if self.max is not None and not (self.max > 0 and self.max >= self.init):
            raise bad("max", "must be > 0 and >= lagrange_init, or unset for no bound")


class LagrangeController:
    """The multiplier and its PI state. `shape` penalises a batch's rewards; `update` takes the dual step.

        ctl = LagrangeController(LagrangeConfig(budget=32, lr=0.1))
        shaped, penalty = ctl.shape(rewards, lengths)     # rewards [N], lengths [N] -> [N], [N]
        metrics = ctl.update(lengths)                     # lambda <- max(0, lambda + lr * violation)
    """

    def __init__(self, cfg: LagrangeConfig):
        cfg.validate()
        self.cfg = cfg
        self.lam = float(cfg.init)
        self.integral = float(cfg.init) / cfg.lr  # I_0 such that K_I * I_0 = init
        self.steps = 0

    # ---- budgets and violation ---------------------------------------------------------------------------
    def budgets(self, n: int, targets: list[int | None] | None = None) -> torch.Tensor:
        """Per-response budgets [n] (float64): targets[i] when per_prompt and given, else the global budget."""
        if not self.cfg.per_prompt:
            return torch.full((n,), float(self.cfg.budget), dtype=torch.float64)
        if targets is None or len(targets) != n:
            got = "none" if targets is None else len(targets)
            raise DataError(f"length_budget_per_prompt: need one target length per response ({n}), got {got}")
        out = []
        for i, t in enumerate(targets):
            if t is None:
                if self.cfg.budget is None:
                    raise DataError(f"length_budget_per_prompt: response {i} has no Sample.target_len and no global "
                                    "length_budget is set; give the task target lengths or set length_budget")
                t = self.cfg.budget
            if not (isinstance(t, (int, float)) and math.isfinite(t) and t > 0):
                raise DataError(f"length_budget_per_prompt: target length of response {i} is {t!r}; it must be > 0")
            out.append(float(t))
        return torch.tensor(out, dtype=torch.float64)

    @staticmethod
    def _lengths(lengths, n: int | None = None) -> torch.Tensor:
        L = torch.as_tensor(lengths).to(torch.float64).flatten()  # [N]
        if L.numel() == 0:
            raise DataError("length controller: the batch of lengths is empty")
        if not torch.isfinite(L).all() or (L < 0).any():
            i = int((~torch.isfinite(L) | (L < 0)).nonzero()[0])
            raise DataError(f"length controller: lengths[{i}] = {L[i].item()!r}; lengths must be finite and >= 0")
        if n is not None and L.numel() != n:
            raise DataError(f"length controller: {L.numel()} lengths for {n} rewards; pass one per response")
        return L

    def violation(self, lengths, budgets: torch.Tensor | None = None) -> float:
        """g = mean (or q-quantile) of |y_i|/B_i - 1 over the batch; > 0 means over budget."""
        L = self._lengths(lengths)
        B = budgets if budgets is not None else self.budgets(L.numel())
        ratio = L / B - 1.0  # [N]
        if self.cfg.quantile is None:
            return float(ratio.mean())
        return float(torch.quantile(ratio, self.cfg.quantile))

    # ---- primal shaping and dual step --------------------------------------------------------------------
    def shape(self, rewards, lengths, budgets: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """r'_i = r_i - lambda * (|y_i| - B_i) / B_i with the current lambda. Returns (shaped [N] float32,
        the added term [N] float32)."""
        r = torch.as_tensor(rewards).to(torch.float64).flatten()  # [N]
        if not torch.isfinite(r).all():
            i = int((~torch.isfinite(r)).nonzero()[0])
            raise DataError(f"length controller: rewards[{i}] = {r[i].item()!r} is not finite; check the reward terms")
        L = self._lengths(lengths, r.numel())
        B = budgets if budgets is not None else self.budgets(L.numel())
        term = -self.lam * (L - B) / B  # [N]
        return (r + term).to(torch.float32), term.to(torch.float32)

    def update(self, lengths, budgets: torch.Tensor | None = None) -> dict[str, float]:
        """One dual step from a batch's lengths; returns the metrics `lagrange/*` (lambda after the step)."""
        g = self.violation(lengths, budgets)
        self.integral = max(0.0, self.integral + g)
        lam = self.cfg.lr * self.integral + self.cfg.pi * g
        lam = max(0.0, lam)
        if self.cfg.max is not None:
            lam = min(self.cfg.max, lam)
        self.lam = lam
        self.steps += 1
        return {"lagrange/lambda": self.lam, "lagrange/violation": g, "lagrange/integral": self.integral}

    def dual_step(self, lengths, budgets: torch.Tensor) -> dict[str, float]:
        """The trainer's dual step on a batch's lengths [N] and budgets [N]: `update`, reported with the multiplier
        the batch was shaped with. Metrics lagrange/lambda_used, lagrange/lambda (after the step),
        lagrange/violation, lagrange/integral, lagrange/budget_mean."""
        used = self.lam
        return {"lagrange/lambda_used": used, **self.update(lengths, budgets), "lagrange/budget_mean": float(budgets.mean())}

    # ---- checkpoints -------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Plain-Python state: the multiplier, the PI integral, the step count and the config."""
        return {"lambda": self.lam, "integral": self.integral, "steps": self.steps, "config": asdict(self.cfg)}

    def load_state_dict(self, state: dict) -> None:
        """Restore `state_dict()` output; the config of the run (which may have changed) is kept."""
        try:
            self.lam, self.integral, self.steps = float(state["lambda"]), float(state["integral"]), int(state["steps"])
        except (KeyError, TypeError, ValueError) as e:
            raise ConfigError(f"length controller state is malformed ({e!r}); resume from another checkpoint") from None


def lagrange_config(cfg) -> LagrangeConfig | None:
    """The controller's config from a TrainConfig (None when neither length_budget nor
    length_budget_per_prompt is set), validated; errors name the config key."""
    if cfg.length_budget is None and not cfg.length_budget_per_prompt:
        if cfg.length_budget_quantile is not None:
            raise ConfigError("config key 'length_budget_quantile' needs a budget: set length_budget (tokens) or "
                              "length_budget_per_prompt = true")
        return None
    lc = LagrangeConfig(budget=cfg.length_budget, per_prompt=cfg.length_budget_per_prompt,
                        quantile=cfg.length_budget_quantile, lr=cfg.lagrange_lr, pi=cfg.lagrange_pi,
                        init=cfg.lagrange_init, max=cfg.lagrange_max)
    lc.validate()
    return lc


def step_budgets(ctl: LagrangeController, samples, group_size: int) -> torch.Tensor:
    """The budget of every response of a step, [N = len(samples) × group_size] float64 (groups contiguous;
    per_prompt: each prompt's `Sample.target_len`)."""
    n = len(samples) * group_size
    targets = [samples[i // group_size].target_len for i in range(n)] if ctl.cfg.per_prompt else None
    return ctl.budgets(n, targets)


def shape_scored(ctl: LagrangeController, scored, lengths, budgets: torch.Tensor):
    """A new `Scored` whose rewards [N] are shaped with the current multiplier, r - lambda (L - B) / B, and whose
    terms add the shaping term as "lagrange"; `scored` itself is left as it was. The dual step is separate
    (`LagrangeController.dual_step`), after the shaping: a batch is shaped with the lambda of the step before."""
    rewards, term = ctl.shape(scored.rewards, lengths, budgets)
    return dataclasses.replace(scored, rewards=rewards, terms={**scored.terms, "lagrange": term})
