"""`docbits serve` settings: flags override DOCBITS_* variables, which override defaults."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from docbits.service.cli import build_parser
from docbits.service.commands.serve import settings_from_args


def test_flags_override_environment_and_environment_overrides_defaults(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DOCBITS_PORT", "7000")
    monkeypatch.setenv("DOCBITS_RADIUS_CAP", "2")
    monkeypatch.setenv("DOCBITS_API_KEY", "from-env")
    args = build_parser().parse_args(["serve", "--port", "9001", "--data-dir", "/tmp/d"])
    settings = settings_from_args(args)
    assert settings.port == 9001
    assert settings.radius_cap == 2
    assert settings.api_key is not None and settings.api_key.get_secret_value() == "from-env"
    assert str(settings.data_dir) == "/tmp/d"
    assert settings.host == "127.0.0.1" and settings.allow_open is False


def test_serve_refuses_an_open_api_beyond_loopback(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("DOCBITS_API_KEY", raising=False)
    args = build_parser().parse_args(["serve", "--host", "0.0.0.0", "--data-dir", str(tmp_path)])
    with pytest.raises(SystemExit, match=r"refusing to listen on 0\.0\.0\.0"):
        args.handler(args)


def test_serve_refuses_a_bad_store_url_naming_it_masked(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """DOCBITS_STORE_URL (or --store-url) that is not a PostgreSQL URL stops serve with one clear
    line, the password masked, before anything is served."""
    monkeypatch.setenv("DOCBITS_STORE_URL", "mysql://docbits:hunter2@db/docs")
    args = build_parser().parse_args(["serve", "--data-dir", str(tmp_path)])
    assert settings_from_args(args).store_url.get_secret_value().startswith("mysql://")
    with pytest.raises(SystemExit) as raised:
        args.handler(args)
    message = str(raised.value)
    assert message.startswith("docbits serve: unsupported store URL mysql://docbits:***@db/docs")
    assert "hunter2" not in message and "hunter2" not in repr(settings_from_args(args))
    args = build_parser().parse_args(
        ["serve", "--data-dir", str(tmp_path), "--store-url", "postgresql://u:hunter2@db:x/d"]
    )
    with pytest.raises(SystemExit, match=r"malformed store URL postgresql://u:\*\*\*@db:x/d"):
        args.handler(args)


def test_workers_read_the_parents_flags_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`--workers N` hands every flag to the workers as DOCBITS_* variables (the model import
    aside: the parent does it once), and a worker's settings read back the same."""
    from docbits.service.commands.serve import settings_environment
    from docbits.service.settings import Settings

    flags = ["--workers", "3", "--data-dir", str(tmp_path), "--radius-cap", "2", "--api-key"]
    flags += ["k3y", "--store-url", "postgresql://u:p@db/x", "--model", str(tmp_path)]
    args = build_parser().parse_args(["serve", *flags])
    parent = settings_from_args(args)
    environment = settings_environment(parent)
    assert "DOCBITS_MODEL_PATH" not in environment
    for name in [name for name in os.environ if name.startswith("DOCBITS_")]:
        monkeypatch.delenv(name)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    worker = Settings()
    assert worker.model_dump(exclude={"model_path"}) == parent.model_dump(exclude={"model_path"})
    assert worker.api_key.get_secret_value() == "k3y" and worker.workers == 3
