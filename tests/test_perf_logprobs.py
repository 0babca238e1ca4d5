"""The chunked selective log-softmax equals the naive full log-softmax for any chunking; benchmark helpers."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lengthrl.rollout import selective_log_softmax


def naive(logits, index):
    return torch.log_softmax(logits.float(), -1).gather(-1, index.unsqueeze(-1)).squeeze(-1)


@settings(max_examples=25, deadline=None)
@given(B=st.integers(1, 5), T=st.integers(1, 9), V=st.integers(2, 40), rows=st.integers(1, 6),
       tokens=st.integers(1, 50), seed=st.integers(0, 99))
def test_chunked_equals_naive(B, T, V, rows, tokens, seed):
    g = torch.Generator().manual_seed(seed)
    logits = (torch.randn(B, T + 1, V, generator=g) * 5)[:, :-1]  # a non-contiguous slice, as in compute_logprobs
    index = torch.randint(0, V, (B, T), generator=g)
    got = selective_log_softmax(logits, index, chunk_rows=rows, chunk_tokens=tokens)
    assert got.shape == (B, T) and got.dtype == torch.float32
    torch.testing.assert_close(got, naive(logits, index), atol=1e-5, rtol=1e-5)


def test_hand_value_and_bf16():
    logits = torch.tensor([[[0.0, math.log(3.0)]]])  # p = [1/4, 3/4]
    assert selective_log_softmax(logits, torch.tensor([[1]]), chunk_tokens=1).item() == pytest.approx(math.log(0.75))
    got = selective_log_softmax(logits.bfloat16(), torch.tensor([[0]]))
    assert got.dtype == torch.float32 and got.item() == pytest.approx(math.log(0.25), abs=1e-2)


def test_gradient_matches_naive():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(3, 7, 11, generator=g, requires_grad=True)
    b = a.detach().clone().requires_grad_(True)
    ix = torch.randint(0, 11, (3, 7), generator=g)
    selective_log_softmax(a, ix, chunk_tokens=4).sum().backward()
    naive(b, ix).sum().backward()
    torch.testing.assert_close(a.grad, b.grad, atol=1e-6, rtol=1e-6)


def test_benchmark_helpers():
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root holds benchmarks/
    from benchmarks.bench_scaling import slope
    from benchmarks.common import interleaved, table

    assert slope([1, 2, 4], [3, 12, 48]) == pytest.approx(2.0)
    order = []
    times = interleaved({"a": lambda: order.append("a") or 0.5, "b": lambda: order.append("b")}, repeats=2, warmup=1)
    assert order == ["a", "b"] * 3 and times["a"] == [0.5, 0.5] and len(times["b"]) == 2
    assert "x" in table([{"x": 1.0}], ["x"]).splitlines()[0]
