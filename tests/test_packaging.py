"""Packaging stays consistent: torch pins, what the image copies, and what the README promises."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from docbits.service.cli import COMMANDS, build_parser
from docbits.service.errors import HTTP_CODE_NAMES
from docbits.service.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


def read(name: str) -> str:
    """Text of a file at the project root."""
    return (ROOT / name).read_text(encoding="utf-8")


def pyproject() -> dict:
    """The parsed pyproject.toml."""
    return tomllib.loads(read("pyproject.toml"))


def pinned_torch() -> str:
    """The torch version pyproject pins (`torch==X`)."""
    pins = [dep for dep in pyproject()["project"]["dependencies"] if dep.startswith("torch==")]
    assert len(pins) == 1, pins
    return pins[0].removeprefix("torch==")


def quick_start_commands() -> list[str]:
    """The shell commands of the README's first code block under `## Quick start`."""
    section = read("README.md").split("## Quick start", 1)[1]
    block = re.search(r"```(?:bash|sh)?\n(.*?)```", section, re.DOTALL)
    assert block is not None, "README's quick start has no code block"
    lines = (line.split("#", 1)[0].strip() for line in block.group(1).splitlines())
    return [line for line in lines if line]


def test_dockerfile_and_makefile_pin_the_torch_of_pyproject() -> None:
    version = pinned_torch()
    assert f"ARG TORCH_VERSION={version}\n" in read("Dockerfile")
    assert f'"torch=={version}"' in read("Makefile")


def source_packages() -> dict[str, str]:
    """Import name -> folder of every package under the top-level source folders."""
    mapping = pyproject()["tool"]["setuptools"]["package-dir"]
    found = {}
    for name, folder in mapping.items():
        for init in sorted((ROOT / folder).rglob("__init__.py")):
            relative = init.parent.relative_to(ROOT / folder).parts
            found[".".join((name, *relative))] = str(init.parent.relative_to(ROOT))
    return found


def test_every_source_package_is_installed_under_docbits() -> None:
    listed = set(pyproject()["tool"]["setuptools"]["packages"])
    assert set(source_packages()) == listed
    assert all(name.startswith("docbits.") for name in listed)


def test_wheel_holds_only_the_docbits_namespace(tmp_path: Path) -> None:
    source = tmp_path / "source"  # a copy, so the build leaves nothing in the checkout
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for folder in pyproject()["tool"]["setuptools"]["package-dir"].values():
        shutil.copytree(
            ROOT / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__")
        )
    subprocess.run(
        [
            *(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation"),
            *("-w", str(tmp_path), str(source)),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("docbits-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {name.split("/", 1)[0] for name in names if not name.startswith("docbits-")}
    assert top_level == {"docbits"}, top_level
    assert "docbits/service/app.py" in names
    assert "docbits/index/__init__.py" in names
    page_files = {f"docbits/service/web/{path.name}" for path in (ROOT / "service/web").iterdir()}
    assert {"docbits/service/web/index.html", "docbits/service/web/app.js"} <= page_files
    assert page_files <= set(names), page_files - set(names)


def test_image_receives_every_package() -> None:
    folders = set(pyproject()["tool"]["setuptools"]["package-dir"].values())
    assert folders == {"model", "index", "service"}
    dockerfile, dockerignore = read("Dockerfile"), read(".dockerignore").splitlines()
    for folder in sorted(folders):
        assert f"COPY {folder} ./{folder}\n" in dockerfile, folder
        assert f"!{folder}/" in dockerignore, folder


def test_ci_installs_the_browser_the_page_tests_drive() -> None:
    from tests.browser import CHROMIUM

    ci = read(".ci/run")
    install = ci.index("apt-get install -y -qq chromium")
    assert f"[ ! -x {CHROMIUM} ]" in ci and install < ci.index("\nmake test")
    dev = pyproject()["project"]["optional-dependencies"]["dev"]
    assert any(dep.startswith("playwright") for dep in dev)


def test_quick_start_is_two_make_targets_and_ci_runs_the_test_one() -> None:
    commands = quick_start_commands()
    assert commands == ["make run", "make test"]
    makefile = read("Makefile")
    for command in commands:
        target = command.removeprefix("make ")
        assert re.search(rf"^{target}:", makefile, re.MULTILINE), target
    ci_lines = [line.strip() for line in read(".ci/run").splitlines()]
    assert "make test" in ci_lines


def test_readme_documents_every_setting_and_command() -> None:
    readme = read("README.md")
    prefix = Settings.model_config["env_prefix"]
    missing = [f"{prefix}{name.upper()}" for name in Settings.model_fields]
    missing = [name for name in missing if f"`{name}`" not in readme]
    assert not missing, f"README's configuration table lacks {missing}"
    for command in COMMANDS:
        name = command.__name__.rsplit(".", 1)[-1]
        assert f"docbits {name}" in readme, name


def serve_flags() -> dict[str, str]:
    """DOCBITS_* variable -> the `docbits serve` flag that sets it, from the parser itself."""
    commands = next(a for a in build_parser()._actions if a.dest == "command")
    prefix = Settings.model_config["env_prefix"]
    flags = {
        f"{prefix}{action.dest.upper()}": action.option_strings[-1]
        for action in commands.choices["serve"]._actions
        if action.option_strings and action.dest != "help"
    }
    assert flags and set(flags) <= {f"{prefix}{name.upper()}" for name in Settings.model_fields}
    return flags


def configuration_table(document: str) -> dict[str, str]:
    """Variable -> flag cell of the markdown table under a document's `## Configuration`."""
    section = read(document).split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) >= 2 and re.fullmatch(r"`DOCBITS_[A-Z0-9_]+`", cells[0]):
            rows[cells[0].strip("`")] = cells[1]
    return rows


@pytest.mark.parametrize("document", ["README.md", "docs/api.md"])
def test_configuration_tables_agree_with_docbits_serve(document: str) -> None:
    """Each table lists every setting once, with exactly the flag `docbits serve --help` has."""
    table = configuration_table(document)
    prefix = Settings.model_config["env_prefix"]
    assert set(table) == {f"{prefix}{name.upper()}" for name in Settings.model_fields}
    flags = serve_flags()
    wrong = {
        variable: cell
        for variable, cell in table.items()
        if cell != (f"`{flags[variable]}`" if variable in flags else "—")
    }
    assert not wrong, f"{document}'s configuration table disagrees with docbits serve: {wrong}"


def codes_the_service_sends() -> set[str]:
    """Every error code written as a literal in the service's source, and the framework's."""
    literal = re.compile(
        r'(?:ApiError|error_response)\(\s*\d{3},\s*"([a-z_]+)"|"code": "([a-z_]+)"'
    )
    codes = set(HTTP_CODE_NAMES.values()) | {"http_error"}
    for source in (ROOT / "service").rglob("*.py"):
        for match in literal.finditer(source.read_text(encoding="utf-8")):
            codes.add(match.group(1) or match.group(2))
    return codes


def test_api_docs_list_every_error_code() -> None:
    section = read("docs/api.md").split("- **Errors**", 1)[1].split("- **Auth**", 1)[0]
    documented = set(re.findall(r"^  \| [^|]+ \| `([a-z_]+)` \|", section, re.MULTILINE))
    sent = codes_the_service_sends()
    assert {"uri_too_long", "invalid_json", "unknown_parameter", "no_model"} <= sent
    assert not sent - documented, f"docs/api.md's error table lacks {sent - documented}"
    assert not documented - sent, f"docs/api.md documents codes never sent: {documented - sent}"
