"""lengthrl: reinforcement learning with verifiable rewards, built around what RL does to response length."""

__version__ = "0.1.0"
