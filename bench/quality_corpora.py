"""Retrieval quality on every corpus: docbits codes (alone and with rescoring) against TF-IDF,
LSA-100, BM25 and MiniLM cosine; writes docs/results/quality-corpora.md.

Usage: .venv/bin/python bench/quality_corpora.py [--corpora NAME ...] [--bits 16 32 64 128]
       [--set FIELD=VALUE ...] [--no-embeddings] [--retrain] [--no-page] [--json PATH]

Corpora: see `bench/corpora.py`. Every model trains as the service trains it: `TrainConfig(bits)`
defaults on the train side's texts, no labels (early stopping on the label-free metric), then is
scored by the harness `docbits eval` uses (tie-aware P@100, database = train, queries = test).
Trained models are kept under DOCBITS_CACHE (default ~/.cache/docbits) keyed by corpus, bits,
overrides and the model sources, so a rerun after a recipe change retrains and otherwise reuses.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import functools
import hashlib
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import text_baselines  # noqa: E402
from bench.corpora import CORPORA, split_of  # noqa: E402
from bench.quality import machine  # noqa: E402
from bench.recipe import parse_overrides  # noqa: E402
from docbits.model.evaluate import (  # noqa: E402
    EvalSplit,
    evaluate_hasher_with_rescoring,
    evaluate_tfidf_cosine,
    json_ready,
)

BITS = (16, 32, 64, 128)
TARGET_BITS = (32, 64)
MISS_SHARE = 0.3  # the codes must remove this share of TF-IDF cosine's misses
RESCORE_GAIN = 0.02
CACHE = text_baselines.CACHE
OUT = ROOT / "docs" / "results" / "quality-corpora.md"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpora", nargs="+", choices=list(CORPORA), default=list(CORPORA))
    parser.add_argument("--bits", nargs="+", type=int, default=list(BITS))
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="override a TrainConfig field for every model (value read as JSON)",
    )
    parser.add_argument(
        "--embeddings",
        choices=("compute", "cached", "off"),
        default="compute",
        help="MiniLM column: embed what is not cached (slow on CPU), use cached only, or skip",
    )
    parser.add_argument("--retrain", action="store_true", help="ignore cached models")
    parser.add_argument("--no-page", action="store_true", help="print rows, write no page")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--json", type=Path, help="also write every row as JSON here")
    return parser.parse_args(argv)


# Model sources that only score or re-rank codes, never change what training produces.
SCORING_ONLY = ("evaluate.py", "metrics.py", "rescore.py")


@functools.cache
def source_digest() -> str:
    """Hash of the model package's sources as this process imported them (read once): a cached
    model is reused only if they are unchanged."""
    digest = hashlib.sha256()
    for path in sorted((ROOT / "model").glob("*.py")):
        if path.name not in SCORING_ONLY:
            digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()[:16]


def baselines(name: str, split: EvalSplit, embeddings: str) -> dict:
    """TF-IDF (scikit-learn and the harness's own), LSA-100, BM25 and MiniLM cosine P@100,
    cached per corpus texts and baseline source; MiniLM per `embeddings` (compute, cached, off)
    and only where the packaged model is installed."""
    digest = hashlib.sha256((ROOT / "bench" / "text_baselines.py").read_bytes())
    for text in (*split.train_texts, *split.test_texts):
        digest.update(hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest())
    key = digest.hexdigest()[:16]
    path = CACHE / "baselines" / f"{name}-{key}.json"
    row = json.loads(path.read_text("utf-8")) if path.exists() else {}
    if "tfidf" not in row:
        started = time.monotonic()
        train, test = text_baselines.tfidf_vectors(split)
        lsa_train, lsa_test = text_baselines.lsa_vectors(train, test)
        row = {
            "tfidf": text_baselines.cosine_precision(split, train, test),
            "tfidf_harness": evaluate_tfidf_cosine(split)["precision_at_100"]["tie_aware"],
            "lsa": text_baselines.cosine_precision(split, lsa_train, lsa_test),
            "bm25": text_baselines.bm25_precision(split),
            "seconds": round(time.monotonic() - started, 1),
        }
    if embeddings != "off" and "minilm" not in row and text_baselines.embedding_available():
        if embeddings == "compute":
            database = text_baselines.embeddings(split.train_texts)
            queries = text_baselines.embeddings(split.test_texts)
        else:
            database = text_baselines.cached_embeddings(split.train_texts)
            queries = text_baselines.cached_embeddings(split.test_texts)
        if database is not None and queries is not None:
            row["minilm"] = text_baselines.cosine_precision(split, database, queries)
    if "lsa_harness" not in row:
        lsa_train, lsa_test = text_baselines.lsa_vectors(split.train_tfidf, split.test_tfidf)
        row["lsa_harness"] = text_baselines.cosine_precision(split, lsa_train, lsa_test)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(row), "utf-8")
    return row


# As the issue set the target: on 20 Newsgroups `clean` and `raw` the reference features of
# `docbits eval` (its own TF-IDF, and LSA-100 of it); elsewhere scikit-learn's TfidfVectorizer.
HARNESS_FEATURE_CORPORA = ("20ng-clean", "20ng-raw")


def bar(tfidf: float, lsa: float) -> float:
    """P@100 ≥ TF-IDF + 0.3 × (1 − TF-IDF), and ≥ LSA-100."""
    return max(tfidf + MISS_SHARE * (1 - tfidf), lsa)


def target_of(row: dict, name: str) -> float:
    """The issue's bar for this corpus (see HARNESS_FEATURE_CORPORA)."""
    if name in HARNESS_FEATURE_CORPORA:
        return bar(row["tfidf_harness"], row["lsa_harness"])
    return bar(row["tfidf"], row["lsa"])


def strict_target_of(row: dict) -> float:
    """The bar against the stronger of the two feature sets, whichever the issue named."""
    return bar(max(row["tfidf"], row["tfidf_harness"]), max(row["lsa"], row["lsa_harness"]))


def trained_model(name: str, split: EvalSplit, bits: int, overrides: dict, retrain: bool):
    """The Hasher for (corpus, bits, overrides): loaded from the cache, else trained there as the
    service trains (no labels) and saved. Returns (hasher, wall seconds of `train`)."""
    from docbits.model.hasher import Hasher
    from docbits.model.train import TrainConfig, train

    config = TrainConfig(**{"bits": bits, **overrides})
    key_text = json.dumps([name, dataclasses.asdict(config), source_digest()], sort_keys=True)
    directory = CACHE / "quality-models" / hashlib.sha256(key_text.encode()).hexdigest()[:20]
    if directory.is_dir() and not retrain:
        hasher = Hasher.load(directory)
        return hasher, hasher.config.get("wall_seconds", hasher.config["training_seconds"])
    started = time.monotonic()
    hasher = train(split.train_texts, config, progress=False)
    wall = time.monotonic() - started
    hasher.config["wall_seconds"] = round(wall, 1)
    hasher.config["corpus"]["source"] = name
    hasher.save(directory)
    return hasher, wall


def score_models(args: argparse.Namespace, name: str, split: EvalSplit, bars: dict) -> list[dict]:
    """Train or load, then score, the model of every selected code length on one corpus."""
    overrides = parse_overrides(args.overrides)
    rows = []
    for bits in args.bits:
        hasher, wall = trained_model(name, split, bits, overrides, args.retrain)
        result = evaluate_hasher_with_rescoring(hasher, split)
        validation = hasher.config["validation"]
        row = {
            "corpus": name,
            "bits": bits,
            "codes": result["precision_at_100"]["tie_aware"],
            "codes_index_order": result["precision_at_100"]["index_order"],
            "rescored": result["rescoring"]["precision_at_100"],
            "rescore_us": 1e6 * result["rescoring"]["rescore_seconds_per_query"],
            "train_seconds": round(float(wall), 1),
            "epochs_run": validation["epochs_run"],
            "best_epoch": validation["best_epoch"],
            "distinct_codes": result["bucket_occupancy"]["distinct_codes"],
            "largest_bucket": result["bucket_occupancy"]["largest_bucket"],
            "fingerprint": hasher.fingerprint[:12],
            "overrides": overrides,
        }
        rows.append(row)
        log(
            f"[{name}] {bits} bits: codes {row['codes']:.4f} rescored {row['rescored']:.4f} "
            f"(target {bars['target']:.4f}) train {row['train_seconds']}s "
            f"epochs {row['epochs_run']} (best {row['best_epoch']})"
        )
    return rows


def write_page(args: argparse.Namespace, command: str, corpora: dict, models: list[dict]) -> None:
    """The per-corpus results page."""
    lines = [
        "# Retrieval quality on every corpus",
        "",
        f"Generated by `{command}` on {datetime.date.today().isoformat()}.",
        f"Measured on: {machine()}.",
        "",
        "## Setup",
        "",
        "- Each corpus is split and filtered as `docbits eval` does it (its own train/test split, "
        "else a seeded 80/20 split; documents with fewer than 5 tokens of the reference "
        "vocabulary dropped from both sides). Database = train side, queries = test side; a "
        "retrieved document is relevant when it shares a label with the query (Reuters is "
        "multi-label).",
        "- **codes**: a model trained by `TrainConfig(bits)` defaults on the train side's texts "
        "*without labels*, as the service's own job trains it (early stopping on the label-free "
        "validation metric; the service's job also allows 30 epochs and stops at its time "
        "budget: `bench/service_training.py`); tie-aware P@100 of Hamming ranking, the figure "
        "`docbits eval` prints. **+ rescoring**: the 4 × 100 nearest codes (ties in database "
        "order) re-ranked by the cosine of the forms of the code layer's logits (int8, cut to "
        "4 bits a value as the service holds them; `docbits.model.rescore`), the best 100 kept "
        "(plain precision of that list).",
        "- Baselines, fitted on the train side: TF-IDF = scikit-learn `TfidfVectorizer(stop_words="
        '"english", max_features=10000, min_df=2, sublinear_tf=True)` cosine; LSA-100 = its '
        "100-component truncated SVD, rows normalised, cosine; BM25 = `bm25s` defaults; MiniLM = "
        "cosine over all-MiniLM-L6-v2 sentence embeddings (first 256 word pieces). All tie-aware "
        "P@100. *(harness)*: the same on the reference features of `docbits eval` (its own "
        "TF-IDF over the vocabulary of `Featurizer.fit`, and LSA-100 of that).",
        f"- **Target** (32 and 64 bits, codes alone): P@100 ≥ TF-IDF + {MISS_SHARE} × (1 − TF-IDF)"
        " and ≥ LSA-100, with the features the issue used: the harness's on 20 Newsgroups "
        "`clean` and `raw`, scikit-learn's elsewhere. *Strict bar*: the same rule against the "
        "stronger of the two feature sets (it differs on 20 Newsgroups, where scikit-learn's "
        "vectorizer keeps more of each message). Rescoring target: +0.02 over the codes alone.",
        "",
        "| corpus | train / test docs (dropped) | split |",
        "| --- | --- | --- |",
    ]
    for name, info in corpora.items():
        split = info["split"]
        lines.append(
            f"| {CORPORA[name].title} | {len(split.train_texts):,} / {len(split.test_texts):,} "
            f"({split.dropped['train']} / {split.dropped['test']}) | {split.split_rule} |"
        )
    lines += [
        "",
        "## Baselines",
        "",
        "| corpus | TF-IDF | TF-IDF (harness) | LSA-100 | LSA-100 (harness) | BM25 | MiniLM | "
        "target | strict bar |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, info in corpora.items():
        row = info["baselines"]
        minilm = f"{row['minilm']:.4f}" if "minilm" in row else "not run"
        lines.append(
            f"| {name} | {row['tfidf']:.4f} | {row['tfidf_harness']:.4f} | {row['lsa']:.4f} | "
            f"{row['lsa_harness']:.4f} | {row['bm25']:.4f} | {minilm} | "
            f"{target_of(row, name):.4f} | {strict_target_of(row):.4f} |"
        )
    lines += [
        "",
        "## docbits codes against the target",
        "",
        "| corpus | bits | codes P@100 | + rescoring | rescoring gain | target | codes verdict | "
        "strict bar | train s (epochs, best) | rescore µs/query |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- | --- | ---: | ---: |",
    ]
    for row in models:
        baseline = corpora[row["corpus"]]["baselines"]
        target, strict = target_of(baseline, row["corpus"]), strict_target_of(baseline)
        verdict, strict_verdict = verdict_of(row, target), verdict_of(row, strict)
        lines.append(
            f"| {row['corpus']} | {row['bits']} | {row['codes']:.4f} | {row['rescored']:.4f} | "
            f"{row['rescored'] - row['codes']:+.4f} | {target:.4f} | {verdict} | "
            f"{strict:.4f}: {strict_verdict} | "
            f"{row['train_seconds']:.0f} ({row['epochs_run']}, {row['best_epoch']}) | "
            f"{row['rescore_us']:.0f} |"
        )
    lines += [
        "",
        "*train s*: wall seconds of `train()` in the run that made the model (featurising, "
        "teacher graph, epochs; the shared 2-core machine ran other jobs meanwhile, so these "
        "are pessimistic). *rescore µs/query*: time in `docbits.model.rescore.rescore` for "
        "400 candidates (the index holds the candidates' packed forms beside their codes); "
        "what rescoring adds to a whole search through the service is on "
        "[rescoring.md](rescoring.md).",
        "",
        "## Published anchors (unsupervised, similar but not identical splits)",
        "",
    ]
    for name in corpora:
        for paper, values in CORPORA[name].anchors.items():
            for bits, value in values.items():
                ours = [r for r in models if r["corpus"] == name and r["bits"] == bits]
                distance = (
                    f": codes {ours[0]['codes']:.4f} ({ours[0]['codes'] - value:+.4f}), "
                    f"with rescoring {ours[0]['rescored']:.4f}"
                    if ours
                    else ""
                )
                lines.append(f"- {name}, {bits} bits, {paper} {value:.4f}{distance}")
    args.out.write_text("\n".join(lines) + "\n", "utf-8")


def verdict_of(row: dict, target: float) -> str:
    """'met' / 'missed by X' at the target lengths, a dash elsewhere."""
    if row["bits"] not in TARGET_BITS:
        return "—"
    return "met" if row["codes"] >= target else f"missed by {target - row['codes']:.4f}"


def log(message: str) -> None:
    """Progress to stderr."""
    print(message, file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Score the selected corpora and write the page."""
    args = parse_args(argv)
    source_digest()
    command = "python bench/quality_corpora.py " + " ".join(sys.argv[1:] if argv is None else argv)
    corpora, models = {}, []
    for name in args.corpora:
        split = split_of(name)
        bars = baselines(name, split, args.embeddings)
        bars["target"] = target_of(bars, name)
        log(f"[{name}] baselines: " + json.dumps({k: round(v, 4) for k, v in bars.items()}))
        corpora[name] = {"split": split, "baselines": bars}
        models += score_models(args, name, split, bars)
    if args.json:
        args.json.write_text(json.dumps(json_ready(models), indent=1), "utf-8")
    if not args.no_page:
        write_page(args, command.strip(), corpora, models)
        log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
