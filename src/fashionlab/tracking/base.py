"""What every tracker shares: a failure in the tracker never costs the user their run."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from fashionlab.training.callbacks import Callback


class Tracker(Callback):
    """A callback whose every action goes through `guard`: the first error is reported in one
    line and the tracker then stays quiet, while the training and its run folder go on."""

    name = "tracker"
    recovery = ""  # what the user can do afterwards

    def __init__(self) -> None:
        self.failed = False

    def guard(self, action: Callable[..., Any], *args: Any) -> None:
        if self.failed:
            return
        try:
            action(*args)
        except Exception as exc:  # noqa: BLE001 - store, network and writer errors alike
            self.failed = True
            lines = str(exc).strip().splitlines()
            print(
                f"{self.name} logging stopped ({type(exc).__name__}: {lines[0] if lines else ''})"
                f"; the run folder is unaffected{self.recovery}",
                file=sys.stderr,
            )
