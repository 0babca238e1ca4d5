"""CollapseDetector on synthetic metric streams with and without collapse."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lengthrl.analysis.collapse import CollapseDetector, scan_collapse
from lengthrl.errors import ConfigError, DataError


def stream(lengths, accs=None, ents=None):
    rows = []
    for i, L in enumerate(lengths):
        r = {"step": i, "len/mean": float(L)}
        if accs is not None:
            r["acc"] = float(accs[i])
        if ents is not None:
            r["entropy"] = float(ents[i])
        rows.append(r)
    return rows


rng = np.random.default_rng(0)
N = 80


def test_no_collapse_on_noisy_flat_stream():
    lens = 200 + rng.normal(0, 10, N)
    accs = 0.4 + rng.normal(0, 0.02, N)
    ents = 1.5 + rng.normal(0, 0.05, N)
    assert scan_collapse(stream(lens, accs, ents), window=20) == []


def test_length_collapse_detected_with_flat_accuracy():
    lens = np.concatenate([np.full(30, 200.0), np.linspace(200, 40, 25), np.full(25, 40.0)])
    accs = np.full(N, 0.4)
    ws = scan_collapse(stream(lens, accs), window=20, drop_threshold=0.3)
    assert ws and ws[0].kind == "length"
    # the window's smoothed start/end first differ by > 30% a few steps into the fall (steps 30..54)
    assert 35 <= ws[0].step <= 50
    assert ws[0].len_drop > 0.3 and ws[0].acc_gain == pytest.approx(0.0)
    assert "length collapse" in ws[0].message


def test_shorter_and_more_accurate_is_not_collapse():
    lens = np.concatenate([np.full(30, 200.0), np.linspace(200, 40, 25), np.full(25, 40.0)])
    accs = np.concatenate([np.full(30, 0.3), np.linspace(0.3, 0.7, 25), np.full(25, 0.7)])
    assert [w for w in scan_collapse(stream(lens, accs), window=20) if w.kind == "length"] == []


def test_entropy_collapse():
    ents = np.concatenate([np.full(30, 2.0), np.linspace(2.0, 0.05, 20), np.full(30, 0.05)])
    ws = scan_collapse(stream(np.full(N, 100.0), np.full(N, 0.5), ents), window=20, entropy_ratio=0.2)
    assert ws and ws[0].kind == "entropy" and ws[0].entropy_ratio < 0.2
    assert scan_collapse(stream(np.full(N, 100.0), np.full(N, 0.5), ents), window=20, entropy_ratio=None) == []


def test_live_metrics_and_cooldown():
    lens = np.geomspace(400, 5, 120)  # falls all the time
    det = CollapseDetector(window=10, drop_threshold=0.2, cooldown=25)
    warn_steps = []
    for row in stream(lens, np.full(120, 0.5)):
        w = det.update(row)
        m = det.metrics()
        assert m["collapse/flag"] == (1.0 if w else 0.0)
        if w:
            warn_steps.append(w.step)
    assert warn_steps[0] == 9  # first full window
    assert np.all(np.diff(warn_steps) >= 25)
    assert det.metrics()["collapse/len_drop"] > 0.2


def test_missing_keys_and_bad_values():
    det = CollapseDetector(window=4)
    assert det.update({"step": 0, "loss": 1.0}) is None  # nothing to watch: no error
    with pytest.raises(DataError, match="'len/mean'.*NaN"):
        det.update({"step": 1, "len/mean": float("nan")})
    with pytest.raises(DataError, match="'acc'"):
        det.update({"step": 2, "len/mean": 3.0, "acc": "high"})
    with pytest.raises(ConfigError, match="window"):
        CollapseDetector(window=1)
    with pytest.raises(ConfigError, match="drop_threshold"):
        CollapseDetector(drop_threshold=30)


@settings(max_examples=30, deadline=None)
@given(st.floats(1, 1e4), st.floats(0, 1), st.integers(2, 30))
def test_constant_streams_never_warn(length, acc, window):
    assert scan_collapse(stream(np.full(60, length), np.full(60, acc), np.full(60, 1.0)), window=window) == []


@settings(max_examples=20, deadline=None)
@given(st.floats(0.01, 100), st.integers(0, 10_000))
def test_length_scale_invariance(scale, seed):
    r = np.random.default_rng(seed)
    lens = np.abs(200 + np.cumsum(r.normal(-2, 8, 60))) + 1
    a = [(w.step, w.kind) for w in scan_collapse(stream(lens, np.full(60, 0.5)), window=12)]
    b = [(w.step, w.kind) for w in scan_collapse(stream(lens * scale, np.full(60, 0.5)), window=12)]
    assert a == b
