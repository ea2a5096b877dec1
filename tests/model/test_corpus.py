"""Corpus readers on tiny hand-built inputs, the clean protocol, and the real 20NG counts."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from docbits.model.corpus import (
    Document,
    clean_newsgroup_text,
    load_corpus,
    strip_header,
    strip_quotes,
    strip_signature,
)
from docbits.model.errors import CorpusError

MESSAGE = (
    "From: someone@example.org\n"
    "Subject: Re: engines\n"
    "Lines: 9\n"
    "\n"
    "In article <1@x.org> other@example.org writes:\n"
    "> the old engine was better\n"
    "| and so was the gearbox\n"
    "I disagree: the new engine is quieter.\n"
    "It is also cheaper to run.\n"
    "\n"
    "-- \n"
    "Someone, Example Org\n"
)
MESSAGES = {
    ("20news-bydate-train", "rec.autos", "101"): MESSAGE,
    ("20news-bydate-train", "sci.space", "7"): "From: a@b\n\nOrbits and rockets.\n",
    ("20news-bydate-test", "rec.autos", "205"): "From: c@d\n\nCaf\xe9 racer engine\n",
}


def write_folder(root: Path) -> Path:
    """Unpack MESSAGES into a 20news-bydate style folder under `root`."""
    for (split_folder, group, name), text in MESSAGES.items():
        path = root / split_folder / group / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text.encode("latin-1"))
    return root


def write_tarball(path: Path) -> Path:
    """Pack MESSAGES into a .tar.gz whose layout mirrors the real release."""
    with tarfile.open(path, "w:gz") as archive:
        for (split_folder, group, name), text in MESSAGES.items():
            data = text.encode("latin-1")
            member = tarfile.TarInfo(f"{split_folder}/{group}/{name}")
            member.size = len(data)
            archive.addfile(member, io.BytesIO(data))
    return path


EXPECTED_RAW = [
    Document("test/rec.autos/205", "From: c@d\n\nCaf\xe9 racer engine\n", ("rec.autos",), "test"),
    Document("train/rec.autos/101", MESSAGE, ("rec.autos",), "train"),
    Document("train/sci.space/7", "From: a@b\n\nOrbits and rockets.\n", ("sci.space",), "train"),
]


def test_folder_and_tarball_load_the_same_documents(tmp_path: Path) -> None:
    from_folder = load_corpus(write_folder(tmp_path / "unpacked"), "raw")
    from_tarball = load_corpus(write_tarball(tmp_path / "news.tar.gz"), "raw")
    assert from_folder == EXPECTED_RAW
    assert from_tarball == EXPECTED_RAW


def test_clean_protocol_strips_headers_quotes_and_signature(tmp_path: Path) -> None:
    documents = {d.id: d for d in load_corpus(write_tarball(tmp_path / "n.tar.gz"), "clean")}
    cleaned = documents["train/rec.autos/101"].text
    assert cleaned == "I disagree: the new engine is quieter.\nIt is also cheaper to run.\n"
    assert documents["train/sci.space/7"].labels == ("sci.space",)


def test_strip_steps_one_by_one() -> None:
    assert strip_header("A: b\nC: d\n\nbody\n\nmore") == "body\n\nmore"
    assert strip_header("no blank line here") == ""
    assert strip_signature("text\nmore text\n--\nsig line") == "text\nmore text"
    assert strip_signature("nothing to cut") == "nothing to cut"
    assert strip_signature("\nonly after a leading blank") == "\nonly after a leading blank"
    assert strip_quotes("keep\n> drop\nJoe wrote:\nIn article x\nalso keep") == "keep\nalso keep"
    assert clean_newsgroup_text("H: x\n\nbody line\n> quoted") == "body line"


def test_clean_matches_the_documented_order_headers_footers_quotes() -> None:
    text = "H: v\n\nfirst\n\n> quoted after the last blank line"
    # Footer stripping cuts at the last blank line before quotes are looked at.
    assert clean_newsgroup_text(text) == "first"


def test_jsonl_reads_fields_and_defaults(tmp_path: Path) -> None:
    path = tmp_path / "docs.jsonl"
    lines = [
        {"id": "b", "text": "second", "labels": ["x", "y"], "split": "test"},
        {"id": "a", "text": "first", "labels": "x"},
        {"text": "no id"},
    ]
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n\n", "utf-8")
    documents = load_corpus(path, "clean")
    assert documents == [
        Document("a", "first", ("x",), None),
        Document("b", "second", ("x", "y"), "test"),
        Document("line-3", "no id", (), None),
    ]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "line 2: not valid JSON"),
        ('{"id": "z"}', "line 2: missing or non-string 'text'"),
        ('["a list"]', "line 2: expected a JSON object"),
        ('{"text": "t", "labels": [1]}', "line 2: 'labels' must be"),
    ],
)
def test_jsonl_errors_name_the_line(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"id": "ok", "text": "fine"}\n' + line + "\n", "utf-8")
    with pytest.raises(CorpusError, match=message):
        load_corpus(path)


def test_jsonl_duplicate_ids_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "dup.jsonl"
    path.write_text('{"id": "a", "text": "1"}\n{"id": "a", "text": "2"}\n', "utf-8")
    with pytest.raises(CorpusError, match="more than once"):
        load_corpus(path)


def test_text_folder_ids_are_relative_paths(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "one.txt").write_text("first text", "utf-8")
    (tmp_path / "sub" / "two.txt").write_bytes("na\xefve".encode("latin-1"))
    (tmp_path / "ignored.md").write_text("not a txt file", "utf-8")
    assert load_corpus(tmp_path) == [
        Document("one.txt", "first text"),
        Document("sub/two.txt", "na\xefve"),
    ]


def test_empty_folder_and_unknown_file_are_errors(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match=r"no \.txt files"):
        load_corpus(tmp_path)
    odd = tmp_path / "corpus.csv"
    odd.write_text("a,b", "utf-8")
    with pytest.raises(CorpusError, match="cannot tell the format"):
        load_corpus(odd)


def test_missing_path_says_where_to_get_20news(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match=r"qwone\.com/~jason/20Newsgroups/20news-bydate\.tar\.gz"):
        load_corpus(tmp_path / "20news-bydate.tar.xz")


def test_damaged_tarball_is_a_corpus_error(tmp_path: Path) -> None:
    path = tmp_path / "broken.tar.gz"
    path.write_bytes(b"definitely not gzip")
    with pytest.raises(CorpusError, match="cannot read the tarball"):
        load_corpus(path)


def test_unknown_protocol_is_a_value_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="protocol"):
        load_corpus(tmp_path, protocol="tidy")


def test_real_20news_tarball_counts(newsgroups_path: Path) -> None:
    documents = load_corpus(newsgroups_path, "raw")
    splits = [d.split for d in documents]
    assert splits.count("train") == 11_314
    assert splits.count("test") == 7_532
    assert len({d.labels for d in documents}) == 20
