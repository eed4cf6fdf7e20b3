"""Atomic checkpoint files and the capture/restore of torch's random-number streams.

A checkpoint holds only tensors and plain lists/dicts of numbers, strings and ``None``, so it
loads with ``torch.load(weights_only=True)``: no pickled code runs when a file is read.
"""

from __future__ import annotations

import io
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from archbench.errors import ArchbenchError

CHECKPOINT_FORMAT = "archbench.checkpoint/1"
LAST = "last.pt"

log = logging.getLogger(__name__)


class CheckpointError(ArchbenchError):
    """A checkpoint that cannot be read or does not fit the run resuming from it."""


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Write ``state`` to ``path`` atomically: a temporary file in the same directory, flushed
    to disk, then ``os.replace``; a crash mid-write leaves the previous file intact."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Serialised in memory first: a full disk then fails in our write with OSError(ENOSPC)
    # naming the file, not inside torch's zip writer ("unexpected pos").
    buffer = io.BytesIO()
    torch.save({"format": CHECKPOINT_FORMAT, **state}, buffer)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            try:
                f.write(buffer.getbuffer())
                f.flush()
                os.fsync(f.fileno())
            except OSError as exc:
                if exc.filename is None:
                    exc.filename = str(path)
                raise
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True`` onto the CPU."""
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist") from None
    except Exception as exc:  # unpickling errors come in many types
        raise CheckpointError(
            f"checkpoint {str(path)!r} cannot be read: {_one_line(exc)}"
        ) from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(
            f"checkpoint {str(path)!r} has format {found!r}, expected {CHECKPOINT_FORMAT!r}"
        )
    return state


def checkpoint_epoch(ckpt_dir: str | Path, seed: int, recipe: Any) -> int | None:
    """The epoch a run's last checkpoint (``ckpt_dir/last.pt``) finished, or ``None``
    without a readable one of this ``seed`` and ``recipe`` (the trainer, with
    ``bad_checkpoint="restart"``, moves such a one aside and starts from scratch)."""
    path = Path(ckpt_dir) / LAST
    if not path.exists():
        return None
    try:
        state = load_checkpoint(path)
        if state["seed"] != seed or state["recipe"] != recipe.to_dict():
            return None
        return int(state["epoch"])
    except (CheckpointError, KeyError, TypeError, ValueError):
        return None


def check_fits(
    state: dict[str, Any],
    where: str,
    *,
    seed: int,
    recipe: dict[str, Any],
    model: dict[str, Any],
    optimizer: dict[str, Any],
    steps_per_epoch: int,
) -> None:
    """Raise :class:`CheckpointError` unless ``state`` belongs to this run: its seed, recipe,
    model tensors (names and shapes), optimizer groups and steps per epoch. Checked before
    anything is loaded, so a refused checkpoint leaves the fresh model untouched."""
    try:
        if state["seed"] != seed:
            raise CheckpointError(
                f"checkpoint {where!r} was made with seed {state['seed']}, this run has seed "
                f"{seed}; use another checkpoint_dir or resume=False"
            )
        saved = state["recipe"]
        changed = sorted(k for k in set(saved) | set(recipe) if saved.get(k) != recipe.get(k))
        if changed:
            diffs = ", ".join(f"{k}: {saved.get(k)!r} -> {recipe.get(k)!r}" for k in changed)
            raise CheckpointError(
                f"checkpoint {where!r} was made with another recipe ({diffs}); "
                "use another checkpoint_dir or resume=False"
            )
        theirs = state["model"]
        bad = sorted(set(model) ^ set(theirs)) or [
            k
            for k, v in model.items()
            if not isinstance(theirs[k], torch.Tensor) or theirs[k].shape != v.shape
        ]
        groups = [len(g["params"]) for g in state["optimizer"]["param_groups"]]
        if bad or groups != [len(g["params"]) for g in optimizer["param_groups"]]:
            what = f"tensor {bad[0]!r} differs" if bad else "optimizer groups differ"
            raise CheckpointError(f"checkpoint {where!r} does not fit this model: {what}")
        if int(state["scheduler"]["steps_per_epoch"]) != steps_per_epoch:
            raise CheckpointError(
                f"checkpoint {where!r} was made with {state['scheduler']['steps_per_epoch']} "
                f"steps per epoch, this run has {steps_per_epoch} (different data size or "
                "batch size)"
            )
        _ = (int(state["epoch"]), float(state["wall_time_s"]), state["rng"]["cpu"])
        _ = (list(state["metrics"]), list(state["diagnostics"]))
    except CheckpointError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise CheckpointError(
            f"checkpoint {where!r} is incomplete or malformed ({type(exc).__name__}: {exc})".splitlines()[
                0
            ]
        ) from None


def _one_line(exc: BaseException) -> str:
    """The telling line of a load error: torch's weights-only refusals are a page of advice
    around one line (``WeightsUnpickler error: ...``)."""
    text = str(exc)
    marker = "WeightsUnpickler error:"
    if marker in text:
        rest = text.split(marker, 1)[1].strip()
        return f"{marker} {rest.splitlines()[0].strip() if rest else ''}".strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def quarantine_checkpoint(path: str | Path, reason: str) -> Path:
    """Move a checkpoint that cannot be used aside, to ``<name>.corrupt-<UTC time>`` in the
    same folder (kept for inspection, never read again), and say so in one log line; returns
    the new path. A rerun then starts that run from scratch instead of failing forever."""
    path = Path(path)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
    os.replace(path, target)
    log.warning("%s; moved it aside to %s and starting the run from scratch", reason, target.name)
    return target


def capture_rng_state(device: torch.device) -> dict[str, torch.Tensor]:
    """The torch random streams training draws from (dropout, random ops): the CPU generator
    and, for a CUDA or MPS run, that device's generator. Data order and augmentation are not
    here: the loader derives them from (seed, epoch)."""
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    elif device.type == "mps":
        state["mps"] = torch.mps.get_rng_state()
    return state


def restore_rng_state(state: dict[str, torch.Tensor], device: torch.device) -> None:
    """Inverse of :func:`capture_rng_state`. A state captured on another device type (a CPU
    checkpoint resumed on CUDA) restores the CPU stream only and logs a warning: the run goes
    on, but is no longer bit-identical to an uninterrupted one."""
    torch.set_rng_state(state["cpu"].cpu())
    if device.type in ("cuda", "mps"):
        if device.type not in state:
            log.warning(
                "checkpoint has no %s random state (made on another device type); "
                "the resumed run will not repeat an uninterrupted one exactly",
                device.type,
            )
        elif device.type == "cuda":
            torch.cuda.set_rng_state(state["cuda"].cpu(), device)
        else:
            torch.mps.set_rng_state(state["mps"].cpu())
