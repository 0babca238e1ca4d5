"""Math equivalence: tricky answers, tolerance, hostile LaTeX under the timeout, bad configuration."""

import threading
import time
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lengthrl.errors import ConfigError
from lengthrl.tasks import MathTask, Sample
from lengthrl.verifiers import MathVerifier, as_number


@pytest.fixture(scope="module")
def mv():
    return MathVerifier(timeout_s=3)


@pytest.mark.parametrize(
    "text, value",
    [
        ("42", Fraction(42)),
        ("-1,234.5", Fraction("-1234.5")),
        ("$3/4$", Fraction(3, 4)),
        ("\\frac{3}{4}", Fraction(3, 4)),
        ("-\\dfrac{1}{8}", Fraction(-1, 8)),
        ("2.", Fraction(2)),
        (".5", Fraction(1, 2)),
        ("1/0", None),
        ("x", None),
        ("1,2", None),  # a pair, not a thousands separator
        ("1" * 100, None),  # too long for the fast path: left to math-verify
    ],
)
def test_as_number(text, value):
    assert as_number(text) == value


@pytest.mark.parametrize(
    "pred, gold, same",
    [
        ("0.5", "\\frac{1}{2}", True),  # decimal vs LaTeX fraction (fast path)
        ("1/2", "0.5", True),
        ("\\frac12", "0.5", True),  # brace-less \frac: math-verify
        ("\\dfrac{2}{4}", "\\frac{1}{2}", True),
        ("0.3333", "\\frac{1}{3}", False),  # not within the default tolerance
        ("5\\text{ cm}", "5", True),  # units are dropped by math-verify
        ("5 \\text{cm}", "6", False),
        ("x(x+2)", "x^2+2x", True),  # symbolic
        ("\\sqrt{2}/2", "\\frac{\\sqrt{2}}{2}", True),
        ("\\{2,1\\}", "\\{1,2\\}", True),  # sets ignore order
        ("x=3", "3", True),
        ("1,234", "1234", True),
        ("3", "4", False),
        ("", "4", False),
        (None, "4", False),
        ("4", "", False),
    ],
)
def test_tricky_equivalences(mv, pred, gold, same):
    assert mv.equivalent(pred, gold) is same


def test_numeric_tolerance_option():
    strict = MathVerifier(rel_tol=0.0, abs_tol=0.0)
    loose = MathVerifier(rel_tol=1e-3)
    assert not strict.equivalent("3.1416", "3.14159")
    assert loose.equivalent("3.1416", "3.14159")  # |diff| = 1e-5 <= 1e-3 * 3.1416
    assert not loose.equivalent("3.15", "3.14159")
    assert strict.equivalent("0.50", "1/2")  # exact equality needs no tolerance


def test_several_boxed_answers_the_last_counts(mv):
    task = MathTask([Sample(id="a", prompt="q", answer="\\frac{1}{2}")], response_rule="boxed")
    s = task.samples()[0]
    assert task.score(s, "first \\boxed{3} then corrected: \\boxed{\\frac{1}{2}}").correct
    assert not task.score(s, "first \\boxed{0.5} then changed: \\boxed{3}").correct
    nothing = task.score(s, "I do not know")
    assert (nothing.correct, nothing.reward, nothing.format_ok, nothing.extracted) == (False, 0.0, False, None)


def test_hostile_latex_times_out_and_counts_as_wrong():
    v = MathVerifier(timeout_s=1)
    t0 = time.monotonic()
    assert v.equivalent("2^{2^{30}}", "3") is False
    assert time.monotonic() - t0 < 1 + 0.5 + 1.0  # limit + kill margin + process start
    assert v.equivalent("x(x+1)", "x^2+x") is True  # the worker still serves


def test_worker_overrun_is_killed_and_restarted():
    # timeout_s below 1 s: math-verify's own alarm (whole seconds) fires too late, so the worker is killed
    v = MathVerifier(timeout_s=0.2)
    v.equivalent("x+x", "2x")  # start the worker outside the timed part
    t0 = time.monotonic()
    assert v.equivalent("9^{9^{9^{9}}}", "3") is False
    assert time.monotonic() - t0 < 0.2 + 0.5 + 0.5
    assert v.timeouts == 1
    assert v.equivalent("x+x", "2x") is True  # a fresh worker answers


def test_works_from_threads():
    v = MathVerifier(timeout_s=3)
    out = {}

    def work(i):
        out[i] = v.equivalent("\\frac{x}{2}", "x/2") and not v.equivalent("x", "y")

    threads = [threading.Thread(target=work, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert out == {0: True, 1: True, 2: True}


@pytest.mark.parametrize("kw", [{"timeout_s": 0}, {"rel_tol": -1.0}, {"abs_tol": float("nan")}, {"timeout_s": "5"}])
def test_bad_configuration_names_the_field(kw):
    with pytest.raises(ConfigError, match=next(iter(kw))):
        MathVerifier(**kw)


@settings(max_examples=200, deadline=None)
@given(st.fractions(max_denominator=1000).filter(lambda f: abs(f) < 10**8))
def test_fast_path_fraction_forms_agree(f):
    v = MathVerifier()
    frac = f"\\frac{{{f.numerator}}}{{{f.denominator}}}" if f.denominator != 1 else str(f.numerator)
    assert v.equivalent(f"{f.numerator}/{f.denominator}", frac)
    assert v.equivalent(repr(float(f)), frac)  # float repr round-trips within rel_tol
    assert not v.equivalent(str(f.numerator + f.denominator) + "/" + str(f.denominator), frac)
