import os

import pytest
import torch

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="module")
def micro_dir(tmp_path_factory) -> str:
    """A tiny random Qwen2 model directory (runkit.MICRO: 1 layer, hidden 32), one per test module."""
    from lengthrl.models import save_tiny_random_model
    from runkit import MICRO

    return str(save_tiny_random_model(tmp_path_factory.mktemp("m") / "qwen", arch="qwen2", seed=0, **MICRO))


def _devices():
    """cpu always; cuda too when this machine has it (marked `gpu`: `pytest -m gpu` runs only those cases)."""
    out = ["cpu"]
    if torch.cuda.is_available():
        out.append(pytest.param("cuda", marks=pytest.mark.gpu))
    return out


@pytest.fixture(scope="session", params=_devices())
def device(request) -> str:
    """The device a test runs its step, rollout or loss on: 'cpu' (CI), and 'cuda' where CUDA exists.

    Without CUDA there is one parameter, so a test taking it runs once, as before (no extra CPU cost).
    Session-scoped so hypothesis tests can take it (a plain string, nothing to reset between examples)."""
    return request.param
