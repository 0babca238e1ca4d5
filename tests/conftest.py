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
