"""Training jobs: a spawned worker process trains on the stored texts; the API then switches."""

from __future__ import annotations

import logging
import multiprocessing
import os
import queue
import shutil
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from docbits.service.errors import ApiError
from docbits.service.metrics import ServiceMetrics
from docbits.service.schemas import JobOut, JobStatus

log = logging.getLogger("docbits.service")
POLL_SECONDS = 0.2


@dataclass
class TrainingJob:
    """One job's record, updated by the monitor thread and read by the API."""

    id: str
    config: dict[str, Any]
    documents: int | None = None  # what the worker read from the store, once it has
    status: JobStatus = JobStatus.queued
    progress: dict[str, Any] = field(default_factory=dict)
    fingerprint: str | None = None
    error: str | None = None
    created_at: float = field(default_factory=time.time)
    finished_at: float | None = None

    def to_schema(self) -> JobOut:
        return JobOut(
            id=self.id,
            status=self.status,
            documents=self.documents,
            progress=dict(self.progress),
            fingerprint=self.fingerprint,
            error=self.error,
            created_at=self.created_at,
            finished_at=self.finished_at,
        )


def train_worker(
    store_url: str | None,
    data_dir: str,
    models_dir: str,
    config: dict[str, Any],
    events: multiprocessing.Queue,
) -> None:
    """Worker process body: read texts, train, save under `models/<fingerprint>`, report."""
    service_pid = os.getppid()

    def report_epoch(info: dict[str, Any]) -> None:
        """Forward progress; stop training once the service died (nobody would switch to it)."""
        if os.getppid() != service_pid:
            raise SystemExit(f"the service process {service_pid} is gone; stopping training")
        events.put({"event": "epoch", **info})

    try:
        from docbits.index.store import open_store
        from docbits.model.train import TrainConfig, train

        store = open_store(store_url, Path(data_dir))
        texts = [doc.text for batch in store.iter_documents(1000) for doc in batch]
        events.put({"event": "started", "documents": len(texts)})
        hasher = train(texts, TrainConfig(**config), progress=False, on_epoch=report_epoch)
        scratch = Path(models_dir) / f"tmp-{uuid.uuid4().hex}"
        hasher.save(scratch)
        target = Path(models_dir) / hasher.fingerprint
        if target.exists():
            shutil.rmtree(scratch)
        else:
            scratch.rename(target)
        events.put({"event": "saved", "fingerprint": hasher.fingerprint, "path": str(target)})
    except BaseException as exc:
        events.put({"event": "failed", "error": f"{type(exc).__name__}: {exc}"})


class TrainingManager:
    """Runs at most one training job at a time and hands the result to `activate`."""

    def __init__(
        self,
        store_url: str | None,
        data_dir: Path,
        models_dir: Path,
        default_config: dict[str, Any],
        activate: Callable[[Path], str],
        metrics: ServiceMetrics,
    ) -> None:
        self._store_url = store_url
        self._data_dir = data_dir
        self._models_dir = models_dir
        self._default_config = default_config
        self._activate = activate
        self._metrics = metrics
        self._jobs: dict[str, TrainingJob] = {}
        self._lock = threading.Lock()
        self._process: multiprocessing.process.BaseProcess | None = None
        self._monitor: threading.Thread | None = None
        self._stopping = threading.Event()

    def has_jobs(self) -> bool:
        return bool(self._jobs)

    def get(self, job_id: str) -> TrainingJob | None:
        return self._jobs.get(job_id)

    def latest(self) -> TrainingJob | None:
        return next(reversed(self._jobs.values()), None)

    def running_job(self) -> TrainingJob | None:
        job = self.latest()
        return job if job and job.status not in (JobStatus.succeeded, JobStatus.failed) else None

    def start(self, overrides: dict[str, Any] | None = None) -> TrainingJob:
        """Spawn the worker; 409 while another job runs."""
        with self._lock:
            running = self.running_job()
            if running is not None:
                raise ApiError(
                    409,
                    "training_in_progress",
                    f"training job {running.id} is still {running.status.value}; one job at a time",
                    {"job_id": running.id},
                )
            config = {
                **self._default_config,
                **{k: v for k, v in (overrides or {}).items() if v is not None},
            }
            job = TrainingJob(id=f"job-{uuid.uuid4().hex[:12]}", config=config)
            self._jobs[job.id] = job
            events = multiprocessing.get_context("spawn").Queue()
            process = multiprocessing.get_context("spawn").Process(
                target=train_worker,
                args=(self._store_url, str(self._data_dir), str(self._models_dir), config, events),
                name=f"docbits-train-{job.id}",
                daemon=True,
            )
            process.start()
            self._process = process
            self._metrics.training_running.set(1)
            self._monitor = threading.Thread(
                target=self._follow, args=(job, process, events), name="docbits-train-monitor"
            )
            self._monitor.daemon = True
            self._monitor.start()
            log.info("training job %s started: %s", job.id, config)
            return job

    def _follow(
        self, job: TrainingJob, process: multiprocessing.process.BaseProcess, events: Any
    ) -> None:
        """Monitor thread: apply the worker's events to the job; switch models when saved.

        The terminal status is published last, so a client that sees it also sees the metrics
        and `finished_at` of the job.
        """
        final = JobStatus.failed
        try:
            saved_at, job.error = self._read_events(job, process, events)
            if saved_at is not None:
                job.status = JobStatus.switching
                job.fingerprint = self._activate(Path(saved_at))
                final = JobStatus.succeeded
        except Exception as exc:
            log.exception("training job %s failed while switching", job.id)
            job.error = f"{type(exc).__name__}: {exc}"
        finally:
            process.join(timeout=5)
            job.finished_at = time.time()
            self._metrics.training_running.set(0)
            self._metrics.training_jobs.labels(final.value).inc()
            job.status = final
            log.info("training job %s %s", job.id, final.value)

    def _read_events(
        self, job: TrainingJob, process: multiprocessing.process.BaseProcess, events: Any
    ) -> tuple[str | None, str | None]:
        """(saved model path, None) once saved, or (None, why it failed)."""
        while not self._stopping.is_set():
            try:
                event = events.get(timeout=POLL_SECONDS)
            except queue.Empty:
                if not process.is_alive():
                    return None, f"worker exited with code {process.exitcode} before saving"
                continue
            kind = event.pop("event")
            if kind == "started":
                job.documents = int(event["documents"])
                job.status = JobStatus.training
            elif kind == "epoch":
                job.progress = event
            elif kind == "saved":
                return str(event["path"]), None
            elif kind == "failed":
                return None, str(event["error"])
        return None, "service shut down during training"

    def shutdown(self) -> None:
        """Stop a running worker (used at service shutdown)."""
        self._stopping.set()
        process = self._process
        if process is not None and process.is_alive():
            process.terminate()
            process.join(timeout=5)
        if self._monitor is not None:
            self._monitor.join(timeout=10)
