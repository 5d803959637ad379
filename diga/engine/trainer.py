"""The training loop shared by every stage: one readable loop, stage-specific steps in subclasses.

The hot loop never waits for the host: losses are accumulated as device tensors and read only at
the logging interval; a non-finite loss is detected on the device (its gradients are zeroed, so
that step changes nothing but momentum/weight decay) and counted, and the run stops with an
explanation once ``max_nonfinite`` consecutive steps were non-finite.
"""

from __future__ import annotations

import json
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.progress import Progress

from ..checkpoint import (
    all_finite,
    load_model,
    load_state_strict,
    model_metadata,
    read_metadata,
    save_weights,
)
from ..classes import get_label_space
from ..data.transforms import input_norm_stats, normalize
from ..errors import ConfigError, DigaError
from ..evaluate import evaluate_model
from ..io import atomic_write_text, remove_stale_temps
from ..models import create
from ..models.registry import supported_settings
from ..progress import progress_bar
from . import runtime
from .config import StageConfig
from .labelfree import LABEL_FREE_TAG, stage_signals
from .labelfree import PREFIX as SIGNAL_PREFIX
from .loaders import eval_dataset, eval_loader, loader_workers
from .loop import run_steps
from .metrics_log import append_metrics
from .state import TrainState, load_optimizer, load_state, optimizer_tensors, save_state
from .stopping import RunInterrupted


class RunExistsError(DigaError, RuntimeError):
    pass


class NonFiniteLossError(DigaError, RuntimeError):
    pass


@dataclass
class StageResult:
    run_dir: Path
    weights: Path  # the model to use next: best on target-val if labels exist, else last
    teacher_weights: Path | None
    metrics: dict[str, Any] = field(default_factory=dict)


def build_optimizer(model: torch.nn.Module, cfg: StageConfig, device: torch.device) -> torch.optim.SGD:
    """SGD with the head at ``head_lr_mult`` x lr; every trainable parameter listed exactly once
    (``backbone_bn_affine="frozen"``: the backbone BatchNorm affine parameters are not)."""
    if cfg.backbone_bn_affine == "frozen":
        model.freeze_backbone_bn_affine()
    backbone, head = model.parameter_groups()
    groups = [{"params": backbone, "lr": cfg.lr, "lr_mult": 1.0},
              {"params": head, "lr": cfg.lr * cfg.head_lr_mult, "lr_mult": cfg.head_lr_mult}]
    fused = device.type == "cuda"
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                           fused=fused or None, foreach=None if fused else True)


# A stage directory: its settings, and the state a resumed run continues from.
CONFIG_FILE = "config.yaml"
SUMMARY_FILE = "summary.json"  # written when a stage finishes: its presence means done


def checkpoint_file(run_dir: str | Path) -> Path:
    """Where a stage's trainer keeps the state it resumes from."""
    return Path(run_dir) / "weights" / "state.safetensors"


def poly_lr(base: float, step: int, total: int, power: float) -> float:
    return base * (1 - min(step, total) / max(total, 1)) ** power


def ramp_lr(base: float, step: int, total: int) -> float:
    """A linear rise from 0 at step 0 towards ``base`` at step ``total``, no decay: what the authors'
    SYNTHIA warm-up computes (its warm-up scheduler gets the stage's length as the warm-up length)."""
    return base * min(step, total) / max(total, 1)


LR_SCHEDULES = ("poly", "ramp")


def scheduled_lr(schedule: str, base: float, step: int, total: int, power: float) -> float:
    """The base learning rate of 0-based ``step`` of ``total`` under ``schedule`` (see LR_SCHEDULES)."""
    if schedule == "ramp":
        return ramp_lr(base, step, total)
    if schedule != "poly":
        raise ValueError(f"lr schedule must be one of {', '.join(LR_SCHEDULES)}, got {schedule!r}")
    return poly_lr(base, step, total, power)


