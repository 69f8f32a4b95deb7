"""Faults of the soak's own, for spider-core's tests only: each breaks one invariant on purpose,
once, to prove the soak's checks can fail. ``"misattribute"`` hands a task another task's
result, ``"leak-fd"`` opens a descriptor it does not close before measuring, ``"lose"`` drops
one outcome (``soak(_inject=...)``, or ``$SPIDER_SOAK_INJECT`` for the command)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Literal

from attrs import define

from spider_core.models import Outcome, Success

Inject = Literal["misattribute", "leak-fd", "lose"]
INJECTIONS: tuple[str, ...] = ("misattribute", "leak-fd", "lose")
ENV_INJECT = "SPIDER_SOAK_INJECT"


@define
class Injector:
    """Breaks invariant ``name`` once, on a fault-free task (``name`` None: never)."""

    name: str | None
    done: bool = False
    last_echo: Success | None = None  # a fault-free task's result, to hand to another one

    def drops(self, free: bool) -> bool:
        """Whether to drop this outcome (``"lose"``); ``free``: a fault-free task's."""
        if self.name == "lose" and not self.done and free:
            self.done = True
            return True
        return False

    def outcome(self, free: bool, outcome: Outcome) -> Outcome:
        """The outcome to record: ``outcome``, or another task's (``"misattribute"``)."""
        if self.name == "misattribute" and not self.done and free and self.last_echo is not None:
            self.done = True
            return self.last_echo
        if free and isinstance(outcome, Success):
            self.last_echo = outcome
        return outcome

    @contextlib.contextmanager
    def leak(self) -> Iterator[None]:
        """Hold a descriptor open while the block runs (``"leak-fd"``)."""
        leaked = os.open(os.devnull, os.O_RDONLY) if self.name == "leak-fd" else None
        try:
            yield
        finally:
            if leaked is not None:
                os.close(leaked)
