"""Checkpoints: keep the last K; a truncated, corrupt or incomplete checkpoint is detected with a message
naming it and the file, and the previous one is used; stale `.tmp-*` directories are removed."""

import json
import logging

import pytest
import torch

from lengthrl.models import load_policy
from lengthrl.train import checkpoint as ck
from lengthrl.train.config import build_config
from lengthrl.train.loop import train
from runkit import rows, same_run


@pytest.fixture
def two(micro_dir, tmp_path):
    """A run directory with checkpoints 1 and 2."""
    model, tok = load_policy(micro_dir)
    for step in (1, 2):
        ck.save_checkpoint(tmp_path, step, model, tok, {"step": step}, keep=5)
    return tmp_path, tmp_path / "checkpoints" / "step_000002"


def truncate(p):
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])


def flip_byte(p):
    b = bytearray(p.read_bytes())
    b[len(b) // 2] ^= 0xFF
    p.write_bytes(bytes(b))


def edit_manifest(fn):
    def apply(ckpt):
        mf = ckpt / "manifest.json"
        mf.write_text(fn(json.loads(mf.read_text())))
    return apply


CORRUPTIONS = {
    "truncated weights": (lambda c: truncate(c / "model" / "model.safetensors"), r"model/model.safetensors is corrupt"),
    "flipped byte in state": (lambda c: flip_byte(c / "trainer_state.pt"), r"trainer_state.pt is corrupt"),
    "missing config": (lambda c: (c / "model" / "config.json").unlink(), r"model/config.json is missing"),
    "no manifest": (lambda c: (c / "manifest.json").unlink(), r"manifest.json missing or unreadable"),
    "manifest not json": (lambda c: (c / "manifest.json").write_text("{"), r"manifest.json missing or unreadable"),
    "manifest without files": (edit_manifest(lambda m: json.dumps({"step": 2})), r"no valid 'files' table"),
    "manifest of another step": (edit_manifest(lambda m: json.dumps(m | {"step": 7})), r"is for step 7"),
    "manifest without weights": (
        edit_manifest(lambda m: json.dumps(m | {"files": {k: v for k, v in m["files"].items()
                                                           if not k.endswith(".safetensors")}})),
        r"lists no model weights"),
}


@pytest.mark.parametrize("kind", list(CORRUPTIONS))
def test_a_bad_checkpoint_is_named_and_the_previous_one_used(two, kind, caplog):
    run, last = two
    corrupt, message = CORRUPTIONS[kind]
    ck.verify(last)  # intact before
    corrupt(last)
    with pytest.raises(ck.CheckpointError, match=message):
        ck.verify(last)
    with caplog.at_level(logging.WARNING, logger="lengthrl.train"):
        assert ck.latest_valid(run).name == "step_000001"
    assert "step_000002" in caplog.text and "falling back to the previous checkpoint" in caplog.text


def test_no_valid_checkpoint_gives_none(two):
    run, last = two
    for c in ck.list_checkpoints(run):
        truncate(c / "trainer_state.pt")
    assert ck.latest_valid(run) is None


def test_stale_temporary_directories_are_removed(two):
    run, _ = two
    stale = run / "checkpoints" / ".tmp-step_000003-99999"
    (stale / "model").mkdir(parents=True)
    (stale / "model" / "model.safetensors").write_bytes(b"half")
    assert ck.latest_valid(run).name == "step_000002" and not stale.exists()
    stale.mkdir()
    model, tok = load_policy(run / "checkpoints" / "step_000002" / "model")
    ck.save_checkpoint(run, 3, model, tok, {"step": 3}, keep=5)
    assert not stale.exists()


def test_keep_last_k(micro_dir, tmp_path):
    model, tok = load_policy(micro_dir)
    for step in range(1, 6):
        ck.save_checkpoint(tmp_path, step, model, tok, {"step": step}, keep=2)
        assert len(ck.list_checkpoints(tmp_path)) == min(step, 2)
    assert [p.name for p in ck.list_checkpoints(tmp_path)] == ["step_000004", "step_000005"]
    assert [p.name for p in (tmp_path / "checkpoints").iterdir() if not p.name.startswith("step_")] == []


def test_resume_past_a_corrupt_checkpoint_still_equals_the_unbroken_run(micro_dir, tmp_path):
    kw = dict(model=str(micro_dir), task="arith_chain", train_prompts=16, eval_prompts=0, prompts_per_step=2,
              group_size=4, max_new_tokens=8, steps=4, checkpoint_every=2, keep_checkpoints=3, sample_every=1,
              log_every=0, lr=1e-3)
    threads = torch.get_num_threads()
    try:
        train(build_config(extra=kw), tmp_path / "a", progress=False, evaluate=False)
        train(build_config(extra=kw), tmp_path / "b", progress=False, evaluate=False)
        flip_byte(tmp_path / "b" / "checkpoints" / "step_000004" / "model" / "model.safetensors")
        (tmp_path / "b" / "final" / "model.safetensors").unlink()
        train(build_config(extra=kw), tmp_path / "b", resume=True, progress=False, evaluate=False)
    finally:
        torch.set_num_threads(threads)
    assert [r["step"] for r in rows(tmp_path / "b")] == [1, 2, 3, 4]
    assert same_run(tmp_path / "a", tmp_path / "b") == []


def test_logs_are_cut_back_to_the_checkpoint_and_a_torn_last_line_dropped(tmp_path):
    from lengthrl.errors import DataError
    from lengthrl.train.metrics import truncate_jsonl

    p = tmp_path / "metrics.jsonl"
    p.write_text('{"step": 1}\n{"step": 2}\n{"step": 3}\n{"step": 4, "acc')
    truncate_jsonl(p, 2)
    assert p.read_text() == '{"step": 1}\n{"step": 2}\n'
    p.write_text('{"step": 1}\n{"ste\n{"step": 2}\n')
    with pytest.raises(DataError, match=r"metrics.jsonl: line 2 is not valid JSON"):
        truncate_jsonl(p, 2)
    truncate_jsonl(tmp_path / "absent.jsonl", 1)  # nothing to do
    assert not (tmp_path / "absent.jsonl").exists()
