"""Run under torchrun: the DiGA pipeline with DDP on a tiny benchmark, interrupted and resumed.

Writes ``OUT/ranks.json`` (rank 0) with the largest difference between ranks of the student,
teacher and centroids, and the step each resumed stage restarted from.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist


class Interrupted(Exception):
    pass


def flat(tensors) -> torch.Tensor:
    return torch.cat([t.detach().float().reshape(-1) for t in tensors])


def spread(t: torch.Tensor) -> float:
    """max over ranks - min over ranks, elementwise, maximised."""
    hi, lo = t.clone(), t.clone()
    dist.all_reduce(hi, op=dist.ReduceOp.MAX)
    dist.all_reduce(lo, op=dist.ReduceOp.MIN)
    return float((hi - lo).abs().max())


def main(bench_root: str, out: str, teacher_mode: str = "eval", student_forward: str = "joint") -> None:
    from diga.engine import runtime, selftrain
    from diga.engine.benchmark import synthetic_benchmark
    from diga.engine.config import preset
    from diga.engine.pipeline import adapt

    runtime.init_distributed_from_env()
    bench = synthetic_benchmark(n_train=8, n_val=4, size=(64, 128), seed=0, root=Path(bench_root))
    cfg = preset("cpu").replace(source=bench["source"], target=bench["target"], val=bench["val"],
                                crop=(48, 96), batch_size=2, workers=0, steps=4, log_every=2, eval_every=2,
                                ckpt_every=2, vis_every=0, rounds=1, selftrain_steps=4,
                                accumulate=2,  # micro-batches: DDP syncs only on the last one
                                teacher_mode=teacher_mode, student_forward=student_forward)
    run = Path(out) / "run"
    original = selftrain.SelfTrainer.train_step

    def crash(self, step):
        if step == 3:
            raise Interrupted
        return original(self, step)

    selftrain.SelfTrainer.train_step = crash
    try:
        adapt(cfg, run)
    except Interrupted:
        pass
    selftrain.SelfTrainer.train_step = original
    starts = []
    real_run = selftrain.SelfTrainer.run

    def spy(self):
        starts.append(self.start_step)
        self._spy_model, self._spy_teacher = self.model, self.teacher
        result = real_run(self)
        spy.trainer = self
        return result

    selftrain.SelfTrainer.run = spy
    adapt(cfg, run)
    trainer = spy.trainer
    result = {
        "world_size": runtime.world_size(),
        "resumed_from": starts,
        "student_spread": spread(flat(trainer.model.parameters())),
        "teacher_spread": spread(flat(trainer.teacher.module.parameters())),
        "bn_buffer_spread": spread(flat([b for b in trainer.teacher.module.buffers() if b.is_floating_point()])),
        "centroid_spread": spread(trainer.centroids.reshape(-1)),
        "pseudo_label_files": len(list((run / "round1/pseudo/labels").glob("*.png"))),
    }
    if runtime.is_main():
        (Path(out) / "ranks.json").write_text(json.dumps(result))
    dist.barrier()  # leave together: a rank exiting while its peer still talks aborts gloo
    dist.destroy_process_group()
    sys.stdout.flush()
    sys.stderr.flush()
    # Skip interpreter teardown: gloo's C++ threads can abort ("terminate called without an
    # active exception") when Python finalises objects of the first, interrupted DDP run.
    os._exit(0)


if __name__ == "__main__":
    main(*sys.argv[1:])
