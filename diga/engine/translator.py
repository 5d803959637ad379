"""Stage 0: train the learned source -> target image translator (``diga translator``).

Two encoder/decoder translators (source -> target and target -> source) and two multi-scale LSGAN
discriminators, trained as in the authors' code: per step the discriminators take one Adam step
on real and translated images, then the translators one on
``0.5 adversarial + 10 cycle + 20 semantic edge + 0.1 perceptual + 0.001 self-reconstruction``
(Adam, lr 1e-4, betas 0.5/0.999, poly decay 0.9 over 50k steps, batches of two 512x896 crops).
Only the source -> target translator is handed on (``weights/translator.safetensors``); the warm-up
and self-training use it with ``--translator learned --translator-weights FILE``.

Like the other stages the run is resumable: one state file (all four networks, both optimisers,
the RNG states) written atomically every ``ckpt_every`` steps and when Ctrl-C stops the run.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from rich.console import Console

from ..classes import LABEL_SPACES, get_label_space
from ..errors import ConfigError, DigaError
from ..io import atomic_write_text, remove_stale_temps
from ..method.translation_losses import LOSS_WEIGHTS, edge_loss, lsgan_fake, lsgan_real, perceptual_loss
from ..models.translator import (
    SIZE_MULTIPLE,
    ImageTranslator,
    MultiScaleDiscriminator,
    build_vgg_features,
    check_architecture,
    from_translator_space,
    save_translator,
    to_translator_space,
    translator_metadata,
)
from ..progress import progress_bar
from . import runtime
from .config import RESUME_MAY_CHANGE, StageConfig
from .loaders import infinite_loader, train_dataset
from .loop import run_steps
from .metrics_log import append_metrics
from .rundir import run_lock
from .state import TrainState, load_optimizer, load_state, optimizer_tensors, save_state
from .stopping import RunInterrupted
from .trainer import CONFIG_FILE, SUMMARY_FILE, RunExistsError, checkpoint_file, poly_lr
from .visualize import save_grid

ADAM_BETAS = (0.5, 0.999)
# The discriminators' three scales each halve four times: smaller crops leave nothing to judge.
MIN_CROP = 64
TRANSLATOR_FILE = "translator.safetensors"
PREVIEW_FILE = "preview.png"


@dataclass
class TranslatorConfig:
    """The translator stage's settings; the defaults are the authors'."""

    source: str | None = None  # labelled source, KIND:PATH (the labels draw the edges kept in place)
    target: str | None = None  # target images, KIND:PATH (labels not needed)
    label_space: str = "cityscapes19"
    steps: int = 50_000
    batch_size: int = 2
    crop: tuple[int, int] = (512, 896)
    # The authors crop one image at 720x1280 and one at full resolution per step; a random rescale
    # of the 720x1280-covering image by [1, 1.5] spans the same range.
    base_size: tuple[int, int] | None = (720, 1280)
    scale: tuple[float, float] = (1.0, 1.5)
    lr: float = 1e-4
    poly_power: float = 0.9
    width: int = 64  # channels of the translators' first layer (narrower: faster, e.g. on CPUs)
    res_blocks: int = 4  # residual blocks in each encoder and decoder
    vgg: str = "imagenet"  # the perceptual loss's VGG-19: imagenet, none (random) or a state-dict file
    seed: int = 0
    device: str = "auto"
    workers: int = 2
    log_every: int = 50
    ckpt_every: int = 2000
    preview_every: int = 1000

    def validate(self) -> "TranslatorConfig":
        problems = []
        if not self.source:
            problems.append("the translator needs labelled source images: --source KIND:PATH")
        if not self.target:
            problems.append("the translator needs target images: --target KIND:PATH")
        for name in ("steps", "batch_size", "log_every"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1 (got {getattr(self, name)})")
        for name in ("workers", "ckpt_every", "preview_every"):
            if getattr(self, name) < 0:
                problems.append(f"{name} must be >= 0 (got {getattr(self, name)})")
        if any(c < MIN_CROP or c % SIZE_MULTIPLE for c in self.crop):
            problems.append(f"crop must be at least {MIN_CROP}x{MIN_CROP} and a multiple of {SIZE_MULTIPLE} on "
                            f"both sides (got {self.crop})")
        if not (math.isfinite(self.lr) and self.lr > 0):
            problems.append(f"lr must be a finite number > 0 (got {self.lr})")
        if not 0 < self.scale[0] <= self.scale[1]:
            problems.append(f"scale must be 0 < min <= max (got {self.scale})")
        problems += check_architecture(self.width, self.res_blocks)
        if self.label_space not in LABEL_SPACES:
            problems.append(f"label_space must be one of {', '.join(LABEL_SPACES)} (got {self.label_space!r})")
        if not 0 <= self.seed < 2**32:
            problems.append(f"seed must be in 0..{2**32 - 1} (got {self.seed})")
        if problems:
            raise ConfigError("invalid translator settings: " + "; ".join(problems))
        return self

    def as_dict(self) -> dict[str, Any]:
        """The settings as YAML/JSON sees them (tuples as lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def loader_config(self) -> StageConfig:
        """The data settings in the form the shared loaders read."""
        return StageConfig(source=self.source, target=self.target, label_space=self.label_space, crop=self.crop,
                           scale=self.scale, base_size=self.base_size, batch_size=self.batch_size,
                           workers=self.workers, seed=self.seed, steps=self.steps)


@dataclass
class TranslatorResult:
    run_dir: Path
    weights: Path  # the source -> target translator
    preview: Path
    metrics: dict[str, Any]


class TranslatorTrainer:
    stage = "translator"

    def __init__(self, cfg: TranslatorConfig, run_dir: str | Path, resume: bool = False,
                 console: Console | None = None, resume_hint: str = "re-run the same command with --resume") -> None:
        self.cfg = cfg.validate()
        self.resume_hint = resume_hint  # how the command that started this run continues it
        self.dir = Path(run_dir)
        self.console = console or Console(stderr=True)
        self.device = runtime.resolve_device(cfg.device)
        runtime.seed_everything(cfg.seed)
        self.space = get_label_space(cfg.label_space)
        self.vgg = build_vgg_features(cfg.vgg).to(self.device)  # a bad --vgg fails before the data is read
        self.build_data()
        # s2t: encoder of source images, decoder to the target style; t2s the other way round.
        self.s2t = ImageTranslator(cfg.width, cfg.res_blocks).to(self.device).train()
        self.t2s = ImageTranslator(cfg.width, cfg.res_blocks).to(self.device).train()
        self.d_target = MultiScaleDiscriminator().to(self.device).train()  # real target vs translated source
        self.d_source = MultiScaleDiscriminator().to(self.device).train()  # real source vs translated target
        generators = list(self.s2t.parameters()) + list(self.t2s.parameters())
        discriminators = list(self.d_target.parameters()) + list(self.d_source.parameters())
        # One Adam per side: Adam is per parameter, so this is the authors' one optimiser per network.
        self.opt_g = torch.optim.Adam(generators, lr=cfg.lr, betas=ADAM_BETAS)
        self.opt_d = torch.optim.Adam(discriminators, lr=cfg.lr, betas=ADAM_BETAS)
        self.start_step = 0
        self._preview: dict[str, torch.Tensor] = {}
        state_path = checkpoint_file(self.dir)
        remove_stale_temps(self.weights_dir)
        if state_path.exists():
            if not resume:
                raise RunExistsError(f"{self.dir} already holds a translator run; pass --resume to continue it, "
                                     "or choose another --name")
            self.restore(load_state(state_path, self.device))
        self.dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.dir / CONFIG_FILE, yaml.safe_dump(cfg.as_dict(), sort_keys=False))

    @property
    def weights_dir(self) -> Path:
        return self.dir / "weights"

    def networks(self) -> dict[str, torch.nn.Module]:
        return {"s2t": self.s2t, "t2s": self.t2s, "d_target": self.d_target, "d_source": self.d_source}

    def build_data(self) -> None:
        data = self.cfg.loader_config()
        self.source_set = train_dataset(self.cfg.source, data)
        if not getattr(self.source_set, "has_labels", True):
            raise ConfigError(f"--source {self.cfg.source} has no labels; the translator keeps the source's "
                              "semantic edges in place and needs labelled source images")
        self.target_set = train_dataset(self.cfg.target, data, side="target")

    # --- one step -------------------------------------------------------------------------
    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (B,3,H,W) on the host -> the translator's pixel space on the device."""
        return to_translator_space(images.to(self.device, non_blocking=True).float().div_(255))

    def train_step(self, s: torch.Tensor, labels: torch.Tensor, t: torch.Tensor) -> dict[str, torch.Tensor]:
        f_s, f_t = self.s2t.encoder(s), self.t2s.encoder(t)
        s2t, t2s = self.s2t.decoder(f_s), self.t2s.decoder(f_t)  # the translations
        s_self, t_self = self.t2s.decoder(f_s), self.s2t.decoder(f_t)  # each decoder on its own domain
        s_cycle, t_cycle = self.t2s(s2t), self.s2t(t2s)  # translated back

        d_loss = (lsgan_real(self.d_target(t)) + lsgan_fake(self.d_target(s2t.detach()))
                  + lsgan_real(self.d_source(s)) + lsgan_fake(self.d_source(t2s.detach())))
        self.opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        self.opt_d.step()

        for d in (self.d_target, self.d_source):
            d.requires_grad_(False)
        l1 = torch.nn.functional.l1_loss
        losses = {
            "adversarial": lsgan_real(self.d_target(s2t)) + lsgan_real(self.d_source(t2s)),
            "cycle": l1(s_cycle, s) + l1(t_cycle, t),
            "edge": edge_loss(s2t, s, labels),
            "perceptual": perceptual_loss(self.vgg, s2t, s) + perceptual_loss(self.vgg, t2s, t),
            "self": l1(s_self, s) + l1(t_self, t),
        }
        for d in (self.d_target, self.d_source):
            d.requires_grad_(True)
        loss = sum(LOSS_WEIGHTS[k] * v for k, v in losses.items())
        self.opt_g.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_g.step()
        self._preview = {"source": s, "translated": s2t.detach(), "target": t}
        return {**{k: v.detach() for k, v in losses.items()}, "loss": loss.detach(), "d_loss": d_loss.detach()}

    # --- the loop ---------------------------------------------------------------------------
    def run(self) -> TranslatorResult:
        cfg = self.cfg
        data = cfg.loader_config()
        source = infinite_loader(self.source_set, data, self.start_step)
        target = infinite_loader(self.target_set, data, self.start_step, salt=1)

        def step(i: int) -> dict[str, torch.Tensor]:
            for opt in (self.opt_g, self.opt_d):
                for group in opt.param_groups:
                    group["lr"] = poly_lr(cfg.lr, i, cfg.steps, cfg.poly_power)
            xs, ys = next(source)
            return self.train_step(self.prepare(xs), ys.to(self.device), self.prepare(next(target)[0]))

        def log(record: dict[str, Any], i: int, rate: float) -> dict[str, Any]:
            self.check_finite(record, i + 1)
            self.log({**record, "step": i + 1, "lr": poly_lr(cfg.lr, i, cfg.steps, cfg.poly_power),
                      "steps_per_s": round(rate, 4)})
            return record

        def after_step(done: int) -> None:
            if cfg.preview_every and done % cfg.preview_every == 0:
                self.write_preview(self.dir / "preview" / f"step_{done:07d}.png")
            if cfg.ckpt_every and done % cfg.ckpt_every == 0 and done != cfg.steps:
                self.save_checkpoint(done)

        run_steps(progress_bar(self.console), self.console, self.stage, self.start_step, cfg.steps, cfg.log_every,
                  step, log, after_step, self.stop_at)
        return self.finish()

    def check_finite(self, record: dict[str, float], step: int) -> None:
        if not all(math.isfinite(v) for v in record.values()):
            self.log({**record, "step": step, "stopped": "non-finite loss"})
            raise DigaError(f"translator: the loss was NaN/inf before step {step}; lower the learning rate (--lr, "
                            f"now {self.cfg.lr}) or check the images. The last good checkpoint is kept in "
                            f"{self.weights_dir}; re-run with --resume once the cause is fixed.")

    def write_preview(self, path: Path) -> Path | None:
        """Source crops, their translation and target crops side by side (one row per sample)."""
        if not self._preview:
            return None
        columns = {k: from_translator_space(v.detach()) for k, v in self._preview.items()}
        return save_grid(path, columns, self.space)

    def stop_at(self, done: int, signal_name: str) -> None:
        self.save_checkpoint(done)
        message = (f"{self.stage} stopped by {signal_name}: step {done} of {self.cfg.steps} is saved in "
                   f"{checkpoint_file(self.dir)}. To continue, {self.resume_hint}")
        self.console.print(f"[yellow]{message}[/]", soft_wrap=True, highlight=False)
        raise RunInterrupted(message)

    def finish(self) -> TranslatorResult:
        cfg = self.cfg
        self.save_checkpoint(cfg.steps)
        preview = self.dir / PREVIEW_FILE
        self.write_preview(preview)
        summary = {"stage": self.stage, "steps": cfg.steps, "weights": str(self.weights_dir / TRANSLATOR_FILE),
                   "preview": str(preview)}
        atomic_write_text(self.dir / SUMMARY_FILE, json.dumps(summary, indent=2) + "\n")
        return TranslatorResult(self.dir, self.weights_dir / TRANSLATOR_FILE, preview, summary)

    # --- checkpoints --------------------------------------------------------------------------
    def save_checkpoint(self, step: int) -> None:
        tensors: dict[str, dict[str, torch.Tensor]] = {k: m.state_dict() for k, m in self.networks().items()}
        groups = {}
        for name, opt in (("opt_g", self.opt_g), ("opt_d", self.opt_d)):
            tensors[name], groups[name] = optimizer_tensors(opt)
        tensors["rng"] = {"cpu": torch.get_rng_state()}
        if self.device.type == "cuda":
            tensors["rng"]["cuda"] = torch.cuda.get_rng_state(self.device)
        save_state(checkpoint_file(self.dir), TrainState(step, tensors, {"param_groups": groups, "stage": self.stage}))
        meta = translator_metadata(self.s2t, step=step, steps=self.cfg.steps, source=self.cfg.source,
                                   target=self.cfg.target, vgg=self.cfg.vgg)
        save_translator(self.weights_dir / TRANSLATOR_FILE, self.s2t, meta)

    def restore(self, state: TrainState) -> None:
        path = checkpoint_file(self.dir)
        if state.info.get("stage") != self.stage:
            raise ConfigError(f"{path} is not the state of a translator run (stage {state.info.get('stage')!r})")
        for name, module in self.networks().items():
            module.load_state_dict(state.tensors[name])
        for name, opt in (("opt_g", self.opt_g), ("opt_d", self.opt_d)):
            load_optimizer(opt, state.tensors.get(name, {}), state.info["param_groups"][name])
        rng = state.tensors["rng"]
        torch.set_rng_state(rng["cpu"])
        if "cuda" in rng and self.device.type == "cuda":
            torch.cuda.set_rng_state(rng["cuda"], self.device)
        self.start_step = state.step
        self.console.print(f"[green]resuming {self.stage} from step {state.step}[/] ({self.dir})")

    def log(self, record: dict[str, Any]) -> None:
        append_metrics(self.dir, record)