class Trainer:
    stage = "train"
    uses_teacher = False
    lr_schedule = "poly"  # the warm-up's follows its setting (warmup_lr_schedule)

    def __init__(self, cfg: StageConfig, run_dir: str | Path, resume: bool = False,
                 console: Console | None = None) -> None:
        self.cfg = cfg.validate()
        self.dir = Path(run_dir)
        self.console = console or Console(stderr=True)
        self.device = runtime.resolve_device(cfg.device)
        self.amp = runtime.amp_dtype(self.device, cfg.amp)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        runtime.seed_everything(cfg.seed + runtime.rank())
        self.space = get_label_space(cfg.label_space)
        self.norm = input_norm_stats(cfg.input_norm)  # (mean, std) of every forward, recorded in checkpoints
        if loader_workers(cfg.workers) < cfg.workers:
            self.console.print(f"[yellow]--workers {cfg.workers}: this process may use "
                               f"{loader_workers(cfg.workers)} CPUs, so that many data-loading workers start[/]")
        self.build_data()
        self.model = self.build_model().to(self.device)
        if self.uses_aux and not getattr(self.model, "has_aux", False):
            network = f"the network of --init {cfg.init}" if cfg.init else cfg.model
            raise ConfigError(f"aux_weight {cfg.aux_weight} (--aux-weight) weighs a network's auxiliary head, and "
                              f"{network} has none (the hrnet_*_ocr networks have one): give --aux-weight 0")
        if cfg.sync_bn and runtime.is_distributed():
            self.model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
        if cfg.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        runtime.broadcast_module(self.model)
        self.teacher = None
        if self.uses_teacher:
            from ..method.ema import EMATeacher

            self.teacher = EMATeacher(self.model, mode=cfg.teacher_mode)
        self.optimizer = build_optimizer(self.model, cfg, self.device)
        self.scaler = torch.amp.GradScaler(enabled=self.amp == torch.float16)
        self.net = self.wrap(self.model)
        self.gen = torch.Generator(self.device).manual_seed(cfg.seed * 31 + runtime.rank())
        self.start_step, self.best = 0, {"miou": float("-inf"), "step": -1}
        # --select label-free: the evaluation point with the lowest class drift so far
        self.label_free_best: dict[str, Any] = {"class_drift": None, "step": -1, "miou": None}
        self.nonfinite_run = torch.zeros((), dtype=torch.int64, device=self.device)
        self.nonfinite_total = torch.zeros((), dtype=torch.int64, device=self.device)
        state_path = checkpoint_file(self.dir)
        if runtime.is_main():
            remove_stale_temps(self.weights_dir)
        if state_path.exists():
            if not resume:
                raise RunExistsError(
                    f"{self.dir} already holds a {self.stage} run; pass --resume to continue it, "
                    "or choose another --name"
                )
            self.restore(load_state(state_path, self.device))
        self.saved_step = self.start_step if state_path.exists() else None  # of the checkpoint on disk
        if runtime.is_main():
            self.dir.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.dir / CONFIG_FILE, cfg.to_yaml())

    # --- construction -------------------------------------------------------------------
    @property
    def weights_dir(self) -> Path:
        return self.dir / "weights"

    def build_data(self) -> None:
        self.val_set = None
        if self.cfg.val:
            self.val_set = eval_dataset(self.cfg.val, self.cfg, split="val")
            if not getattr(self.val_set, "has_labels", True):
                self.console.print(f"[yellow]{self.cfg.val} has no labels: no validation mIoU[/]")
                self.val_set = None
        if self.cfg.select in ("best", "auto") and self.val_set is None:
            why = f"{self.cfg.val} has no labels" if self.cfg.val else "no --val was given"
            if self.cfg.select == "auto":
                self.console.print(f"[yellow]--select auto: {why}, so this {self.stage} stage hands on its "
                                   "last step (the best step needs labelled --val data)[/]")
                return
            raise ConfigError(f"--select best hands on the step with the best mIoU on labelled --val data, and {why}; "
                              "give labelled --val data or use --select last")
        if self.cfg.select == "label-free" and not self.cfg.target:
            raise ConfigError(f"--select label-free hands on the evaluation point with the lowest class drift on "
                              f"unlabelled target images, and this {self.stage} stage has none (no --target); use "
                              "--select last or best")

    def build_model(self) -> torch.nn.Module:
        cfg = self.cfg
        if cfg.init:
            model, meta = load_model(cfg.init)
            if meta["num_classes"] != self.space.num_classes:
                raise ConfigError(f"--init {cfg.init} has {meta['num_classes']} classes, the label space "
                                  f"{self.space.name} (--label-space) has {self.space.num_classes}")
            if not _same_norm((meta["mean"], meta["std"]), self.norm):
                raise ConfigError(f"--init {cfg.init} was trained with input_norm {meta.get('input_norm', 'imagenet')} "
                                  f"(mean {meta['mean']}, std {meta['std']}), this run normalises with "
                                  f"{cfg.input_norm} (--input-norm): give --input-norm {meta.get('input_norm', 'imagenet')}")
            return model.train()
        return create(cfg.model, self.space.num_classes, pretrained=cfg.pretrained or None,
                      **self.model_kwargs()).train()

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        net = model
        if runtime.is_distributed():
            ids = [self.device.index] if self.device.type == "cuda" else None
            net = torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)
        if self.cfg.compile:
            net = torch.compile(net)
        return net

    def model_kwargs(self) -> dict[str, Any]:
        """The architecture settings a checkpoint records so that loading builds the same network
        (from --init: that checkpoint's own)."""
        if self.cfg.init:
            return read_metadata(self.cfg.init).get("model_kwargs", {})
        return supported_settings(self.cfg.model, {"head_norm": self.cfg.head_norm,
                                                   "backbone_layout": self.cfg.backbone_layout})

    def architecture(self) -> str:
        if self.cfg.init:
            return read_metadata(self.cfg.init)["architecture"]
        return self.cfg.model

    # --- the loop -----------------------------------------------------------------------
    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (B,3,H,W) on the host -> float [0,1] on the device."""
        x = images.to(self.device, non_blocking=True).float().div_(255)
        if self.cfg.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    @property
    def uses_aux(self) -> bool:
        """Whether this stage's losses weigh the network's auxiliary head (``aux_weight`` > 0)."""
        return self.cfg.aux_weight > 0

    def forward(self, x01: torch.Tensor, net: torch.nn.Module | None = None,
                aux: bool = False) -> tuple[torch.Tensor, ...]:
        """The network's ``(logits, features)``, with ``aux`` ``(logits, features, aux_logits)``."""
        with runtime.autocast(self.device, self.amp):
            x = normalize(x01, *self.norm)
            return (net or self.net)(x, aux=True) if aux else (net or self.net)(x)

    def heads(self, outputs: tuple[torch.Tensor, ...]) -> list[tuple[float, torch.Tensor]]:
        """(weight, logits) of each output a loss covers: the main logits with weight 1, and, when
        the stage uses it, the auxiliary head's with ``aux_weight``."""
        return [(1.0, outputs[0])] + ([(self.cfg.aux_weight, outputs[2])] if len(outputs) > 2 else [])

    def teacher_forward(self, *batches: torch.Tensor, features: bool = True,
                        aux: bool = False) -> tuple[torch.Tensor, ...]:
        """The EMA teacher's (logits, features or None), with ``aux`` also the auxiliary logits, for
        ``batches`` in order: no autograd at all (inference mode).

        In train mode each batch is a forward of its own, normalised by its own statistics (the
        authors' separate teacher calls); in eval mode the outputs do not depend on the batch, so
        the batches share one forward. Inference tensors may not be saved for the student's
        backward nor updated in place later (the centroids are built from the features), so the
        outputs are concatenated into ordinary tensors: a copy of a few MB, against no version
        counting or graph bookkeeping at all.
        """
        if self.teacher.mode == "eval" and len(batches) > 1:
            batches = (torch.cat(batches),)
        with torch.inference_mode():
            outputs = [self.forward(x01, net=self.teacher.module, aux=aux) for x01 in batches]
        logits = torch.cat([out[0] for out in outputs])
        feats = torch.cat([out[1] for out in outputs]) if features else None
        return (logits, feats, torch.cat([out[2] for out in outputs])) if aux else (logits, feats)

    def train_step(self, step: int) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def run(self) -> StageResult:
        cfg = self.cfg

        def lr(i: int) -> float:
            return scheduled_lr(self.lr_schedule, cfg.lr, i, cfg.steps, cfg.poly_power)

        def step(i: int) -> dict[str, torch.Tensor]:
            for group in self.optimizer.param_groups:
                group["lr"] = lr(i) * group["lr_mult"]
            return self.optimization_step(i)

        def log(record: dict[str, Any], i: int, rate: float) -> dict[str, Any]:
            record.update(self.interval_stats(), step=i + 1, lr=lr(i),
                          steps_per_s=round(rate, 4), images_per_s=round(rate * cfg.batch_size * runtime.world_size(), 2))
            self.check_nonfinite(record)
            self.log(record)
            return record

        def after_step(done: int) -> None:
            if cfg.vis_every and done % cfg.vis_every == 0 and runtime.is_main():
                self.visualize(done)
            if cfg.eval_every and done % cfg.eval_every == 0 and done != cfg.steps:
                self.evaluate_and_keep_best(done)
            if cfg.ckpt_every and done % cfg.ckpt_every == 0 and done != cfg.steps:
                self.checkpoint(done)

        run_steps(self.progress(), self.console, self.stage, self.start_step, cfg.steps, cfg.log_every,
                  step, log, after_step, self.stop_at)
        return self.finish()

    def stop_at(self, done: int, signal_name: str) -> None:
        """Checkpoint the last completed step (unless its loss was not finite), then raise RunInterrupted."""
        if self.saved_step != done:
            self.checkpoint(done)
        state = checkpoint_file(self.dir)
        if self.saved_step == done:
            saved = f"step {done} of {self.cfg.steps} is saved in {state}"
        elif self.saved_step is not None:
            saved = (f"the loss was not finite at step {done}, so the last good checkpoint is kept: step "
                     f"{self.saved_step} in {state}")
        else:
            saved = f"the loss was not finite at step {done} and there is no checkpoint yet: a re-run starts over"
        message = (f"{self.stage} stopped by {signal_name}: {saved}. To continue, re-run the same command with "
                   "--resume (diga adapt and diga selftrain: re-run the same command, same --name; they resume "
                   "by themselves)")
        self.console.print(f"[yellow]{message}[/]", soft_wrap=True, highlight=False)
        raise RunInterrupted(message)  # a KeyboardInterrupt: the CLI exits 130

    def optimization_step(self, step: int) -> dict[str, torch.Tensor]:
        """One optimiser step over ``accumulate`` micro-batches; returns the step's mean losses.

        Gradient accumulation trades time for memory at the same effective batch: each
        micro-batch runs the whole stage step (views, teacher, selection, losses) on
        batch_size / accumulate images and back-propagates loss / accumulate; DDP all-reduces
        only after the last micro-batch. (BatchNorm then sees the smaller micro-batches.)
        """
        n = self.cfg.accumulate
        self.optimizer.zero_grad(set_to_none=True)
        finite, totals = None, {}
        for micro in range(n):
            with self.gradient_sync(micro == n - 1):
                losses = self.train_step(step)
                ok = torch.isfinite(losses["loss"])
                finite = ok if finite is None else finite & ok
                self.scaler.scale(losses["loss"] / n).backward()
            for k, v in losses.items():
                v = v.detach().float() / n
                totals[k] = totals[k] + v if k in totals else v
        self.apply_gradients(finite, step)
        return totals

    def gradient_sync(self, enabled: bool):
        """DDP's all-reduce only for the micro-batch that completes the step."""
        if enabled or not runtime.is_distributed():
            return nullcontext()
        return self.net.no_sync()

    def apply_gradients(self, finite: torch.Tensor, step: int) -> None:
        """The optimiser and EMA step, skipped (on the device) when a loss was not finite."""
        if runtime.is_distributed():
            # Gradients are averaged across ranks, so one rank's NaN reaches every rank: skip
            # the step everywhere (a collective on the device, not a host sync).
            finite = runtime.all_reduce_sum((~finite).float()) == 0
        if not self.scaler.is_enabled():
            # Zero the gradients of a non-finite step on the device instead of a host check.
            for p in self.model.parameters():
                if p.grad is not None:
                    p.grad.masked_fill_(~finite, 0.0)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.nonfinite_run = torch.where(finite, torch.zeros_like(self.nonfinite_run), self.nonfinite_run + 1)
        self.nonfinite_total += (~finite).long()
        runtime.broadcast_buffers(self.model)
        if self.teacher is not None:
            self.teacher.update(self.model, step, max_alpha=self.cfg.ema_max)
            if self.teacher.mode == "train":  # its running statistics come from each rank's own batches
                runtime.broadcast_buffers(self.teacher.module)

    def interval_stats(self) -> dict[str, float]:
        """Extra values read at the logging interval (subclasses add theirs)."""
        return {"nonfinite_steps": int(self.nonfinite_total)}

    def check_nonfinite(self, record: dict) -> None:
        # Every rank sees the same (all-reduced) flags, so all stop together.
        if int(self.nonfinite_run) >= self.cfg.max_nonfinite:
            self.log({**record, "stopped": "non-finite loss"})
            raise NonFiniteLossError(
                f"{self.stage}: the loss was NaN/inf for {int(self.nonfinite_run)} consecutive steps "
                f"(up to step {record['step']}); those steps were skipped. Likely causes: a learning "
                f"rate too high for this model/batch (--lr, now {self.cfg.lr}), fp16 overflow "
                "(try --amp bf16 or fp32), or broken input data (images/labels). The last good "
                f"checkpoint is kept in {self.weights_dir}; fix the cause and re-run with --resume."
            )

    def check_final_weights(self) -> None:
        """A run that ends on non-finite steps hands its weights on only if they were trained and are finite.

        (The skipped steps only zeroed their gradients; but a run whose every step was non-finite
        learned nothing, and one finite step with a huge learning rate can already have broken them.)
        """
        cfg, skipped = self.cfg, int(self.nonfinite_run)
        learned_nothing = self.start_step == 0 and int(self.nonfinite_total) >= cfg.steps
        finite = all(all_finite(t) for t in self.model.state_dict().values() if t.is_floating_point())
        if learned_nothing or not finite:
            what = "every step's loss was NaN/inf" if learned_nothing else (
                f"the last {skipped} steps were NaN/inf and the weights are no longer finite")
            self.log({"step": cfg.steps, "stopped": "non-finite loss"})
            raise NonFiniteLossError(
                f"{self.stage}: {what}, so no weights are handed on. Likely causes: a learning rate too high "
                f"for this model/batch (--lr, now {cfg.lr}), fp16 overflow (try --amp bf16 or fp32), or broken "
                "input data (images/labels)."
                + (f" The last good checkpoint (step {self.saved_step}) is kept in {self.weights_dir}."
                   if self.saved_step else "")
            )
        self.console.print(f"[yellow]{self.stage}: the last {skipped} steps had a NaN/inf loss and were skipped; "
                           "the weights of the steps before them are saved[/]")

    # --- evaluation, checkpoints, logs --------------------------------------------------
    def evaluate(self, model: torch.nn.Module) -> dict[str, Any]:
        loader = eval_loader(self.val_set, workers=min(self.cfg.workers, 2), device=self.device)
        m = evaluate_model(model, loader, self.space.num_classes, self.device, self.cfg.eval_scales,
                           self.space.classes, amp_dtype=self.amp, norm=self.norm)
        return m.as_dict()

    def evaluate_and_keep_best(self, step: int) -> dict[str, Any]:
        """An evaluation point: target-val mIoU when there is a labelled --val, and the label-free
        signals on unlabelled target images whether or not there is (a user with footage of their
        own has only those); {} when there is neither."""
        record: dict[str, Any] = {"step": step}
        record.update(stage_signals(self))
        result: dict[str, Any] = {}
        if self.val_set is not None:
            result["student"] = self.evaluate(self.model)
            if self.teacher is not None:
                result["teacher"] = self.evaluate(self.teacher.module)
            record["val_miou"] = result["student"]["miou"]
            if "teacher" in result:
                record["val_miou_teacher"] = result["teacher"]["miou"]
        if len(record) > 1:
            self.log(record)
        if result and runtime.is_main() and result["student"]["miou"] > self.best["miou"]:
            self.best = {"miou": result["student"]["miou"], "step": step}
            self.save_models("best", result, step=step)
        self.keep_label_free_best(record, result or None)
        return result

    def keep_label_free_best(self, record: dict[str, Any], metrics: dict | None) -> None:
        """``--select label-free``: keep the models of the evaluation point whose class drift on the
        unlabelled target is the lowest so far (a tie goes to the later, longer-trained point). Class
        drift is the one label-free signal that tracked target-val mIoU within stages
        (docs/BENCHMARKS.md, "Label-free signals"). Signals exist on the main rank only, which saves."""
        drift = record.get(SIGNAL_PREFIX + "class_drift")
        best = self.label_free_best["class_drift"]
        if self.cfg.select != "label-free" or drift is None or (best is not None and drift > best):
            return
        self.label_free_best = {"class_drift": drift, "step": record["step"], "miou": record.get("val_miou")}
        self.save_models(LABEL_FREE_TAG, metrics, step=record["step"])

    def inference_size(self) -> tuple[int, int]:
        """The image size the model is meant to run at: what exports use by default.

        The training crop is only a window; inference runs on whole (resized) images.
        """
        cfg = self.cfg
        if cfg.eval_size or cfg.base_size:
            return tuple(cfg.eval_size or cfg.base_size)
        return self._first_image_size(self.val_set, getattr(self, "target_set", None),
                                      getattr(self, "train_set", None), getattr(self, "source_set", None))

    def train_size(self) -> tuple[int, int]:
        """The scale training images had before the random rescale and crop (``base_size`` or their own
        size): what ``--mode resize`` brings other images to and the automatic mode compares against."""
        if self.cfg.base_size:
            return tuple(self.cfg.base_size)
        return self._first_image_size(getattr(self, "target_set", None), getattr(self, "train_set", None),
                                      getattr(self, "source_set", None))

    def _first_image_size(self, *datasets) -> tuple[int, int]:
        for dataset in datasets:
            if dataset is not None and len(dataset):
                return tuple(dataset.image_size(0))
        return tuple(self.cfg.crop)

    def metadata(self, **extra: Any) -> dict[str, Any]:
        return model_metadata(self.architecture(), self.space.name, input_size=self.inference_size(),
                              input_norm=self.cfg.input_norm,
                              train_size=list(self.train_size()), crop=list(self.cfg.crop),
                              stage=self.stage, source=self.cfg.source, target=self.cfg.target,
                              model_kwargs=self.model_kwargs(), **extra)

    def save_models(self, tag: str, metrics: dict | None = None, step: int | None = None) -> None:
        """Student (and teacher) weights as ``weights/TAG.safetensors``; ``step`` is recorded for the
        checkpoints chosen at an evaluation point (best, label_free)."""
        meta = self.metadata(metrics=metrics or {}, step=step)
        save_weights(self.weights_dir / f"{tag}.safetensors", self.model.state_dict(), meta)
        if self.teacher is not None:
            save_weights(self.weights_dir / f"{tag}_teacher.safetensors", self.teacher.module.state_dict(),
                         {**meta, "role": "teacher"})

    def state_tensors(self) -> dict[str, dict[str, torch.Tensor]]:
        opt_tensors, _ = optimizer_tensors(self.optimizer)
        tensors = {"student": self.model.state_dict(), "optim": opt_tensors,
                   "rng": {"cpu": torch.get_rng_state(), "gen": self.gen.get_state()}}
        if self.device.type == "cuda":
            tensors["rng"]["cuda"] = torch.cuda.get_rng_state(self.device)
        if self.teacher is not None:
            tensors["teacher"] = self.teacher.module.state_dict()
        return tensors

    def checkpoint(self, step: int) -> None:
        if int(self.nonfinite_run) > 0:
            return  # never replace the last good checkpoint with one taken mid-divergence
        self.save_checkpoint(step)

    def save_checkpoint(self, step: int) -> None:
        if runtime.is_main():
            _, groups = optimizer_tensors(self.optimizer)
            info = {"best": self.best, "label_free_best": self.label_free_best, "param_groups": groups,
                    "stage": self.stage}
            save_state(checkpoint_file(self.dir), TrainState(step, self.state_tensors(), info))
            self.save_models("last")
        self.saved_step = step
        runtime.barrier()

    def restore(self, state: TrainState) -> None:
        load_state_strict(self.model, state.tensors["student"], checkpoint_file(self.dir))
        load_optimizer(self.optimizer, state.tensors.get("optim", {}), state.info["param_groups"])
        if self.teacher is not None:
            self.teacher.module.load_state_dict(state.tensors["teacher"])
        rng = state.tensors["rng"]
        torch.set_rng_state(rng["cpu"])  # load_state keeps RNG states on the host
        self.gen.set_state(rng["gen"])
        if "cuda" in rng and self.device.type == "cuda":
            torch.cuda.set_rng_state(rng["cuda"], self.device)
        self.best = state.info.get("best", self.best)
        self.label_free_best = state.info.get("label_free_best", self.label_free_best)
        self.start_step = state.step
        self.restore_extra(state)
        self.console.print(f"[green]resuming {self.stage} from step {state.step}[/] ({self.dir})")

    def restore_extra(self, state: TrainState) -> None:
        pass

    def log(self, record: dict[str, Any]) -> None:
        if runtime.is_main():
            append_metrics(self.dir, record)

    def visualize(self, step: int) -> None:
        pass

    def progress(self) -> Progress:
        return progress_bar(self.console, enabled=runtime.is_main(), transient=False)

    def finish(self) -> StageResult:
        cfg = self.cfg
        metrics: dict[str, Any] = {}
        if int(self.nonfinite_run) > 0:
            self.check_final_weights()
        metrics = self.evaluate_and_keep_best(cfg.steps)
        self.save_checkpoint(cfg.steps)
        # "best" needs target-val labels and is opt-in: picking checkpoints on target labels is
        # not available to a user with unlabelled footage, so the default hands on the last step.
        # "auto" (the paper preset) is "best" when labelled --val data was given, else "last".
        # "label-free" hands on the point of lowest class drift (keep_label_free_best).
        tag = "last"
        if cfg.select in ("best", "auto") and (self.weights_dir / "best.safetensors").exists():
            tag = "best"
        elif cfg.select == "label-free" and (self.weights_dir / f"{LABEL_FREE_TAG}.safetensors").exists():
            tag = LABEL_FREE_TAG
        summary = {
            "stage": self.stage, "steps": cfg.steps, "final": metrics, "best": self.best,
            **({"label_free_best": self.label_free_best} if cfg.select == "label-free" else {}),
            "selected": tag, "weights": str(self.weights_dir / f"{tag}.safetensors"),
            "teacher_weights": str(self.weights_dir / f"{tag}_teacher.safetensors") if self.teacher else None,
        }
        if runtime.is_main():
            atomic_write_text(self.dir / SUMMARY_FILE, json.dumps(summary, indent=2) + "\n")
        runtime.barrier()
        return StageResult(self.dir, Path(summary["weights"]),
                           Path(summary["teacher_weights"]) if self.teacher else None, summary)


def completed_summary(run_dir: Path) -> dict | None:
    """The summary of a finished stage, or None if it has not finished."""
    path = Path(run_dir) / SUMMARY_FILE
    return json.loads(path.read_text()) if path.exists() else None


def _same_norm(a: tuple, b: tuple) -> bool:
    """Two (mean, std) pairs equal up to float rounding (a checkpoint stores them as JSON numbers)."""
    return all(abs(float(x) - float(y)) < 1e-6 for pa, pb in zip(a, b) for x, y in zip(pa, pb))
