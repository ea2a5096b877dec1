"""Training jobs, one at a time cluster-wide: a row in the store, leased to the process running it.

`start` claims the job in the store (409 while any process holds a live lease), spawns a worker
process that trains on the stored texts and stores the model in the store, and a monitor thread
that renews the lease with the worker's progress (so any process answers `GET
/v1/model/jobs/{id}` from the store), then switches every process to the new model. A process
that dies stops renewing: its job fails once the lease lapses, and a new one can start anywhere.
The worker stores nothing once its service process is gone or its lease is lost.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import queue
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from docbits.index.store import DocumentStore, JobRunningError, ModelArtifact, StoreError
from docbits.index.store import TrainingJob as StoredJob
from docbits.index.store.base import FAILED, RUNNING, SUCCEEDED
from docbits.service.errors import ApiError
from docbits.service.metrics import ServiceMetrics
from docbits.service.schemas import JobOut, JobStatus

log = logging.getLogger("docbits.service")
POLL_SECONDS = 0.2
SWITCHING = "switching"  # the `phase` in a running job's progress once its model is stored


def job_out(job: StoredJob) -> JobOut:
    """A stored job as the API shows it: a running job is queued until its worker has read the
    documents, then training, then switching."""
    if job.status == RUNNING:
        if job.progress.get("phase") == SWITCHING:
            status = JobStatus.switching
        else:
            status = JobStatus.queued if job.documents is None else JobStatus.training
    else:
        status = JobStatus(job.status)
    return JobOut(
        id=job.id,
        status=status,
        documents=job.documents,
        progress=job.progress,
        fingerprint=job.fingerprint,
        error=job.error,
        created_at=job.created_at,
        finished_at=job.finished_at,
    )


def train_worker(
    store_url: str | None,
    data_dir: str,
    config: dict[str, Any],
    job_id: str,
    owner: str,
    events: multiprocessing.Queue,
) -> None:
    """Worker process body: read texts, train, store the model in the store, report.

    It stops as soon as its service process is gone, and stores nothing unless the service is
    alive and still holds the job's lease, so no model appears that nobody will switch to.
    """
    service_pid = os.getppid()

    def check_service() -> None:
        if os.getppid() != service_pid:
            raise SystemExit(f"the service process {service_pid} is gone; stopping training")

    def report_epoch(info: dict[str, Any]) -> None:
        check_service()
        events.put({"event": "epoch", **info})

    try:
        from docbits.index.store import open_store
        from docbits.model.train import TrainConfig, train

        store = open_store(store_url, Path(data_dir))
        texts = [doc.text for batch in store.iter_documents(1000) for doc in batch]
        events.put({"event": "started", "documents": len(texts)})
        hasher = train(texts, TrainConfig(**config), progress=False, on_epoch=report_epoch)
        check_service()
        job = store.get_training_job(job_id)
        if job is None or job.status != RUNNING or job.owner != owner:
            raise SystemExit(f"job {job_id} is no longer leased to this service; not storing")
        with tempfile.TemporaryDirectory(prefix="docbits-trained-") as scratch:
            hasher.save(Path(scratch))
            artifact = ModelArtifact.from_directory(Path(scratch))
        store.put_model(artifact)
        events.put({"event": "stored", "fingerprint": artifact.fingerprint})
    except BaseException as exc:
        events.put({"event": "failed", "error": f"{type(exc).__name__}: {exc}"})


class Lease:
    """Keeps a job's lease alive from a thread, carrying the latest progress to the store."""

    def __init__(self, store: DocumentStore, job_id: str, owner: str, lease_s: float) -> None:
        self.store, self.job_id, self.owner, self.lease_s = store, job_id, owner, lease_s
        self.progress: dict[str, Any] = {}
        self.documents: int | None = None
        self.lost = threading.Event()
        self._renewed_at = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="docbits-lease", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def renew(self) -> bool:
        """Renew now; False once the lease is lost (refused, or unrenewable past its term)."""
        try:
            held = self.store.renew_training_job(
                self.job_id, self.owner, self.lease_s, dict(self.progress), self.documents
            )
        except StoreError as error:  # the store is away: the lease lasts until its term
            log.warning("cannot renew the lease of training job %s: %s", self.job_id, error)
            held = time.monotonic() - self._renewed_at < self.lease_s
        else:
            self._renewed_at = time.monotonic()
        if not held:
            self.lost.set()
        return held

    def _run(self) -> None:
        while not self._stop.wait(self.lease_s / 3) and self.renew():
            pass


