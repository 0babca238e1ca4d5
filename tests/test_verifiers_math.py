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


def _decimal(f: Fraction, k: int) -> str:
    """`f` correctly rounded to k digits after the point, written out exactly."""
    q = round(f * 10**k)
    sign, q = ("-" if q < 0 else ""), abs(q)
    return f"{sign}{q // 10**k}.{q % 10**k:0{k}d}"


def _finite(f: Fraction) -> bool:
    d = f.denominator
    for p in (2, 5):
        while d % p == 0:
            d //= p
    return d == 1


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
        ("1" * 100, Fraction(int("1" * 100))),  # any length: integers are exact
        ("1" * 5000, None),  # beyond Python's int() limit: left to math-verify
        ("\u0663", None),  # ARABIC-INDIC DIGIT THREE: only ASCII digits are numbers
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


def test_decimals_are_read_as_rounded_and_nothing_else_has_a_tolerance():
    v = MathVerifier()
    assert v.equivalent("3.14159", "3.14")  # a decimal reference is rounded: 3.14159 rounds to it
    assert v.equivalent("22/7", "3.14")
    assert not v.equivalent("3.1", "3.14")  # coarser than the reference
    assert not v.equivalent("3.146", "3.14")
    assert not v.equivalent("3.1416", "3.14159")
    assert v.equivalent("0.333333", "\\frac{1}{3}")  # 1/3 to float_rounding (6) digits
    assert not v.equivalent("0.33333", "\\frac{1}{3}")
    assert not v.equivalent("0.4", "7/20")  # 7/20 = 0.35 exactly: a decimal of it must be exact
    assert v.equivalent("0.35", "7/20") and v.equivalent("0.50", "1/2")
    assert not v.equivalent("10000000000.5", "10000000000")
    assert not v.equivalent("3.0000001", "3")


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


@pytest.mark.parametrize(
    "kw", [{"timeout_s": 0}, {"timeout_s": float("nan")}, {"timeout_s": "5"}, {"float_rounding": -1}, {"float_rounding": 2.5}]
)
def test_bad_configuration_names_the_field(kw):
    with pytest.raises(ConfigError, match=next(iter(kw))):
        MathVerifier(**kw)


@settings(max_examples=200, deadline=None)
@given(st.fractions(max_denominator=1000).filter(lambda f: abs(f) < 10**8))
def test_fast_path_fraction_forms_agree(f):
    v = MathVerifier()
    frac = f"\\frac{{{f.numerator}}}{{{f.denominator}}}" if f.denominator != 1 else str(f.numerator)
    assert v.equivalent(f"{f.numerator}/{f.denominator}", frac)
    assert v.equivalent(_decimal(f, 12), frac)  # correctly rounded to 12 digits (exact when it terminates)
    if not _finite(f):
        assert not v.equivalent(_decimal(f, 3), frac)  # too few digits for a value with no finite expansion
    assert not v.equivalent(str(f.numerator + f.denominator) + "/" + str(f.denominator), frac)


# ---------------------------------------------------------------- answers a policy could game the reward with

_BIG = st.integers(min_value=-(10**80), max_value=10**80) | st.sampled_from([10**9 + 7, 10**12, 2**64, 10**63])
_OFFSETS = st.sampled_from([1, -1, 2, 1000, -1000, 10**9, 10**6]) | st.integers(-(10**12), 10**12).filter(bool)


@settings(max_examples=300, deadline=None)
@given(_BIG, _OFFSETS)
def test_a_wrong_integer_is_never_credited(n, d):
    v = MathVerifier()
    assert not v.equivalent(str(n + d), str(n))
    assert not v.equivalent(f"{n + d:,}", str(n))  # thousands separators
    assert not v.equivalent(f"{n}.5", str(n)) and not v.equivalent(f"{n}.000001", str(n))
    assert not v.equivalent(f"\\frac{{{n + d}}}{{1}}", str(n))
    assert v.equivalent(str(n), str(n)) and v.equivalent(f"{n:,}", str(n)) and v.equivalent(f"{n}.0", str(n))


@settings(max_examples=15, deadline=None)
@given(st.integers(min_value=10**8, max_value=10**40), _OFFSETS)
def test_a_wrong_integer_expression_is_never_credited_by_math_verify(n, d):
    # expressions are not plain numbers: these reach math-verify (exact SymPy integers)
    assert not MV_SHARED.equivalent(f"{n} + {d}", str(n))
    assert MV_SHARED.equivalent(f"{n - d} + {d}", str(n))


