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


def _brace_pairs(text: str) -> dict[int, int]:
    """Index of each '{' -> index of its matching '}', in one pass (escaped braces `\\{` `\\}` skipped).
    Unclosed braces have no entry. Linear time, so hostile text such as 10^4 open `\\boxed{` stays fast."""
    pairs, stack, i, n = {}, [], 0, len(text)
    while i < n:
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if c == "{":
            stack.append(i)
        elif c == "}" and stack:
            pairs[stack.pop()] = i
        i += 1
    return pairs


@EXTRACTORS.register("boxed")
def extract_boxed(text: str) -> str | None:
    """Content of the last `\\boxed{...}` / `\\fbox{...}` with nested braces; None if absent or unbalanced
    (an unbalanced last box falls back to the box before it)."""
    matches = list(_BOX.finditer(text))
    pairs = _brace_pairs(text) if matches else {}
    for m in reversed(matches):
        j = m.end()
        while j < len(text) and text[j] == " ":
            j += 1
        if j < len(text) and text[j] == "{":
            if j in pairs:
                return text[j + 1 : pairs[j]].strip()
        elif m.end() < len(text) and text[m.end()] == " ":  # `\\boxed 5`
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
    end = text.rfind("</answer>")
    start = text.rfind("<answer>", 0, end) if end >= 0 else -1
    if start < 0:
        return None
    inner = text[start + len("<answer>") : end].strip()
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

FORMATS: Registry[Callable[[str], bool]] = Registry("answer format")

_THINK_ANSWER = re.compile(
    r"\s*<think>(?:(?!</?think>|</?answer>).)*</think>\s*<answer>(?:(?!</?answer>|</?think>).)+</answer>\s*", re.DOTALL
)


@FORMATS.register("think_answer")
def _format_think_answer(text: str) -> bool:
    """`<think>...</think><answer>...</answer>`, exactly one of each, non-empty answer, nothing after."""
    return _THINK_ANSWER.fullmatch(text) is not None


@FORMATS.register("answer_tag")
def _format_answer_tag(text: str) -> bool:
    """Free text, then exactly one non-empty `<answer>...</answer>` at the very end."""
    body = text.rstrip()
    if text.count("<answer>") != 1 or text.count("</answer>") != 1 or not body.endswith("</answer>"):
        return False
    start = body.find("<answer>") + len("<answer>")
    return start <= len(body) - len("</answer>") and body[start : -len("</answer>")] != ""


@FORMATS.register("hash")
def _format_hash(text: str) -> bool:
    """Exactly one `####`, followed by a non-empty answer on the last non-blank line."""
    idx = text.find("####")
    rest = text[idx + 4 :].strip() if idx >= 0 else ""
    return idx == text.rfind("####") and bool(rest) and "\n" not in rest


@FORMATS.register("boxed")
def _format_boxed(text: str) -> bool:
    """Contains a `\\boxed{...}` with balanced braces."""
    return extract_boxed(text) is not None


def check_format(text: str, template: str = "think_answer") -> bool:
    """True when the whole response follows `template`.

    - `think_answer`: `<think>...</think><answer>...</answer>`, exactly one of each, nothing after (DeepSeek-R1,
      arXiv 2501.12948; the format reward of DAPO/LUSPO-style recipes); the answer must be non-empty.
    - `answer_tag`: free text, then exactly one non-empty `<answer>...</answer>` at the end.
    - `hash`: free text, then one `#### answer` line at the end (GSM8K).
    - `boxed`: contains a `\\boxed{...}` (with balanced braces).
    All checks take linear time in the length of the text.
    """
    return FORMATS[template](text)
