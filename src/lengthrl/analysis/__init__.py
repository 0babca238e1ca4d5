"""lengthrl.analysis: length dynamics of runs, the length-collapse detector, the length-controlled comparison,
and the `compare` / `report` commands (plots are imported only by those commands)."""

from lengthrl.analysis.collapse import CollapseDetector, CollapseWarning, scan_collapse
from lengthrl.analysis.dynamics import (entropy_trend, gradient_share, group_length_spread, length_advantage_corr,
                                        length_dynamics)
from lengthrl.analysis.lc import LCFit, fit_lc_glm, length_controlled_winrate
from lengthrl.analysis.runs import Run, load_run

__all__ = ["CollapseDetector", "CollapseWarning", "scan_collapse", "entropy_trend", "gradient_share",
           "group_length_spread", "length_advantage_corr", "length_dynamics", "LCFit", "fit_lc_glm",
           "length_controlled_winrate", "Run", "load_run"]
