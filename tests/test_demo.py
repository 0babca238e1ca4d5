"""The demo pipeline end to end on a micro model (the real demo uses the organism; see `make demo`)."""

import json

from lengthrl.demo import run_demo, verdicts
from lengthrl.models import save_tiny_random_model


def test_demo_writes_report_summary_and_audit(tmp_path):
    d = save_tiny_random_model(tmp_path / "m", arch="qwen2", hidden_size=32, num_layers=1, num_heads=2,
                               num_kv_heads=1, intermediate_size=64, max_position_embeddings=128)
    extra = ["prompts_per_step=2", "group_size=4", "max_new_tokens=12", "train_prompts=16", "checkpoint_every=0",
             "log_every=0"]
    s = run_demo(tmp_path / "demo", steps=2, eval_prompts=4, seed=(0, 1), model=str(d), extra=extra,
                 progress=False)
    out = tmp_path / "demo"
    assert set(s["results"]) == {"sft", "gspo", "luspo", "dler"} and s["seeds"] == [0, 1]
    assert (out / "luspo-seed1" / "eval.json").exists()
    for name in ("gspo", "luspo", "dler"):  # held-out records pooled: 2 seeds x 4 prompts x 4 samples
        assert s["results"][name]["n_records"] == 2 * 4 * 4
    for name in ("sft", "gspo", "luspo", "dler"):
        assert json.loads((out / name / "eval.json").read_text())["metrics"]["n_prompts"] == 4
    assert (out / "report.html").read_text().count("data:image/png;base64") >= 3
    md = (out / "report.md").read_text()
    assert "Does the organism reproduce" in md and "GSPO vs LUSPO" in md
    assert json.loads((out / "summary.json").read_text())["verdicts"] == s["verdicts"]
    assert (out / "audit.png").exists()


def test_verdicts_follow_the_numbers():
    def m(acc, length):
        return {"acc": acc, "len/mean": length, "len/median": length, "len/p90": length + 12.8, "n_records": 400}

    base = m(0.5, 100.0)
    v = verdicts({"sft": base, "gspo": m(0.5, 50.0), "luspo": m(0.6, 80.0), "dler": m(0.49, 40.0)})
    assert "reproduces that direction" in v[0] and "ratio 1.60" in v[0]
    assert "60% shorter" in v[1] and "reproduces the direction" in v[1]
    v = verdicts({"sft": base, "gspo": m(0.5, 90.0), "luspo": m(0.6, 80.0), "dler": m(0.2, 40.0)})
    assert "does NOT reproduce (GSPO is longer)" in v[0] and "does NOT reproduce" in v[1]
    # a difference inside the noise (2 s.e. = 2 * sqrt(2) * 10/20 = 1.4 tokens) is called no clear difference
    v = verdicts({"gspo": m(0.5, 28.3), "luspo": m(0.5, 28.6)})
    assert "no clear difference" in v[0]
