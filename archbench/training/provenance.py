"""What a run's numbers depend on, recorded with every run (``runs.env``).

Training here is bit-identical from one run to the next only when everything below the
model is the same: the processor (its model and the instruction set torch dispatches on,
``cpu_capability``), the torch / NumPy / MKL / oneDNN builds, the thread counts and the
device. :func:`bit_identity` is that subset, and :func:`environment_info` the whole record;
two runs whose ``bit_identity`` differ can differ from the first epoch on.
"""

from __future__ import annotations

import functools
import os
import platform
import re
import subprocess
from pathlib import Path
from typing import Any

import torch

from archbench import __version__

# Instruction-set flags that change which kernels torch, MKL and oneDNN pick on x86 and ARM.
_ISA_FLAGS = (
    "sse4_2",
    "avx",
    "avx2",
    "fma",
    "f16c",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "amx_tile",
    "amx_bf16",
    "amx_int8",
    "asimd",
    "sve",
    "sve2",
)

# The keys of :func:`environment_info` that decide whether two runs can be bit-identical.
BIT_IDENTITY_KEYS = (
    "cpu_model",
    "cpu_id",
    "cpu_capability",
    "torch",
    "numpy",
    "mkl",
    "onednn",
    "cpu_threads",
    "interop_threads",
    "device",
    "gpu_name",
    "cuda",
    "cudnn",
)


@functools.lru_cache(maxsize=1)
def git_state() -> tuple[str | None, bool | None]:
    """``(commit, dirty)`` of the archbench checkout this code runs from; ``(None, None)`` for
    an installed package or without git. ``dirty``: tracked files differ from the commit."""
    root = Path(__file__).resolve().parents[2]  # archbench/training/provenance.py -> checkout
    if not (root / ".git").exists():  # a folder in a clone, a file in a git worktree
        return None, None
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None, None
    return (head, bool(dirty)) if head else (None, None)


def git_commit() -> str | None:
    """The 40-hex commit of the archbench checkout, or ``None``."""
    return git_state()[0]


def _cpuinfo() -> dict[str, str]:
    """The first processor's block of ``/proc/cpuinfo`` (Linux), else ``{}``."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {}
    out: dict[str, str] = {}
    for line in text.split("\n\n", 1)[0].splitlines():
        key, sep, value = line.partition(":")
        if sep:
            out[key.strip()] = value.strip()
    return out


def _sysctl(name: str) -> str | None:
    try:
        out = subprocess.run(
            ["sysctl", "-n", name], capture_output=True, text=True, timeout=5, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


@functools.lru_cache(maxsize=1)
def cpu_info() -> dict[str, Any]:
    """``cpu_model`` (e.g. ``"AMD EPYC 7B13"``), ``cpu_id`` (vendor, family, model and
    stepping numbers: the exact microarchitecture even where a VM shortens the name),
    ``cpu_flags`` (the ISA flags torch and its
    libraries dispatch on, sorted) and ``cpu_capability`` (torch's own pick: ``AVX512``,
    ``AVX2``, ``DEFAULT``...)."""
    info = _cpuinfo()
    model = info.get("model name") or info.get("Model") or info.get("cpu model")
    if model is None and platform.system() == "Darwin":
        model = _sysctl("machdep.cpu.brand_string")
    if model is None:
        model = platform.processor() or None
    flags = set((info.get("flags") or info.get("Features") or "").split())
    capability = None
    backend = getattr(torch.backends, "cpu", None)
    if backend is not None and hasattr(backend, "get_cpu_capability"):
        capability = backend.get_cpu_capability()
    cpu_id = None
    if info.get("cpu family") is not None:  # x86: names one microarchitecture exactly
        cpu_id = (
            f"{info.get('vendor_id', '?')} family {info['cpu family']} "
            f"model {info.get('model', '?')} stepping {info.get('stepping', '?')}"
        )
    elif info.get("CPU part") is not None:  # ARM
        cpu_id = f"implementer {info.get('CPU implementer', '?')} part {info['CPU part']}"
    return {
        "cpu_model": model,
        "cpu_id": cpu_id,
        "cpu_flags": sorted(flags.intersection(_ISA_FLAGS)),
        "cpu_capability": capability,
        "machine": platform.machine(),
    }


def _config_version(pattern: str) -> str | None:
    """A version string out of ``torch.__config__.show()`` (MKL, oneDNN)."""
    try:
        text = torch.__config__.show()
    except Exception:
        return None
    match = re.search(pattern, text)
    return match.group(1) if match else None


@functools.lru_cache(maxsize=1)
def library_versions() -> dict[str, Any]:
    """torch, NumPy, MKL and oneDNN versions (``None`` where the build lacks one)."""
    try:
        import numpy

        numpy_version: str | None = numpy.__version__
    except ImportError:  # pragma: no cover - numpy is a dependency
        numpy_version = None
    mkl = (
        _config_version(r"Math Kernel Library Version ([\d.]+)")
        if torch.backends.mkl.is_available()
        else None
    )
    onednn = _config_version(r"MKL-DNN (v[^\s]+)") if torch.backends.mkldnn.is_available() else None
    return {"torch": torch.__version__, "numpy": numpy_version, "mkl": mkl, "onednn": onednn}


def environment_info(device: torch.device) -> dict[str, Any]:
    """Versions and hardware a result depends on (JSON-able); see :data:`BIT_IDENTITY_KEYS`."""
    info: dict[str, Any] = {
        "archbench": __version__,
        "git_commit": git_state()[0],
        "git_dirty": git_state()[1],
        **library_versions(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        **cpu_info(),
        "device": str(device),
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "gpu_name": None,
        "cpu_threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "cpu_count": os.cpu_count(),
        "deterministic": torch.are_deterministic_algorithms_enabled(),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info["gpu_name"] = props.name
        info["gpu_index"] = device.index if device.index is not None else 0
        info["gpu_mem_mb"] = round(props.total_memory / 2**20)
    elif device.type == "mps":
        info["gpu_name"] = "Apple MPS"
    return info


def bit_identity(env: dict[str, Any]) -> dict[str, Any]:
    """The part of an environment record that must match for two runs to be bit-identical."""
    return {key: env.get(key) for key in BIT_IDENTITY_KEYS}
