"""The documents stay true: the docs pages against the commands' options, RELIABILITY.md's counts against its
tables, and the exit codes everywhere against mnist_cli/core/errors.py."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from helpers import COMMANDS, REPO, command_options, option_names

from mnist_cli.core import errors

DOCS = REPO / "docs"
PAGES = [REPO / "README.md", REPO / "CONTRIBUTING.md", REPO / "RELIABILITY.md", *sorted(DOCS.glob("*.md"))]
_FENCE = re.compile(r"^```.*?^```", re.S | re.M)
_SPAN = re.compile(r"`([^`\n]+)`")
_OPTION = re.compile(r"(?<![\w-])(--?[a-zA-Z][\w-]*)")
_MNIST = re.compile(r"\bmnist ([a-z]+)\b([^|;&`]*)")
_EVERYWHERE = {"--help", "-h"}
_GROUP = {"--version", "--install-completion", "--show-completion"}


def _exit_codes() -> set[int]:
    """The exit codes errors.py defines (its module-level constants)."""
    return {value for name, value in vars(errors).items() if name.isupper() and isinstance(value, int)}


def _text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def _mentions(text: str) -> list[tuple[str | None, str]]:
    """(command or None, option) for each option the text names in code: after `mnist CMD`, or alone in a span."""
    found: list[tuple[str | None, str]] = []
    code_lines = [line for block in _FENCE.findall(text) for line in block.splitlines()]
    spans = _SPAN.findall(_FENCE.sub("", text))
    for piece in [*code_lines, *spans]:
        commands = list(_MNIST.finditer(piece))
        for match in commands:
            found += [(match.group(1), option) for option in _OPTION.findall(match.group(2))]
        if not commands and piece in spans and piece.startswith("-"):
            found += [(None, option) for option in _OPTION.findall(piece)]
    return found


@pytest.mark.parametrize("command", COMMANDS)
def test_every_option_of_a_command_is_on_its_docs_page(command: str) -> None:
    page = DOCS / f"{command}.md"
    assert page.is_file(), f"docs/{command}.md is missing"
    text = _text(page)
    missing = [name for name, spellings in command_options(command).items() if not any(f"`{s}" in text or f" {s}" in text for s in spellings)]
    assert missing == [], f"docs/{command}.md does not mention {missing}"


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(REPO)) for p in PAGES])
def test_the_docs_name_no_option_a_command_does_not_have(page: Path) -> None:
    own = page.stem if page.parent == DOCS and page.stem in COMMANDS else None
    anywhere = set().union(*(option_names(command) for command in COMMANDS)) | _EVERYWHERE | _GROUP
    wrong = []
    for command, option in _mentions(_text(page)):
        if command is not None and command not in COMMANDS:
            wrong.append(f"mnist {command} (no such command)")
        elif command is not None:
            if option not in option_names(command) | _EVERYWHERE:
                wrong.append(f"mnist {command} {option}")
        elif option not in (option_names(own) | _EVERYWHERE if own else anywhere):
            wrong.append(f"{own or 'any command'}: {option}")
    assert wrong == [], f"{page.name} names options that do not exist: {sorted(set(wrong))}"


def test_relative_links_lead_to_files_that_exist() -> None:
    broken = []
    for page in PAGES:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", _text(page)):
            if "://" not in target and not (page.parent / target).exists():
                broken.append(f"{page.relative_to(REPO)} -> {target}")
    assert broken == []


def _table(text: str, heading: str) -> list[list[str]]:
    """The body rows of the first table under `heading`, as lists of cells."""
    section = text.split(f"\n{heading}\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in row.strip("|").split(" | ")] for row in rows[2:]]


def test_the_readme_lists_exactly_the_exit_codes_errors_py_defines() -> None:
    rows = _table(_text(REPO / "README.md"), "## Exit codes")
    assert sorted(int(row[0]) for row in rows) == sorted(_exit_codes())


# RELIABILITY.md -----------------------------------------------------------------------------------

RELIABILITY = REPO / "RELIABILITY.md"
# The headline's phrases and the section whose table rows each one counts.
_COUNTED = {"faults survived": "## Faults", "bad inputs": "## Bad input", "hostile requests": "## `mnist serve`",
            "untrusted files": "## Untrusted files"}  # fmt: skip


def test_reliability_counts_are_the_rows_of_its_tables() -> None:
    text = _text(RELIABILITY)
    headline = text.split("\n\n", 2)[1]
    for phrase, heading in _COUNTED.items():
        stated = re.search(rf"(\d+) {phrase}", headline)
        assert stated, f"the headline of RELIABILITY.md does not say how many {phrase}"
        assert int(stated.group(1)) == len(_table(text, heading)), f"{phrase}: the {heading} table has {len(_table(text, heading))} rows"
    total = re.search(r"\*\*(\d+) in all\*\*", headline)
    assert total and int(total.group(1)) == sum(len(_table(text, heading)) for heading in _COUNTED.values())


def test_reliability_lists_every_exit_code_and_only_those() -> None:
    listed = re.search(r"Exit codes\s+are the README's table: (.*?)\. Every error", _text(RELIABILITY), re.S)
    assert listed, "RELIABILITY.md no longer lists the exit codes where this test looks"
    assert sorted(int(code) for code in re.findall(r"(?<![\w-])(\d+)\s+[a-zA-Z`]", listed.group(1))) == sorted(_exit_codes() - {errors.OK})


def test_every_test_reliability_md_names_exists() -> None:
    missing = []
    for file, name in sorted(set(re.findall(r"`(test_\w+\.py)::(test_\w+)", _text(RELIABILITY)))):
        path = REPO / "tests" / file
        defined = {node.name for node in ast.walk(ast.parse(_text(path))) if isinstance(node, ast.FunctionDef)} if path.is_file() else set()
        if name not in defined:
            missing.append(f"{file}::{name}")
    assert missing == []
