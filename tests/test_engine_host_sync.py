"""The training steps never read device values on the host — checked on any machine.

On a GPU every ``.item()``, ``bool(tensor)``, ``.cpu()``, ``.tolist()`` or data-dependent shape
(boolean indexing, ``nonzero``, ``unique``) stalls the step until the device catches up. CUDA's
sync debug mode catches these only on a GPU (``test_method_sync.py``); here a torch function mode
records every such call made while a warm-up or self-training step runs (data loading excluded:
it happens on the host by design), so a regression fails on a CPU-only CI too.
"""

from __future__ import annotations

import pytest
import torch
from torch.overrides import TorchFunctionMode

from diga.engine import trainer
from diga.engine.pipeline import adapt

# Tensor methods and functions that copy a device value to the host or need its value to decide
# a shape. (Host->device copies of the input batch, ``.to(device)``, are the one transfer a step
# needs; on a CPU run they cannot be told apart from device->host ``.to``, so ``to`` is not listed.)
HOST_READS = {"item", "tolist", "cpu", "numpy", "__bool__", "__int__", "__float__", "__index__",
              "__array__", "nonzero", "argwhere", "unique", "unique_consecutive", "masked_select",
              "bincount", "repeat_interleave"}


class HostReadRecorder(TorchFunctionMode):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []
        self.paused = False

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if not self.paused:
            name = getattr(func, "__name__", str(func))
            if name in HOST_READS or (name == "__getitem__" and _bool_index(args)):
                self.calls.append(name)
        return func(*args, **(kwargs or {}))


def _bool_index(args) -> bool:
    index = args[1] if len(args) > 1 else None
    items = index if isinstance(index, tuple) else (index,)
    return any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in items)


class _Unrecorded:
    """An iterator whose ``next`` (the data loader) runs outside the audit."""

    def __init__(self, it, recorder) -> None:
        self.it, self.recorder = it, recorder

    def __iter__(self):
        return self

    def __next__(self):
        self.recorder.paused = True
        try:
            return next(self.it)
        finally:
            self.recorder.paused = False


def test_recorder_catches_host_reads():
    x = torch.randn(4)
    with HostReadRecorder() as rec:
        x.sum().item()
        if x.max() > 0:
            pass
        x[x > 0]
        x.tolist()
        x.mul(2).add_(1)  # device work only: not recorded
    assert rec.calls == ["item", "__bool__", "__getitem__", "tolist"]


class CudaSyncAudit:
    """CUDA's own detector: any synchronising call inside the audited region raises."""

    def __init__(self) -> None:
        self._paused = False

    @property
    def paused(self) -> bool:
        return self._paused

    @paused.setter
    def paused(self, value: bool) -> None:
        self._paused = value
        torch.cuda.set_sync_debug_mode(0 if value else "error")

    def __enter__(self):
        torch.cuda.synchronize()
        self.paused = False
        return self

    def __exit__(self, *exc):
        torch.cuda.set_sync_debug_mode(0)


def _adapt_with_audited_steps(cfg, run_dir, monkeypatch, audit) -> dict[str, int]:
    """Run the pipeline with every warm-up/self-training step (minus data loading) inside ``audit``."""
    steps: dict[str, int] = {}

    optimization_step = trainer.Trainer.optimization_step

    def audited(self, i):
        for name in ("source", "target", "pseudo_batches"):
            it = getattr(self, name, None)
            if it is not None and not isinstance(it, _Unrecorded):
                setattr(self, name, _Unrecorded(it, audit))
        with audit:
            losses = optimization_step(self, i)
        steps[self.stage] = steps.get(self.stage, 0) + 1
        return losses

    monkeypatch.setattr(trainer.Trainer, "optimization_step", audited)
    adapt(cfg.replace(eval_every=0, vis_every=0, ckpt_every=0, log_every=100), run_dir)
    return steps


@pytest.mark.parametrize("switches", ["earlier", "authors", "authors-synthia"])
def test_warmup_and_selftrain_steps_never_read_the_device(tiny_cfg, tmp_path, monkeypatch, switches):
    from diga.engine.config import EARLIER_CHOICES, preset

    recorder = HostReadRecorder()
    cfg = tiny_cfg.replace(device="cpu", accumulate=2)  # the micro-batch loop is audited too
    if switches.startswith("authors"):  # every setting where a paper preset follows the authors' code
        paper = preset("paper-synthia" if switches == "authors-synthia" else "paper")  # the former: OHEM, ramp
        cfg = cfg.replace(**{k: getattr(paper, k) for k in EARLIER_CHOICES})
    steps = _adapt_with_audited_steps(cfg, tmp_path / "adapt", monkeypatch, recorder)
    assert steps == {"warmup": tiny_cfg.steps, "selftrain": tiny_cfg.selftrain_steps}
    assert recorder.calls == [], f"host reads inside training steps: {sorted(set(recorder.calls))}"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA's sync debug mode needs a CUDA GPU")
def test_training_steps_do_not_synchronise_on_cuda(tiny_cfg, tmp_path, monkeypatch):
    cfg = tiny_cfg.replace(device="cuda", amp="bf16", channels_last=True)
    steps = _adapt_with_audited_steps(cfg, tmp_path / "adapt", monkeypatch, CudaSyncAudit())
    assert steps == {"warmup": cfg.steps, "selftrain": cfg.selftrain_steps}


def test_evaluation_loop_never_reads_the_device(tiny_cfg, monkeypatch):
    """Per image, evaluation stays on the device; only the final metrics are read (once)."""
    from torch.utils.data import Subset

    from diga import evaluate
    from diga.engine.loaders import eval_dataset, eval_loader
    from diga.models import create

    recorder = HostReadRecorder()
    compute = evaluate.ConfusionMatrix.compute

    def unrecorded_compute(self, *args, **kwargs):
        recorder.paused = True
        return compute(self, *args, **kwargs)

    monkeypatch.setattr(evaluate.ConfusionMatrix, "compute", unrecorded_compute)
    dataset = eval_dataset(tiny_cfg.val, tiny_cfg)
    batches = _Unrecorded(iter(eval_loader(Subset(dataset, range(3)), workers=0)), recorder)
    model = create("deeplabv2_light", 19)
    with recorder:
        metrics = evaluate.evaluate_model(model, batches, 19, "cpu", scales=(1.0, 0.5))
    assert recorder.paused and metrics.iou, "the final metrics were not computed"
    assert recorder.calls == [], f"host reads per evaluated image: {sorted(set(recorder.calls))}"
