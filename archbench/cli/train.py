"""``archbench train MODEL``: train one preset (or a NetSpec JSON file) on one dataset.

The preset is adapted to the dataset (classes, channels, image size). Prints a per-epoch row
as each epoch ends (a tqdm bar runs on stderr meanwhile when it is a terminal) and a final
line; ``--json PATH`` writes the whole result.

JSON schema ``archbench.train/1`` (``TrainResult.to_dict()`` plus ``model`` and ``dataset``)::

    {"schema": "archbench.train/1", "status": "completed" | "diverged" | "pruned",
     "seed": int, "recipe": {Recipe fields},
     "epochs": [{"epoch", "lr", "train_loss", "train_err", "val_loss", "val_err",
                 "val_top5_err", "test_loss", "test_err", "test_top5_err", "epoch_time_s",
                 "train_time_s", "images_per_s", "peak_mem_mb"}, ...],
     "final": <last epoch> | null,
     "diverged_at": {"epoch", "step", "epoch_step", "lr", "loss"} | null,
     "diagnostics": [{"epoch", "block", "index", "grad_norm", "branch_ratio"}, ...],
     "wall_time_s": float, "device": str, "env": {...versions, git commit, amp, ...},
     "model": {"name", "spec_hash", "params", "spec": {NetSpec}},
     "dataset": {"name", "train", "val", "test", "image_size", "channels", "num_classes",
                 "source"}}

Errors are fractions; non-finite numbers are written as strings ("nan", "inf"). Exit code 0
when training completed, 1 when it diverged, 2 for a user error.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from archbench.cli.args import finite_float, log_arg, nonnegative_int, positive_int
from archbench.cli.format import emit, render_kv, to_json
from archbench.errors import SpecError
from archbench.training.recipe import Recipe  # light: no torch

if TYPE_CHECKING:
    from archbench.data import LoadedData
    from archbench.models.net import NetSpec
    from archbench.training.train import EpochMetrics, TrainResult

# torch, the data and the model stack are imported when `train` runs: every `archbench`
# command builds this module's parser, and the reading commands need no torch.

# (flag, Recipe field, type, help); flags left out keep the Recipe default.
# Types check the form; Recipe.validate checks the ranges (naming the field).
RECIPE_FLAGS: list[tuple[str, str, Any, str]] = [
    ("--epochs", "epochs", positive_int, "training epochs"),
    ("--batch-size", "batch_size", positive_int, "training batch size"),
    ("--lr", "lr", finite_float(), "peak learning rate"),
    ("--momentum", "momentum", finite_float(), "SGD momentum"),
    ("--weight-decay", "weight_decay", finite_float(), "L2 weight decay"),
    (
        "--warmup-epochs",
        "warmup_epochs",
        finite_float(),
        "warm-up length in epochs (fractional ok)",
    ),
    ("--warmup-lr", "warmup_lr", finite_float(), "warm-up start (linear) or hold (constant) rate"),
    ("--label-smoothing", "label_smoothing", finite_float(), "label smoothing of the loss"),
]
RECIPE_SWITCHES: list[tuple[str, str, str]] = [
    ("--nesterov", "nesterov", "Nesterov momentum"),
    ("--amp", "amp", "bf16 autocast (CUDA only)"),
    ("--channels-last", "channels_last", "NHWC memory format"),
    ("--compile", "compile", "torch.compile the model"),
]


def register(subparsers: argparse._SubParsersAction) -> None:
    defaults = Recipe()
    p = subparsers.add_parser(
        "train",
        help="train one model on one dataset",
        description="Train a preset (e.g. resnet20) or a NetSpec JSON file on a dataset.",
    )
    p.add_argument("model", help="preset or generic name (resnet20, wrn_16_4) or spec.json")
    p.add_argument("--dataset", default="cifar10", help="registered dataset (default cifar10)")
    for flag, name, kind, text in RECIPE_FLAGS:
        p.add_argument(
            flag, type=kind, dest=name, help=f"{text} (default {getattr(defaults, name)})"
        )
    p.add_argument(
        "--schedule",
        choices=("step", "cosine", "constant"),
        help=f"learning-rate schedule (default {defaults.schedule}: x{defaults.gamma} at "
        f"{', '.join(f'{m:g}' for m in defaults.milestones)} of training)",
    )
    p.add_argument("--warmup", choices=("linear", "constant"), help="warm-up shape")
    for flag, name, text in RECIPE_SWITCHES:
        p.add_argument(flag, dest=name, action="store_true", default=None, help=text)
    p.add_argument(
        "--no-wd-on-norm-bias",
        dest="wd_on_norm_and_bias",
        action="store_false",
        default=None,
        help="no weight decay on normalisation parameters and biases",
    )
    p.add_argument(
        "--seed", type=nonnegative_int, default=0, help="seed of init, data order, dropout"
    )
    p.add_argument("--device", default="auto", help="auto (cuda > mps > cpu), cpu, cuda[:i], mps")
    p.add_argument("--data-root", help="dataset folder (default $ARCHBENCH_DATA_ROOT or ./data)")
    p.add_argument("--no-download", action="store_true", help="fail instead of downloading")
    p.add_argument(
        "--train-subset", type=positive_int, help="train on a stratified subset of this size"
    )
    p.add_argument(
        "--test-subset", type=positive_int, help="test on a stratified subset of this size"
    )
    p.add_argument(
        "--val-size", type=_val_size, default=0.1, help="validation carve: fraction or count"
    )
    p.add_argument("--image-size", type=positive_int, help="resize images once at load")
    p.add_argument("--checkpoint-dir", help="write last.pt there each epoch and resume from it")
    p.add_argument("--no-resume", action="store_true", help="ignore an existing checkpoint")
    p.add_argument(
        "--diagnostics-every",
        type=nonnegative_int,
        default=1,
        help="per-block gradient norms / branch ratios every N epochs (0: off; default 1)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar or table: final line")
    p.add_argument("--json", dest="json_path", help="write the result as JSON to this file")
    log_arg(p)
    p.set_defaults(func=run)


def _val_size(text: str) -> int | float:
    value: int | float
    try:
        value = int(text)
    except ValueError:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        ok = 0.0 <= value < 1.0  # a fraction
    else:
        ok = value >= 0  # a count
    if not ok:
        raise argparse.ArgumentTypeError(
            f"must be a count >= 0 or a fraction in [0, 1), got {text!r}"
        )
    return value


def _check_paths(args: argparse.Namespace) -> None:
    """Output paths that cannot be written fail now, not after the training they record."""
    if args.checkpoint_dir:
        folder = Path(args.checkpoint_dir)
        if folder.exists() and not folder.is_dir():
            raise SpecError(f"--checkpoint-dir {str(folder)!r} is a file; give a folder")
        if any(p.exists() and not p.is_dir() for p in folder.parents):
            raise SpecError(f"--checkpoint-dir {str(folder)!r}: a parent of it is a file")
    if args.json_path:
        path = Path(args.json_path)
        if path.is_dir():
            raise SpecError(f"--json {str(path)!r} is a folder; give a file name")
        if any(p.exists() and not p.is_dir() for p in path.parents):
            raise SpecError(f"--json {str(path)!r}: a parent of it is a file")


def load_spec(model: str, data: LoadedData) -> NetSpec:
    """A preset name or a spec JSON file, adapted to the dataset's shape."""
    from archbench.models.net import is_spec_file, read_spec_file
    from archbench.models.presets import get_preset

    info = data.info
    shape = {
        "num_classes": info.num_classes,
        "in_channels": info.channels,
        "input_size": info.image_size,
    }
    if is_spec_file(model):
        try:
            spec = read_spec_file(model)
        except SpecError:
            raise
        except OSError as exc:
            raise SpecError(f"cannot read spec file {model!r}: {exc.strerror}") from None
        except (TypeError, KeyError, ValueError, AttributeError) as exc:
            raise SpecError(f"spec file {model!r} is not a NetSpec: {exc!r}") from None
        spec = spec.replace(**shape)
    else:
        spec = get_preset(model, **shape)
    spec.validate()
    return spec


