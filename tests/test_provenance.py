"""The environment record stored with every run: what decides bit-identity (issue 19)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy
import pytest
import torch

from archbench.training.device import environment_info, git_commit
from archbench.training.provenance import BIT_IDENTITY_KEYS, bit_identity

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(not (ROOT / ".git").exists(), reason="not a git checkout")
def test_git_commit_is_the_checkouts_head() -> None:
    # Issue 19: the lookup climbed one folder too few and always returned None.
    head = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert git_commit() == head
    env = environment_info(torch.device("cpu"))
    assert env["git_commit"] == head and isinstance(env["git_dirty"], bool)


def test_the_record_names_cpu_libraries_and_threads() -> None:
    env = environment_info(torch.device("cpu"))
    assert env["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert env["torch"] == torch.__version__ and env["numpy"] == numpy.__version__
    assert env["cpu_threads"] == torch.get_num_threads()
    assert env["interop_threads"] == torch.get_num_interop_threads()
    if Path("/proc/cpuinfo").exists():
        cpuinfo = Path("/proc/cpuinfo").read_text()
        model = re.search(r"^(model name|Model)\s*:\s*(.+)$", cpuinfo, re.M)
        if model:
            assert env["cpu_model"] == model.group(2).strip()
        assert set(env["cpu_flags"]) <= set(cpuinfo.split())
    if torch.backends.mkl.is_available():
        assert env["mkl"] and env["mkl"] in torch.__config__.show()
    identity = bit_identity(env)
    assert list(identity) == list(BIT_IDENTITY_KEYS) and identity["device"] == "cpu"
