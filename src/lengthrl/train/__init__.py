"""The trainer: config, data order, scoring, update, checkpoints, metrics and the loop.

The Python training API (imported on first use, so `import lengthrl.train` stays light):

    from lengthrl.train import build_config, Trainer
    cfg = build_config("configs/luspo.toml", ["steps=20"])   # TOML file + `key=value` overrides (+ a dict)
    rows = Trainer(cfg, "runs/luspo").run()                   # one metrics dict per step
    # or train(cfg, out) = Trainer(...).run() and the final held-out evaluation
"""

from __future__ import annotations

from lengthrl._lazy import lazy_exports

_EXPORTS = {"build_config": "lengthrl.train.validate", "TrainConfig": "lengthrl.train.config",
            "Trainer": "lengthrl.train.loop", "train": "lengthrl.train.loop"}
__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