def check_translator_resume(run_dir: str | Path, cfg: TranslatorConfig) -> None:
    """What ``--resume`` needs: a checkpoint in ``run_dir``, taken with the same settings."""
    run_dir = Path(run_dir)
    if not checkpoint_file(run_dir).exists():
        raise ConfigError(f"--resume: {run_dir} has no translator checkpoint to resume from; run without --resume "
                          "to start it")
    saved_path = run_dir / CONFIG_FILE
    if not saved_path.exists():
        return
    saved, now = yaml.safe_load(saved_path.read_text()) or {}, cfg.as_dict()
    changes = [f"{k}: saved {saved.get(k)!r}, now {v!r}" for k, v in now.items()
               if k not in RESUME_MAY_CHANGE and saved.get(k) != v]
    if changes:
        raise ConfigError(f"{run_dir} was started with other settings, and a run continues only with its own: "
                          f"{'; '.join(changes)}. Give the same options as before, or choose another --name")


def train_translator(cfg: TranslatorConfig, run_dir: str | Path, resume: bool = False,
                     console: Console | None = None, resume_hint: str | None = None) -> TranslatorResult:
    """Train (or with ``resume`` continue) the translator in ``run_dir``; ``resume_hint`` says how the
    calling command continues a stopped run."""
    if runtime.is_distributed():
        raise ConfigError("diga translator runs in one process; start it without torchrun")
    if resume:
        check_translator_resume(run_dir, cfg)
    with run_lock(run_dir, console):
        hint = {"resume_hint": resume_hint} if resume_hint else {}
        return TranslatorTrainer(cfg, run_dir, resume=resume, console=console, **hint).run()


__all__ = ["TranslatorConfig", "TranslatorResult", "TranslatorTrainer", "check_translator_resume",
           "train_translator", "TRANSLATOR_FILE", "PREVIEW_FILE"]
