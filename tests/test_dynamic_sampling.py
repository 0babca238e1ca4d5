"""DAPO dynamic sampling (arXiv 2503.14476): 'drop' trains on the groups with signal, 'resample' samples more
prompts until prompts_per_step groups have signal (at most max_resample_rounds rounds); the old boolean values
still mean what they meant; resume is bitwise exact across a resampling step; 2 ranks equal one process
(with the prompt-mean aggregation)."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from lengthrl.errors import ConfigError
from lengthrl.train import dynamic
from lengthrl.train.validate import build_config
from lengthrl.train.loop import Trainer, train

# the random micro model is never correct; DAPO's soft overlong penalty (max_len 24, cache 6) gives a group
# signal when its lengths straddle 18 tokens, so some groups have signal and some do not
KW = dict(task="arith_chain", train_prompts=64, eval_prompts=0, prompts_per_step=4, group_size=4,
          max_new_tokens=24, steps=4, checkpoint_every=0, sample_every=1, log_every=0, lr=1e-2,
          dynamic_sampling="resample", max_resample_rounds=3,
          reward=[{"name": "correct"}, {"name": "dapo_overlong", "weight": 1.0}])
DROP = {"time_s", "step_time_s", "rollout_time_s", "tokens_per_s"}


def sig(*groups: int, finite: bool = True) -> dynamic.RoundSignal:
    return dynamic.RoundSignal(torch.tensor([bool(g) for g in groups]), finite)


def test_keep_masks_by_hand():
    rounds = [sig(1, 0, 0, 1), sig(0, 1, 1, 1)]  # 2 groups with signal, then 3 more: the batch needs 4
    keep = dynamic.keep_masks("resample", rounds, 4, 2)
    assert keep[0].tolist() == [1, 1, 0, 0, 0, 0, 1, 1]
    assert keep[1].tolist() == [0, 0, 1, 1, 1, 1, 0, 0]  # the first 2 of the second round; the third is extra
    assert dynamic.keep_masks("drop", rounds[:1], 4, 2)[0].tolist() == [1, 1, 0, 0, 0, 0, 1, 1]
    assert dynamic.keep_masks("off", rounds[:1], 4, 2)[0].all()
    assert dynamic.keep_masks("drop", [sig(0, 1, finite=False)], 2, 2)[0].all()  # non-finite: nothing dropped
    assert dynamic.more_rounds("resample", rounds[:1], 4, 3)
    assert not dynamic.more_rounds("resample", rounds, 4, 3)  # 5 >= 4 groups with signal
    assert not dynamic.more_rounds("resample", [sig(0, 0)] * 3, 4, 3)  # the rounds ran out
    assert not dynamic.more_rounds("resample", [sig(0, 0, finite=False)], 4, 3)
    assert not dynamic.more_rounds("drop", [sig(0, 0)], 4, 3)


def test_round_signal_matches_the_filter():
    s = dynamic.round_signal(torch.tensor([1.0, 1.0, 0.0, 1.0, 0.5, 0.5]), 2, True)
    assert s.signal.tolist() == [False, True, False]
    s = dynamic.round_signal(torch.tensor([1.0, float("nan"), 0.0, 1.0]), 2, False)  # not read: no error
    assert len(s.signal) == 2 and not s.finite


def test_config_values_and_legacy_booleans(micro_dir):
    base = dict(model=micro_dir, task="arith_chain")
    assert build_config(extra=base | {"dynamic_sampling": True}).dynamic_sampling == "drop"
    assert build_config(extra=base | {"dynamic_sampling": False}).dynamic_sampling == "off"
    assert build_config(overrides=["dynamic_sampling=true"], extra=base).dynamic_sampling == "drop"
    assert build_config(overrides=["dynamic_sampling=resample"], extra=base).dynamic_sampling == "resample"
    with pytest.raises(ConfigError, match=r"config key 'dynamic_sampling': 'refill'; valid: 'off', 'drop'"):
        build_config(extra=base | {"dynamic_sampling": "refill"})
    with pytest.raises(ConfigError, match=r"config key 'max_resample_rounds': must be >= 1"):
        build_config(extra=base | {"max_resample_rounds": 0})


def test_resample_fills_the_batch(micro_dir, tmp_path):
    """Steps that found fewer than P groups with signal sampled again; every step trains on P groups unless
    the rounds ran out; the metrics count rounds, prompts and the groups of the update."""
    tr = train(build_config(extra=KW | dict(model=micro_dir)), tmp_path / "r", progress=False, evaluate=False)
    rows = tr.metrics.rows()
    assert any(r["resample_rounds"] > 1 for r in rows)  # the test exercises the loop
    for r in rows:
        assert r["resample_prompts"] == 4 * r["resample_rounds"]
        signal = round(r["kept_groups_frac"] * r["resample_prompts"])
        assert r["batch_groups"] == min(4, signal)
        assert r["resample_rounds"] == 3 or signal >= 4
        assert r["resample_rounds"] == 1 or round(r["zero_var_groups"] * r["resample_prompts"]) > 0
    lines = (tmp_path / "r" / "samples.jsonl").read_text().splitlines()
    assert len(lines) >= 1


def test_drop_keeps_its_old_behaviour(micro_dir, tmp_path):
    """'drop' (and true) trains on the groups with signal of one round of P prompts, as before."""
    a = train(build_config(extra=KW | dict(model=micro_dir, dynamic_sampling="drop", steps=2)), tmp_path / "a",
              progress=False, evaluate=False).metrics.rows()
    b = train(build_config(extra=KW | dict(model=micro_dir, dynamic_sampling=True, steps=2)), tmp_path / "b",
              progress=False, evaluate=False).metrics.rows()
    assert [{k: v for k, v in r.items() if k not in DROP} for r in a] == \
        [{k: v for k, v in r.items() if k not in DROP} for r in b]
    assert all("resample_rounds" not in r and "kept_groups_frac" in r for r in a)


def test_no_signal_after_every_round_skips_the_update(micro_dir, tmp_path):
    """A reward that never varies: max_resample_rounds rounds are sampled, then no optimizer step."""
    kw = KW | dict(model=micro_dir, steps=1, max_resample_rounds=2, reward=[{"name": "correct"}])
    m = train(build_config(extra=kw), tmp_path, progress=False, evaluate=False).metrics.rows()[0]
    assert m["resample_rounds"] == 2 and m["resample_prompts"] == 8 and m["batch_groups"] == 0
    assert m["no_signal"] == 1 and m["optimizer_steps"] == 0


def test_resume_is_exact_across_a_resampling_step(micro_dir, tmp_path):
    """Bitwise: a run checkpointed after step 1, killed in step 2 (a step that resamples), and resumed ends with
    the metrics and weights of an uninterrupted run."""
    kw = KW | dict(model=micro_dir, checkpoint_every=1, keep_checkpoints=3)
    full = train(build_config(extra=kw), tmp_path / "full", progress=False, evaluate=False)
    a = full.metrics.rows()
    assert a[0]["resample_rounds"] > 1 and a[1]["resample_rounds"] > 1
    part = Trainer(build_config(extra=kw), tmp_path / "part", progress=False)
    det = part._collapse_detector()
    m = part.train_step()
    part.step += 1
    part._watch_collapse(det, m)
    part.metrics.write(m)
    part.save()
    part.metrics.write(part.train_step() | {"step": 2})  # the lost step: written, never checkpointed
    resumed = train(build_config(extra=kw), tmp_path / "part", resume=True, progress=False, evaluate=False)
    b = resumed.metrics.rows()
    assert [r["step"] for r in b] == [1, 2, 3, 4]
    for ra, rb in zip(a, b):
        assert {k: v for k, v in ra.items() if k not in DROP} == {k: v for k, v in rb.items() if k not in DROP}
    for pa, pb in zip(full.model.parameters(), resumed.model.parameters()):
        assert torch.equal(pa, pb)


# ---- two ranks (gloo, CPU) equal one process with the same rollout shards --------------------------------------
WORLD = 2
# prompt-mean too: its group token counts and group count over ranks holding unequal numbers of kept groups
DIST_KW = KW | dict(steps=3, rollout_shards=WORLD, mini_batches=2, micro_batch_size=3, loss="grpo",
                    loss_agg_mode="prompt-mean")


def _worker(rank: int, port: int, model_dir: str, out: str):
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(WORLD), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    from lengthrl.train.distributed import init_from_env, shutdown

    d = init_from_env("ddp")
    train(build_config(extra=DIST_KW | dict(model=model_dir)), Path(out) / "run", progress=False, evaluate=False,
          dist=d)
    Path(out, f"done{rank}").write_text("ok")
    shutdown(d)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_ranks_resample_as_one_process(micro_dir, tmp_path):
    ctx = mp.start_processes(_worker, args=(_free_port(), micro_dir, str(tmp_path)), nprocs=WORLD, join=False,
                             start_method="spawn")
    try:
        while not ctx.join(timeout=120):
            pass
    except mp.ProcessExitedException:  # an abort at teardown after the work is tolerated if results exist
        pass
    assert all((tmp_path / f"done{r}").is_file() for r in range(WORLD))
    ref = train(build_config(extra=DIST_KW | dict(model=micro_dir)), tmp_path / "one", progress=False,
                evaluate=False).metrics.rows()
    got = [json.loads(ln) for ln in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert any(r["resample_rounds"] > 1 for r in ref) and any(r["optimizer_steps"] > 0 for r in ref)
    assert [r["step"] for r in got] == [1, 2, 3]
    for a, b in zip(ref, got):
        assert set(a) == set(b)
        for k, v in a.items():
            if k in DROP:
                continue
            if isinstance(v, float):
                assert abs(v - b[k]) <= 1e-6 * max(1.0, abs(v)), (a["step"], k, v, b[k])
            else:
                assert v == b[k], (a["step"], k, v, b[k])


def test_validate_checks_the_mode_of_a_config_built_directly():
    """parse_config normalises the key; validate also rejects a bad mode in a TrainConfig built without it."""
    from lengthrl.errors import ConfigError
    from lengthrl.train.config import TrainConfig
    from lengthrl.train.validate import validate

    with pytest.raises(ConfigError, match="config key 'dynamic_sampling': 'sometimes'"):
        validate(TrainConfig(dynamic_sampling="sometimes"))
