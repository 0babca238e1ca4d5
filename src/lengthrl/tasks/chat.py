"""How a Sample becomes the prompt's token ids: plain text, or a chat conversation through a chat template.

`PromptFormat.encode(tokenizer, sample)`:
- no chat template (the organism, a base model without one; `chat_template = "none"`): `tokenizer(prompt)`,
  the prompt text as it is (with the tokenizer's own special tokens, e.g. BOS);
- a chat template (`chat_template = "auto"` and the tokenizer has one, or a Jinja file): the conversation
  [system (system_prompt), earlier turns of conversational data..., user (the task's templated prompt)]
  rendered with `tokenizer.apply_chat_template(..., add_generation_prompt=True, tokenize=False)` and tokenized
  without adding special tokens (the template writes them), as TRL's GRPOTrainer does. The task's instruction
  template (e.g. "Solve step by step; end with a line '#### <answer>'") is inside the user turn; the
  generation prompt (Qwen's `<|im_start|>assistant\\n`) comes after it.

Conversational data (`lengthrl.tasks.data`): a prompt column holding [{"role", "content"}, ...] (TRL's
conversational `prompt`, or a `messages` column). Its last user turn becomes `Sample.prompt` (so prompt
templates apply to it) and the turns before it are kept in `Sample.meta["chat"]`; a final assistant turn is the
worked solution (for `lengthrl sft`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lengthrl.errors import ConfigError, DataError
from lengthrl.tasks.base import Sample

CHAT_TEMPLATE_CHOICES = ("auto", "none")
ROLES = ("system", "user", "assistant")


@dataclass(frozen=True)
class PromptFormat:
    """`chat_template`: the Jinja source (None: the prompt text as it is); `system_prompt`: the system turn of
    every conversation (None: none, or the data's own)."""

    chat_template: str | None = None
    system_prompt: str | None = None

    def messages(self, sample: Sample) -> list[dict[str, str]]:
        """The conversation of `sample`: [system], earlier turns of conversational data, then the user turn
        with the templated prompt."""
        turns = list(sample.meta.get("chat", ()))
        if self.system_prompt is not None and not any(t["role"] == "system" for t in turns):
            turns.insert(0, {"role": "system", "content": self.system_prompt})
        return [*turns, {"role": "user", "content": sample.prompt}]

    def text(self, tokenizer: Any, sample: Sample) -> str:
        """The prompt as text: the rendered conversation with the generation prompt, or the plain prompt."""
        if self.chat_template is None:
            if sample.meta.get("chat"):
                raise ConfigError(f"prompt {sample.id!r} is a conversation (earlier turns in the data) but there "
                                  "is no chat template; set chat_template to a Jinja file, or give plain prompts")
            return sample.prompt
        if not callable(getattr(tokenizer, "apply_chat_template", None)):
            raise ConfigError(f"a chat template needs a transformers tokenizer; {type(tokenizer).__name__} has no "
                              "apply_chat_template: set chat_template = 'none'")
        try:
            return tokenizer.apply_chat_template(self.messages(sample), chat_template=self.chat_template,
                                                 tokenize=False, add_generation_prompt=True)
        except Exception as e:  # noqa: BLE001  a Jinja error of the user's template: one line naming it
            raise ConfigError(f"chat_template: rendering prompt {sample.id!r} failed ({type(e).__name__}: "
                              f"{str(e).splitlines()[0] if str(e) else ''}); fix the template or set "
                              "chat_template = 'none'") from None

    def encode(self, tokenizer: Any, sample: Sample) -> list[int]:
        """The prompt's token ids (see the module doc)."""
        if self.chat_template is None:
            text = self.text(tokenizer, sample)
            ids = tokenizer(text)["input_ids"] if callable(tokenizer) else tokenizer.encode(text)
        else:
            ids = tokenizer(self.text(tokenizer, sample), add_special_tokens=False)["input_ids"]
        return [int(t) for t in ids]


PLAIN = PromptFormat()  # the prompt text as it is


def prompt_format(tokenizer: Any, chat_template: str | None = "auto", system_prompt: str | None = None,
                  key: str = "chat_template") -> PromptFormat:
    """The PromptFormat of a model: `chat_template` 'auto' (the tokenizer's template when it has one, else plain
    text), 'none' (plain text) or a path to a Jinja file; `system_prompt` needs a template. `key` names the
    setting in errors (a config key or a command-line flag)."""
    if chat_template is None or chat_template == "none":
        template = None
    elif chat_template == "auto":
        own = getattr(tokenizer, "chat_template", None)
        template = own if isinstance(own, str) and own.strip() else None
    else:
        path = Path(chat_template)
        if not path.is_file():
            raise ConfigError(f"{key}: {chat_template!r} is not 'auto', 'none' or a Jinja file that exists; give "
                              "the path of a chat template file (e.g. chat_template.jinja)")
        template = path.read_text(encoding="utf-8")
    if system_prompt is not None and template is None:
        why = "chat_template = 'none'" if chat_template == "none" else "the tokenizer has no chat template"
        raise ConfigError(f"system_prompt is set but {why}, so there is no system turn to put it in; give "
                          f"{key} a Jinja file, or unset system_prompt")
    return PromptFormat(template, system_prompt)


def split_conversation(value: Any, where: str, field: str) -> tuple[list[dict[str, str]], str, str | None]:
    """A conversational cell -> (earlier turns, the last user turn's content, a final assistant turn's content
    or None). DataError naming `where` and `field` when it is not a list of {"role", "content"} turns ending in
    a user turn (or a user turn then one assistant turn)."""
    if not (isinstance(value, list) and value):
        raise DataError(f"{where}: field {field!r}: a conversation must be a non-empty list of "
                        '{"role", "content"} messages')
    turns = []
    for i, t in enumerate(value):
        if not (isinstance(t, dict) and t.get("role") in ROLES and isinstance(t.get("content"), str)):
            raise DataError(f"{where}: field {field!r}: message {i} must be {{\"role\": one of {'/'.join(ROLES)}, "
                            f"\"content\": text}}, got {str(t)[:60]!r}")
        turns.append({"role": t["role"], "content": t["content"]})
    answer = None
    if turns[-1]["role"] == "assistant" and len(turns) >= 2:
        answer = turns.pop()["content"]
    if turns[-1]["role"] != "user" or not turns[-1]["content"].strip():
        raise DataError(f"{where}: field {field!r}: the conversation must end with a non-empty user message (the "
                        "prompt), optionally followed by one assistant message (its solution)")
    last = turns.pop()
    return turns, last["content"], answer
