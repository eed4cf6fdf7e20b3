"""The results store's tables, prefixed ``archbench_`` so they sit beside Optuna's own.

Bump :data:`SCHEMA_VERSION` with every change to these tables, and add the step from the
previous version to :mod:`archbench.store.migrate`: an older store is upgraded on open, a
newer one (or one with no upgrade path) refused rather than read or written wrongly.

Version history: 1, the first; 2, a run's budget (metric, target, error) moved from the
variant row (where the first experiment to record the variant set it for all) to the run, and
each variant records its main block's family (``block_family``), so that the analysis reads a
store without importing the block registry (torch); 3, a run records where its final weights
were kept (``weights_path``, ``--keep-weights``; ``archbench eval`` reloads them); 4, each run carries a ``lease`` number,
bumped whenever a trial (re)claims the run, that every write to the run checks (fenced
writes: :mod:`archbench.store.lease`).
"""

from __future__ import annotations

import sqlalchemy as sa

SCHEMA_VERSION = 4
PREFIX = "archbench_"

RUN_STATUSES = ("running", "completed", "diverged", "pruned", "failed")
FINISHED_STATUSES = RUN_STATUSES[1:]

metadata = sa.MetaData()

_Time = sa.DateTime(timezone=True)
_Count = sa.BigInteger  # MACs of ImageNet models exceed 2**31

meta = sa.Table(
    f"{PREFIX}meta",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),  # always 1
    sa.Column("schema_version", sa.Integer, nullable=False),
    sa.Column("archbench_version", sa.String(32), nullable=False),
    sa.Column("created_at", _Time, nullable=False),
)

variants = sa.Table(
    f"{PREFIX}variants",
    metadata,
    sa.Column("spec_hash", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("spec_json", sa.Text, nullable=False),  # NetSpec.canonical_json()
    sa.Column("family", sa.String(100), nullable=False),
    sa.Column("block", sa.String(100), nullable=False),  # the block type of most blocks
    # That block's family in the block registry when the variant was recorded ("resnet",
    # "preact", a plugin's own): what the analysis groups by, without importing the blocks.
    sa.Column("block_family", sa.String(100), nullable=False),
    sa.Column("depth", sa.Integer, nullable=False),  # the family's depth parameter
    sa.Column("width", sa.Float, nullable=False),  # the family's width parameter
    sa.Column("num_blocks", sa.Integer, nullable=False),
    sa.Column("params", _Count, nullable=False),
    sa.Column("macs", _Count, nullable=False),
    sa.Column("flops", _Count, nullable=False),  # 2 * macs, by convention
    sa.Column("acts", _Count, nullable=False),
    sa.Column("created_at", _Time, nullable=False),
)

runs = sa.Table(
    f"{PREFIX}runs",
    metadata,
    sa.Column("run_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("experiment", sa.String(200), nullable=False),
    sa.Column("profile", sa.String(100), nullable=False),
    sa.Column("config_key", sa.String(200), nullable=False),  # variant hash + recipe hash
    sa.Column("seed", sa.Integer, nullable=False),
    sa.Column("study_name", sa.String(300)),
    sa.Column("trial_number", sa.Integer),
    sa.Column(
        "spec_hash", sa.String(64), sa.ForeignKey(variants.c.spec_hash), nullable=False, index=True
    ),
    sa.Column("hyperparameters", sa.JSON, nullable=False),
    sa.Column("recipe", sa.JSON, nullable=False),
    # The budget this run's variant was solved to (NULL: none), per run: one architecture can
    # be budget-matched in one experiment and a fixed point in another.
    sa.Column("budget_metric", sa.String(16)),
    sa.Column("budget_target", sa.Float),
    sa.Column("budget_error", sa.Float),  # (achieved - target) / target, signed
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),  # 1 + number of restarts
    # Bumped by every (re)claim of the run (start_run); each write to the run checks it in its
    # own transaction, so a writer whose run was taken over writes nothing (schema 4).
    sa.Column("lease", sa.Integer, nullable=False),
    sa.Column("val_err", sa.Float),
    sa.Column("test_err", sa.Float),
    sa.Column("test_top5_err", sa.Float),
    sa.Column("train_err", sa.Float),
    sa.Column("train_loss", sa.Float),
    sa.Column("epochs_done", sa.Integer),
    sa.Column("diverged_at", sa.JSON(none_as_null=True)),
    sa.Column("wall_time_s", sa.Float),
    sa.Column("device", sa.String(200)),
    sa.Column("env", sa.JSON, nullable=False),
    sa.Column("started_at", _Time, nullable=False),
    sa.Column("finished_at", _Time),
    sa.Column("heartbeat_at", _Time, nullable=False),
    # Schema 3: the file holding the run's final weights (absolute path; NULL: not kept).
    sa.Column("weights_path", sa.String(1000)),
    sa.UniqueConstraint(
        "experiment", "profile", "config_key", "seed", name=f"uq_{PREFIX}runs_config_seed"
    ),
    sa.CheckConstraint(
        "status IN ({})".format(", ".join(f"'{s}'" for s in RUN_STATUSES)),
        name=f"ck_{PREFIX}runs_status",
    ),
)
sa.Index(f"ix_{PREFIX}runs_experiment_profile", runs.c.experiment, runs.c.profile)

epochs = sa.Table(
    f"{PREFIX}epochs",
    metadata,
    sa.Column(
        "run_id",
        sa.Integer,
        sa.ForeignKey(runs.c.run_id, ondelete="CASCADE"),
        primary_key=True,
        autoincrement=False,
    ),
    sa.Column("epoch", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("lr", sa.Float),
    sa.Column("train_loss", sa.Float),
    sa.Column("train_err", sa.Float),
    sa.Column("val_loss", sa.Float),
    sa.Column("val_err", sa.Float),
    sa.Column("val_top5_err", sa.Float),
    sa.Column("test_loss", sa.Float),
    sa.Column("test_err", sa.Float),
    sa.Column("test_top5_err", sa.Float),
    sa.Column("epoch_time_s", sa.Float),  # training + evaluation + diagnostics
    sa.Column("train_time_s", sa.Float),  # training steps only
    sa.Column("images_per_s", sa.Float),
    sa.Column("peak_mem_mb", sa.Float),
)

diagnostics = sa.Table(
    f"{PREFIX}diagnostics",
    metadata,
    sa.Column(
        "run_id",
        sa.Integer,
        sa.ForeignKey(runs.c.run_id, ondelete="CASCADE"),
        primary_key=True,
        autoincrement=False,
    ),
    sa.Column("epoch", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("block", sa.String(100), primary_key=True),  # "stages.i.j"
    sa.Column("block_index", sa.Integer, nullable=False),  # 0 = nearest the input
    sa.Column("grad_norm", sa.Float),
    sa.Column("branch_ratio", sa.Float),  # ||F(x)|| / ||x|| of a residual block
)

TABLES = {t.name[len(PREFIX) :]: t for t in (meta, variants, runs, epochs, diagnostics)}

#: Metric columns an epoch row may carry, besides ``run_id`` and ``epoch``.
EPOCH_METRICS = tuple(c.name for c in epochs.columns if c.name not in ("run_id", "epoch"))
#: Final metrics ``finish_run`` accepts.
FINAL_METRICS = ("val_err", "test_err", "test_top5_err", "train_err", "train_loss", "epochs_done")
DIAGNOSTIC_METRICS = ("grad_norm", "branch_ratio")
#: A run's budget columns (schema 2; on the variant row in schema 1).
BUDGET_COLUMNS = ("budget_metric", "budget_target", "budget_error")
