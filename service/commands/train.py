"""`docbits train`: fit a hashing model on a corpus and write its artifact directory."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

VARIANT_NAMES = ("undercomplete", "sparse", "denoising", "contractive", "variational")


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register `docbits train` and its options (defaults are TrainConfig's)."""
    p = sub.add_parser(
        "train",
        help="train a semantic-hashing model on a corpus",
        description="Train a b-bit hashing autoencoder; only the corpus' 'train' split is used "
        "when it has splits. Writes config.json, vocab.json and model.safetensors to --out.",
    )
    p.add_argument(
        "--corpus", type=Path, required=True, help="20news tarball/folder, JSONL or .txt folder"
    )
    p.add_argument("--out", type=Path, required=True, help="model directory to write")
    p.add_argument("--bits", type=int, default=64, help="code length, a multiple of 8 in 8..128")
    p.add_argument("--variant", choices=VARIANT_NAMES, default=None, help="autoencoder variant")
    p.add_argument("--epochs", type=int, default=None, help="maximum number of epochs")
    p.add_argument(
        "--time-budget",
        type=float,
        default=None,
        help="seconds: start no epoch that would end past them, keep the best (default: none)",
    )
    p.add_argument("--batch-size", type=int, default=None, help="documents per mini-batch")
    p.add_argument("--lr", type=float, default=None, help="Adam learning rate")
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed, same model)")
    p.add_argument("--val-fraction", type=float, default=None, help="share held out for validation")
    p.add_argument("--threads", type=int, default=None, help="torch threads while training")
    p.add_argument(
        "--teacher", choices=("spectral", "none"), default=None, help="kNN-graph teacher or none"
    )
    p.add_argument("--teacher-weight", type=float, default=None, help="weight of the teacher term")
    p.add_argument("--graph-k", type=int, default=None, help="neighbours per document (teacher)")
    p.add_argument(
        "--teacher-sharpness",
        type=sharpness,
        default=None,
        help="soft teacher targets sigmoid(S · z / std z), S > 0; 'hard' for 0/1 bits",
    )
    p.add_argument(
        "--input-weighting",
        choices=("sublinear", "tfidf"),
        default=None,
        help="encoder input: sublinear (1 + ln tf) TF-IDF or plain TF-IDF",
    )
    p.add_argument("--device", default=None, help="torch device, e.g. cpu or cuda")
    p.add_argument(
        "--protocol",
        choices=("clean", "raw"),
        default="clean",
        help="clean strips newsgroup headers, quotes and signatures (20news inputs only)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=run)


def sharpness(text: str) -> float | str:
    """A positive float, or the word 'hard' (teacher targets as 0/1 bits)."""
    if text == "hard":
        return text
    try:
        return float(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"expected a number or 'hard', got {text!r}") from error


def run(args: argparse.Namespace) -> int:
    """Load the corpus, train, save; print a one-object JSON summary on stdout."""
    from docbits.model.corpus import load_corpus
    from docbits.model.errors import CorpusError

    try:
        documents = load_corpus(args.corpus, protocol=args.protocol)
    except CorpusError as error:
        print(f"docbits train: {error}", file=sys.stderr)
        return 2
    from docbits.model.train import TrainConfig, train

    overrides = {
        "variant": args.variant,
        "epochs": args.epochs,
        "time_budget_s": args.time_budget,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "val_fraction": args.val_fraction,
        "threads": args.threads,
        "teacher": args.teacher,
        "teacher_weight": args.teacher_weight,
        "graph_k": args.graph_k,
        "teacher_sharpness": None if args.teacher_sharpness == "hard" else args.teacher_sharpness,
        "input_weighting": args.input_weighting,
        "device": args.device,
    }
    try:
        config = TrainConfig(
            bits=args.bits,
            seed=args.seed,
            **{name: value for name, value in overrides.items() if value is not None},
        )
        if args.teacher_sharpness == "hard":
            config = dataclasses.replace(config, teacher_sharpness=None)
    except ValueError as error:
        print(f"docbits train: {error}", file=sys.stderr)
        return 2
    if any(document.split is not None for document in documents):
        documents = [document for document in documents if document.split == "train"]
    labelled = bool(documents) and all(document.labels for document in documents)
    try:
        hasher = train(
            [document.text for document in documents],
            config,
            labels=[document.labels for document in documents] if labelled else None,
            progress=not args.quiet,
        )
    except ValueError as error:
        print(f"docbits train: {error}", file=sys.stderr)
        return 2
    hasher.config["corpus"]["source"] = str(args.corpus)
    hasher.config["corpus"]["protocol"] = args.protocol
    hasher.save(args.out)
    validation = hasher.config["validation"]
    summary = {
        "out": str(args.out),
        "fingerprint": hasher.fingerprint,
        "bits": hasher.bits,
        "variant": hasher.variant,
        "documents": len(documents),
        "validation_metric": validation["metric"],
        "validation_best": validation["best"],
        "epochs_run": validation["epochs_run"],
        "training_seconds": round(hasher.config["training_seconds"], 1),
        "codes": hasher.config["codes"],
    }
    print(json.dumps(summary, indent=2))
    return 0