class TrainingManager:
    """Starts training jobs through the store's lease and hands the model to `activate`."""

    def __init__(
        self,
        store: Callable[[], DocumentStore],
        owner: str,
        store_url: str | None,
        data_dir: Path,
        default_config: dict[str, Any],
        lease_s: float,
        activate: Callable[[str], None],
        metrics: ServiceMetrics,
    ) -> None:
        self._store = store
        self._owner = owner
        self._store_url = store_url
        self._data_dir = data_dir
        self._default_config = default_config
        self._lease_s = lease_s
        self._activate = activate
        self._metrics = metrics
        self._latest: str | None = None  # the last job this process started
        self._process: multiprocessing.process.BaseProcess | None = None
        self._monitor: threading.Thread | None = None
        self._stopping = threading.Event()

    def get(self, job_id: str) -> JobOut | None:
        """A job from the store (any process's); a running one is failed first if its lease
        lapsed (the store's clock decides)."""
        store = self._store()
        job = store.get_training_job(job_id)
        if job is not None and job.status == RUNNING and store.expire_training_jobs():
            job = store.get_training_job(job_id)
        return job_out(job) if job else None

    def latest(self) -> JobOut | None:
        """The job running anywhere, else the last one this process started."""
        running = self._store().running_training_job()
        job_id = running.id if running is not None else self._latest
        return self.get(job_id) if job_id else None

    def start(self, overrides: dict[str, Any] | None = None) -> JobOut:
        """Claim a job in the store and spawn its worker; 409 while a job runs anywhere."""
        config = {
            **self._default_config,
            **{k: v for k, v in (overrides or {}).items() if v is not None},
        }
        job_id = f"job-{uuid.uuid4().hex[:12]}"
        try:
            job = self._store().claim_training_job(job_id, config, self._owner, self._lease_s)
        except JobRunningError as exc:
            running = exc.job
            raise ApiError(
                409,
                "training_in_progress",
                f"training job {running.id if running else '?'} is still running (on "
                f"{running.owner if running else 'another process'}); one job at a time",
                {"job_id": running.id if running else None},
            ) from None
        self._latest = job.id
        context = multiprocessing.get_context("spawn")
        events = context.Queue()
        process = context.Process(
            target=train_worker,
            args=(self._store_url, str(self._data_dir), config, job.id, self._owner, events),
            name=f"docbits-train-{job.id}",
            daemon=True,
        )
        process.start()
        self._process = process
        self._metrics.training_running.set(1)
        lease = Lease(self._store(), job.id, self._owner, self._lease_s)
        lease.start()
        self._monitor = threading.Thread(
            target=self._follow,
            args=(job.id, process, events, lease),
            name="docbits-train-monitor",
            daemon=True,
        )
        self._monitor.start()
        log.info("training job %s started: %s", job.id, config)
        return job_out(job)

    def _follow(
        self,
        job_id: str,
        process: multiprocessing.process.BaseProcess,
        events: Any,
        lease: Lease,
    ) -> None:
        """Monitor thread: carry the worker's events to the lease; switch once it stored the
        model and the lease still holds; record the outcome in the store."""
        fingerprint, error = None, None
        try:
            fingerprint, error = self._read_events(process, events, lease)
            if fingerprint is not None:
                lease.progress = {**lease.progress, "phase": SWITCHING}
                if not lease.renew():
                    fingerprint, error = None, "the job's lease was lost before the switch"
                else:
                    self._activate(fingerprint)
        except Exception as exc:
            log.exception("training job %s failed while switching", job_id)
            fingerprint, error = None, f"{type(exc).__name__}: {exc}"
        finally:
            lease.stop()
            if process.is_alive():
                process.terminate()
            process.join(timeout=5)
            final = SUCCEEDED if fingerprint is not None else FAILED
            self._finish(job_id, final, fingerprint, error)
            self._metrics.training_running.set(0)
            self._metrics.training_jobs.labels(final).inc()
            log.info("training job %s %s%s", job_id, final, f": {error}" if error else "")

    def _finish(self, job_id: str, status: str, fingerprint: str | None, error: str | None) -> None:
        try:
            if not self._store().finish_training_job(
                job_id, self._owner, status, fingerprint=fingerprint, error=error
            ):
                log.warning("training job %s was no longer ours to finish", job_id)
        except StoreError as exc:  # its lease lapses: the job reads as failed then
            log.error("cannot record the end of training job %s: %s", job_id, exc)

    def _read_events(
        self, process: multiprocessing.process.BaseProcess, events: Any, lease: Lease
    ) -> tuple[str | None, str | None]:
        """(stored model's fingerprint, None), or (None, why the job failed)."""
        while not self._stopping.is_set():
            if lease.lost.is_set():
                return None, "the job's lease was lost (the store was unreachable for too long)"
            try:
                event = events.get(timeout=POLL_SECONDS)
            except queue.Empty:
                if not process.is_alive():
                    return None, f"worker exited with code {process.exitcode} before storing"
                continue
            kind = event.pop("event")
            if kind == "started":
                lease.documents = int(event["documents"])
                lease.renew()
            elif kind == "epoch":
                lease.progress = event
                lease.renew()
            elif kind == "stored":
                return str(event["fingerprint"]), None
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