MV_SHARED = MathVerifier(timeout_s=3)
_CONNECTIVES = [
    "=", "\\lor", "\\vee", "\\land", "\\wedge", "\\to", "\\rightarrow", "\\Rightarrow", "\\implies", "\\iff",
    "\\Leftrightarrow", "\\neq", "\\le", "\\ge", "<", ">", "\\approx", "\\text{ or }", "\\text{ and }", " or ", ",\\ ",
]


@settings(max_examples=200, deadline=None)
@given(st.integers(-1000, 1000), st.integers(-1000, 1000), st.sampled_from(_CONNECTIVES), st.booleans())
def test_a_statement_or_a_combination_is_not_an_answer(a, g, conn, gold_last):
    """`5 = 3`, `1 \\lor 3`, `5 \\to 3`, `x \\le 3`: math-verify would take the last element; never credited
    (the fast checks decide these without the worker, except for the comma list)."""
    parts = (a, g) if gold_last else (g, a)
    pred = f"{parts[0]} {conn} {parts[1]}"
    if conn.startswith(","):  # a list of two answers: only wrong when they differ (math-verify decides)
        if a != g:
            assert not MV_SHARED.equivalent(pred, str(g))
        return
    assert not MathVerifier().equivalent(pred, str(g)), pred
    assert not MathVerifier().equivalent(f"{a} {conn} {a} {conn} {g}", str(g))


# separators the rules before math-verify do not list: math-verify's default mode reads `5 SEP 3` as its last part
# that parses (3); the prediction must parse as a whole (first_match in the worker)
_UNLISTED = [
    "\\Leftarrow", "\\Longleftarrow", "\\leftarrow", "\\gets", "\\longleftarrow", "\\hookrightarrow",
    "\\rightsquigarrow", "\\leadsto", "\\searrow", "\\nearrow", "\\swarrow", "\\nwarrow", "\\downarrow",
    "\\uparrow", "\\Downarrow", "\\Uparrow", "\\updownarrow", "\\xrightarrow{}", "\\xrightarrow{f}",
    "\\xleftarrow{}", "\\doteq", "\\asymp", "\\coloneqq", "\\eqqcolon", "\\triangleq", "\\propto",
    "\\prec", "\\succ", "\\preceq", "\\succeq", "\\ll", "\\gg", "\\lessgtr", "\\mid", "\\nmid",
    "\\parallel", "\\perp", "\\|", "|", "\\vert", "\\oplus", "\\otimes", "\\odot", "\\bigcup", "\\sqcup",
    "\\uplus", "\\vdash", "\\dashv", "\\models", "\\top", "\\bot", "\\&", "&", "\\\\", "\\newline",
    "\\bmod", "~", "\\hspace{1em}", "\\enspace", "\\hfill", "\\mathrel{R}", "\\text{ else }",
    "\\text{ but }", "\\text{ vs }", "\\textbf{ or }", "\\operatorname{or}", "\\text{, so }", ";", ":", "?",
    "@", "#", "\\#", "\\S", "\\dots", "\\ldots", "\\cdots", "\\because", "\\qed", "\\square",
]


@settings(max_examples=150, deadline=None)
@given(st.integers(2, 1000), st.integers(2, 1000), st.sampled_from(_UNLISTED), st.booleans())
def test_a_combination_that_does_not_parse_is_not_read_as_its_last_part(a, g, sep, gold_last):
    """`5 \\Leftarrow 3`, `5 | 3`, `5 \\bmod 3`, `5 ~ 3`, `5 \\\\ 3`: before the prediction had to parse whole, 58 of
    these 80 separators got `5 SEP 3` credited for 3 (measured on the previous worker). a, g >= 2 and a not 2g, so no
    arithmetic reading of the pair (sum, product, difference, power, mod) equals g."""
    if a == g or a == 2 * g:
        return
    pred = f"{a} {sep} {g}" if gold_last else f"{g} {sep} {a}"
    assert not MV_SHARED.equivalent(pred, str(g)), pred
    assert not MV_SHARED.equivalent(f"{a} {sep} {a} {sep} {g}", str(g)), pred


