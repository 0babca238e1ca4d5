"""One parser for command-line values: `--set key=value` (train, config) and `--arg` / `--task-arg` (tasks, eval).

A value is read as TOML (numbers, true/false, [lists], {inline = "tables"}, "quoted strings"), else as JSON
(`{"format_template": "hash"}`), else kept as plain text."""

from __future__ import annotations

import json
import tomllib
from typing import Any

from lengthrl.errors import ConfigError


def parse_value(text: str) -> Any:
    """TOML value, else JSON value, else the text itself."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        pass
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_items(items: list[str] | None, flag: str = "--arg", example: str = "digits=3") -> dict[str, Any]:
    """`key=value` strings -> {key: parse_value(value)}; a malformed item raises a ConfigError naming `flag`."""
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{flag} expects key=value, got {item!r}; write KEY=VALUE, e.g. {flag} {example}")
        out[key.strip()] = parse_value(value)
    return out
