"""Readers for the public benchmark corpora beside 20 Newsgroups: Reuters-21578 (ModApte, the 90
topics with train and test documents), AG News (the CSV of its test set) and the small coarse
20 Newsgroups set (2,000 train / 1,000 test whole messages, six top-level topics).

`load_corpus` in `docbits.model.corpus` calls the first two when it recognises the file, so
`docbits train` and `docbits eval` read them as they are released.
"""

from __future__ import annotations

import csv
import html
import io
import lzma
import random
import re
import tarfile
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path

from docbits.model.corpus import Document
from docbits.model.errors import CorpusError

AG_NEWS_HEADER = ["label", "title", "description"]
AG_NEWS_LABELS = {"1": "World", "2": "Sports", "3": "Business", "4": "Sci/Tech"}
REUTERS_FILE = re.compile(r"reut2-\d{3}\.sgm$")

# The six top-level topics of 20 Newsgroups (computers, recreation, science, for sale, politics,
# religion), as the collection's own page groups its newsgroups.
COARSE_TOPICS = {
    "comp": "computers",
    "rec": "recreation",
    "sci": "science",
    "misc.forsale": "forsale",
    "talk.politics": "politics",
    "alt.atheism": "religion",
    "soc.religion": "religion",
    "talk.religion": "religion",
}
SMALL_COARSE_SEED = 2026
SMALL_COARSE_TRAIN = 2000
SMALL_COARSE_TEST = 1000

_REUTERS_ELEMENT = re.compile(r"<REUTERS(?P<attributes>[^>]*)>(?P<body>.*?)</REUTERS>", re.S)
_ATTRIBUTE = re.compile(r'(\w+)="([^"]*)"')
_TOPIC = re.compile(r"<D>(.*?)</D>", re.S)


def is_ag_news_file(path: Path) -> bool:
    """True for a CSV (plain or .xz) whose header is AG News' `label,title,description`."""
    if not path.is_file() or not path.name.endswith((".csv", ".csv.xz")):
        return False
    try:
        with _open_text(path) as lines:
            return next(csv.reader(lines), None) == AG_NEWS_HEADER
    except (OSError, lzma.LZMAError, UnicodeDecodeError):
        return False


def load_ag_news(path: str | Path) -> list[Document]:
    """AG News rows as Documents: title and description (backslashes stand for line breaks),
    label = the class name, no split (the evaluation's seeded 80/20 split applies)."""
    path = Path(path)
    documents = []
    try:
        with _open_text(path) as lines:
            reader = csv.reader(lines)
            if next(reader, None) != AG_NEWS_HEADER:
                raise CorpusError(f"{path}: not an AG News CSV (header {AG_NEWS_HEADER} expected)")
            for number, row in enumerate(reader, start=1):
                if len(row) != 3 or row[0] not in AG_NEWS_LABELS:
                    raise CorpusError(f"{path}, row {number}: expected label 1-4, title, text")
                label, title, description = row
                text = f"{title}\n{description}".replace("\\", "\n")
                documents.append(Document(f"{number:06d}", text, (AG_NEWS_LABELS[label],)))
    except (OSError, lzma.LZMAError, UnicodeDecodeError, csv.Error) as error:
        raise CorpusError(f"cannot read the AG News file {path}: {error}") from error
    if not documents:
        raise CorpusError(f"{path}: no rows after the header")
    return documents


def is_reuters_tarball(path: Path) -> bool:
    """True for a tarball holding the Reuters-21578 `reut2-NNN.sgm` files."""
    try:
        with tarfile.open(path, "r:*") as archive:
            return any(REUTERS_FILE.search(member.name) for member in archive)
    except (tarfile.TarError, EOFError, OSError):
        return False


def load_reuters_modapte(path: str | Path) -> list[Document]:
    """The ModApte split of Reuters-21578 restricted to the topics with at least one train and
    one test document (90 topics): every TRAIN/TEST story with TOPICS="YES" holding at least one
    of them, labelled with those topics only (multi-label). Text = title and body."""
    stories = list(reuters_stories(Path(path)))
    if not stories:
        raise CorpusError(f"{path}: no Reuters-21578 stories found (reut2-NNN.sgm)")
    modapte = [story for story in stories if story[1] in ("train", "test")]
    topic_splits: dict[str, set[str]] = {}
    for _, split, topics, _ in modapte:
        for topic in topics:
            topic_splits.setdefault(topic, set()).add(split)
    kept_topics = {topic for topic, splits in topic_splits.items() if splits == {"train", "test"}}
    documents = []
    for newid, split, topics, text in modapte:
        labels = tuple(sorted(set(topics) & kept_topics))
        if labels:
            documents.append(Document(f"{split}/{newid:05d}", text, labels, split))
    return documents


