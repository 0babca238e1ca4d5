"""lengthrl inside other RL engines (optional extras; import the submodule you need):

- `lengthrl.integrations.trl`: `LengthRLGRPOTrainer` (any lengthrl loss in TRL's GRPOTrainer), length rewards as
  TRL reward functions, length metrics. Needs `trl`.
- `lengthrl.integrations.verl`: `register()` puts lengthrl's losses (luspo included) and advantage estimators in
  verl's registries; `length_reward_scores` for batch reward managers. Needs `verl` (its own environment).

See docs/scaling.md.
"""
