import pytest
import torch

# Tiny test nets gain nothing from a second thread, and two threads on two busy cores
# spin-wait each other to a crawl (5-10x slower measured here).
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _no_network_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never open connections to dataset hosts: the preflight's download probe answers
    "unreachable" unless a test patches it itself (that patch, applied later, wins)."""
    import archbench.runner.preflight

    monkeypatch.setattr(
        archbench.runner.preflight, "unreachable", lambda url: "network probes are off in tests"
    )
