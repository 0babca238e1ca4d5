"""The version-drift audit (`lengthrl audit --against trl|verl`, lengthrl.analysis.drift), and the verl 0.9.1
cross-checks of SAPO and rollout correction on the fixture tests/fixtures/verl_drift.pt, recorded from verl's own
code by tests/fixtures/record_verl_drift.py (verl is not installed beside lengthrl's pins; the live run is in
tests/test_integrations_verl.py, `make test-integrations`).

On the pinned TRL 1.16 every loss type's per-token weight equals lengthrl's definition (the known table below);
a planted pre-1.16-style LUSPO weighting (|y|²/T_tot per sequence) is flagged. On verl 0.9.1, vanilla, gspo and
cispo agree with lengthrl under every loss_agg_mode; sapo aggregates seq-mean-token-mean whatever loss_agg_mode
says, so its rows under the other modes are flagged.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from lengthrl.analysis import drift
from lengthrl.cli import main
from lengthrl.objectives import policy_loss, rollout_is_weights

FIXTURE = Path(__file__).parent / "fixtures" / "verl_drift.pt"
REC = torch.load(FIXTURE, weights_only=False)

# the probe: |y| in (8, 64), A = ±1, B = 4 responses, T_tot = 144 tokens, L_max = 64
B, T_TOT, L_MAX = 4, 144, 64
KNOWN_TRL = {  # TRL 1.16 (loss_type/level) -> per-token weight of a response of |y| with advantage A
    "grpo/token": lambda A, n: A / (B * n), "bnpo/token": lambda A, n: A / T_TOT,
    "dr_grpo/token": lambda A, n: A / (B * L_MAX), "dapo/token": lambda A, n: A / T_TOT,
    "cispo/token": lambda A, n: A / T_TOT, "grpo/sequence": lambda A, n: A / (B * n),
    "luspo/sequence": lambda A, n: A / B, "sapo/token": lambda A, n: A / (B * n),
    "vespo/token": lambda A, n: A / T_TOT,
}
AGG = {"token-mean": lambda A, n: A / T_TOT, "token-sum": lambda A, n: A, "seq-mean-token-sum": lambda A, n: A / B,
       "seq-mean-token-mean": lambda A, n: A / (B * n), "seq-mean-token-sum-norm": lambda A, n: A / (B * L_MAX)}


def test_trl_reproduces_the_known_table():
    import trl

    rows = drift.trl_rows()
    assert trl.__version__ == "1.16.0" and rows[0].framework == "trl 1.16.0"
    assert {r.theirs for r in rows} == set(KNOWN_TRL) and len(rows) == len(KNOWN_TRL) * 4
    for r in rows:
        want = KNOWN_TRL[r.theirs](r.advantage, r.length)
        assert r.ok, r
        assert r.theirs_w == pytest.approx(want, rel=1e-12) and r.ours_w == pytest.approx(want, rel=1e-12)


def planted_luspo(trainer, model, inputs):
    """TRL's `_compute_loss`, except luspo: each sequence's mean token loss weighted by |y_i|² / T_tot (the
    L²/T variant) instead of luspo's |y_i| / B."""
    from trl import GRPOTrainer

    if trainer.loss_type != "luspo":
        return GRPOTrainer._compute_loss(trainer, model, inputs)
    mask = inputs["completion_mask"].to(torch.float64)
    logp = trainer._get_per_token_logps_and_entropies(None, None, None, None)[0]
    n = mask.sum(-1)  # [B]
    seq_log_ratio = ((logp - inputs["old_per_token_logps"]) * mask).sum(-1) / n
    ratio = torch.exp(seq_log_ratio - seq_log_ratio.detach() + seq_log_ratio.detach())  # [B]
    return (-(ratio * inputs["advantages"]) * n * n / mask.sum()).sum()


def test_a_planted_l2_over_t_variant_is_flagged():
    rows = drift.trl_rows(compute_loss=planted_luspo)
    bad = [r for r in rows if not r.ok]
    assert bad and {r.theirs for r in bad} == {"luspo/sequence"}
    for r in bad:  # the planted per-token weight: A·|y|/T_tot, against luspo's A/B
        assert r.theirs_w == pytest.approx(r.advantage * r.length / T_TOT, rel=1e-9)
        assert r.ours_w == pytest.approx(r.advantage / B, rel=1e-12)


