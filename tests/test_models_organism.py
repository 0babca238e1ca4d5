"""SFT smoke test (loss on response tokens only, decreasing) and the organism builder's cache and errors."""

from __future__ import annotations

import json

import pytest
import torch

from lengthrl.errors import ConfigError
from lengthrl.models import build_char_tokenizer, load_policy
from lengthrl.models.organism import build_organism, make_config, organism_dir, read_organism_info
from lengthrl.models.sft import collate, encode_example, sft_loss, train_sft
from lengthrl.models.tiny import TinyModelSpec, make_model
from lengthrl.tasks.procedural import ArithChain

TINY = {"hidden_size": 32, "num_layers": 1, "num_heads": 2, "num_kv_heads": 1, "intermediate_size": 64}


def test_encode_and_collate_mask_response_and_eos():
    tok = build_char_tokenizer()
    ex = encode_example(tok, "ab\n", "12")
    assert ex.ids == tok("ab\n").input_ids + tok("12", add_special_tokens=False).input_ids + [tok.eos_token_id]
    assert ex.prompt_len == 4  # <bos> a b \n
    b = collate([ex, encode_example(tok, "a", "1")], tok.pad_token_id)
    assert b["input_ids"].shape == (2, 7)
    assert b["loss_mask"][0].tolist() == [0, 0, 0, 0, 1, 1, 1]  # '1', '2', EOS
    assert b["loss_mask"][1].tolist() == [0, 0, 1, 1, 0, 0, 0]  # '1', EOS, padding
    assert b["attention_mask"][1].tolist() == [1, 1, 1, 1, 0, 0, 0]


def test_sft_loss_counts_only_response_tokens():
    tok = build_char_tokenizer()
    torch.manual_seed(0)
    model = make_model(TinyModelSpec(**TINY), tok)
    ex = encode_example(tok, "left to right: 1+2\n", "<answer>3</answer>")
    batch = collate([ex], tok.pad_token_id)
    logits = model(input_ids=batch["input_ids"]).logits[0].float()
    targets = torch.tensor(ex.ids[ex.prompt_len:])
    ref = torch.nn.functional.cross_entropy(logits[ex.prompt_len - 1 : -1], targets)  # hand-sliced response targets
    assert torch.allclose(sft_loss(model, batch), ref, atol=1e-6)


def test_sft_smoke_loss_decreases():
    tok = build_char_tokenizer()
    model = make_model(TinyModelSpec(**TINY), tok, seed=0)
    samples = ArithChain().samples("train", 200, seed=0)
    ex = [encode_example(tok, s.prompt, s.solution) for s in samples]
    res = train_sft(model, ex, tok.pad_token_id, steps=40, batch_size=16, lr=3e-3, warmup_steps=5)
    assert res.steps == 40 and res.tokens > 0
    first, last = sum(res.losses[:5]) / 5, sum(res.losses[-5:]) / 5
    assert last < 0.75 * first, (first, last)
    with pytest.raises(ConfigError, match="steps"):
        train_sft(model, ex, tok.pad_token_id, steps=0)


def test_build_organism_caches_and_reloads(tmp_path):
    kw = dict(steps=3, n_train=50, n_eval=4, eval_max_new_tokens=8, batch_size=8, model=TINY, tasks=("arith_chain",))
    logs = []
    d = build_organism(cache_dir=tmp_path, log=logs.append, **kw)
    assert d == organism_dir(make_config(**kw), tmp_path) and d.name.startswith("organism-")
    info = read_organism_info(d)
    assert info["sft_steps"] == 3 and info["hash"] == make_config(**kw).hash()
    acc = info["eval_greedy"]["arith_chain"]["accuracy"]
    assert 0.0 <= acc <= 1.0 and info["eval_sampled_t1"]["arith_chain"]["n"] == 4
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]  # no leftovers of the atomic write
    model, tok = load_policy(d)  # the ordinary loading path
    assert type(model).__name__ == "LlamaForCausalLM" and tok.pad_token_id != tok.eos_token_id
    mtime = (d / "model.safetensors").stat().st_mtime_ns
    logs.clear()
    assert build_organism(cache_dir=tmp_path, log=logs.append, **kw) == d
    assert any("reusing" in m for m in logs) and (d / "model.safetensors").stat().st_mtime_ns == mtime
    # another seed -> another cache entry
    assert build_organism(cache_dir=tmp_path, seed=1, log=None, **kw) != d


def test_build_organism_refuses_foreign_dir_and_bad_settings(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="force"):
        build_organism(out_dir=tmp_path / "x", steps=1, log=None, model=TINY)
    assert (tmp_path / "x" / "notes.txt").read_text() == "mine"
    with pytest.raises(ConfigError, match="bogus"):
        build_organism(out_dir=tmp_path / "y", bogus=1)
    with pytest.raises(ConfigError, match="tasks"):
        build_organism(out_dir=tmp_path / "y", tasks=("nope",))
    with pytest.raises(ConfigError, match="steps"):
        build_organism(out_dir=tmp_path / "y", steps=0)
    with pytest.raises(ConfigError, match="minutes"):
        build_organism(out_dir=tmp_path / "y", minutes=0)


def test_cli_organism(tmp_path, capsys, monkeypatch):
    import argparse

    import lengthrl.models.cli  # noqa: F401  (registers the command)
    import lengthrl.models.organism as org
    from lengthrl.commands import COMMANDS

    real, seen = org.build_organism, {}

    def small_build(**kw):  # the real builder, on a tiny model and little data, recording what the CLI passed
        seen.update(kw)
        return real(model=TINY, n_train=50, eval_max_new_tokens=8, batch_size=8, **kw)

    monkeypatch.setattr(org, "build_organism", small_build)

    cmd = COMMANDS["organism"]
    parser = argparse.ArgumentParser()
    cmd.add_args(parser)
    args = parser.parse_args(["--out", str(tmp_path / "o"), "--steps", "2", "--tasks", "sort_digits", "--n-eval", "2"])
    assert cmd.run(args) == 0
    out = capsys.readouterr().out
    summary = json.loads(out[out.index("{"):])
    assert summary["model_dir"] == str(tmp_path / "o") and summary["sft_steps"] == 2
    assert seen["tasks"] == ("sort_digits",) and seen["n_eval"] == 2 and seen["seed"] == 0 and not seen["force"]
    assert set(summary["eval_greedy"]) == {"sort_digits"}
