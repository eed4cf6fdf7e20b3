"""How (not what) a study is run: :class:`RunnerOptions`, the command line's runner flags.

Kept apart from :mod:`archbench.runner.study` because nearly every runner module (storage,
objective, worker, heartbeat, run sharing) takes these options while needing nothing else of
the study's setup; :mod:`archbench.runner.study` re-exports the class, its home before.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RunnerOptions:
    """How (not what) to run, so not in the spec. Only ``threads`` and ``device`` can change
    results, in their last bits (reduction order); both are recorded with every run."""

    storage: str | None = None  # overrides the spec's storage
    results_dir: str | None = None  # checkpoints; default: beside a SQLite file, else results/
    device: str = "auto"
    heartbeat_interval: int = 30  # seconds; a worker silent for grace_period is stale
    grace_period: int = 90
    max_retry: int = 3
    keep_checkpoints: bool = False
    progress: bool | None = None  # None: progress bars on a terminal only
    threads: int | None = None  # torch CPU threads per worker; None: worker.DEFAULT_THREADS
    fuse_seeds: bool = False  # train a trial's seeds as one vectorised model (runner/fused_trial)
    # Which worker this is: 0 samples with the spec's seed, others with one derived from it
    # (run --workers N numbers them 0..N-1; a joining `archbench worker` uses its WORKER_ID).
    worker: int | str = 0
    # Experiment trackers, "KIND:TARGET" each (--log; archbench.tracking): each worker
    # process logs its own runs to every one of them.
    loggers: tuple[str, ...] = ()
    # Keep each completed run's final weights under results_dir/weights (--keep-weights);
    # the path is stored with the run (`archbench eval` reloads it).
    keep_weights: bool = False
    # Seconds a worker rides out a database outage (a PostgreSQL restart) before it gives up
    # (exit code 3); archbench.store.reconnect.
    db_grace: float = 180.0
