"""Kill -9 a real `python -m lengthrl train` subprocess at several points (right after a step's metrics line,
inside a checkpoint write, plus a metrics line torn by the kill), resume each time with `--resume`, and check
the final metrics, samples and weights equal those of a run never killed, bitwise. The soak test
(test_soak.py, `make soak`) kills at random moments."""

from runkit import finish, kill_at, reference_run, rows, run_settings, same_run, start


def test_killed_then_resumed_equals_an_unkilled_run(micro_dir, tmp_path):
    s = run_settings(micro_dir, steps=4)
    ref, run = tmp_path / "ref", tmp_path / "run"
    ckpts = run / "checkpoints"

    # 1. killed right after the metrics line of step 3 (checkpoint 2 exists, step 3 is lost)
    proc = start(s, run, pause_at="metrics:3")
    reference_run(s, ref)  # while the subprocess starts
    kill_at(proc, run, "metrics", 3)
    assert [r["step"] for r in rows(run)] == [1, 2, 3]
    # 2. resumed, then killed inside the write of checkpoint 4: files in the temporary directory, not renamed
    kill_at(start(s, run, resume=True, pause_at="save:4"), run, "save", 4)
    assert [p.name for p in ckpts.iterdir() if p.name.startswith(".tmp-")], "the write was not in progress"
    assert sorted(p.name for p in ckpts.iterdir() if p.name.startswith("step_")) == ["step_000002"]
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"step": 5, "acc": 0.')  # a line cut by the kill
    # 3. resumed (from step 2 again) to the end
    finish(start(s, run, resume=True))

    assert [r["step"] for r in rows(run)] == [1, 2, 3, 4]
    assert same_run(ref, run) == []
    assert sorted(p.name for p in ckpts.iterdir()) == ["step_000002", "step_000004"]  # no .tmp-* left


def test_killed_while_re_saving_a_finished_runs_last_step(micro_dir, tmp_path):
    """keep_checkpoints = 1, a finished run resumed (it re-saves its last step) and killed between moving the
    old copy aside and renaming the new one into place (pause point `replace`): no `step_N` exists then, and
    the next --resume restores the complete copy instead of starting from scratch."""
    import shutil

    s = run_settings(micro_dir, steps=2, checkpoint_every=2, keep_checkpoints=1)
    run, ckpts = tmp_path / "run", tmp_path / "run" / "checkpoints"
    reference_run(s, run)  # the finished run
    done = tmp_path / "done"
    shutil.copytree(run, done)
    kill_at(start(s, run, resume=True, pause_at="replace:2"), run, "replace", 2)
    left = sorted(p.name.rsplit("-", 1)[0] for p in ckpts.iterdir())
    assert left == [".old-step_000002", ".tmp-step_000002"], left  # the only valid state is in the two copies
    proc = start(s, run, resume=True)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-3000:]
    assert "restoring" in err and ".tmp-step_000002" in err and "from scratch" not in err, err[-3000:]
    assert same_run(done, run) == []  # (a run from scratch would be equal too: the line above tells them apart)
    assert [p.name for p in ckpts.iterdir()] == ["step_000002"]
