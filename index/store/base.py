"""The `DocumentStore` interface: durable documents, their codes, settings, a change feed, model
artifacts and training-job leases.

Backends (SQLite embedded, PostgreSQL shared) implement it; nothing here is backend-specific
except the validation both share. Every write method is one transaction: all of it is durable
when the call returns, or none of it. Every write that changes documents, codes or the active
model appends to the change feed and returns the feed's sequence number after it (see
`changes_since`), so a process can follow everyone else's writes and a client can wait for its own.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from docbits.index.forms import pack_forms

if TYPE_CHECKING:
    from docbits.index.hash_index import HashIndex

ACTIVE_MODEL_SETTING = "active_model"

# Kinds of change in the feed.
UPSERT = "upsert"  # a document's code (or lack of one) is now `code`/`fingerprint`/`form`
DELETE = "delete"  # the document is gone
MODEL = "model"  # `fingerprint` became the active model: rebuild from iter_codes(fingerprint)
CHANGE_KINDS = (UPSERT, DELETE, MODEL)

# Training-job states: one job at most is RUNNING in a store at any time.
RUNNING, SUCCEEDED, FAILED = "running", "succeeded", "failed"

# The three files of a model directory (see docbits.model.hasher), stored together by fingerprint.
MODEL_CONFIG_FILE, MODEL_VOCAB_FILE, MODEL_WEIGHTS_FILE = (
    "config.json",
    "vocab.json",
    "model.safetensors",
)


@dataclass
class StoredDocument:
    """One document as stored; `code` is None until a model has encoded it. `form` (written
    with the code; the index holds it, `iter_codes` and the feed carry it) is the model's int8
    rescoring form."""

    id: str
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)
    code: bytes | None = None
    fingerprint: str | None = None
    form: bytes | None = None
    created_at: float = 0.0
    updated_at: float = 0.0


@dataclass(frozen=True)
class Change:
    """One entry of the change feed: what a follower needs to apply a write to its index.

    `upsert`: document `id` now has `code` and int8 rescoring `form` made by `fingerprint`
    (all None: no code; `form` None: written without one). `delete`: document `id` is gone.
    `model`: `fingerprint` is the active model from here on (`id` and `code` are None).
    `written_at` is the writer's transaction time (epoch seconds).
    """

    seq: int
    kind: str
    id: str | None
    code: bytes | None
    fingerprint: str | None
    written_at: float
    form: bytes | None = None


class Deleted(NamedTuple):
    """What `delete` did: the ids that existed (in the order asked) and the feed position."""

    ids: list[str]
    seq: int


@dataclass(frozen=True)
class ModelArtifact:
    """A trained model's three files, so a process with no shared disk can load it."""

    fingerprint: str
    config: str
    vocab: str
    weights: bytes

    def check(self) -> None:
        """Raise ValueError unless the weights' sha256 is the fingerprint (as Hasher defines it)."""
        if not all(isinstance(text, str) for text in (self.fingerprint, self.config, self.vocab)):
            raise ValueError("a model artifact's fingerprint, config and vocab must be strings")
        if not isinstance(self.weights, bytes):
            raise ValueError("a model artifact's weights must be bytes")
        digest = hashlib.sha256(self.weights).hexdigest()
        if digest != self.fingerprint:
            raise ValueError(
                f"model weights have sha256 {digest[:12]}, not the fingerprint "
                f"{self.fingerprint[:12]}"
            )

    @classmethod
    def from_directory(cls, directory: Path) -> ModelArtifact:
        """Read a directory written by `Hasher.save`; the fingerprint is the weights' sha256."""
        directory = Path(directory)
        weights = (directory / MODEL_WEIGHTS_FILE).read_bytes()
        return cls(
            fingerprint=hashlib.sha256(weights).hexdigest(),
            config=(directory / MODEL_CONFIG_FILE).read_text("utf-8"),
            vocab=(directory / MODEL_VOCAB_FILE).read_text("utf-8"),
            weights=weights,
        )

    def write_to(self, directory: Path) -> Path:
        """Write the three files into `directory` (created if missing) for `Hasher.load`."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / MODEL_WEIGHTS_FILE).write_bytes(self.weights)
        (directory / MODEL_VOCAB_FILE).write_text(self.vocab, "utf-8")
        (directory / MODEL_CONFIG_FILE).write_text(self.config, "utf-8")
        return directory


@dataclass
class TrainingJob:
    """One training job; `owner` holds it while `lease_expires_at` (epoch seconds) is ahead."""

    id: str
    config: dict[str, Any]
    status: str
    progress: dict[str, Any]
    documents: int | None
    fingerprint: str | None
    error: str | None
    owner: str
    lease_expires_at: float
    created_at: float
    finished_at: float | None


@dataclass
class IntegrityReport:
    """How the store and the in-memory index agree for one model fingerprint."""

    ok: bool
    documents: int
    indexed: int
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)
    storage_errors: list[str] = field(default_factory=list)


class StoreError(Exception):
    """Any failure of the document store."""


class DuplicateIdError(StoreError):
    """An insert-only write named ids that already exist; nothing was written."""

    def __init__(self, ids: Sequence[str]) -> None:
        self.ids = sorted(set(ids))
        shown = ", ".join(self.ids[:10]) + (" ..." if len(self.ids) > 10 else "")
        super().__init__(f"{len(self.ids)} document id(s) already exist: {shown}")


class StoreUnavailableError(StoreError):
    """The store cannot serve right now (disk full, read-only, locked, unreachable): retry later."""


class StoreFullError(StoreUnavailableError):
    """The store's disk is full: writes fail until space is freed (reads still work)."""