def reuters_stories(path: Path) -> Iterator[tuple[int, str | None, tuple[str, ...], str]]:
    """(NEWID, "train"/"test"/None, TOPICS, title + body) of every story with TOPICS="YES"."""
    try:
        with tarfile.open(path, "r:*") as archive:
            for member in archive:
                if not member.isfile() or not REUTERS_FILE.search(member.name):
                    continue
                handle = archive.extractfile(member)
                if handle is None:
                    continue
                yield from _parse_reuters_sgml(handle.read().decode("latin-1"))
    except (tarfile.TarError, EOFError, OSError) as error:
        raise CorpusError(f"cannot read the tarball {path}: {error}") from error


def _parse_reuters_sgml(sgml: str) -> Iterator[tuple[int, str | None, tuple[str, ...], str]]:
    """Stories of one reut2 file with TOPICS="YES" (a regex: the files are not valid XML)."""
    for element in _REUTERS_ELEMENT.finditer(sgml):
        attributes = dict(_ATTRIBUTE.findall(element["attributes"]))
        if attributes.get("TOPICS") != "YES":
            continue
        body = element["body"]
        split = {"TRAIN": "train", "TEST": "test"}.get(attributes.get("LEWISSPLIT", ""))
        topics_block = _between(body, "TOPICS")
        topics = tuple(_TOPIC.findall(topics_block))
        text = "\n".join(part for part in (_between(body, "TITLE"), _between(body, "BODY")) if part)
        yield int(attributes["NEWID"]), split, topics, _unescape(text)


def _between(text: str, tag: str) -> str:
    """The content of the first <tag>...</tag> in `text`, or '' when absent."""
    found = re.search(rf"<{tag}>(.*?)</{tag}>", text, re.S)
    return found.group(1).strip() if found else ""


def _unescape(text: str) -> str:
    """SGML character references to characters; control characters (&#3; ends a story) dropped."""
    return "".join(ch for ch in html.unescape(text) if ch.isprintable() or ch in "\n\t")


def coarse_topic(newsgroup: str) -> str:
    """The top-level topic of a 20 Newsgroups newsgroup name (see COARSE_TOPICS)."""
    for prefix, topic in COARSE_TOPICS.items():
        if newsgroup == prefix or newsgroup.startswith(prefix + "."):
            return topic
    raise CorpusError(f"newsgroup {newsgroup!r} has no coarse topic")


def small_coarse_newsgroups(documents: Sequence[Document]) -> list[Document]:
    """The small coarse 20 Newsgroups set from all messages of both 20news-bydate splits (pass
    them whole, protocol `raw`): sorted by path, shuffled with `random.Random(2026)`, the first
    2,000 become train and the next 1,000 test, labelled with their coarse topic."""
    if len(documents) < SMALL_COARSE_TRAIN + SMALL_COARSE_TEST:
        raise CorpusError(
            f"the small coarse set needs {SMALL_COARSE_TRAIN + SMALL_COARSE_TEST} messages, "
            f"got {len(documents)}"
        )
    ordered = sorted(documents, key=lambda document: document.id)
    random.Random(SMALL_COARSE_SEED).shuffle(ordered)
    chosen = ordered[: SMALL_COARSE_TRAIN + SMALL_COARSE_TEST]
    return [
        Document(
            document.id,
            document.text,
            tuple(sorted({coarse_topic(label) for label in document.labels})),
            "train" if position < SMALL_COARSE_TRAIN else "test",
        )
        for position, document in enumerate(chosen)
    ]


def label_counts(documents: Sequence[Document]) -> Counter[str]:
    """How many documents carry each label."""
    return Counter(label for document in documents for label in document.labels)


def _open_text(path: Path) -> io.TextIOBase:
    """A text handle on a plain or xz-compressed UTF-8 file (newline='' as csv wants)."""
    if path.name.endswith(".xz"):
        return lzma.open(path, "rt", encoding="utf-8", newline="")
    return path.open(encoding="utf-8", newline="")