def _restored_epochs(args: argparse.Namespace) -> list[EpochMetrics]:
    """Epochs an existing checkpoint holds (``train`` resumes after them), for the table."""
    from archbench.training.checkpoint import LAST, load_checkpoint
    from archbench.training.train import EpochMetrics

    if not args.checkpoint_dir or args.no_resume:
        return []
    path = Path(args.checkpoint_dir) / LAST
    if not path.exists():
        return []
    return [EpochMetrics(**m) for m in load_checkpoint(path)["metrics"]]


def run(args: argparse.Namespace) -> int:
    fields = [name for _, name, _, _ in RECIPE_FLAGS] + [n for _, n, _ in RECIPE_SWITCHES]
    fields += ["schedule", "warmup", "wd_on_norm_and_bias"]
    recipe = Recipe.from_dict({k: getattr(args, k) for k in fields if getattr(args, k) is not None})
    _check_paths(args)
    from archbench.tracking import Trackers, parse_targets

    parse_targets(args.log)  # a missing tracker package: one line before any data is read
    import torch

    from archbench.data import load_dataset
    from archbench.models.net import build_net
    from archbench.runner.preflight import (
        check_device,
        check_fits,
        data_bytes,
        estimate_memory,
        memory_limit,
    )
    from archbench.training.train import seed_everything, train

    device = check_device(args.device)
    data = load_dataset(
        args.dataset,
        root=args.data_root,
        val_size=args.val_size,
        train_subset=args.train_subset,
        test_subset=args.test_subset,
        image_size=args.image_size,
        download=not args.no_download,
    )
    spec = load_spec(args.model, data)
    estimate = estimate_memory(
        spec, recipe.batch_size, amp=recipe.amp and device.type == "cuda", data=data_bytes(data)
    )
    check_fits(
        estimate,
        device,
        memory_limit(device),
        f"model {spec.name or args.model!r}",
        "Give a smaller model or --batch-size.",
    )
    seed_everything(args.seed)
    net = build_net(spec)
    params = sum(p.numel() for p in net.parameters())
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick its fastest kernels

    quiet = args.quiet
    if not quiet:
        _print_header(args, spec, params, data, recipe, device)

    trackers = Trackers.from_targets(args.log)
    config = _track_config(args, spec, params, data, recipe, device)
    with trackers.run(config) as tracked:

        def on_epoch_end(metrics: EpochMetrics, _diags: list) -> bool:
            if not quiet:
                emit(_row(_cells(metrics)))
            tracked.log_epoch(metrics)
            return False

        result = train(
            net,
            data,
            recipe,
            seed=args.seed,
            device=device,
            checkpoint_dir=args.checkpoint_dir,
            resume=not args.no_resume,
            diagnostics_every=args.diagnostics_every,
            on_epoch_end=on_epoch_end,
            progress=False if quiet else None,
        )
        tracked.finish(result.status, result.final, wall_time_s=result.wall_time_s)
    trackers.close()
    emit(final_line(result))
    if args.json_path:
        path = _write_json(Path(args.json_path), result, spec, args.model, params, data)
        if not quiet:
            emit(f"wrote {path}")
    return 1 if result.status == "diverged" else 0


