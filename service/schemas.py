"""Request and response bodies of the HTTP API (pydantic v2), with the examples `/docs` shows."""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

FINGERPRINT_EXAMPLE = "3f5a0c9e" + "0" * 56
DocumentId = str
MAX_METADATA_BYTES = 64 * 1024
MAX_METADATA_DEPTH = 16
MAX_OFFSET = 1_000_000
SEQ_DESCRIPTION = (
    "The store's change-feed position after this write: pass it as `min_seq` to a read on any "
    "process to be answered only once that process has applied it."
)
MIN_SEQ_DESCRIPTION = (
    "Answer only once this process has applied the store's changes up to this feed position "
    "(the `seq` of a write response); waits up to DOCBITS_MIN_SEQ_WAIT_S, then 503."
)


def _examples(*examples: dict[str, Any], forbid_extra: bool = False) -> ConfigDict:
    """Config with `/docs` examples; request bodies also refuse unknown (misspelt) fields."""
    if forbid_extra:
        return ConfigDict(json_schema_extra={"examples": list(examples)}, extra="forbid")
    return ConfigDict(json_schema_extra={"examples": list(examples)})


def _without_nul(value: str) -> str:
    """Refuse NUL characters (an injection smell, and PostgreSQL text cannot hold them)."""
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


def _meaningful_text(value: str) -> str:
    """Refuse text with no visible character, or with NUL characters."""
    _without_nul(value)
    if not value.strip():
        raise ValueError("must contain at least one non-whitespace character")
    return value


