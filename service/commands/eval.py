"""`docbits eval`: score a trained model on a corpus's test split against its train split."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register `eval --model DIR --corpus PATH [--protocol clean|raw]`."""
    p = sub.add_parser(
        "eval",
        help="evaluate a model: P@100, Hamming-ball lookup quality, bucket occupancy",
        description=(
            "Database = the corpus's train split, queries = its test split (a seeded 80/20 split "
            "when the corpus has none); relevant = shares a label with the query. Prints a table, "
            "then one JSON object with every metric as the last line."
        ),
    )
    p.add_argument("--model", required=True, type=Path, help="trained model directory")
    p.add_argument(
        "--corpus",
        required=True,
        type=Path,
        help="20news-bydate tarball or folder, JSON Lines file, or folder of .txt files",
    )
    p.add_argument(
        "--protocol",
        choices=("clean", "raw"),
        default="clean",
        help="clean: strip newsgroup headers, quotes and signatures first (default)",
    )
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Load the model and the split, score, print the table and the JSON line."""
    from docbits.model.errors import ArtifactError, CorpusError
    from docbits.model.evaluate import evaluate_hasher, format_table, json_ready, prepare_split
    from docbits.model.hasher import Hasher

    try:
        hasher = Hasher.load(args.model)
        split = prepare_split(args.corpus, args.protocol)
    except (ArtifactError, CorpusError) as error:
        print(f"docbits eval: {error}", file=sys.stderr)
        return 2
    result = {
        "method": hasher.variant,
        "model": str(args.model),
        "fingerprint": hasher.fingerprint,
        "corpus": str(args.corpus),
        "protocol": args.protocol,
        "split_rule": split.split_rule,
        "dropped_short_documents": split.dropped,
        **evaluate_hasher(hasher, split),
    }
    print(
        f"{args.corpus} [{args.protocol}]: {len(split.train_texts)} database (train) and "
        f"{len(split.test_texts)} query (test) documents; {split.split_rule}"
    )
    print(format_table(result))
    print(json.dumps(json_ready(result)))
    return 0
