"""The trainer: config, data order, scoring, update, checkpoints, metrics and the loop."""