def _json_depth(value: Any) -> int:
    """Nesting depth of a JSON value (a scalar is 0), without recursion."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, depth = stack.pop()
        children = (
            item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        )
        for child in children:
            stack.append((child, depth + 1))
        deepest = max(deepest, depth)
    return deepest


class IngestMode(StrEnum):
    """`upsert` replaces existing ids; `insert_only` answers 409 when any id exists."""

    upsert = "upsert"
    insert_only = "insert_only"


class DocumentIn(BaseModel):
    """One document to index; the id is generated when absent."""

    model_config = _examples(
        {"id": "sci.space/61234", "text": "The shuttle launch slipped a week.", "metadata": {}},
        forbid_extra=True,
    )
    id: DocumentId | None = Field(None, min_length=1, max_length=256)
    text: str = Field(..., min_length=1)
    metadata: dict[str, Any] = Field(
        default_factory=dict,
        description=f"At most {MAX_METADATA_DEPTH} levels deep and {MAX_METADATA_BYTES} bytes.",
    )

    @field_validator("id")
    @classmethod
    def _id_has_no_nul(cls, value: str | None) -> str | None:
        return value if value is None else _without_nul(value)

    @field_validator("text")
    @classmethod
    def _text_has_words(cls, value: str) -> str:
        return _meaningful_text(value)

    @field_validator("metadata")
    @classmethod
    def _metadata_is_small(cls, value: dict[str, Any]) -> dict[str, Any]:
        if _json_depth(value) > MAX_METADATA_DEPTH:
            raise ValueError(f"is nested deeper than {MAX_METADATA_DEPTH} levels")
        try:
            as_json = json.dumps(value, ensure_ascii=False, allow_nan=False)
        except ValueError:
            raise ValueError(
                "must be valid JSON: NaN and infinite numbers are not allowed"
            ) from None
        size = len(as_json.encode(errors="surrogatepass"))
        if size > MAX_METADATA_BYTES:
            raise ValueError(f"has {size} bytes as JSON; the limit is {MAX_METADATA_BYTES}")
        return value


class IngestRequest(BaseModel):
    """A batch of documents to upsert."""

    model_config = _examples(
        {
            "documents": [
                {
                    "id": "a1",
                    "text": "Orbital mechanics of the shuttle",
                    "metadata": {"g": "space"},
                },
                {"text": "Which graphics card for 3D rendering?"},
            ]
        },
        forbid_extra=True,
    )
    documents: list[DocumentIn] = Field(..., min_length=1)


class IngestedDocument(BaseModel):
    """Where one ingested document went: its id and its code (null until a model exists)."""

    id: DocumentId
    code: str | None


class IngestResponse(BaseModel):
    """Every id of the batch with its code and the fingerprint of the model that made them."""

    model_config = _examples(
        {
            "documents": [{"id": "a1", "code": "9c04e1aa03b2f710"}],
            "model_fingerprint": FINGERPRINT_EXAMPLE,
            "seq": 1042,
        }
    )
    documents: list[IngestedDocument]
    model_fingerprint: str | None
    seq: int = Field(description=SEQ_DESCRIPTION)


class DocumentOut(BaseModel):
    """A stored document as the API shows it."""

    model_config = _examples(
        {
            "id": "a1",
            "text": "Orbital mechanics of the shuttle",
            "metadata": {"g": "space"},
            "code": "9c04e1aa03b2f710",
            "model_fingerprint": FINGERPRINT_EXAMPLE,
            "created_at": "2026-01-05T10:00:00+00:00",
            "updated_at": "2026-01-05T10:00:00+00:00",
        }
    )
    id: DocumentId
    text: str
    metadata: dict[str, Any]
    code: str | None
    model_fingerprint: str | None
    created_at: Any = None
    updated_at: Any = None


class DeleteRequest(BaseModel):
    """Ids to delete in one call."""

    model_config = _examples({"ids": ["a1", "b2"]}, forbid_extra=True)
    ids: list[DocumentId] = Field(..., min_length=1)

    @field_validator("ids")
    @classmethod
    def _ids_have_no_nul(cls, value: list[str]) -> list[str]:
        """No stored id holds NUL (ingest refuses it), and PostgreSQL cannot compare one."""
        for doc_id in value:
            _without_nul(doc_id)
        return value


class DeleteResponse(BaseModel):
    """Which ids were deleted and which were not there."""

    model_config = _examples({"deleted": ["a1"], "not_found": ["b2"], "seq": 1043})
    deleted: list[DocumentId]
    not_found: list[DocumentId]
    seq: int = Field(description=SEQ_DESCRIPTION)


class SearchOptions(BaseModel):
    """How far to look and how much to return; shared by every search route."""

    radius: int = Field(0, ge=0, description="Hamming radius; 0 reads the query's own bucket.")
    limit: int = Field(10, ge=1)
    offset: int = Field(0, ge=0, le=MAX_OFFSET)
    nearest: bool = Field(False, description="Return the `limit` nearest, whatever the radius.")
    rescore: bool = Field(
        True,
        description="With `nearest`: take 4 × the page's candidates from the codes and re-rank "
        "them by the documents' rescoring forms (`form_score`); false ranks by Hamming distance "
        "alone. Radius searches always rank by Hamming distance.",
    )
    include_text: bool = Field(False, description="Full text instead of a snippet.")
    min_seq: int | None = Field(None, ge=0, description=MIN_SEQ_DESCRIPTION)


class SearchQuery(SearchOptions):
    """`GET /v1/search` query parameters: the query text and the shared options."""

    q: str = Field(min_length=1, examples=["shuttle launch"])


class SearchRequest(SearchOptions):
    """`POST /v1/search`: one query (`q`) or a batch (`queries`), with an optional filter."""

    model_config = _examples(
        {"q": "shuttle launch", "radius": 2, "limit": 5, "filter": {"group": "sci.space"}},
        {"queries": ["shuttle launch", "graphics card"], "nearest": True, "limit": 3},
        forbid_extra=True,
    )
    q: str | None = Field(None, min_length=1)
    queries: list[str] | None = Field(None, min_length=1)
    filter: dict[str, Any] | None = Field(
        None,
        description="Metadata equality per key (a list value matches any of its items); applied "
        "while collecting candidates.",
    )


class Hit(BaseModel):
    """One result: distance in bits, score = 1 - distance/bits."""

    id: DocumentId
    distance: int
    score: float
    form_score: float | None = Field(
        None,
        description="Cosine of the document's rescoring form with the query's, what a "
        "rescored `nearest` search ranks by (null when not rescored).",
    )
    metadata: dict[str, Any]
    text: str | None = None
    snippet: str | None = None


class SearchResponse(BaseModel):
    """Ranked hits for one query, with the query's code and how many candidates were found."""

    model_config = _examples(
        {
            "query_code": "9c04e1aa03b2f710",
            "model_fingerprint": FINGERPRINT_EXAMPLE,
            "candidates": 1,
            "hits": [
                {
                    "id": "a1",
                    "distance": 0,
                    "score": 1.0,
                    "metadata": {"g": "space"},
                    "snippet": "Orbital mechanics of the shuttle",
                }
            ],
        }
    )
    query_code: str
    model_fingerprint: str
    candidates: int
    hits: list[Hit]


