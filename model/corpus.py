"""Corpus loading: 20news-bydate (tarball or folder), JSON Lines and folders of .txt files, and
(through `docbits.model.public_corpora`) the Reuters-21578 tarball and the AG News CSV.

Every loader returns `Document`s sorted by id, so the same corpus always loads in the same order
whatever the format it was stored in. The `clean` protocol strips newsgroup headers, quoted replies
and signatures (the behaviour of scikit-learn's `remove=('headers', 'footers', 'quotes')`).
"""

from __future__ import annotations

import json
import re
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from docbits.model.errors import CorpusError

PROTOCOLS = ("raw", "clean")
NEWSGROUPS_URL = "http://qwone.com/~jason/20Newsgroups/20news-bydate.tar.gz"
TARBALL_SUFFIXES = (".tar.xz", ".tar.gz", ".tgz", ".tar.bz2", ".tar")
JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json")

# A line is quoting when it introduces or carries someone else's words ("X writes:", "> ...").
QUOTE_LINE = re.compile(r"(writes in|writes:|wrote:|says:|said:|^In article|^Quoted from|^\||^>)")


@dataclass(frozen=True)
class Document:
    """One text with its id, its labels (topics; may be empty) and its split (None if unsplit)."""

    id: str
    text: str
    labels: tuple[str, ...] = ()
    split: str | None = None


