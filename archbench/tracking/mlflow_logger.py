"""``--log mlflow:URI``: one MLflow run per archbench run, through ``MlflowClient``.

``URI`` is an MLflow tracking URI: ``sqlite:///mlflow.db`` (MLflow's recommended local
store), ``http://host:5000`` (a tracking server), or ``file:///path/mlruns`` (MLflow >= 3.7
accepts its file store only with ``MLFLOW_ALLOW_FILE_STORE=true`` set). The MLflow experiment
is the archbench experiment's name (``archbench-train`` for ``archbench train``); each run is
named like ``run12_resnet8_seed0`` and carries:

- params: the flattened config (``recipe.lr``, ``hyperparameters.config``, ``label``, ...);
- tags: ``archbench.run_key`` (experiment:profile:config_key:seed), ``archbench.status``,
  ``archbench.run_id`` where the run is stored;
- metrics: each epoch's metrics at step = epoch, then ``final/<name>`` at the last epoch.

A run resumed from its checkpoint continues the MLflow run of its earlier attempt (found by
``archbench.run_key``). Only the client is used (no ``mlflow.start_run``): no global active
run, so processes and threads never mix their runs up.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from archbench.tracking.base import ExperimentLogger, flatten, run_name, scalar

MAX_PARAMS_PER_BATCH = 100  # MLflow's limit for one log_batch
MAX_PARAM_CHARS = 6000
#: archbench status -> MLflow run status.
STATUSES = {"completed": "FINISHED", "diverged": "FINISHED", "pruned": "KILLED"}


class MLflowLogger(ExperimentLogger):
    """MLflow runs (mlflow or mlflow-skinny's ``MlflowClient``)."""

    modules = ("mlflow",)
    install = "pip install 'archbench[mlflow]'"

    def __init__(self, target: str) -> None:
        super().__init__(target)
        self._client: Any = None
        self.run_id: str | None = None
        self._experiments: dict[str, str] = {}

    @property
    def client(self) -> Any:
        if self._client is None:
            from mlflow.tracking import MlflowClient

            self._client = MlflowClient(tracking_uri=self.target)
        return self._client

    def open(self) -> None:
        self.client.search_experiments(max_results=1)  # builds the store: a bad URI fails here

    def _experiment_id(self, name: str) -> str:
        if name not in self._experiments:
            found = self.client.get_experiment_by_name(name)
            if found is None:
                try:
                    self._experiments[name] = self.client.create_experiment(name)
                except Exception:  # another worker created it meanwhile
                    found = self.client.get_experiment_by_name(name)
                    if found is None:
                        raise
                    self._experiments[name] = found.experiment_id
            else:
                self._experiments[name] = found.experiment_id
        return self._experiments[name]

    def start_run(self, config: Mapping[str, Any]) -> None:
        from mlflow.entities import Param, RunTag

        client = self.client
        self.run_id = None
        experiment = self._experiment_id(str(config.get("experiment") or "archbench-train"))
        key = config.get("run_key")
        resumed = int(config.get("resumed_after_epoch") or 0)
        if key and resumed:
            earlier = client.search_runs(
                [experiment],
                filter_string=f"tags.`archbench.run_key` = '{_quoted(str(key))}'",
                max_results=1,
                order_by=["attributes.start_time DESC"],
            )
            if earlier:
                self.run_id = earlier[0].info.run_id
                client.update_run(self.run_id, status="RUNNING")
                client.set_tag(self.run_id, "archbench.resumed_after_epoch", str(resumed))
                return
        tags = {"archbench.status": "running"}
        if key:
            tags["archbench.run_key"] = str(key)
        if config.get("run_id") is not None:
            tags["archbench.run_id"] = str(config["run_id"])
        run = client.create_run(experiment, run_name=run_name(config), tags=tags)
        self.run_id = run.info.run_id
        params = [
            Param(name[:250], str(scalar(value))[:MAX_PARAM_CHARS])
            for name, value in sorted(flatten(config).items())
        ]
        for i in range(0, len(params), MAX_PARAMS_PER_BATCH):
            client.log_batch(self.run_id, params=params[i : i + MAX_PARAMS_PER_BATCH])
        client.log_batch(self.run_id, tags=[RunTag("archbench.config_key", str(key or ""))])

    def log_epoch(self, metrics: Mapping[str, float], step: int) -> None:
        from mlflow.entities import Metric

        if self.run_id is None:
            return
        now = int(time.time() * 1000)
        batch = [Metric(name, float(value), now, step) for name, value in metrics.items()]
        self.client.log_batch(self.run_id, metrics=batch)

    def finish_run(self, final: Mapping[str, Any]) -> None:
        from mlflow.entities import Metric, RunTag

        if self.run_id is None:
            return
        run_id, self.run_id = self.run_id, None
        status = str(final.get("status"))
        step = int(final.get("epochs_done") or 0)
        now = int(time.time() * 1000)
        metrics = [
            Metric(f"final/{k}", float(v), now, step)
            for k, v in final.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)
        ]
        tags = [RunTag("archbench.status", status)]
        if final.get("error"):
            tags.append(RunTag("archbench.error", str(final["error"])[:5000]))
        self.client.log_batch(run_id, metrics=metrics, tags=tags)
        self.client.set_terminated(run_id, status=STATUSES.get(status, "FAILED"))


def _quoted(text: str) -> str:
    return text.replace("\\", "\\\\").replace("'", "\\'")
