"""The documentation: every Python example runs, the errors table is generated, the tutorial runs.

Examples are the ```` ```python ```` blocks of README.md and docs/**/*.md. A block preceded by
the line ``<!-- no-test -->`` is skipped (used only for examples that need a cluster or a long
run); each skipped block is listed by ``test_opt_outs_are_few``.
"""

from __future__ import annotations

import re
import runpy
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
NO_TEST = "<!-- no-test -->"
BLOCK = re.compile(r"(?P<before>[^\n]*)\n```python\n(?P<code>.*?)\n```", re.DOTALL)

sys.path.insert(0, str(ROOT / "scripts"))
import errors_table  # noqa: E402


def _blocks() -> list[tuple[str, str, bool]]:
    out = []
    for page in PAGES:
        text = "\n" + page.read_text(encoding="utf-8")
        for i, m in enumerate(BLOCK.finditer(text)):
            if "--8<--" in m.group("code"):  # a snippet include: the tutorial test runs it
                continue
            skip = m.group("before").strip() == NO_TEST
            out.append((f"{page.relative_to(ROOT)}#{i}", m.group("code"), skip))
    return out


BLOCKS = _blocks()


def test_the_pages_have_examples() -> None:
    names = {name.split("#")[0] for name, _, _ in BLOCKS}
    assert "README.md" in names
    assert len(BLOCKS) >= 5


def test_opt_outs_are_few() -> None:
    skipped = [name for name, _, skip in BLOCKS if skip]
    assert len(skipped) <= 2, skipped


@pytest.mark.parametrize(
    "code", [c for _, c, skip in BLOCKS if not skip], ids=[n for n, _, s in BLOCKS if not s]
)
def test_example_runs(code: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # examples may write files
    exec(compile(code, "<example>", "exec"), {"__name__": "__example__"})


def test_errors_page_is_the_generated_table() -> None:
    page = (ROOT / "docs" / "errors.md").read_text(encoding="utf-8")
    table = errors_table.errors_table()
    assert errors_table.committed_table(page) == table
    assert table.count("\n") > 100  # one row per case, plus the header
    # the generator replaces the table and nothing else
    stale = errors_table.page_with_table(page, "| stale |\n")
    assert errors_table.committed_table(stale) == "| stale |\n"
    assert errors_table.page_with_table(stale, table) == page


def test_tutorial_runs_and_plots_both_methods(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from distill_agents.results import read_csv

    monkeypatch.setattr(sys, "argv", ["tutorial.py", str(tmp_path)])
    runpy.run_path(str(ROOT / "docs" / "tutorial.py"), run_name="__main__")
    rows = read_csv(tmp_path / "tutorial.csv")
    assert {row.method for row in rows} == {"teacher_distill", "on_policy_distill"}
    assert (tmp_path / "tutorial.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_nav_lists_every_page_and_only_existing_ones() -> None:
    config = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    nav = re.findall(r":\s+(\S+\.md)\s*$", config, flags=re.MULTILINE)
    pages = {str(p.relative_to(ROOT / "docs")) for p in (ROOT / "docs").rglob("*.md")}
    assert len(nav) == len(set(nav))
    assert set(nav) == pages


def test_readme_keeps_the_two_commands_ci_runs() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    main_job = "pip install -e . && distill-grid reproduce fig3 --quick --out results"
    test_cmd = 'pip install torch==2.13.0 && pip install -e ".[dev,sb3,ray]" && python -m pytest'
    assert readme.index(main_job) < readme.index(test_cmd) < 20
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert test_cmd in ci
    assert 'mkdocs build --strict --site-dir "$(mktemp -d)"' in ci
    assert len(readme) <= 200
