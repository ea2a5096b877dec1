"""`docbits serve` settings: flags override DOCBITS_* variables, which override defaults."""

from __future__ import annotations

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
