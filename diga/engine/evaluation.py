"""Evaluating a saved checkpoint, and a report of the software/hardware environment."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from ..checkpoint import load_model
from ..classes import SYNTHIA13_CLASSES, get_label_space
from ..data import build_dataset
from ..data.transforms import EvalTransform
from ..errors import ConfigError
from ..evaluate import evaluate_model
from ..inference import TrainingScale, check_mode, plan_inference
from . import runtime
from .config import AMP_CHOICES
from .loaders import eval_loader


def evaluate_checkpoint(
    weights: str | Path, data: str, split: str = "val", scales: Sequence[float] = (1.0, 0.5),
    device: str = "auto", eval_size: tuple[int, int] | None = None, workers: int = 2,
    shard: bool | None = None,
    on_prediction: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], None] | None = None,
    mode: str = "whole", log: Callable[[str], None] | None = None, amp: str = "auto",
) -> dict[str, Any]:
    """Metrics of a checkpoint on a labelled dataset, in the checkpoint's label space.

    The protocol is stated in the result: dataset-level confusion matrix (not a per-image
    average), classes absent from both GT and prediction excluded, scales fused by max, in the
    inference ``mode`` of :mod:`diga.inference` (``auto`` decides per image size; ``diga evaluate``
    defaults to it, the training report keeps ``whole``, the trainer's own protocol). ``log`` is
    told the mode of the first image before the evaluation starts. ``amp`` is the precision, as a
    config's ``amp`` (auto: bf16/fp16 autocast on a CUDA GPU, fp32 elsewhere); a run's own evaluation
    passes its config's, so that a model trained in fp32 is scored in fp32.
    Under DDP every rank scores its shard unless ``shard=False`` (a caller on one rank only);
    ``on_prediction`` is handed each batch's (images, prediction, labels).
    """
    check_mode(mode, "--mode")
    if amp not in AMP_CHOICES:
        raise ConfigError(f"--amp must be one of {', '.join(AMP_CHOICES)} (got {amp!r})")
    dev = runtime.resolve_device(device)
    model, meta = load_model(weights, dev)
    space = get_label_space(meta.get("label_space", "cityscapes19"))
    dataset = build_dataset(data, split=split, label_space=space, transform=EvalTransform(eval_size))
    if not getattr(dataset, "has_labels", True):
        raise ConfigError(f"{data} has no labels: cannot evaluate")
    scale = TrainingScale.from_meta(meta)
    plan = plan_inference(mode, dataset[0][0].shape[-2:], scale) if len(dataset) else None
    if plan is not None and log is not None:
        log(f"mode: {plan.describe()}")
    if shard is None:
        shard = runtime.is_distributed()
    loader = eval_loader(dataset, workers, shard=shard, device=dev)
    metrics = evaluate_model(model, loader, space.num_classes, dev, scales, space.classes,
                             amp_dtype=runtime.amp_dtype(dev, amp),
                             on_prediction=on_prediction, sharded=shard, mode=mode, training_scale=scale,
                             norm=(meta["mean"], meta["std"]))
    result = metrics.as_dict()
    result["label_space"] = space.name
    result["protocol"] = (f"{space.name}: {space.num_classes}-class mIoU over the dataset's confusion matrix, "
                          f"scales {list(scales)} max-fused, mode {mode}")
    result["mode"] = plan.describe() if plan is not None else mode
    result["extra_miou"] = {}
    if space.name == "synthia16":
        result["extra_miou"]["mIoU (13 classes)"] = metrics.subset_miou(space.subset_indices(SYNTHIA13_CLASSES))
    result["images"] = len(dataset)
    result["weights"] = str(weights)
    return result


def evaluate_datasets(weights: str | Path, specs: Sequence[str], **options: Any) -> list[dict[str, Any]]:
    """:func:`evaluate_checkpoint` on each of ``specs`` (``options``: its keywords), in order: one
    result per dataset, with its spec under ``"data"``. Several datasets are all opened first, so a
    wrong path or an unlabelled set is reported before minutes of evaluation, and each message to
    ``log`` names its dataset."""
    specs = list(specs)
    if not specs:
        raise ConfigError("no dataset to evaluate on: give at least one KIND:PATH")
    if len(specs) > 1:
        split = options.get("split", "val")
        for spec in specs:
            if not getattr(build_dataset(spec, split=split), "has_labels", True):
                raise ConfigError(f"{spec} has no labels: cannot evaluate")
    log = options.pop("log", None)
    results = []
    for spec in specs:
        named_log = log if log is None or len(specs) == 1 else (lambda message, spec=spec: log(f"{spec}: {message}"))
        result = evaluate_checkpoint(weights, spec, log=named_log, **options)
        results.append({"data": spec, **result})
    return results


def environment_info() -> dict[str, Any]:
    import platform

    import diga

    info: dict[str, Any] = {
        "diga": diga.__version__, "python": platform.python_version(), "torch": torch.__version__,
    }
    try:
        import torchvision

        info["torchvision"] = torchvision.__version__
    except ImportError:
        info["torchvision"] = "not installed"
    info["cuda available"] = torch.cuda.is_available()
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info["cuda device"] = f"{props.name} (cc {props.major}.{props.minor}, {props.total_memory / 2**30:.0f} GiB)"
        info["bf16"] = torch.cuda.is_bf16_supported()
    try:
        import onnxruntime as ort

        info["onnxruntime"] = f"{ort.__version__} providers: {', '.join(ort.get_available_providers())}"
    except ImportError:
        info["onnxruntime"] = "not installed (pip install 'diga[cpu]' or 'diga[gpu]')"
    info["tensorrt"] = _tensorrt_version()
    info["cpu threads"] = torch.get_num_threads()
    return info


def _tensorrt_version() -> str:
    for module in ("tensorrt", "tensorrt_rtx_bindings"):
        try:
            mod = __import__(module)
            return f"{module} {getattr(mod, '__version__', '?')}"
        except ImportError:
            continue
    return "not installed (TensorRT 10: pip install tensorrt, on a machine with a CUDA GPU)"
