"""Verifiers: answer extraction and format checks, math equivalence (math-verify under a timeout) and a
sandbox that runs untrusted Python programs against tests."""

from lengthrl.verifiers.extract import EXTRACTORS, FORMATS, check_format, extract_answer
from lengthrl.verifiers.math_verifier import MathVerifier, as_number
from lengthrl.verifiers.sandbox import SandboxLimits, SandboxResult, code_reward, isolation, run_io_tests, run_program

__all__ = [
    "EXTRACTORS",
    "FORMATS",
    "MathVerifier",
    "SandboxLimits",
    "SandboxResult",
    "as_number",
    "check_format",
    "code_reward",
    "extract_answer",
    "isolation",
    "run_io_tests",
    "run_program",
]
