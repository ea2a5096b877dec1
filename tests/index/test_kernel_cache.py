"""`drop_stale_caches`: cached kernels go when any source of the package changes."""

from __future__ import annotations

from pathlib import Path

from docbits.index.kernel_cache import MARKER, drop_stale_caches


def package_with_cache(tmp_path: Path) -> Path:
    (tmp_path / "kernels.py").write_text("X = 1\n")
    (tmp_path / "single_query.py").write_text("Y = 2\n")
    (tmp_path / "__pycache__").mkdir()
    return tmp_path


def cached_files(package: Path) -> list[str]:
    return sorted(path.name for path in (package / "__pycache__").glob("*.nb?"))


def test_caches_survive_while_sources_stay_and_go_when_one_changes(tmp_path: Path) -> None:
    package = package_with_cache(tmp_path)
    assert drop_stale_caches(package)  # no digest recorded yet: nothing cached is trusted
    (package / "__pycache__" / "single_query.probe-1.py311.nbi").write_bytes(b"index")
    (package / "__pycache__" / "single_query.probe-1.py311.1.nbc").write_bytes(b"code")
    (package / "__pycache__" / "kernels.cpython-311.pyc").write_bytes(b"pyc")
    assert not drop_stale_caches(package)
    assert len(cached_files(package)) == 2
    (package / "kernels.py").write_text("X = 3\n")  # the other file's kernels inline this one
    assert drop_stale_caches(package)
    assert cached_files(package) == []
    assert (package / "__pycache__" / "kernels.cpython-311.pyc").exists()
    assert (package / "__pycache__" / MARKER).exists()


def test_an_unwritable_cache_folder_is_left_alone(tmp_path: Path) -> None:
    package = package_with_cache(tmp_path)
    (package / "__pycache__").rmdir()
    (package / "__pycache__").write_text("not a folder")
    assert not drop_stale_caches(package)
