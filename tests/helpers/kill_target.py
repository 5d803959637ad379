"""A `diga adapt` run on a tiny benchmark that a test kills with SIGKILL at a chosen moment.

usage: kill_target.py MODE BENCH_ROOT RUN_DIR MARKER
  plain        run to the end
  slow_steps   every self-training step sleeps 0.3 s (so a kill lands mid-step)
  block_write  the 2nd write of the self-training state blocks after the temp file is written
  block_pseudo pseudo-label generation blocks after 3 label files
Blocking modes create MARKER when they block, then sleep until killed.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path


def block(marker: Path) -> None:
    marker.write_text("blocked")
    time.sleep(3600)


def main(mode: str, bench_root: str, run_dir: str, marker: str) -> None:
    from diga import io
    from diga.engine import pseudolabels, selftrain
    from diga.engine.benchmark import synthetic_benchmark
    from diga.engine.config import preset
    from diga.engine.pipeline import adapt

    marker_path = Path(marker)
    bench = synthetic_benchmark(n_train=8, n_val=4, size=(64, 128), seed=0, root=Path(bench_root))
    cfg = preset("cpu").replace(source=bench["source"], target=bench["target"], val=bench["val"],
                                crop=(48, 96), batch_size=2, workers=0, steps=4, log_every=2, eval_every=0,
                                ckpt_every=2, vis_every=0, rounds=1, selftrain_steps=6)
    if mode == "slow_steps":
        original = selftrain.SelfTrainer.train_step

        def slow(self, step):
            if step >= 2:
                marker_path.write_text(str(step))
            time.sleep(0.3)
            return original(self, step)

        selftrain.SelfTrainer.train_step = slow
    elif mode == "block_write":
        real_replace, seen = io.os.replace, []

        def replace(src, dst):
            if str(dst).endswith("selftrain/weights/state.safetensors"):
                seen.append(dst)
                if len(seen) == 2:
                    block(marker_path)
            return real_replace(src, dst)

        io.os.replace = replace
    elif mode == "block_pseudo":
        real_write, count = pseudolabels._write_png, []

        def write(path, labels):
            if len(count) == 3:
                block(marker_path)
            count.append(path)
            return real_write(path, labels)

        pseudolabels._write_png = write
    adapt(cfg, Path(run_dir))


if __name__ == "__main__":
    main(*sys.argv[1:5])