@pytest.mark.parametrize(
    "pred, gold",
    [
        ("1000000008", "1000000007"),  # off by one around 10^9 (a "mod 10^9+7" answer)
        ("1000000000001000", "1000000000000000"),  # off by 1000 around 10^12 (here 10^15)
        ("1000000001000", "1000000000000"),
        (str(2**64 + 10**9), str(2**64)),  # off by 10^9 around 2^64
        (str(2**64 + 10**9), "2^{64}"),  # the same, the reference an expression (math-verify, exact)
        ("1" * 63 + "2", "1" * 64),  # 64 digits, the last one differs
        ("10000000000.5", "10000000000"),
        ("\\frac{1}{1000000008}", "\\frac{1}{1000000007}"),  # exact rationals 1e-9 apart
        ("1000000007/1000000008", "1000000008/1000000009"),
        ("5 = 3", "3"),
        ("1 \\lor 2 \\lor 3", "3"),
        ("5 \\to 3", "3"),
        ("\uff13", "3"),  # FULLWIDTH DIGIT THREE
        ("300\\%", "3"),
    ],
)
def test_the_reported_cases_are_wrong(pred, gold):
    """Each answer the red-team report found credited; also through a task's boxed answer."""
    assert not MV_SHARED.equivalent(pred, gold)
    task = MathTask([Sample(id="a", prompt="q", answer=gold)], response_rule="boxed")
    assert task.score(task.samples()[0], f"so \\boxed{{{pred}}}").reward == 0.0
    assert task.score(task.samples()[0], f"so \\boxed{{{gold}}}").reward == 1.0


@pytest.mark.parametrize(
    "pred, gold, same",
    [
        ("x = 3", "3", True),  # one variable, one `=`: the value
        ("\\theta = \\pi", "\\pi", True),
        ("f(x) = 3", "3", True),
        ("x = 2 + 1 = 3", "3", False),  # a chain is a statement
        ("5 = 3", "3", False),
        ("x = 1 \\text{ or } x = 3", "3", False),
        ("\\pm 3", "3", False),
        ("y = 2x + 1", "y=2x+1", True),  # a relation as the reference: math-verify compares equations
        ("x^2+y^2=1", "x^2 + y^2 = 1", True),
        ("3\\%", "3", True),  # `%` is a unit, dropped on both sides ...
        ("25%", "25\\%", True),
        ("300\\%", "3", False),  # ... and never converted
        ("0.25", "25\\%", False),
    ],
)
def test_statements_and_percent(pred, gold, same):
    assert MV_SHARED.equivalent(pred, gold) is same


def _unicode_digits(value: int) -> list[str]:
    import sys
    import unicodedata

    out = []
    for cp in range(sys.maxunicode + 1):
        c = chr(cp)
        if c not in "0123456789" and unicodedata.category(c) in ("Nd", "No") and unicodedata.digit(c, None) == value:
            out.append(c)
    return out


def test_unicode_look_alike_digits_are_never_credited():
    """Only ASCII digits are digits: `３` (fullwidth), `٣` (Arabic-Indic), `𝟑` (bold), `³`: all wrong for 3."""
    v = MathVerifier()
    looks = _unicode_digits(3)
    assert len(looks) > 50 and "\uff13" in looks and "\u0663" in looks and "\u00b3" in looks
    for c in looks:
        assert not v.equivalent(c, "3"), ascii(c)
        assert not v.equivalent("1" + c, "13"), ascii(c)
        assert not v.equivalent("3", c), ascii(c)


@pytest.mark.parametrize("pred", ["5} \\text{ } \\boxed{3", "5} \\boxed{3", "}{3", "5}{3", "3}", "{3"])
def test_a_stray_brace_cannot_close_the_wrapper(pred):
    """math-verify's input is the answer inside `\\boxed{...}`: a stray `}` would close it and open another box
    (`5} \\text{ } \\boxed{3` was credited for 3 through an `<answer>` tag). Unbalanced braces are wrong."""
    assert not MV_SHARED.equivalent(pred, "3")
    task = MathTask([Sample(id="a", prompt="q", answer="3")], response_rule="answer_tag")
    assert task.score(task.samples()[0], f"<answer>{pred}</answer>").reward == 0.0
    assert task.score(task.samples()[0], "<answer>3</answer>").reward == 1.0
    assert MV_SHARED.equivalent("\\left\\{3\\right\\}", "\\{3\\}") and MV_SHARED.equivalent("\\frac{6}{2}", "3")
