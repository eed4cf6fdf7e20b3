import os

import pytest
import torch

# Two cores: keep torch from oversubscribing them when pytest-xdist or BLAS threads pile up.
torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
