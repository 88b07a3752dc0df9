"""The docs cannot drift from the repository: links resolve, every setting is documented.

Two facts a reader relies on and nobody re-checks by hand: a relative link in README.md or
docs/ leads to a file (and, with ``#anchor``, to a heading) that exists; and every environment
variable the service, gunicorn.conf.py or the training CLI reads has a row in the README's
configuration table. The variables are found by reading the code's syntax tree, so a new
``os.environ.get("X")`` or ``env_int("X", ...)`` without a table row fails here.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
# Code whose environment variables are user settings.
SETTINGS_CODE = [REPO / "gunicorn.conf.py", *sorted((REPO / "flask_app").rglob("*.py")),
                 *sorted((REPO / "training").rglob("*.py"))]
# Set by the Gunicorn master for its own workers (snapshot paths, ownership flags), not by users.
INTERNAL = re.compile(r"^(MODEL_SNAPSHOT_DIR|SCL_DELAY_\w+)$")
# Calls whose first argument names an environment variable.
READERS = {"get", "getenv", "setdefault", "pop", "env_int", "env_choice", "env_float",
           "env_flag"}

LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^(```|~~~)")


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def prose_lines(page: Path) -> list[str]:
    """The page's lines outside fenced and indented code blocks."""
    lines, fenced = [], False
    for line in page.read_text().splitlines():
        if FENCE.match(line.strip()):
            fenced = not fenced
            continue
        if not fenced and not line.startswith("    "):
            lines.append(line)
    return lines


def anchors(page: Path) -> set[str]:
    return {slug(line.lstrip("#")) for line in prose_lines(page) if line.startswith("#")}


def relative_links(page: Path) -> list[str]:
    return [target for line in prose_lines(page) for target in LINK.findall(line)
            if not re.match(r"^[a-z]+:", target)]


def test_there_are_docs_pages_to_check():
    names = {page.name for page in PAGES}
    assert {"README.md", "api.md", "model.md", "performance.md", "operations.md",
            "development.md"} <= names


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_resolves(page: Path):
    broken = []
    for target in relative_links(page):
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        if not resolved.exists():
            broken.append(f"{target}: no such file")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            broken.append(f"{target}: no heading with that anchor")
    assert broken == []


def test_the_link_checker_sees_a_broken_link(tmp_path: Path):
    page = tmp_path / "page.md"
    page.write_text("# Title\n[ok](#title) [gone](missing.md) [bad](#nowhere)\n"
                    "```\n[in code](ignored.md)\n```\n")
    assert relative_links(page) == ["#title", "missing.md", "#nowhere"]
    assert anchors(page) == {"title"}


def variables_read(path: Path) -> set[str]:
    """Environment variable names ``path`` reads: ``os.environ[...]`` and reader calls whose
    first argument is a string literal or a module-level string constant."""
    tree = ast.parse(path.read_text())
    constants = {target.id: node.value.value
                 for node in tree.body if isinstance(node, ast.Assign)
                 for target in node.targets
                 if isinstance(target, ast.Name) and isinstance(node.value, ast.Constant)
                 and isinstance(node.value.value, str)}

    def name_of(arg: ast.AST) -> str | None:
        if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
            return arg.value
        if isinstance(arg, ast.Name):
            return constants.get(arg.id)
        return None

    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Subscript) and "environ" in ast.unparse(node.value):
            found.add(name_of(node.slice) or "")
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            on_environ = isinstance(func, ast.Attribute) and "environ" in ast.unparse(func.value)
            if called == "getenv" or (called in READERS
                                      and (on_environ or called.startswith("env_"))):
                found.add(name_of(node.args[0]) or "")
    return {name for name in found if re.fullmatch(r"[A-Z][A-Z0-9_]+", name)}


def configuration_table() -> set[str]:
    text = (REPO / "README.md").read_text()
    section = text.split("\n## Configuration", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `([A-Z][A-Z0-9_]+)`", section, flags=re.MULTILINE))


def test_every_environment_variable_the_code_reads_is_in_the_configuration_table():
    read = set().union(*(variables_read(path) for path in SETTINGS_CODE))
    settings = {name for name in read if not INTERNAL.match(name)}
    # The scan must find the settings everyone knows are there, or it is finding nothing.
    assert {"PORT", "WEB_CONCURRENCY", "MODEL_DIR", "LOG_LEVEL", "FLIGHT_DATA"} <= settings
    assert sorted(settings - configuration_table()) == []


def test_the_variable_scan_sees_every_way_of_reading(tmp_path: Path):
    module = tmp_path / "settings.py"
    module.write_text(
        "import os\nNAME = 'FROM_CONSTANT'\n"
        "a = os.environ.get('A_GET')\nb = os.environ['B_ITEM']\nc = os.getenv('C_GETENV')\n"
        "d = env_int('D_INT', 1)\ne = os.environ.get(NAME)\nf = {}.get('not_env')\n")
    assert variables_read(module) == {"A_GET", "B_ITEM", "C_GETENV", "D_INT", "FROM_CONSTANT"}
