"""MLflow tracking: one run per (model, codec, configuration, QP).

The embedded default store is a sqlite file under ``results/`` (``results/mlflow.db``,
artifacts in ``results/mlartifacts``); ``MLFLOW_TRACKING_URI`` overrides it, for
example with an ``mlflow server`` on a login node when many cluster nodes train
at once (one sqlite file must not be shared across a network file system).

Jobs that start together on one machine share the sqlite file safely: every
write goes through an inter-process file lock beside the database, and
metrics are sent in batches, not one call per step.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path
from typing import Iterator

from filelock import FileLock

from .. import paths
from ..errors import InloopError

DEFAULT_STORE = Path(paths.MLFLOW_DB)


def tracking_uri(results_dir: str | os.PathLike = paths.RESULTS) -> str:
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    return f"sqlite:///{(Path(results_dir) / 'mlflow.db').resolve()}"


# MLflow's HTTP client retries a silent server for minutes by default (7 retries with backoff: a training job
# printed nothing for 200 s). Bounded here unless the user set them.
HTTP_LIMITS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
               "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}
SERVER_CHECK_TIMEOUT_S = 5.0


def check_server(uri: str, timeout: float = SERVER_CHECK_TIMEOUT_S) -> None:
    """An ``mlflow server`` must answer its ``/health`` within ``timeout`` seconds before a job relies on it;
    else one line naming the URI and what to do. Sets MLflow's HTTP retries and timeout to bounded values
    (:data:`HTTP_LIMITS`) where the environment does not set them."""
    import requests

    for k, v in HTTP_LIMITS.items():
        os.environ.setdefault(k, v)
    try:
        requests.get(uri.rstrip("/") + "/health", timeout=timeout)
    except requests.RequestException as exc:
        raise InloopError(f"MLflow server {uri} does not answer ({type(exc).__name__} within {timeout:g} s): start "
                          "it, fix MLFLOW_TRACKING_URI, or unset it to use the local store") from None


def git_commit(repo: str | os.PathLike = ".") -> str:
    """``<sha>`` or ``<sha>-dirty``; ``unknown`` outside a git checkout."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True,
                             check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
                               capture_output=True, text=True).stdout.strip()
        return f"{sha}-dirty" if dirty else sha
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


class Tracker:
    """A thin, lock-protected wrapper of one MLflow run.

    ``Tracker(enabled=False)`` records nothing (unit tests, dry runs).
    ``resume_run_id`` continues a run after an interrupted job.
    """

    def __init__(self, experiment: str, run_name: str, uri: str | None = None, enabled: bool = True,
                 resume_run_id: str | None = None, artifact_root: str | os.PathLike | None = None,
                 key: str | None = None):
        self.enabled = enabled
        self.run_id: str | None = None
        self.resumed_elsewhere: str | None = None  # a checkpoint's run id this store does not know
        self._pending: list = []
        if not enabled:
            return
        self.uri = uri or tracking_uri()
        self._lock = self._make_lock(self.uri)
        if self.uri.startswith(("http://", "https://")):
            check_server(self.uri)
        try:
            self._open(experiment, run_name, resume_run_id, artifact_root, key)
        except InloopError:
            raise
        except Exception as exc:  # noqa: BLE001 - a damaged store (a truncated mlflow.db) or an unreachable server
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise InloopError(f"MLflow store {self.uri}: {type(exc).__name__}: {first}; repair or move it away, or "
                              "point MLFLOW_TRACKING_URI at another store") from None

    def _open(self, experiment: str, run_name: str, resume_run_id: str | None, artifact_root, key: str | None):
        """The experiment and this job's run: the checkpoint's run when resuming, else a new one. ``key``
        names the computation (the checkpoint): runs of it that a killed job left RUNNING are marked KILLED."""
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient

        with self._locked():
            self.client = MlflowClient(tracking_uri=self.uri)
            exp = self.client.get_experiment_by_name(experiment)
            if exp is None:
                location = None
                if self.uri.startswith("sqlite:///"):
                    root = Path(artifact_root) if artifact_root else Path(self.uri[len("sqlite:///"):]).parent / "mlartifacts"
                    location = root.resolve().as_uri()
                try:
                    exp_id = self.client.create_experiment(experiment, artifact_location=location)
                except MlflowException:
                    # Another job created it first: a tracking server has no lock shared by the jobs.
                    exp = self.client.get_experiment_by_name(experiment)
                    if exp is None:
                        raise
                    exp_id = exp.experiment_id
            else:
                exp_id = exp.experiment_id
            if resume_run_id:
                try:
                    self.client.update_run(resume_run_id, status="RUNNING")
                    self.run_id = resume_run_id
                except MlflowException as exc:
                    # The checkpoint's run is in another store (MLFLOW_TRACKING_URI changed since) or gone.
                    import warnings

                    warnings.warn(f"MLflow run {resume_run_id} of the checkpoint is not in {self.uri} "
                                  f"({exc.error_code}): the resumed training is tracked in a new run",
                                  RuntimeWarning, stacklevel=2)
                    self.resumed_elsewhere = resume_run_id
            if self.run_id is None:
                self.run_id = self.client.create_run(exp_id, run_name=run_name,
                                                     tags={"inloop_run_key": key} if key else None).info.run_id
            if key:
                stale = self.client.search_runs(
                    [exp_id], filter_string=f"tags.inloop_run_key = '{key}' and attributes.status = 'RUNNING'")
                for r in stale:
                    if r.info.run_id != self.run_id:
                        self.client.set_tag(r.info.run_id, "inloop_superseded_by", self.run_id)
                        self.client.set_terminated(r.info.run_id, status="KILLED")

    @staticmethod
    def _make_lock(uri: str) -> FileLock | None:
        if uri.startswith("sqlite:///"):
            db = Path(uri[len("sqlite:///"):])
            db.parent.mkdir(parents=True, exist_ok=True)
            return FileLock(str(db) + ".lock", timeout=600)
        return None

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        if self._lock is None:
            yield
        else:
            with self._lock:
                yield

    def log_params(self, params: dict) -> None:
        if not self.enabled:
            return
        from mlflow.entities import Param

        flat = _flatten(params)
        items = [Param(k, str(v)[:6000]) for k, v in flat.items()]
        with self._locked():
            for i in range(0, len(items), 100):
                self.client.log_batch(self.run_id, params=items[i : i + 100])

    def set_tags(self, tags: dict) -> None:
        if not self.enabled:
            return
        with self._locked():
            for k, v in tags.items():
                self.client.set_tag(self.run_id, k, str(v))

    def log_metrics(self, metrics: dict[str, float], step: int, flush: bool = False) -> None:
        if not self.enabled:
            return
        import time

        from mlflow.entities import Metric

        ts = int(time.time() * 1000)
        self._pending += [Metric(k, float(v), ts, step) for k, v in metrics.items()]
        if flush or len(self._pending) >= 200:
            self.flush()

    def flush(self) -> None:
        if not self.enabled or not self._pending:
            return
        with self._locked():
            for i in range(0, len(self._pending), 1000):
                self.client.log_batch(self.run_id, metrics=self._pending[i : i + 1000])
        self._pending = []

    def log_artifact(self, path: str | os.PathLike, artifact_path: str | None = None) -> None:
        if not self.enabled:
            return
        with self._locked():
            self.client.log_artifact(self.run_id, str(path), artifact_path)

    def finish(self, status: str = "FINISHED") -> None:
        if not self.enabled:
            return
        self.flush()
        with self._locked():
            self.client.set_terminated(self.run_id, status=status)


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out
