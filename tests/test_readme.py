"""The README's examples, run as written; its links into the documentation resolve.

The examples the README used to hold moved to the documentation pages with their tests
(``tests/test_docs.py``): the C package (``test_c_package``), the sync pool, commit request and
other examples (``test_python_example_runs``), slots and futures, values or an exception, the
two plugins and their imports, the Dask example (``test_dask_example``), the exit status table
with the signal statuses (``test_cli_page_covers_every_command_and_exit_status``) and the
configuration reference.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from helpers import REPO

README = (REPO / "README.md").read_text()


def block(language: str, containing: str) -> str:
    blocks = re.findall(rf"```{language}\n(.*?)```", README, flags=re.S)
    matches = [b for b in blocks if containing in b]
    assert len(matches) == 1, f"expected one {language} block containing {containing!r}"
    return matches[0]


def test_readme_async_embedding(package_dir: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(block("python", "async def main(package_dir"), namespace)
    asyncio.run(namespace["main"](package_dir))
    assert "outputs: [55]" in capsys.readouterr().out
    assert (tmp_path / "logs" / "em-1-1.log").is_file()


def test_readme_python_blocks_are_all_tested() -> None:
    assert re.findall(r"```python\n", README) == ["```python\n"]


def test_readme_links_into_every_docs_page() -> None:
    links = re.findall(r"\]\((docs/[^)#]+)", README)
    assert {f"docs/{page.name}" for page in (REPO / "docs").glob("*.md")} <= set(links)
    for link in links:
        assert (REPO / link).is_file(), link


def test_readme_fits_in_about_8_kb() -> None:
    """What a newcomer needs on a screen or two; the rest belongs in docs/."""
    assert len(README.encode()) <= 8 * 1024