class ModelChangedError(StoreError):
    """A write checked against the active model found another one; nothing was written."""

    def __init__(self, written: str | None, active: str | None) -> None:
        self.written, self.active = written, active
        super().__init__(
            f"codes of model {_short(written)} cannot be written: the active model is now "
            f"{_short(active)}; encode with it and retry"
        )


class FeedMovedError(StoreError):
    """A write made on condition that the feed had not moved found newer changes; nothing was
    written."""

    def __init__(self, expected: int, actual: int) -> None:
        self.expected, self.actual = expected, actual
        super().__init__(f"the feed moved from {expected} to {actual}; nothing was written")


class FeedGapError(StoreError):
    """The feed cannot continue from a position: compacted past it, or the store was restored
    to an earlier state. The follower must reload its index from the store."""


class JobRunningError(StoreError):
    """A training job already holds an unexpired lease; no new job was created."""

    def __init__(self, job: TrainingJob | None) -> None:
        self.job = job
        who = f"job {job.id} (owner {job.owner})" if job else "another job"
        super().__init__(f"a training job is already running: {who}")


def _short(fingerprint: str | None) -> str:
    return "none" if fingerprint is None else fingerprint[:12]


class ChangeListener(ABC):
    """Wakes a follower when the feed may have grown. Create it before reading the feed's
    position, and read `changes_since` after every `wait` whatever it returned: a wake-up can
    be missed or spurious, the feed never is."""

    @abstractmethod
    def wait(self, timeout_s: float) -> bool:
        """Block until the feed may have grown (True) or `timeout_s` passed (False)."""

    @abstractmethod
    def close(self) -> None:
        """Stop listening."""

    def __enter__(self) -> ChangeListener:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class PollingChangeListener(ChangeListener):
    """A listener that polls `store.last_seq()` (the embedded backend has nothing to push)."""

    def __init__(self, store: DocumentStore, interval_s: float = 0.02) -> None:
        self._store = store
        self._interval_s = interval_s
        self._seen = store.last_seq()

    def wait(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while True:
            last = self._store.last_seq()
            if last != self._seen:
                self._seen = last
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            time.sleep(min(self._interval_s, remaining))

    def close(self) -> None:
        pass


class DocumentStore(ABC):
    """Durable documents and codes; safe to call from several threads, writes serialised.

    The change feed: each document changed by a write gets its own sequence number (a `model`
    change one for the whole switch). Numbers are dense (1, 2, 3, ... with no holes) and their
    order is commit order: a reader that has seen number N has seen every change below N, and
    no change below N can appear later. A write returns the feed's position after it.
    """

    # ---- documents --------------------------------------------------------------------------
    @abstractmethod
    def upsert(
        self,
        docs: Sequence[StoredDocument],
        insert_only: bool = False,
        *,
        check_model: bool = False,
    ) -> int:
        """Write documents atomically; existing ids keep created_at and get a new updated_at.

        With `insert_only`, raise DuplicateIdError (writing nothing) if any id already exists or
        repeats within the batch; otherwise a repeated id keeps its first position and its last
        content. Timestamps are set by the store. With `check_model`, raise ModelChangedError
        (writing nothing) unless every document's fingerprint is the active model's (None when
        no model is active), checked atomically with the write. Returns the feed position.
        """

    @abstractmethod
    def get(self, doc_id: str) -> StoredDocument | None:
        """One document, or None."""

    @abstractmethod
    def get_many(self, ids: Sequence[str]) -> dict[str, StoredDocument]:
        """The documents that exist among `ids`, keyed by id."""

    def get_metadata(self, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The metadata of the documents that exist among `ids`, keyed by id."""
        return {doc_id: doc.metadata for doc_id, doc in self.get_many(ids).items()}

    @abstractmethod
    def delete(self, ids: Sequence[str]) -> Deleted:
        """Delete atomically; returns the ids that existed (in the order given) and the position."""

    @abstractmethod
    def count(self) -> int:
        """Number of documents."""

    @abstractmethod
    def existing_ids(self, ids: Sequence[str]) -> set[str]:
        """The subset of `ids` that exist."""

    @abstractmethod
    def iter_documents(self, batch_size: int = 1000) -> Iterator[list[StoredDocument]]:
        """Every document, in insertion order, `batch_size` at a time."""

    # ---- codes and models -------------------------------------------------------------------
    @abstractmethod
    def iter_codes(
        self, fingerprint: str, batch_size: int = 100_000
    ) -> Iterator[tuple[list[str], np.ndarray, np.ndarray]]:
        """(ids, (n, b/8) uint8 codes, (n, b) int8 rescoring forms, zeros where a document has
        none) of documents coded by `fingerprint`, in insertion order."""

    @abstractmethod
    def ids_without_code(self, fingerprint: str, *, form: bool = False) -> list[str]:
        """Ids whose code is missing or was made by another model (with `form`, also those
        with no rescoring form), in insertion order."""

    @abstractmethod
    def set_codes(
        self,
        ids: Sequence[str],
        codes: np.ndarray,
        fingerprint: str,
        *,
        check_model: bool = False,
        forms: np.ndarray | None = None,
    ) -> int:
        """Store codes (and rescoring forms, an int8 (n, bits) array) for existing documents
        atomically (unknown ids raise StoreError); with `check_model`, only if `fingerprint` is
        the active model. Returns the feed position."""

    @abstractmethod
    def switch_model(
        self,
        fingerprint: str,
        ids: Sequence[str],
        codes: np.ndarray,
        forms: np.ndarray | None = None,
        *,
        expect_seq: int | None = None,
    ) -> int:
        """In one transaction, store these codes (and forms) and make `fingerprint` the active
        model.

        The feed gets one `model` change (not one per code): a follower rebuilds its index from
        `iter_codes(fingerprint)` when it reaches it. With `expect_seq`, raise FeedMovedError
        (writing nothing) unless the feed is still at that position when the write takes its
        turn, so codes computed from the store as of `expect_seq` cover every document.
        Returns the feed position.
        """

    # ---- change feed ------------------------------------------------------------------------
    @abstractmethod
    def last_seq(self) -> int:
        """The feed's position: the sequence number of the newest committed change (0: none).

        A follower starting cold reads this first, then the active model, then the codes, and
        follows from here (reading the model first could miss a switch in between).
        """

    @abstractmethod
    def changes_since(self, seq: int, limit: int = 10_000) -> list[Change]:
        """Up to `limit` changes after `seq`, in sequence (= commit) order, contiguous.

        Raises FeedGapError when changes after `seq` were compacted away or `seq` is beyond the
        feed (the store was restored): the follower must reload from the store.
        """

    @abstractmethod
    def compact_feed(self, before_seq: int) -> int:
        """Drop changes numbered below `before_seq` (at most up to the newest); returns how many.

        Followers further behind get FeedGapError and reload; the documents are untouched.
        """

    def change_listener(self) -> ChangeListener:
        """A listener that wakes when the feed may have grown (polls unless the backend pushes)."""
        return PollingChangeListener(self)

    # ---- settings ---------------------------------------------------------------------------
    @abstractmethod
    def get_setting(self, key: str) -> str | None:
        """A stored setting, or None."""

    @abstractmethod
    def set_setting(self, key: str, value: str) -> None:
        """Store a setting durably (the active model changes only through `switch_model`)."""

    # ---- model artifacts --------------------------------------------------------------------
    @abstractmethod
    def put_model(self, artifact: ModelArtifact) -> None:
        """Store a model's files under its fingerprint (checked; storing it again is a no-op)."""

    @abstractmethod
    def get_model(self, fingerprint: str) -> ModelArtifact | None:
        """The stored model with this fingerprint, checked against it, or None."""

    @abstractmethod
    def has_model(self, fingerprint: str) -> bool:
        """Whether a model with this fingerprint is stored (without reading its weights)."""

    # ---- training jobs ----------------------------------------------------------------------
    @abstractmethod
    def claim_training_job(
        self, job_id: str, config: dict[str, Any], owner: str, lease_s: float
    ) -> TrainingJob:
        """Create job `job_id`, running and leased to `owner` for `lease_s` seconds.

        Atomically: jobs whose lease expired are marked failed first; if a running job still
        holds an unexpired lease, raise JobRunningError (of two racing claims, one wins).
        """

    @abstractmethod
    def renew_training_job(
        self,
        job_id: str,
        owner: str,
        lease_s: float,
        progress: dict[str, Any] | None = None,
        documents: int | None = None,
    ) -> bool:
        """Extend `owner`'s unexpired lease (and record progress); False if the lease is lost."""

    @abstractmethod
    def finish_training_job(
        self,
        job_id: str,
        owner: str,
        status: str,
        *,
        fingerprint: str | None = None,
        error: str | None = None,
    ) -> bool:
        """Mark `owner`'s running job succeeded or failed; False if it is no longer running."""

    @abstractmethod
    def expire_training_jobs(self) -> list[str]:
        """Mark running jobs whose lease expired as failed; returns their ids."""

    @abstractmethod
    def get_training_job(self, job_id: str) -> TrainingJob | None:
        """One job as stored, or None."""

    @abstractmethod
    def running_training_job(self) -> TrainingJob | None:
        """The job marked running (its lease may have expired unnoticed), or None."""

    # ---- health -----------------------------------------------------------------------------
    def pool_stats(self) -> dict[str, int]:
        """Connection-pool figures (`size`, `available`, `waiting`, `max`); {} without a pool."""
        return {}

    @abstractmethod
    def storage_errors(self) -> list[str]:
        """Problems the backend's own consistency check finds (empty when healthy)."""

    @abstractmethod
    def close(self) -> None:
        """Release connections; the store is unusable afterwards."""

    def integrity_check(self, index: HashIndex, fingerprint: str) -> IntegrityReport:
        """Compare the stored codes of `fingerprint` with the index, id by id."""
        stored: dict[str, bytes] = {}
        for ids, codes, _forms in self.iter_codes(fingerprint):
            stored.update(zip(ids, (row.tobytes() for row in codes), strict=True))
        indexed_ids, indexed_codes = index.to_arrays()
        indexed = dict(zip(indexed_ids, (row.tobytes() for row in indexed_codes), strict=True))
        missing = [doc_id for doc_id in stored if doc_id not in indexed]
        extra = [doc_id for doc_id in indexed if doc_id not in stored]
        mismatched = [
            doc_id
            for doc_id, code in stored.items()
            if doc_id in indexed and indexed[doc_id] != code
        ]
        storage_errors = self.storage_errors()
        return IntegrityReport(
            ok=not (missing or extra or mismatched or storage_errors),
            documents=len(stored),
            indexed=len(indexed),
            missing=missing,
            extra=extra,
            mismatched=mismatched,
            storage_errors=storage_errors,
        )

    def load_index(self, fingerprint: str, bits: int) -> HashIndex:
        """Build the in-memory index of `fingerprint`'s codes and packed forms, in insertion
        order."""
        from docbits.index.hash_index import HashIndex

        def checked() -> Iterator[tuple[list[str], np.ndarray, np.ndarray]]:
            for ids, codes, forms in self.iter_codes(fingerprint):
                if codes.shape[1] != bits // 8:
                    raise StoreError(
                        f"stored codes of model {fingerprint[:12]} have {codes.shape[1] * 8} "
                        f"bits, expected {bits}"
                    )
                yield ids, codes, pack_forms(forms)

        index = HashIndex.from_batches(bits, checked())
        index.warm_up()
        return index


# ---- validation shared by the backends ---------------------------------------------------------


class DocumentRow(NamedTuple):
    """A validated document, ready to write: metadata as JSON text, code as bytes."""

    id: str
    text: str
    metadata: str
    code: bytes | None
    fingerprint: str | None
    form: bytes | None


def document_rows(docs: Sequence[StoredDocument], insert_only: bool) -> list[DocumentRow]:
    """Validate a batch; a repeated id keeps its first position and last content.

    With `insert_only` a repeated id raises DuplicateIdError instead.
    """
    rows = [_document_row(doc) for doc in docs]
    repeated = {doc_id for doc_id, seen in Counter(row.id for row in rows).items() if seen > 1}
    if repeated and insert_only:
        raise DuplicateIdError(sorted(repeated))
    last = {row.id: row for row in rows}
    return [last[doc_id] for doc_id in dict.fromkeys(row.id for row in rows)]


def _document_row(doc: StoredDocument) -> DocumentRow:
    if not isinstance(doc.id, str) or not doc.id:
        raise ValueError(f"document ids must be non-empty strings, got {doc.id!r}")
    if not isinstance(doc.text, str):
        raise ValueError(f"document {doc.id!r}: text must be a string")
    try:
        doc.id.encode()
        doc.text.encode()
    except UnicodeEncodeError:
        raise ValueError(f"document {doc.id!r}: id and text must be valid UTF-8") from None
    if "\x00" in doc.id or "\x00" in doc.text:
        raise ValueError(f"document {doc.id!r}: id and text must not contain NUL characters")
    if not isinstance(doc.metadata, dict):
        raise ValueError(f"document {doc.id!r}: metadata must be a JSON object")
    if (doc.code is None) != (doc.fingerprint is None):
        raise ValueError(f"document {doc.id!r}: code and fingerprint must be given together")
    try:
        metadata = json.dumps(doc.metadata, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise ValueError(f"document {doc.id!r}: metadata is not valid JSON: {error}") from None
    if doc.form is not None and doc.code is None:
        raise ValueError(f"document {doc.id!r}: a rescoring form needs a code")
    code = None if doc.code is None else bytes(doc.code)
    form = None if doc.form is None else bytes(doc.form)
    if form is not None and len(form) != 8 * len(code):
        raise ValueError(
            f"document {doc.id!r}: a rescoring form has one byte per code bit "
            f"({8 * len(code)}), got {len(form)}"
        )
    return DocumentRow(doc.id, doc.text, metadata, code, doc.fingerprint, form)


def stored_document(
    doc_id: str,
    text: str,
    metadata: str,
    code: bytes | None,
    fingerprint: str | None,
    created_at: float,
    updated_at: float,
) -> StoredDocument:
    """A StoredDocument from stored column values."""
    return StoredDocument(
        id=doc_id,
        text=text,
        metadata=json.loads(metadata),
        code=None if code is None else bytes(code),
        fingerprint=fingerprint,
        created_at=created_at,
        updated_at=updated_at,
    )


def code_rows(
    ids: Sequence[str], codes: np.ndarray, forms: np.ndarray | None = None
) -> list[tuple[str, bytes, bytes | None]]:
    """Validate a code batch: unique ids, a uint8 (len(ids), b/8) array and, if given, int8
    (len(ids), b) forms; returns (id, code, form)."""
    array = np.asarray(codes)
    if array.dtype != np.uint8 or array.ndim != 2 or len(array) != len(ids):
        raise ValueError(
            f"codes must be a uint8 array of shape ({len(ids)}, b/8), got {array.dtype} "
            f"{array.shape}"
        )
    if len(set(ids)) != len(ids):
        raise ValueError("ids must be unique within one code batch")
    if forms is None:
        return [(doc_id, row.tobytes(), None) for doc_id, row in zip(ids, array, strict=True)]
    forms = np.asarray(forms)
    if forms.dtype != np.int8 or forms.shape != (len(ids), 8 * array.shape[1]):
        raise ValueError(
            f"forms must be an int8 array of shape ({len(ids)}, {8 * array.shape[1]}), got "
            f"{forms.dtype} {forms.shape}"
        )
    return [
        (doc_id, row.tobytes(), form.tobytes())
        for doc_id, row, form in zip(ids, array, forms, strict=True)
    ]


def packed_codes(fingerprint: str, codes: Sequence[bytes]) -> np.ndarray:
    """Stored codes of one model as an (n, b/8) uint8 array; StoreError if lengths differ."""
    widths = {len(code) for code in codes}
    if len(widths) > 1:
        raise StoreError(f"codes of model {fingerprint[:12]} have mixed lengths {widths}")
    return np.frombuffer(b"".join(codes), dtype=np.uint8).reshape(len(codes), -1)


def stored_forms(fingerprint: str, forms: Sequence[bytes | None], bits: int) -> np.ndarray:
    """Stored rescoring forms of one model as a read-only (n, bits) int8 array, zeros where a
    document has none; StoreError if one has another length."""
    filled = [bytes(bits) if form is None else bytes(form) for form in forms]
    if any(len(form) != bits for form in filled):
        raise StoreError(f"rescoring forms of model {fingerprint[:12]} are not {bits} bytes each")
    return np.frombuffer(b"".join(filled), dtype=np.int8).reshape(len(filled), bits)


def check_models(rows: Sequence[DocumentRow], active: str | None) -> None:
    """ModelChangedError unless every row's fingerprint is the active model."""
    for row in rows:
        if row.fingerprint != active:
            raise ModelChangedError(row.fingerprint, active)


def check_setting(key: str, value: str) -> None:
    """ValueError unless `set_setting` may store this: strings without NUL characters, and not
    the active model, which changes only through `switch_model` (so that it reaches the feed)."""
    if not isinstance(key, str) or not isinstance(value, str):
        raise ValueError("settings keys and values must be strings")
    if "\x00" in key or "\x00" in value:
        raise ValueError("settings keys and values must not contain NUL characters")
    if key == ACTIVE_MODEL_SETTING:
        raise ValueError("the active model changes only through switch_model")


def mask_url(url: str) -> str:
    """`url` with its password (in the user part or a `password=` parameter) shown as ***."""
    masked = re.sub(r"(?i)([?&]password=)[^&#]*", r"\1***", url)
    scheme, separator, rest = masked.partition("://")
    if not separator:  # no scheme (a mistake): still mask a `user:password@` part
        scheme, rest = "", masked
    authority_end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    authority, path = rest[:authority_end], rest[authority_end:]
    user_part, at, hosts = authority.rpartition("@")
    if at and ":" in user_part:
        user_part = user_part.split(":", 1)[0] + ":***"
    return f"{scheme}{separator}{user_part}{at}{hosts}{path}"


def check_feed_position(seq: int, first_seq: int, last_seq: int, changes: list[Change]) -> None:
    """FeedGapError unless `changes` continue a reader at `seq` with no hole."""
    if seq > last_seq:
        raise FeedGapError(
            f"feed position {seq} is beyond the store's newest change {last_seq} (the store was "
            "restored or replaced): reload from the store"
        )
    if seq + 1 < first_seq:
        raise FeedGapError(
            f"changes after {seq} were compacted (the feed starts at {first_seq}): reload from "
            "the store"
        )
    for expected, change in enumerate(changes, start=seq + 1):
        if change.seq != expected:
            raise FeedGapError(f"the feed has a hole: expected change {expected}, got {change.seq}")


def feed_problems(
    first_seq: int, last_seq: int, low: int | None, high: int | None, n: int
) -> list[str]:
    """Inconsistencies between the feed's bounds and the changes stored (dense numbering)."""
    expected = last_seq - first_seq + 1
    if n == 0:
        return [] if expected == 0 else [f"feed: {expected} change(s) expected, none stored"]
    if (low, high, n) != (first_seq, last_seq, expected):
        return [
            f"feed: changes {low}..{high} ({n}) stored, {first_seq}..{last_seq} ({expected}) "
            "expected"
        ]
    return []


def validate_job_finish(status: str) -> None:
    """ValueError unless `status` ends a job."""
    if status not in (SUCCEEDED, FAILED):
        raise ValueError(f"a finished job is {SUCCEEDED!r} or {FAILED!r}, not {status!r}")


def job_config_json(config: dict[str, Any]) -> str:
    """A job's config as JSON text (ValueError if it is not a JSON object)."""
    if not isinstance(config, dict):
        raise ValueError("a training job's config must be a JSON object")
    try:
        return json.dumps(config, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise ValueError(f"a training job's config is not valid JSON: {error}") from None


def training_job(row: Sequence[Any]) -> TrainingJob:
    """A TrainingJob from a row of the jobs table's columns in `JOB_COLUMNS` order."""
    (job_id, config, status, progress, documents, fingerprint, error, owner, lease, created,
     finished) = row  # fmt: skip
    return TrainingJob(
        id=job_id,
        config=json.loads(config),
        status=status,
        progress=json.loads(progress),
        documents=documents,
        fingerprint=fingerprint,
        error=error,
        owner=owner,
        lease_expires_at=lease,
        created_at=created,
        finished_at=finished,
    )


JOB_COLUMNS = (
    "id, config, status, progress, documents, fingerprint, error, owner, lease_expires_at, "
    "created_at, finished_at"
)
CHANGE_COLUMNS = "seq, kind, id, code, fingerprint, written_at, form"
# SQL (both backends) for the error of a job whose lease ran out, naming its owner.
EXPIRED_LEASE_ERROR_SQL = "'the lease of ' || owner || ' expired: its process stopped renewing it'"


def select_jobs(connection: Any, where: str, parameters: Sequence[Any]) -> list[TrainingJob]:
    """The jobs matching `where` (written in the connection's parameter style), oldest first."""
    rows = connection.execute(
        f"SELECT {JOB_COLUMNS} FROM training_jobs WHERE {where} ORDER BY created_at", parameters
    ).fetchall()
    return [training_job(row) for row in rows]


def checked_artifact(row: Sequence[Any]) -> ModelArtifact:
    """A ModelArtifact from (fingerprint, config, vocab, weights); StoreError if it is damaged."""
    artifact = ModelArtifact(row[0], row[1], row[2], bytes(row[3]))
    try:
        artifact.check()
    except ValueError as error:
        raise StoreError(f"stored model {artifact.fingerprint[:12]} is damaged: {error}") from None
    return artifact
