"""Tasks and verifiers: procedural tasks, math answer checking, sandboxed code execution, the user's data.

`TASKS` maps a task name to a factory; `get_task("reasoning_gym:leg_counting")`, `get_task("data:train.jsonl",
prompt_field="problem", answer_field="solution", answer_rule="boxed")`.
"""

from lengthrl.tasks.base import Sample, Score, Task
from lengthrl.tasks.registry import TASKS, get_task
from lengthrl.tasks.code_task import CodeTask, extract_code
from lengthrl.tasks.data import FieldMap, load_samples
from lengthrl.tasks.data_task import TASK_KINDS, DataTask
from lengthrl.tasks.math_task import ListTask, MathTask
from lengthrl.tasks.rgym import ReasoningGymTask
from lengthrl.tasks.templates import TEMPLATES, PromptTemplate, apply_template, choose_budget, expand_budgets
from lengthrl.tasks.procedural import PROCEDURAL_TASKS

for _name, _cls in PROCEDURAL_TASKS.items():  # the built-in procedural tasks
    if _name not in TASKS:
        TASKS.register(_name, _cls)

import lengthrl.dllm.toytask  # noqa: E402, F401  the diffusion organism's addition task (registers itself)

__all__ = [
    "TASKS",
    "TASK_KINDS",
    "TEMPLATES",
    "CodeTask",
    "DataTask",
    "FieldMap",
    "ListTask",
    "MathTask",
    "PromptTemplate",
    "ReasoningGymTask",
    "Sample",
    "Score",
    "Task",
    "apply_template",
    "choose_budget",
    "expand_budgets",
    "extract_code",
    "get_task",
    "load_samples",
]
