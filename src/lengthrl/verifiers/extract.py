"""Answer extraction from model responses and reference solutions, and format checks for answer templates.

Rules (registry `EXTRACTORS`, name -> fn(text) -> str | None):

- `boxed`: the content of the last `\\boxed{...}` (or `\\fbox{...}`), braces matched with nesting, so
  `\\boxed{\\frac{1}{2}}` gives `\\frac{1}{2}`; the brace-less form `\\boxed 5` is read up to the next space/`$`.
  Several boxed answers -> the last one (the convention of the MATH dataset's graders).
- `hash`: the text after the last `####` on its line (GSM8K's solution format), thousands separators removed.
- `answer_tag`: the content of the last `<answer>...</answer>` (DeepSeek-R1 / reasoning-gym template); a boxed
  answer inside it is unwrapped.
- `last_number`: the last number in the text (integers, decimals, simple fractions `a/b`, thousands separators).
- `auto`: the first of answer_tag, boxed, hash, last_number that finds something.
- `raw`: the whole text, stripped (for reference answers that are already just the answer).

Every rule returns None when nothing is found, and never raises on any `str` input.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from lengthrl.registry import Registry

EXTRACTORS: Registry[Callable[[str], str | None]] = Registry("answer extraction rule")

_NUMBER = re.compile(r"(?<![\w.])[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:\s*/\s*\d+)?|[-+]?\.\d+")
_BOX = re.compile(r"\\(?:boxed|fbox)")
_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)


def _braced(text: str, start: int) -> str | None:
    """Content of the brace group opening at text[start] == '{', with nesting; None if unbalanced.
    Escaped braces `\\{` `\\}` do not count."""
    depth, i = 0, start
    while i < len(text):
        c = text[i]
        if c == "\\":
            i += 2  # skip the escaped character (\\{, \\}, \\\\ ...)
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return text[start + 1 : i]
        i += 1
    return None


@EXTRACTORS.register("boxed")
def extract_boxed(text: str) -> str | None:
    """Content of the last `\\boxed{...}` / `\\fbox{...}` with nested braces; None if absent or unbalanced."""
    for m in reversed(list(_BOX.finditer(text))):
        j = m.end()
        while j < len(text) and text[j] == " ":
            j += 1
        if j < len(text) and text[j] == "{":
            inner = _braced(text, j)
            if inner is not None:
                return inner.strip()
        elif m.end() < len(text) and text[m.end()] == " ":  # `\boxed 5`
            tail = re.match(r"\s+([^\s$]+)", text[m.end() :])
            if tail:
                return tail.group(1)
    return None


@EXTRACTORS.register("hash")
def extract_hash(text: str) -> str | None:
    """Text after the last `####` (GSM8K), up to the end of its line, commas between digits removed."""
    idx = text.rfind("####")
    if idx < 0:
        return None
    ans = text[idx + 4 :].split("\n", 1)[0].strip()
    ans = re.sub(r"(?<=\d),(?=\d{3}\b)", "", ans)
    return ans or None


@EXTRACTORS.register("answer_tag")
def extract_answer_tag(text: str) -> str | None:
    """Content of the last `<answer>...</answer>`, with a `\\boxed{}` inside unwrapped; None if absent."""
    found = _TAG.findall(text)
    if not found:
        return None
    inner = found[-1].strip()
    boxed = extract_boxed(inner)
    return boxed if boxed is not None else inner


@EXTRACTORS.register("last_number")
def extract_last_number(text: str) -> str | None:
    """The last number in the text (`-1,234.5`, `3/4`, `.5`), thousands separators removed; None if none."""
    found = _NUMBER.findall(text)
    if not found:
        return None
    return re.sub(r"\s+", "", found[-1]).replace(",", "")


@EXTRACTORS.register("raw")
def extract_raw(text: str) -> str | None:
    """The whole text, stripped; None if empty."""
    return text.strip() or None


@EXTRACTORS.register("auto")
def extract_auto(text: str) -> str | None:
    """First of answer_tag, boxed, hash, last_number that finds an answer."""
    for rule in (extract_answer_tag, extract_boxed, extract_hash, extract_last_number):
        ans = rule(text)
        if ans is not None:
            return ans
    return None


def extract_answer(text: str, rule: str = "auto") -> str | None:
    """Extract the answer from `text` with the named rule (see the module docstring)."""
    return EXTRACTORS[rule](text)


# ---------------------------------------------------------------- format checks

FORMATS: Registry[re.Pattern] = Registry("answer format")
FORMATS.register(
    "think_answer",
    re.compile(r"\s*<think>(?:(?!</?think>|</?answer>).)*</think>\s*<answer>(?:(?!</?answer>|</?think>).)+</answer>\s*", re.DOTALL),
)
FORMATS.register("answer_tag", re.compile(r"(?:(?!</?answer>).)*<answer>(?:(?!</?answer>).)+</answer>\s*", re.DOTALL))
FORMATS.register("hash", re.compile(r"(?:(?!####).)*####[ \t]*\S[^\n]*\s*", re.DOTALL))
FORMATS.register("boxed", re.compile(r".*\\boxed\s*\{.*\}.*", re.DOTALL))


def check_format(text: str, template: str = "think_answer") -> bool:
    """True when the whole response follows `template`.

    - `think_answer`: `<think>...</think><answer>...</answer>`, exactly one of each, nothing after (DeepSeek-R1,
      arXiv 2501.12948; the format reward of DAPO/LUSPO-style recipes); the answer must be non-empty.
    - `answer_tag`: free text, then exactly one non-empty `<answer>...</answer>` at the end.
    - `hash`: free text, then one `#### answer` line at the end (GSM8K).
    - `boxed`: contains a `\\boxed{...}` (with balanced braces).
    """
    pat = FORMATS[template]
    if pat.fullmatch(text) is None:
        return False
    return template != "boxed" or extract_boxed(text) is not None
