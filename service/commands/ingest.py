"""`docbits ingest`: send a corpus to a running service in batches, with a progress bar."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the sub-command."""
    p = sub.add_parser("ingest", help="upload a corpus to a running service over HTTP")
    p.add_argument("--url", default="http://127.0.0.1:8000", help="service base URL")
    p.add_argument(
        "--corpus", type=Path, required=True, help="20news tarball/folder, .jsonl, .txt dir"
    )
    p.add_argument("--protocol", choices=["raw", "clean"], default="raw", help="newsgroup cleaning")
    p.add_argument("--split", help="only documents of this split (e.g. train)")
    p.add_argument("--batch-size", type=int, default=500, help="documents per request")
    p.add_argument("--mode", choices=["upsert", "insert_only"], default="upsert")
    p.add_argument("--api-key", default=os.environ.get("DOCBITS_API_KEY"), help="write key")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(handler=run)


def document_payload(doc: Any) -> dict[str, Any]:
    """A corpus `Document` as the API's document: id, text, labels and split as metadata."""
    metadata: dict[str, Any] = {"labels": list(doc.labels)}
    if doc.split:
        metadata["split"] = doc.split
    return {"id": doc.id, "text": doc.text, "metadata": metadata}


def run(args: argparse.Namespace) -> int:
    """Load the corpus, then POST it batch by batch; stops at the first error."""
    from tqdm import tqdm

    from docbits.model.corpus import load_corpus
    from docbits.service.client import DocbitsClient, DocbitsError

    documents = load_corpus(args.corpus, protocol=args.protocol)
    if args.split:
        documents = [doc for doc in documents if doc.split == args.split]
    if not documents:
        raise SystemExit(f"docbits ingest: no documents in {args.corpus}")
    with (
        DocbitsClient(args.url, api_key=args.api_key) as client,
        tqdm(total=len(documents), unit="doc", disable=args.no_progress) as bar,
    ):
        for start in range(0, len(documents), args.batch_size):
            batch = [document_payload(d) for d in documents[start : start + args.batch_size]]
            try:
                client.ingest(batch, mode=args.mode)
            except DocbitsError as exc:
                raise SystemExit(f"docbits ingest: batch at {start} failed: {exc}") from exc
            bar.update(len(batch))
    print(f"ingested {len(documents)} documents into {args.url}")
    return 0
