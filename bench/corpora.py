"""The corpora of the per-corpus quality page, each an `EvalSplit` built as `docbits eval` builds
it: 20 Newsgroups `clean` and `raw`, the small coarse 20 Newsgroups set, AG News and Reuters.

Data files come from `DOCBITS_DATA` (default: ../shared/data beside the repository).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from docbits.model.corpus import load_corpus
from docbits.model.evaluate import EvalSplit, prepare_split, split_from_documents
from docbits.model.public_corpora import small_coarse_newsgroups

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("DOCBITS_DATA", ROOT.parent / "shared" / "data"))
NEWSGROUPS = DATA / "20news-bydate.tar.xz"
REUTERS = DATA / "reuters21578.tar.xz"
AG_NEWS = DATA / "ag_news_test.csv.xz"


@dataclass(frozen=True)
class CorpusSpec:
    """One row group of the page: a name, a description and how to build its split."""

    name: str
    title: str
    build: Callable[[], EvalSplit]
    # Published unsupervised P@100 per code length, measured on a similar (not identical) split.
    anchors: dict[str, dict[int, float]]


def small_coarse_split() -> EvalSplit:
    """The small coarse 20 Newsgroups set (whole messages) as an EvalSplit."""
    documents = small_coarse_newsgroups(load_corpus(NEWSGROUPS, "raw"))
    return split_from_documents(documents, f"{NEWSGROUPS} (small coarse)", "raw")


CORPORA: dict[str, CorpusSpec] = {
    spec.name: spec
    for spec in (
        CorpusSpec(
            "20ng-clean",
            "20 Newsgroups `clean` (headers, quotes, signatures stripped; 20 labels)",
            lambda: prepare_split(NEWSGROUPS, "clean"),
            {"SNUH (ACL 2021)": {16: 0.5775, 32: 0.6387, 64: 0.6646, 128: 0.6731}},
        ),
        CorpusSpec(
            "20ng-raw",
            "20 Newsgroups `raw` (messages as released; 20 labels)",
            lambda: prepare_split(NEWSGROUPS, "raw"),
            {},
        ),
        CorpusSpec(
            "20ng-small-coarse",
            "20 Newsgroups, 2,000 / 1,000 whole messages, six top-level topics",
            small_coarse_split,
            {},
        ),
        CorpusSpec(
            "ag-news",
            "AG News test set, seeded 80/20 (4 labels, ~230 characters)",
            lambda: prepare_split(AG_NEWS, "raw"),
            {},
        ),
        CorpusSpec(
            "reuters",
            "Reuters-21578 ModApte, the 90 topics with train and test documents (multi-label)",
            lambda: prepare_split(REUTERS, "raw"),
            {"AMMI (ICML 2020)": {32: 0.8446}},
        ),
    )
}


@functools.cache
def split_of(name: str) -> EvalSplit:
    """The EvalSplit of a named corpus (built once per process)."""
    return CORPORA[name].build()
