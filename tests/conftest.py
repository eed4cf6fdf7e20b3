import pytest
import torch

# Tiny test nets gain nothing from a second thread, and two threads on two busy cores
# spin-wait each other to a crawl (5-10x slower measured here).
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