def _track_config(
    args: argparse.Namespace, spec: Any, params: int, data: Any, recipe: Recipe, device: Any
) -> dict[str, Any]:
    """What trackers record about an ``archbench train`` run."""
    info = data.info
    return {
        "label": spec.name or Path(args.model).stem,
        "model": args.model,
        "seed": args.seed,
        "spec_hash": spec.spec_hash(),
        "params": params,
        "recipe": recipe.to_dict(),
        "dataset": info.name,
        "data": {
            "train": len(data.train),
            "val": len(data.val) if data.val is not None else 0,
            "test": len(data.test),
            "image_size": info.image_size,
        },
        "device": str(device),
        "resumed_after_epoch": len(_restored_epochs(args)),
    }


def _print_header(
    args: argparse.Namespace, spec: Any, params: int, data: Any, recipe: Recipe, device: Any
) -> None:
    """What is about to train, then the epoch table's header (and epochs a checkpoint holds)."""
    model = f"{spec.name or args.model}: {params:,} params, hash {spec.spec_hash()}"
    pairs = [
        ("model", model),
        ("data", data.summary()),
        ("recipe", _recipe_line(recipe)),
        ("device", f"{device}, seed {args.seed}"),
    ]
    emit(render_kv(pairs) + "\n")
    # Rows are printed as epochs end (a long run shows its progress in a log file too),
    # so the columns have fixed widths rather than render_table's fitted ones.
    emit(_row(HEADER) + "\n" + _row(tuple("-" * w for w in WIDTHS)))
    for metrics in _restored_epochs(args):
        emit(_row(_cells(metrics)) + "  (checkpoint)")