class BatchSearchResponse(BaseModel):
    """One `SearchResponse` per query, in the order sent."""

    results: list[SearchResponse]


class BucketMember(BaseModel):
    """A document in a bucket, shown briefly."""

    id: DocumentId
    metadata: dict[str, Any]
    snippet: str


class BucketResponse(BaseModel):
    """The members of one bucket (documents whose code equals `code`)."""

    model_config = _examples(
        {
            "code": "9c04e1aa03b2f710",
            "size": 1,
            "documents": [{"id": "a1", "metadata": {}, "snippet": "Orbital mechanics"}],
        }
    )
    code: str
    size: int
    documents: list[BucketMember]


class TrainRequest(BaseModel):
    """Overrides for one training job; omitted fields come from the settings."""

    model_config = _examples(
        {"bits": 64, "variant": "undercomplete", "epochs": 20}, forbid_extra=True
    )
    bits: int | None = Field(None, ge=8, le=128, multiple_of=8)
    variant: str | None = None
    epochs: int | None = Field(None, ge=1, le=1000)


class JobStatus(StrEnum):
    """Life of a training job."""

    queued = "queued"
    training = "training"
    switching = "switching"
    succeeded = "succeeded"
    failed = "failed"


class JobOut(BaseModel):
    """A training job and its progress."""

    model_config = _examples(
        {
            "id": "job-1f2e",
            "status": "training",
            "documents": 11314,
            "progress": {"epoch": 3, "epochs": 30, "loss": 512.1, "eta_s": 41.0},
            "fingerprint": None,
            "error": None,
            "created_at": 1767607200.0,
            "finished_at": None,
        }
    )
    id: str
    status: JobStatus
    documents: int | None = Field(
        description="Documents the job trains on (null until its worker has read them)."
    )
    progress: dict[str, Any]
    fingerprint: str | None
    error: str | None
    created_at: float
    finished_at: float | None


class ModelInfo(BaseModel):
    """The model in use."""

    model_config = _examples(
        {
            "model_fingerprint": FINGERPRINT_EXAMPLE,
            "bits": 64,
            "variant": "variational",
            "config": {"bits": 64, "variant": "variational", "vocab_size": 10000},
        }
    )
    model_fingerprint: str
    bits: int
    variant: str
    config: dict[str, Any]


class FeedInfo(BaseModel):
    """How far this process has followed the store's change feed."""

    process: str = Field(description="This process: host, pid and a random tag.")
    applied_seq: int = Field(description="Every change up to here is in this process's index.")
    store_seq: int = Field(description="The store's newest change, read for this answer.")
    lag_changes: int = Field(description="store_seq - applied_seq.")
    lag_s: float = Field(
        description="How long the oldest change seen and not yet applied has waited (0: none)."
    )


class InfoResponse(BaseModel):
    """What the service holds and which model it serves."""

    model_config = _examples(
        {
            "bits": 64,
            "variant": "undercomplete",
            "model_fingerprint": FINGERPRINT_EXAMPLE,
            "documents": 11314,
            "buckets": 9120,
            "bucket_size_histogram": {"1": 8000, "2": 900, "3": 220},
            "build": {"docbits_version": "0.1.0", "python": "3.11.9"},
            "training_job": None,
            "feed": {
                "process": "web-1:4242:9f3a1c",
                "applied_seq": 1042,
                "store_seq": 1043,
                "lag_changes": 1,
                "lag_s": 0.004,
            },
        }
    )
    bits: int | None
    variant: str | None
    model_fingerprint: str | None
    documents: int
    buckets: int
    bucket_size_histogram: dict[str, int]
    build: dict[str, Any]
    training_job: JobOut | None
    feed: FeedInfo


class Status(BaseModel):
    """Liveness and readiness answers."""

    model_config = _examples({"status": "ok"})
    status: str


class ErrorDetail(BaseModel):
    """What went wrong: a stable code, a human message, structured details."""

    code: str
    message: str
    details: dict[str, Any]


class ErrorResponse(BaseModel):
    """The one shape of every error answer (4xx and 5xx)."""

    model_config = _examples(
        {"error": {"code": "not_found", "message": "no document with id 'a1'", "details": {}}}
    )
    error: ErrorDetail
