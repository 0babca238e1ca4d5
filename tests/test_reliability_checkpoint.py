"""Checkpoints: keep the last K; a truncated, corrupt or incomplete checkpoint is detected with a message
naming it and the file, and the previous one is used; stale `.tmp-*` directories are removed."""

import json
import logging

import pytest
import torch

from lengthrl.models import load_policy
from lengthrl.train import checkpoint as ck
from lengthrl.train.validate import build_config
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


@pytest.mark.parametrize("fault", ["between_renames", "before_aside"])
def test_re_saving_a_step_never_leaves_no_valid_checkpoint(micro_dir, tmp_path, monkeypatch, fault):
    """keep_checkpoints = 1 and the last step re-saved (a finished run resumed): a crash at any point of the
    replacement (injected: the rename of the new copy fails) leaves a state that `latest_valid` restores,
    and the complete temporary copy is never deleted as stale."""
    import os

    model, tok = load_policy(micro_dir)
    ck.save_checkpoint(tmp_path, 1, model, tok, {"step": 1}, keep=1)
    real_rename = os.rename
    calls = []

    def crash(src, dst):
        calls.append((str(src), str(dst)))
        if (fault == "between_renames" and ".tmp-" in str(src)) or (fault == "before_aside" and len(calls) == 1):
            raise KeyboardInterrupt("killed here")
        return real_rename(src, dst)

    monkeypatch.setattr(ck.os, "rename", crash)
    with pytest.raises(KeyboardInterrupt):
        ck.save_checkpoint(tmp_path, 1, model, tok, {"step": 1, "new": True}, keep=1)
    monkeypatch.setattr(ck.os, "rename", real_rename)
    if fault == "between_renames":
        assert ck.list_checkpoints(tmp_path) == []  # the old copy is aside, the new one not yet in place
    best = ck.latest_valid(tmp_path)
    assert best is not None and best.name == "step_000001"
    ck.verify(best)
    state = torch.load(best / "trainer_state.pt", weights_only=False)
    assert state["step"] == 1 and state.get("new", False) == (fault == "between_renames")  # the newer copy wins
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["step_000001"]
    ck.save_checkpoint(tmp_path, 1, model, tok, {"step": 1}, keep=1)  # and a plain re-save leaves one copy
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["step_000001"]