def _write_json(path: Path, result: Any, spec: Any, model: str, params: int, data: Any) -> Path:
    """The run's result, its model and its data as one JSON file (``--json``)."""
    from archbench.training.train import RESULT_SCHEMA

    out = result.to_dict()
    out["model"] = {
        "name": spec.name or model,
        "spec_hash": spec.spec_hash(),
        "params": params,
        "spec": spec.to_dict(),
    }
    info = data.info
    out["dataset"] = {
        "name": info.name,
        "train": len(data.train),
        "val": len(data.val) if data.val is not None else 0,
        "test": len(data.test),
        "image_size": info.image_size,
        "channels": info.channels,
        "num_classes": info.num_classes,
        "source": data.source,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(to_json(RESULT_SCHEMA, out) + "\n")
    return path


# -- formatting -------------------------------------------------------------------------------

HEADER = ("epoch", "train loss", "train err", "val err", "test err", "lr", "time s", "img/s")
WIDTHS = (5, 10, 9, 8, 8, 9, 7, 8)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


def _cells(m: EpochMetrics) -> tuple[str, ...]:
    return (
        str(m.epoch),
        f"{m.train_loss:.4f}",
        _pct(m.train_err),
        _pct(m.val_err),
        _pct(m.test_err),
        f"{m.lr:.3g}",
        f"{m.epoch_time_s:.1f}",
        f"{m.images_per_s:.0f}",
    )


def _row(cells: tuple[str, ...]) -> str:
    return "  ".join(c.rjust(w) for c, w in zip(cells, WIDTHS)).rstrip()


def _recipe_line(r: Recipe) -> str:
    sched = r.schedule
    if r.schedule == "step":
        sched += f" x{r.gamma:g} at {'/'.join(f'{m:g}' for m in r.milestones)}"
    parts = [
        f"{r.epochs} epochs",
        f"batch {r.batch_size}",
        f"SGD lr {r.lr:g} momentum {r.momentum:g}{' nesterov' if r.nesterov else ''}",
        f"wd {r.weight_decay:g}{'' if r.wd_on_norm_and_bias else ' (not on norm/bias)'}",
        sched,
    ]
    if r.warmup_epochs:
        parts.append(f"{r.warmup} warm-up {r.warmup_epochs:g} epochs")
    if r.label_smoothing:
        parts.append(f"label smoothing {r.label_smoothing:g}")
    parts += [flag for flag in ("amp", "channels_last", "compile") if getattr(r, flag)]
    return ", ".join(parts)


def final_line(result: TrainResult) -> str:
    done = f"{len(result.epochs)} epochs in {result.wall_time_s:.1f} s on {result.device}"
    if result.status == "diverged":
        d = result.diverged_at or {}
        return (
            f"diverged in epoch {d.get('epoch')} at step {d.get('step')} "
            f"(lr {d.get('lr', float('nan')):.3g}, loss {d.get('loss')}) after {done}"
        )
    f = result.final
    if f is None:
        return f"{result.status}: no epoch completed"
    val = "" if f.val_err is None else f", val err {_pct(f.val_err)}"
    return (
        f"{result.status}: test err {_pct(f.test_err)} (top-5 {_pct(f.test_top5_err)}){val}, {done}"
    )
