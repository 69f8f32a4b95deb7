"""``SoftTimeout``: what the executor raises inside a Python task at its soft deadline.

It lives on the ground floor because both sides of that contract import it from here: the
executor, which raises it, and :mod:`spider_core.sdk`, which hands it to task authors.
"""


class SoftTimeout(Exception):
    """Raised inside a Python task that runs past the call's ``soft_timeout``.

    The task may catch it to clean up and return; if it escapes, the call's outcome is an
    ``InTaskFailure`` saying so. The hard timeout still kills the executor. Native tasks are
    never interrupted: a soft timeout does nothing to them.
    """

    def __init__(self, seconds: float) -> None:
        super().__init__(seconds)
        self.seconds = seconds

    def __str__(self) -> str:
        return f"the task ran past its soft timeout of {self.seconds:g}s"
