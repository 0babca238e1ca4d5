"""Answer extraction and format checks: hand cases and fuzzing with random text."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lengthrl.errors import UnknownNameError
from lengthrl.verifiers import EXTRACTORS, FORMATS, check_format, extract_answer


@pytest.mark.parametrize(
    "text, rule, expected",
    [
        ("so the answer is \\boxed{42}.", "boxed", "42"),
        ("\\boxed{\\frac{1}{2}}", "boxed", "\\frac{1}{2}"),
        ("nested \\boxed{\\sqrt{\\frac{a}{b^{2}}}} end", "boxed", "\\sqrt{\\frac{a}{b^{2}}}"),
        ("first \\boxed{1} then \\boxed{2} finally \\boxed{3}", "boxed", "3"),
        ("set \\boxed{\\{1, 2\\}}", "boxed", "\\{1, 2\\}"),
        ("\\boxed {7}", "boxed", "7"),
        ("\\boxed 5$", "boxed", "5"),
        ("\\fbox{9}", "boxed", "9"),
        ("last one unbalanced \\boxed{1} \\boxed{2", "boxed", "1"),
        ("\\boxed{", "boxed", None),
        ("no answer here", "boxed", None),
        ("Natalia sold 48/2 = 24 clips.\n#### 72", "hash", "72"),
        ("#### 1,234,567", "hash", "1234567"),
        ("#### 5\nextra line", "hash", "5"),
        ("####", "hash", None),
        ("<think>2+2</think><answer> 4 </answer>", "answer_tag", "4"),
        ("<answer>1</answer> wait <answer>2</answer>", "answer_tag", "2"),
        ("<answer>\\boxed{\\frac{3}{4}}</answer>", "answer_tag", "\\frac{3}{4}"),
        ("<answer>unclosed", "answer_tag", None),
        ("it costs $1,234.50 in total", "last_number", "1234.50"),
        ("from 3 to -7", "last_number", "-7"),
        ("ratio 3/4.", "last_number", "3/4"),
        ("version v2x and .5", "last_number", ".5"),
        ("no digits", "last_number", None),
        ("<answer>8</answer> and \\boxed{9}", "auto", "8"),
        ("\\boxed{9} and #### 10", "auto", "9"),
        ("#### 10 then 11", "auto", "10 then 11"),  # the rest of the #### line
        ("about 12 apples", "auto", "12"),
        ("nothing", "auto", None),
        ("  spaced  ", "raw", "spaced"),
        ("   ", "raw", None),
    ],
)
def test_extraction_hand_cases(text, rule, expected):
    assert extract_answer(text, rule) == expected


def test_unknown_rule_lists_valid_names():
    with pytest.raises(UnknownNameError, match="boxed"):
        extract_answer("x", "nope")


@pytest.mark.parametrize(
    "text, template, ok",
    [
        ("<think>reason</think><answer>5</answer>", "think_answer", True),
        ("  <think>a\nb</think>\n<answer>5</answer>\n", "think_answer", True),
        ("<think>a</think><answer></answer>", "think_answer", False),  # empty answer
        ("<think>a</think><answer>5</answer> trailing", "think_answer", False),
        ("preface <think>a</think><answer>5</answer>", "think_answer", False),
        ("<think>a</think><think>b</think><answer>5</answer>", "think_answer", False),
        ("<think>a</think><answer>5</answer><answer>6</answer>", "think_answer", False),
        ("<answer>5</answer>", "think_answer", False),
        ("reasoning <answer>5</answer>", "answer_tag", True),
        ("<answer>5</answer> more", "answer_tag", False),
        ("steps\n#### 72", "hash", True),
        ("steps\n#### 72\n", "hash", True),
        ("steps\n#### 72\nmore text", "hash", False),
        ("#### 1\n#### 2", "hash", False),
        ("steps ####", "hash", False),
        ("it is \\boxed{3}", "boxed", True),
        ("it is \\boxed{3", "boxed", False),
    ],
)
def test_format_checks(text, template, ok):
    assert check_format(text, template) is ok


TOKENS = list("0123456789-+.,/ {}\\$#<>abx\n") + ["\\boxed{", "####", "<answer>", "</answer>", "<think>",
                                                  "</think>", "\\frac"]
text_st = st.lists(st.sampled_from(TOKENS), max_size=40).map("".join) | st.text(max_size=60)


@settings(max_examples=300, deadline=None)
@given(text_st)
def test_extractors_never_crash_and_return_substrings(text):
    for rule in EXTRACTORS:
        out = extract_answer(text, rule)
        assert out is None or isinstance(out, str)
        if out is not None and rule in ("boxed", "answer_tag", "raw"):
            assert out.strip() in text or out in text
    for fmt in FORMATS:
        assert check_format(text, fmt) in (True, False)


@settings(max_examples=100, deadline=None)
@given(st.integers(-10**12, 10**12), st.text(alphabet="ab \n", max_size=20))
def test_boxed_and_hash_roundtrip_any_integer(n, noise):
    assert extract_answer(f"{noise}\\boxed{{{n}}}{noise}", "boxed") == str(n)
    assert extract_answer(f"{noise}\n#### {n}", "hash") == str(n)
    assert extract_answer(f"{noise} <answer>{n}</answer>", "auto") == str(n)
    assert extract_answer(f"{noise} {n:,}", "last_number") == str(n)


ADVERSARIAL = {
    "open_boxes": "\\boxed{" * 20000,
    "open_tags": "<answer>" * 20000,
    "long_hash_line": "#### x" + " " * 100000 + "\nX",
    "long_think": "<think>" + "a" * 100000 + "</think><answer>" + " " * 100000 + "b",
    "open_braces": "{" * 20000 + "\\boxed{" + "{" * 20000,
    "mixed": "<think>\\boxed{1 ####" * 20000,
}


@pytest.mark.parametrize("name", sorted(ADVERSARIAL))
def test_linear_time_on_hostile_text(name):
    import time

    text = ADVERSARIAL[name]
    t0 = time.monotonic()
    for rule in EXTRACTORS:
        extract_answer(text, rule)
    for fmt in FORMATS:
        check_format(text, fmt)
    assert time.monotonic() - t0 < 3.0  # quadratic versions took minutes on these
