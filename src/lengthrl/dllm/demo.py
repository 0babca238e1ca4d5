"""`lengthrl dllm demo` (`make demo-dllm`): JustGRPO of the diffusion organism through the main trainer, with the
flexibility-trap evaluation before and after (arXiv 2601.15165).

1. build (or reuse, from the cache the trainer uses for ``model = "organism"``) the task's diffusion organism;
2. before RL: greedy accuracy for AR-order decoding (steps = gen length, block 1) and parallel decoding settings,
   pass@k of AR-order vs confidence-order sampling, estimator biases (`lengthrl.dllm.experiment.evaluate`);
3. `lengthrl.train.train` with ``policy = "diffusion"`` (the run of `configs/justgrpo_organism.toml`);
4. the same evaluation of the trained model (same sampling seed: common random numbers).
Writes OUT/results.json, OUT/passk.md, OUT/passk.png and the training run in OUT/train.
"""

from __future__ import annotations

import copy
from pathlib import Path

from lengthrl.dllm.experiment import DEMO_CONFIG, FlexibilityConfig, justgrpo_run

__all__ = ["DEMO_CONFIG", "run_demo"]


def run_demo(out: str | Path, config: str | None = None, overrides: list[str] | None = None, n: int = 16,
             ks: tuple[int, ...] = (1, 2, 4, 8, 16), test_prompts: int | None = None, progress: bool = True,
             log=print) -> dict:
    """Run the demo (module docstring); returns the results written to OUT/results.json."""
    from lengthrl.train.validate import build_config

    cfg = build_config(config, overrides, extra=None if config else copy.deepcopy(DEMO_CONFIG))
    fcfg = FlexibilityConfig(gen_length=cfg.max_new_tokens, n=n, ks=tuple(ks), test_prompts=test_prompts,
                             seed=cfg.seed)
    return justgrpo_run(out, cfg, fcfg, progress=progress, log=log)
