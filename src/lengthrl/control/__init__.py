"""lengthrl.control: length control as a constraint. `LagrangeController` keeps a Lagrange multiplier on a
length budget (mean or quantile, global or per prompt) and turns it into a reward penalty; see docs/budget.md."""

from lengthrl.control.lagrangian import (
    LagrangeConfig,
    LagrangeController,
    lagrange_config,
    shape_scored,
    step_budgets,
)

__all__ = ["LagrangeConfig", "LagrangeController", "lagrange_config", "shape_scored", "step_budgets"]