def load_corpus(path: str | Path, protocol: str = "raw") -> list[Document]:
    """Load a corpus from `path`, choosing the reader by what the path is; sorted by id."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; expected one of {PROTOCOLS}")
    path = Path(path)
    if not path.exists():
        raise CorpusError(
            f"corpus not found at {path}. For 20 Newsgroups, download 20news-bydate.tar.gz from "
            f"{NEWSGROUPS_URL} and pass the tarball (or the folder it unpacks to)."
        )
    from docbits.model import public_corpora

    if public_corpora.is_ag_news_file(path):
        documents = public_corpora.load_ag_news(path)
    elif path.is_file() and path.name.endswith(TARBALL_SUFFIXES):
        if public_corpora.is_reuters_tarball(path):
            documents = public_corpora.load_reuters_modapte(path)
        else:
            documents = _clean_if_asked(_read_newsgroups_tarball(path), protocol)
    elif path.is_file() and path.name.endswith(JSONL_SUFFIXES):
        documents = list(_read_jsonl(path))
    elif path.is_dir() and _split_folders(path):
        documents = _clean_if_asked(_read_newsgroups_folder(path), protocol)
    elif path.is_dir():
        documents = list(_read_text_folder(path))
    else:
        raise CorpusError(
            f"cannot tell the format of {path}: expected a 20news-bydate or Reuters-21578 "
            f"tarball ({', '.join(TARBALL_SUFFIXES)}), an AG News CSV, a JSON Lines file "
            f"({', '.join(JSONL_SUFFIXES)}), "
            "a 20news-bydate folder or a folder of .txt files"
        )
    _check_unique_ids(documents, path)
    return sorted(documents, key=lambda document: document.id)


def clean_newsgroup_text(text: str) -> str:
    """Remove the header block, the signature and quoted lines from one newsgroup message."""
    return strip_quotes(strip_signature(strip_header(text)))


def strip_header(text: str) -> str:
    """Drop everything up to the first blank line (the message headers)."""
    _headers, _blank, body = text.partition("\n\n")
    return body


def strip_signature(text: str) -> str:
    """Drop the block after the last line made only of dashes or blanks (a signature separator)."""
    lines = text.strip().split("\n")
    separator = next(
        (
            number
            for number in range(len(lines) - 1, -1, -1)
            if not lines[number].strip().strip("-")
        ),
        None,
    )
    if separator is None or separator == 0:
        return text
    return "\n".join(lines[:separator])


def strip_quotes(text: str) -> str:
    """Drop lines that quote another message or introduce a quotation."""
    return "\n".join(line for line in text.split("\n") if not QUOTE_LINE.search(line))


def _clean_if_asked(documents: Iterable[Document], protocol: str) -> list[Document]:
    """Apply the `clean` stripping to newsgroup messages when the protocol asks for it."""
    if protocol == "raw":
        return list(documents)
    return [
        Document(document.id, clean_newsgroup_text(document.text), document.labels, document.split)
        for document in documents
    ]


def _split_name(folder_name: str) -> str | None:
    """Map a 20news top folder (`20news-bydate-train`, `train`, ...) to its split, else None."""
    for split in ("train", "test"):
        if folder_name == split or folder_name.endswith(f"-{split}"):
            return split
    return None


def _split_folders(path: Path) -> list[Path]:
    """The train/test folders directly inside `path` (empty when it is not a 20news folder)."""
    return sorted(
        child for child in path.iterdir() if child.is_dir() and _split_name(child.name) is not None
    )


def _newsgroup_document(split: str, group: str, name: str, raw: bytes) -> Document:
    """Build the Document of one message file; latin-1 decodes every byte losslessly."""
    return Document(
        id=f"{split}/{group}/{name}", text=raw.decode("latin-1"), labels=(group,), split=split
    )


def _read_newsgroups_tarball(path: Path) -> Iterator[Document]:
    """Stream the messages of a 20news-bydate tarball without unpacking it to disk."""
    try:
        with tarfile.open(path, "r:*") as archive:
            for member in archive:
                parts = PurePosixPath(member.name).parts
                if not member.isfile() or len(parts) < 3:
                    continue
                split = _split_name(parts[-3])
                if split is None:
                    continue
                handle = archive.extractfile(member)
                if handle is None:
                    continue
                yield _newsgroup_document(split, parts[-2], parts[-1], handle.read())
    except (tarfile.TarError, EOFError, OSError) as error:
        raise CorpusError(f"cannot read the tarball {path}: {error}") from error


def _read_newsgroups_folder(path: Path) -> Iterator[Document]:
    """Read an unpacked 20news-bydate folder: <split folder>/<group>/<message file>."""
    for split_folder in _split_folders(path):
        split = _split_name(split_folder.name)
        assert split is not None
        for group_folder in sorted(child for child in split_folder.iterdir() if child.is_dir()):
            for message in sorted(child for child in group_folder.iterdir() if child.is_file()):
                yield _newsgroup_document(
                    split, group_folder.name, message.name, message.read_bytes()
                )


def _read_jsonl(path: Path) -> Iterator[Document]:
    """Read one JSON object per line: `text` required; `id`, `labels`, `split` optional."""
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise CorpusError(f"{path}, line {number}: not valid JSON ({error.msg})") from error
            yield _jsonl_document(record, path, number)


def _jsonl_document(record: object, path: Path, number: int) -> Document:
    """Validate one JSON Lines record and turn it into a Document."""
    where = f"{path}, line {number}"
    if not isinstance(record, dict):
        raise CorpusError(f"{where}: expected a JSON object, got {type(record).__name__}")
    text = record.get("text")
    if not isinstance(text, str):
        raise CorpusError(f"{where}: missing or non-string 'text' field")
    labels = record.get("labels", ())
    if isinstance(labels, str):
        labels = (labels,)
    if not isinstance(labels, list | tuple) or not all(isinstance(x, str) for x in labels):
        raise CorpusError(f"{where}: 'labels' must be a string or a list of strings")
    split = record.get("split")
    if split is not None and not isinstance(split, str):
        raise CorpusError(f"{where}: 'split' must be a string")
    identifier = record.get("id", f"line-{number}")
    return Document(id=str(identifier), text=text, labels=tuple(labels), split=split)


def _read_text_folder(path: Path) -> Iterator[Document]:
    """Read every .txt file under `path` (recursively); id = path relative to the folder."""
    files = sorted(path.rglob("*.txt"))
    if not files:
        raise CorpusError(f"{path} holds no .txt files and is not a 20news-bydate folder")
    for file in files:
        raw = file.read_bytes()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = raw.decode("latin-1")
        yield Document(id=file.relative_to(path).as_posix(), text=text)


def _check_unique_ids(documents: list[Document], path: Path) -> None:
    """Refuse corpora where two documents share an id (lookups by id would be ambiguous)."""
    seen: set[str] = set()
    for document in documents:
        if document.id in seen:
            raise CorpusError(f"{path}: document id {document.id!r} appears more than once")
        seen.add(document.id)
