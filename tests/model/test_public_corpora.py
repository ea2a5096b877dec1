"""Readers of the public benchmark corpora: the real Reuters-21578 and AG News files, the small
coarse 20 Newsgroups set, and the formats they are recognised by."""

from __future__ import annotations

import io
import lzma
import tarfile
from pathlib import Path

import pytest

from docbits.model.corpus import Document, load_corpus
from docbits.model.errors import CorpusError
from docbits.model.public_corpora import (
    coarse_topic,
    label_counts,
    load_ag_news,
    small_coarse_newsgroups,
)

NEWSGROUP_NAMES = [
    "alt.atheism", "comp.graphics", "comp.os.ms-windows.misc", "comp.sys.ibm.pc.hardware",
    "comp.sys.mac.hardware", "comp.windows.x", "misc.forsale", "rec.autos", "rec.motorcycles",
    "rec.sport.baseball", "rec.sport.hockey", "sci.crypt", "sci.electronics", "sci.med",
    "sci.space", "soc.religion.christian", "talk.politics.guns", "talk.politics.mideast",
    "talk.politics.misc", "talk.religion.misc",
]  # fmt: skip


def test_reuters_modapte_has_the_published_counts(reuters_path: Path) -> None:
    documents = load_corpus(reuters_path)
    train = [document for document in documents if document.split == "train"]
    test = [document for document in documents if document.split == "test"]
    assert (len(train), len(test)) == (7770, 3019)
    counts = label_counts(documents)
    assert len(counts) == 90
    train_counts, test_counts = label_counts(train), label_counts(test)
    assert (train_counts["earn"], test_counts["earn"]) == (2877, 1087)
    assert (train_counts["acq"], test_counts["acq"]) == (1650, 719)
    assert all(train_counts[topic] and test_counts[topic] for topic in counts)
    assert sum(len(document.labels) == 1 for document in train) == 6578
    first, second = train[:2]
    assert (first.id, first.labels) == ("train/00001", ("cocoa",))
    assert first.text.startswith("BAHIA COCOA REVIEW\nShowers continued throughout the week")
    assert second.labels == ("barley", "corn", "grain", "oat", "sorghum", "wheat")
    assert not any("&lt;" in document.text or "\x03" in document.text for document in documents)


def test_ag_news_reads_every_row_with_its_class(ag_news_path: Path) -> None:
    documents = load_corpus(ag_news_path)
    assert len(documents) == 7600
    assert label_counts(documents) == {"World": 1900, "Sports": 1900, "Business": 1900,
                                       "Sci/Tech": 1900}  # fmt: skip
    first = documents[0]
    assert first.id == "000001" and first.labels == ("Business",) and first.split is None
    assert first.text.startswith("Fears for T N pension after talks\nUnions representing")
    assert all("\\" not in document.text for document in documents)


def test_ag_news_format_errors_name_the_row(tmp_path: Path) -> None:
    path = tmp_path / "news.csv"
    path.write_text('label,title,description\n3,"A title","A text"\n9,bad,row\n', "utf-8")
    with pytest.raises(CorpusError, match="row 2"):
        load_ag_news(path)
    packed = tmp_path / "news.csv.xz"
    packed.write_bytes(lzma.compress(b'label,title,description\n4,"T","one\\\\two"\n'))
    assert load_corpus(packed) == [Document("000001", "T\none\n\ntwo", ("Sci/Tech",))]


def test_a_tarball_without_reuters_files_is_still_read_as_newsgroups(tmp_path: Path) -> None:
    path = tmp_path / "news.tar.gz"
    with tarfile.open(path, "w:gz") as archive:
        data = b"From: a@b\n\nOrbits.\n"
        member = tarfile.TarInfo("20news-bydate-train/sci.space/1")
        member.size = len(data)
        archive.addfile(member, io.BytesIO(data))
    assert [document.labels for document in load_corpus(path)] == [("sci.space",)]


def test_every_newsgroup_has_one_of_six_coarse_topics() -> None:
    topics = {name: coarse_topic(name) for name in NEWSGROUP_NAMES}
    assert len(set(topics.values())) == 6
    assert topics["talk.religion.misc"] == topics["alt.atheism"] == "religion"
    assert topics["talk.politics.guns"] == "politics" and topics["misc.forsale"] == "forsale"
    with pytest.raises(CorpusError):
        coarse_topic("news.answers")


def test_small_coarse_set_is_the_seeded_draw_of_both_splits(newsgroups_path: Path) -> None:
    documents = small_coarse_newsgroups(load_corpus(newsgroups_path, "raw"))
    assert [document.split for document in documents] == ["train"] * 2000 + ["test"] * 1000
    assert len({document.id for document in documents}) == 3000
    assert {document.id.split("/")[0] for document in documents} == {"train", "test"}
    assert len(label_counts(documents)) == 6
    assert documents[0].text.startswith("From:")  # whole messages, headers kept
    again = small_coarse_newsgroups(list(reversed(load_corpus(newsgroups_path, "raw"))))
    assert again == documents