def test_verl_recorded_table():
    rows = drift.verl_rows(FIXTURE)
    assert rows[0].framework == "verl 0.9.1 (recorded)" and REC["verl_version"] == "0.9.1"
    assert len(rows) == len(drift.VERL_LOSSES) * len(drift.VERL_AGG_MODES) * 4
    for r in rows:
        name, mode = r.theirs.split("/")
        assert r.ours_w == pytest.approx(AGG[mode](r.advantage, r.length), rel=1e-12)
        if name == "sapo":  # verl's sapo: seq-mean-token-mean whatever loss_agg_mode is
            assert r.theirs_w == pytest.approx(r.advantage / (B * r.length), rel=1e-6)
            assert r.ok == (r.theirs_w == pytest.approx(r.ours_w, rel=1e-6))
        else:
            assert r.ok, r
    flagged = {r.theirs for r in rows if not r.ok}
    assert flagged == {f"sapo/{m}" for m in drift.VERL_AGG_MODES if m != "seq-mean-token-mean"}


@pytest.mark.parametrize("case", REC["sapo"], ids=lambda c: c["mode"])
def test_sapo_equals_verl(case):
    """verl 0.9.1's compute_policy_loss_sapo (any loss_agg_mode) = lengthrl's sapo under seq-mean-token-mean."""
    x = case["logp"].clone().requires_grad_(True)
    out = policy_loss("sapo", x, case["old"], case["adv"], case["mask"], tau_pos=case["tau_pos"],
                      tau_neg=case["tau_neg"], loss_agg_mode="seq-mean-token-mean")
    (g,) = torch.autograd.grad(out.loss, x)
    assert torch.allclose(out.loss.detach(), case["loss"], rtol=1e-7, atol=1e-9)
    assert torch.allclose(g, case["grad"], rtol=1e-7, atol=1e-9)


def _mode(case) -> tuple[str, float | None, float]:
    """verl's (rollout_is level, threshold) -> lengthrl's (rollout_is mode, rollout_is_min, rollout_is_max)."""
    t = case["threshold"]
    if isinstance(t, str):
        lo, hi = (float(v) for v in t.split("_"))
        return f"{case['level']}_mask", lo, hi
    return f"{case['level']}_truncate", None, float(t)


@pytest.mark.parametrize("case", REC["rollout_is"],
                         ids=lambda c: f"{c['level']}-{c['threshold']}-{c['mode']}")
def test_rollout_is_equals_verl(case):
    """verl 0.9.1's compute_rollout_correction_weights and its vanilla loss with them (dual clip c = 3) =
    lengthrl's rollout_is_weights and policy_loss(..., rollout_is=...)."""
    mode, c_min, c_max = _mode(case)
    w, _ = rollout_is_weights(case["old"], case["rollout"], case["mask"], mode, c_min, c_max)
    assert torch.allclose(w, case["weights"], rtol=1e-12, atol=1e-12)
    x = case["logp"].clone().requires_grad_(True)
    out = policy_loss("dapo", x, case["old"], case["adv"], case["mask"], clip_low=0.2, clip_high=0.28,
                      dual_clip=3.0, loss_agg_mode=case["mode"], rollout_is=mode, rollout_logp=case["rollout"],
                      rollout_is_min=c_min, rollout_is_max=c_max)
    (g,) = torch.autograd.grad(out.loss, x)
    assert torch.allclose(out.loss.detach(), case["loss"], rtol=1e-7, atol=1e-9)
    assert torch.allclose(g, case["grad"], rtol=1e-7, atol=1e-9)


def test_the_fixture_exercises_the_bounds():
    """Some recorded weights were truncated or masked (the bounds act), and SAPO was recorded off ratio 1."""
    changed = [c for c in REC["rollout_is"]
               if not torch.allclose(c["weights"], torch.exp(c["old"] - c["rollout"]) * c["mask"])]
    assert len(changed) >= len(REC["rollout_is"]) // 2
    assert any(float((c["logp"] - c["old"]).abs().max()) > 1.0 for c in REC["sapo"])


def test_audit_against_cli(tmp_path, capsys):
    assert main(["audit", "--against", "trl", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "trl 1.16.0" in out and "luspo/sequence" in out and "MISMATCH" not in out
    rows = json.loads((tmp_path / "drift_trl.json").read_text())
    assert len(rows) == 36 and all(r["ok"] for r in rows)
    assert main(["audit", "--against", "verl", "--recorded", str(FIXTURE), "--out", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "MISMATCH verl 0.9.1 (recorded) sapo/token-mean" in out and "66/80 rows" in out


def test_audit_against_verl_without_verl_says_what_to_do(tmp_path, capsys):
    try:
        import verl  # noqa: F401
        pytest.skip("verl is installed here; the live run is tested in test_integrations_verl.py")
    except ImportError:
        pass
    assert main(["audit", "--against", "verl", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "verl is not importable here" in err and "--recorded FILE" in err and "Traceback" not in err
    assert main(["audit", "--against", "trl", "--recorded", "x.pt", "--out", str(tmp_path)]) == 2
