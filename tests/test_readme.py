"""The README's links into the documentation resolve, and it stays short; its examples run
as pasted in ``tests/test_docs.py`` (``test_readme_runs_as_pasted``, and the first of its
"two commands" in ``tests/test_packaging.py``).

The examples the README used to hold moved to the documentation pages with their tests
(``tests/test_docs.py``): the C package (``test_c_package``), the sync pool, commit request and
other examples (``test_python_example_runs``), slots and futures, values or an exception, the
two plugins and their imports, the Dask example (``test_dask_example``), the exit status table
with the signal statuses (``test_cli_page_covers_every_command_and_exit_status``) and the
configuration reference.
"""

from __future__ import annotations

import re

from helpers import REPO

README = (REPO / "README.md").read_text()


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


def test_readme_console_blocks_are_each_run() -> None:
    """Each runs in a test as pasted: the install and demo in tests/test_packaging.py, the
    tour in tests/test_docs.py; but the second, which runs this very suite."""
    blocks = re.findall(r"```console\n(.*?)```", README, flags=re.S)
    assert len(blocks) == 3
    assert blocks[0].endswith("pip install . && spider demo\n")
    assert blocks[1].endswith("pip install -e '.[test]' && pytest\n")
    assert "$ export SPIDER_TDL_PACKAGE_DIR=" in blocks[2]
