"""Train the default recipe (`TrainConfig()` defaults, as `docbits train` uses them) per code
length and protocol, and score it with the evaluation harness; prints one table row per model.

Usage: .venv/bin/python bench/recipe.py [--corpus PATH] [--bits 16 32 64 128]
       [--protocols clean raw] [--device cpu] [--markdown] [--set teacher_weight=20 ...]

Training sees only the train split (the harness's database side, labels used for early stopping
on held-out train documents); queries are the test split. Wall time covers featurising, the
teacher graph and every epoch, as `docbits train` would spend it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from docbits.model.evaluate import evaluate_hasher, evaluate_tfidf_cosine, prepare_split  # noqa: E402
from docbits.model.train import TrainConfig, train  # noqa: E402

DEFAULT_CORPUS = Path(
    os.environ.get("DOCBITS_20NEWS", ROOT.parent / "shared" / "data" / "20news-bydate.tar.xz")
)


def parse_args() -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS, help="20news tarball")
    parser.add_argument("--bits", type=int, nargs="+", default=[16, 32, 64, 128])
    parser.add_argument("--protocols", nargs="+", default=["clean", "raw"])
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cuda")
    parser.add_argument("--markdown", action="store_true", help="print a markdown table")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="override a TrainConfig field (value read as JSON, else as a string); repeatable",
    )
    return parser.parse_args()


def parse_overrides(pairs: list[str]) -> dict[str, object]:
    """{"teacher_weight": 20.0, "variant": "denoising"} from ["teacher_weight=20", ...]."""
    overrides: dict[str, object] = {}
    for pair in pairs:
        name, separator, text = pair.partition("=")
        if not separator:
            raise SystemExit(f"--set expects FIELD=VALUE, got {pair!r}")
        try:
            overrides[name] = json.loads(text)
        except json.JSONDecodeError:
            overrides[name] = text
    return overrides


def main() -> None:
    """Train and score every (protocol, bits) pair, printing rows as they finish."""
    args = parse_args()
    overrides = parse_overrides(args.overrides)
    header = ["protocol", "bits", "P@100 tie-aware", "TF-IDF cosine", "train wall s", "epochs"]
    print(("| " + " | ".join(header) + " |") if args.markdown else "  ".join(header))
    if args.markdown:
        print("| --- |" + " ---: |" * (len(header) - 1))
    for protocol in args.protocols:
        split = prepare_split(args.corpus, protocol)
        cosine = evaluate_tfidf_cosine(split)["precision_at_100"]["tie_aware"]
        for bits in args.bits:
            config = TrainConfig(**{"bits": bits, "device": args.device, **overrides})
            started = time.monotonic()
            hasher = train(split.train_texts, config, labels=split.train_labels, progress=False)
            wall = time.monotonic() - started
            result = evaluate_hasher(hasher, split)["precision_at_100"]["tie_aware"]
            epochs = hasher.config["validation"]["epochs_run"]
            cells = [protocol, str(bits), f"{result:.4f}", f"{cosine:.4f}", f"{wall:.0f}"]
            cells.append(str(epochs))
            print(("| " + " | ".join(cells) + " |") if args.markdown else "  ".join(cells))
            sys.stdout.flush()


if __name__ == "__main__":
    main()
