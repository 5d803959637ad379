"""A real `diga` command whose training steps are slowed down, for tests that signal or race it.

usage: slow_stage.py ARGS...   (the arguments of `diga`, e.g. train --config c.yaml --name x)
Every optimisation step sleeps 0.3 s first, so a test can act while a run is in flight.
"""

from __future__ import annotations

import sys
import time


def main() -> None:
    from diga.cli.main import app
    from diga.engine.trainer import Trainer

    original = Trainer.optimization_step

    def slow(self, step):
        time.sleep(0.3)
        return original(self, step)

    Trainer.optimization_step = slow
    app(sys.argv[1:], prog_name="diga")


if __name__ == "__main__":
    main()
