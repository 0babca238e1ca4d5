"""Tasks and verifiers: procedural tasks, math answer checking, sandboxed code execution, the user's data."""

from lengthrl.tasks.base import Sample, Score, Task

__all__ = ["Sample", "Score", "Task"]
