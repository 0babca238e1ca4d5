"""Tokenizer round trip, tiny random Qwen2/Llama directories, `load_policy` and its errors."""

from __future__ import annotations

import json
import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import AutoTokenizer

from lengthrl.errors import ConfigError
from lengthrl.models import (
    DEFAULT_CHARS,
    SPECIAL_TOKENS,
    TinyModelSpec,
    build_char_tokenizer,
    count_parameters,
    load_policy,
    save_tiny_random_model,
)

SMALL = dict(hidden_size=32, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=64)


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("tok")
    build_char_tokenizer(out_dir=d)
    return d


def test_tokenizer_ids_and_specials(tok_dir):
    tok = AutoTokenizer.from_pretrained(str(tok_dir))
    assert (tok.pad_token_id, tok.eos_token_id, tok.bos_token_id, tok.unk_token_id) == (0, 1, 2, 3)
    assert len(tok) == 4 + len(DEFAULT_CHARS)
    ids = tok("7+5=12\n").input_ids
    assert ids[0] == tok.bos_token_id and len(ids) == 1 + len("7+5=12\n")  # one token per character
    assert tok("ab", add_special_tokens=False).input_ids == [4 + DEFAULT_CHARS.index("a"), 4 + DEFAULT_CHARS.index("b")]


@settings(max_examples=60, deadline=None)
@given(text=st.text(alphabet=DEFAULT_CHARS, max_size=80).filter(lambda t: not any(x in t for x in SPECIAL_TOKENS.values())))
def test_tokenizer_round_trip(text):
    tok = build_char_tokenizer()
    ids = tok(text, add_special_tokens=False).input_ids
    assert len(ids) == len(text)
    assert tok.decode(ids) == text
    assert tok.decode(tok(text).input_ids, skip_special_tokens=True) == text


def test_tokenizer_unknown_char_maps_to_unk():
    tok = build_char_tokenizer(chars="ab")
    assert tok("aé", add_special_tokens=False).input_ids == [4, tok.unk_token_id]
    with pytest.raises(ConfigError, match="chars"):
        build_char_tokenizer(chars="")


@pytest.mark.parametrize("arch,cls_name", [("qwen2", "Qwen2ForCausalLM"), ("llama", "LlamaForCausalLM")])
def test_tiny_random_dir_loads_through_auto_classes(tmp_path, arch, cls_name):
    d = save_tiny_random_model(tmp_path / arch, arch=arch, seed=1, **SMALL)
    assert (d / "model.safetensors").is_file() and (d / "tokenizer.json").is_file()
    assert json.loads((d / "config.json").read_text())["model_type"] == arch
    model, tok = load_policy(d)
    assert type(model).__name__ == cls_name and not model.training
    assert tok.padding_side == "left" and tok.pad_token_id == 0 and tok.eos_token_id == 1
    text = "left to right: 7+5*3-2\n  <answer>34</answer>"
    assert tok.decode(tok(text).input_ids, skip_special_tokens=True) == text  # whitespace kept, also for qwen2
    ids = torch.tensor([tok("1+2").input_ids])
    logits = model(input_ids=ids).logits
    assert logits.shape == (1, ids.shape[1], len(tok))
    # same seed -> same weights; other seed -> different
    d2 = save_tiny_random_model(tmp_path / f"{arch}2", arch=arch, seed=1, **SMALL)
    d3 = save_tiny_random_model(tmp_path / f"{arch}3", arch=arch, seed=2, **SMALL)
    m2, _ = load_policy(d2)
    m3, _ = load_policy(d3)
    w = model.get_input_embeddings().weight
    assert torch.equal(w, m2.get_input_embeddings().weight)
    assert not torch.equal(w, m3.get_input_embeddings().weight)


def test_default_spec_size_and_dtype(tmp_path):
    d = save_tiny_random_model(tmp_path / "m")
    model, _ = load_policy(d, dtype="bfloat16")
    assert 0.5e6 <= count_parameters(model) <= 2e6
    assert model.get_input_embeddings().weight.dtype == torch.bfloat16
    with pytest.raises(ConfigError, match="dtype"):
        load_policy(d, dtype="float8")


def test_pad_is_eos_dir(tmp_path):
    d = save_tiny_random_model(tmp_path / "m", pad_is_eos=True, **SMALL)
    _, tok = load_policy(d)
    assert tok.pad_token_id == tok.eos_token_id == 1


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_missing_pad_token_is_set_to_eos_with_warning(tmp_path, arch):
    d = save_tiny_random_model(tmp_path / "m", arch=arch, **SMALL)
    cfg_path = d / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg.pop("pad_token", None)
    cfg_path.write_text(json.dumps(cfg))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model, tok = load_policy(d)
    assert tok.pad_token_id == tok.eos_token_id
    assert any("no pad token" in str(w.message) for w in caught)
    assert model.config.pad_token_id == tok.eos_token_id


def test_load_policy_errors_name_the_problem(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_policy(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="config.json"):
        load_policy(tmp_path / "empty")
    f = tmp_path / "file.txt"
    f.write_text("x")
    with pytest.raises(ConfigError, match="not a model directory"):
        load_policy(f)
    d = save_tiny_random_model(tmp_path / "m", **SMALL)
    (d / "model.safetensors").unlink()
    with pytest.raises(ConfigError, match="no weights"):
        load_policy(d)


def test_tokenizer_larger_than_embeddings_is_refused(tmp_path):
    small_tok = build_char_tokenizer(chars="0123456789")
    d = save_tiny_random_model(tmp_path / "m", tokenizer=small_tok, **SMALL)
    build_char_tokenizer(out_dir=d)  # overwrite with the full (larger) tokenizer
    with pytest.raises(ConfigError, match="embeds only"):
        load_policy(d)


@pytest.mark.parametrize(
    "over,field",
    [({"hidden_size": 30}, "num_heads"), ({"num_kv_heads": 3}, "num_kv_heads"), ({"num_layers": 0}, "num_layers"),
     ({"arch": "gpt9"}, "qwen2")],
)
def test_bad_spec_names_field(over, field):
    with pytest.raises(ConfigError, match=field):
        TinyModelSpec(**over).validate()


def test_unknown_spec_field(tmp_path):
    with pytest.raises(ConfigError, match="hidden"):
        save_tiny_random_model(tmp_path / "m", hiden_size=8)
