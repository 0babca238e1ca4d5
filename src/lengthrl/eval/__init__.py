"""lengthrl.eval: accuracy, unbiased pass@k, length split by correctness, truncation, accuracy per 1k tokens
and AES from eval records, and `run_eval` to produce them from any policy with `generate`."""

from lengthrl.eval.metrics import aes, length_stats, pass_at_k, summarize
from lengthrl.eval.records import EvalRecord, EvalResult, load_eval, save_eval
from lengthrl.eval.runner import run_eval

__all__ = ["aes", "length_stats", "pass_at_k", "summarize", "EvalRecord", "EvalResult", "load_eval", "save_eval",
           "run_eval"]
