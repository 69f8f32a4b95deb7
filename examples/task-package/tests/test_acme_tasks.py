"""acme_tasks, installed as a wheel, run by spider-core's pool through its pytest plugin.

``@pytest.mark.spider_pool(package_dir=None)`` gives a pool with no package directory: every
package comes from the installed distributions.
"""

from importlib.metadata import distribution

import pytest

from spider_core import ExecuteRequest, InTaskFailure, TaskError
from spider_core.testing import assert_outcome

pytestmark = pytest.mark.spider_pool(package_dir=None)


def test_triangle(spider_pool) -> None:
    outcome = spider_pool.execute(ExecuteRequest(package="acme_tasks", task="triangle", inputs=[10]), hard_timeout=10)
    assert_outcome(outcome, "Success", [55])


def test_refuse_is_a_task_failure(spider_pool) -> None:
    outcome = spider_pool.execute(ExecuteRequest(package="acme_tasks", task="refuse"), hard_timeout=10)
    assert isinstance(outcome, InTaskFailure) and isinstance(outcome.error, TaskError)
    assert outcome.error.error.message == "acme_tasks refuses"


def test_a_bad_argument_is_a_deserialization_error(spider_pool) -> None:
    outcome = spider_pool.execute(ExecuteRequest(package="acme_tasks", task="triangle", inputs=["ten"]), hard_timeout=10)
    assert isinstance(outcome, InTaskFailure) and "triangle: n must be" in outcome.error.error.message


def test_the_installed_wheel_is_the_one_that_runs(spider_pool) -> None:
    """The library comes from the installed distribution, not from the source tree."""
    import acme_tasks

    files = {str(f) for f in distribution("acme-tasks").files or ()}
    assert "acme_tasks/libacme_tasks.so" in files
    assert acme_tasks.LIBRARY.is_file() and "site-packages" in str(acme_tasks.LIBRARY)
    test_triangle(spider_pool)
