"""Shared option handling: a preset or a config file, plus CLI overrides -> a validated StageConfig.

The options every training command shares are defined once here. Each defaults to None, meaning
"not given": only options given on the command line override the preset or the config file.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from diga.engine.config import AMP_CHOICES, PRESETS, StageConfig, preset
from diga.errors import ConfigError

CONFIG = typer.Option(
    None, "--config", dir_okay=False,
    help="Start from this config.yaml (every run writes one, e.g. runs/adapt/NAME/config.yaml) "
         "instead of a preset; options given alongside override its values.")
PRESET = typer.Option(None, help=(
    "cpu, gpu, paper (the authors' GTA5 -> Cityscapes adaptation recipe), paper-synthia (their SYNTHIA -> "
    "Cityscapes one), paper-dg or paper-semi (their domain-generalisation and semi-supervised ones); default: "
    "gpu if CUDA is available, else cpu."))
SOURCE = typer.Option(None, help="Labelled source data, KIND:PATH (gta5, synthia, cityscapes, folder).")
TARGET = typer.Option(None, help="Target images, KIND:PATH (labels not needed; 'folder:DIR' or 'video:FILE[?fps=2]' "
                      "for your own).")
VAL = typer.Option(None, help="Labelled target validation data, KIND:PATH (optional).")
MODEL = typer.Option(None, help="Architecture (see `diga info`).")
STEPS = typer.Option(None, min=0, help="Training steps.")
BATCH_SIZE = typer.Option(None, min=1, help="Images per optimisation step.")
ACCUMULATE = typer.Option(None, min=1, help=(
    "Gradient accumulation: split each batch into this many micro-batches (less GPU memory, same "
    "effective batch; must divide --batch-size)."))
CROP = typer.Option(None, help="Crop height and width.")
LR = typer.Option(None, min=0.0, help="Base learning rate (poly schedule, or the warm-up's --warmup-lr-schedule; the head trains at head_lr_mult x lr).")
LABEL_SPACE = typer.Option(None, help="cityscapes19, synthia16 or synthia13.")
PRETRAINED = typer.Option(None, help=(
    "'imagenet' (the library's ImageNet weights), 'deeplab' (the DeepLab-V2 init weights, ImageNet + MS-COCO, "
    "that the authors start from: downloaded once into the torch hub cache; needs --backbone-layout caffe), a "
    "backbone FILE (with --backbone-layout caffe: the DeepLab init file's key layout), or 'none'."))
TRANSLATOR = typer.Option(None, help=(
    "Source-to-target style translation: fda, color, learned (the authors' translator network: "
    "--translator-weights FILE from `diga translator`, or in `diga adapt` without it trained first as stage 0; "
    "the paper preset) or none."))
TRANSLATOR_STEPS = typer.Option(None, min=1, help=(
    "Stage 0 of `diga adapt` (--translator learned, no --translator-weights): translator training steps "
    "(authors: 50000)."))
VGG_CHOICES = ("imagenet (torchvision's weights, downloaded once into the torch hub cache), a state-dict FILE "
               "(offline), or none (random features)")
TRANSLATOR_VGG = typer.Option(None, help=(
    f"Stage 0 of `diga adapt`: VGG-19 of the translator's perceptual loss: {VGG_CHOICES}."))
TRANSLATOR_WEIGHTS = typer.Option(None, "--translator-weights", dir_okay=False, help=(
    "--translator learned: the translator.safetensors that `diga translator` wrote."))
HEAD_NORM = typer.Option(None, help=(
    "DeepLab-V2 head normalisation: gn (GroupNorm, the authors' head and the paper preset) or bn (BatchNorm "
    "+ ReLU; cpu and gpu presets). Recorded in the checkpoint, which rebuilds the same head."))
BACKBONE_LAYOUT = typer.Option(None, help=(
    "DeepLab-V2 ResNet backbone: caffe (the authors' layout of the DeepLab init weights: stride on the first "
    "1x1 conv, ceil-mode max-pool, every layer3/layer4 block dilated, head convs from N(0, 0.01); the paper "
    "presets, with --pretrained deeplab) or torchvision (cpu and gpu presets). Recorded in the checkpoint."))
INPUT_NORM = typer.Option(None, help=(
    "Network input normalisation: caffe (the authors' (255x - mean)/128 with the Caffe pixel means, which the "
    "DeepLab init weights expect; the paper presets) or imagenet (ImageNet mean/std; cpu and gpu presets). "
    "Recorded in the checkpoint: evaluation, exports and the demo apply the same."))
EMA_MAX = typer.Option(None, min=0.0, max=1.0, help=(
    "Cap of the EMA teacher's momentum (paper and gpu presets: 0.999; cpu preset: 0.99, which keeps "
    "the teacher from lagging in runs of a few thousand steps; see docs/BENCHMARKS.md)."))
WARMUP_TARGET_BN = typer.Option(None, "--warmup-target-bn/--no-warmup-target-bn", help=(
    "Warm-up: each step also passes the target crops through the student in train mode without "
    "gradients, so its BatchNorm statistics (used by evaluation, pseudo-labels and centroids) follow the "
    "target too (the authors' code, the paper and cpu presets; off in the gpu preset)."))
BACKBONE_BN_AFFINE = typer.Option(None, help=(
    "Backbone BatchNorm scale and shift: frozen (left out of the optimiser; the layers still use batch "
    "statistics in training: the authors' code and the paper preset) or train (cpu and gpu presets)."))
CENTROID_UPDATE = typer.Option(None, help=(
    "Self-training centroid update: image (one EMA step per image and class with at least "
    "--centroid-min-pixels agreeing pixels, target images first: the authors' code and the paper preset) "
    "or batch (one step per class towards the batch's pooled mean: cpu and gpu presets)."))
CENTROID_MIN_PIXELS = typer.Option(None, min=1, help=(
    "--centroid-update image: agreeing pixels (at the output stride) a class needs in an image to move "
    "its centroid (authors: 5)."))
LOSS_NORM = typer.Option(None, help=(
    "Cross-entropy normalisation: all (sum over labelled pixels / every pixel, ignored ones included: "
    "the authors' code and the paper preset; sparse labels weigh less) or valid (/ labelled pixels; "
    "cpu and gpu presets)."))
LOSS = typer.Option(None, help=(
    "Supervised segmentation loss (source terms, and self-training's mixed-target term): ce (cross-entropy "
    "normalised by --loss-norm; the authors' GTA5 code and the paper preset) or ohem (online hard-example "
    "mining: the mean cross-entropy over the labelled pixels whose true-class probability is below "
    "--ohem-threshold, at least about --ohem-min-kept pixels of the batch; the authors' SYNTHIA code and the "
    "paper-synthia preset)."))
OHEM_THRESHOLD = typer.Option(None, min=0.0, max=1.0, help=(
    "--loss ohem: pixels whose true-class probability is below this are kept (authors: 0.7)."))
OHEM_MIN_KEPT = typer.Option(None, min=1, help=(
    "--loss ohem: when fewer pixels of the batch are below --ohem-threshold, the cut-off rises to keep about "
    "this many, the hardest (authors: 100000, for batches of 512x896 crops)."))
AUX_WEIGHT = typer.Option(None, min=0.0, help=(
    "Weight of the network's auxiliary head (HRNet-OCR's soft object regions) beside its main output in every "
    "loss of the warm-up and self-training: supervised and cross-mix CE, distillation (against the teacher's "
    "auxiliary head). 0.1: the authors' semi-supervised code and the paper-semi preset; 0: the other presets "
    "(the head then learns only through the OCR attention it drives). Networks without one refuse a weight > 0."))
WARMUP_LR_SCHEDULE = typer.Option(None, help=(
    "Warm-up learning rate over its steps: poly (decay by poly 0.9; the authors' GTA5 code and the paper "
    "preset) or ramp (a linear rise from 0 to --lr, no decay: the authors' SYNTHIA warm-up and the "
    "paper-synthia preset). Self-training always decays by poly."))
SELFTRAIN_BATCH_SIZE = typer.Option(None, "--selftrain-batch-size", min=1, help=(
    "Images per self-training step; not given: --batch-size. The authors' SYNTHIA scripts take 4 in the "
    "warm-up and 3 in self-training (the paper-synthia preset); per-dataset base sizes of self-training must "
    "then add up to it (--selftrain-source-base-size, --selftrain-target-base-size)."))
BASE_RESIZE = typer.Option(None, help=(
    "How training images reach the base size: cover (one factor for both sides, the smallest that covers "
    "it: the aspect ratio is kept, as the authors' per-dataset sizes keep it; paper preset) or stretch "
    "(resized to it exactly; cpu and gpu presets)."))
CROP_FILL = typer.Option(None, help=(
    "Where a randomly scaled image is smaller than the crop: stretch (the whole image resized to the crop: "
    "the authors' code and the paper preset), pad (image 0, label ignore; cpu and gpu presets) or rescale "
    "(scaled up, aspect kept, just enough for the crop to fit: no padding)."))
SCALE_MODE = typer.Option(None, help=(
    "Random rescale: axis (height and width each by their own factor from the scale range, U[0.7, 1]: the "
    "authors' code and the paper preset) or iso (one factor for both sides; the other presets)."))
MIX_COUNT = typer.Option(None, help=(
    "How many classes the class mixtures take per source image: authors (half of the distinct label values, "
    "rounded down, the ignore label among them when present: the authors' code and the paper preset) or "
    "ceil (half of the real classes, rounded up; cpu and gpu presets)."))
CROP_RETRY = typer.Option(None, min=0, help=(
    "Source crops: draw the rescale, crop and flip up to N times, keeping the first where at least two classes "
    "each cover more than 2 % of the crop (else the last); 5: the authors' code and the paper preset; "
    "0: one draw (cpu and gpu presets)."))
BASE_SIZE_FORM = "HxW[:N] (height x width, crops per batch)"
SOURCE_BASE_SIZE = typer.Option(None, "--source-base-size", help=(
    f"Repeatable, {BASE_SIZE_FORM}: N source crops of each batch resized from this base size instead of the "
    "one base_size setting (without :N, the whole batch; the Ns must add up to --batch-size); 'none' "
    "clears a preset's list. The authors' GTA5: 720x1280:1 and 1052x1914:2 (the paper preset; their "
    "self-training takes 2 and 1); SYNTHIA: 760x1280:1 and 1140x1920:3 (warm-up, batch 4) or :1 and :2 (self-training, "
    "batch 3: the paper-synthia preset)."))
TARGET_BASE_SIZE = typer.Option(None, "--target-base-size", help=(
    f"Repeatable, {BASE_SIZE_FORM}: the same for the target crops (and the pseudo-labelled ones of "
    "self-training). The authors' Cityscapes: 512x1024:1 and 1024x2048:2 (the paper preset; their "
    "self-training takes 2 and 1)."))
# `diga selftrain` runs self-training alone: its --source-base-size / --target-base-size are that stage's.
SELFTRAIN_SOURCE_BASE_SIZE = typer.Option(None, "--source-base-size", help=(
    f"Repeatable, {BASE_SIZE_FORM}: N source crops of each batch resized from this base size (the Ns must "
    "add up to --batch-size); 'none': the whole batch from base_size. The authors' GTA5 self-training: "
    "720x1280:2 and 1052x1914:1 (the paper preset); SYNTHIA: 760x1280:1 and 1140x1920:2 (paper-synthia)."))
SELFTRAIN_TARGET_BASE_SIZE = typer.Option(None, "--target-base-size", help=(
    f"Repeatable, {BASE_SIZE_FORM}: the same for the target crops (pseudo-labelled and translator style "
    "crops). The authors' Cityscapes self-training: 512x1024:2 and 1024x2048:1 (the paper preset)."))
ADAPT_SELFTRAIN_SOURCE_BASE_SIZE = typer.Option(None, "--selftrain-source-base-size", help=(
    f"Repeatable, {BASE_SIZE_FORM}: --source-base-size for the self-training rounds only (without :N, the "
    "whole self-training batch); not given or 'none': the warm-up's list. The authors' GTA5 self-training: "
    "720x1280:2 and 1052x1914:1 (the paper preset; their warm-up takes 1 and 2)."))
ADAPT_SELFTRAIN_TARGET_BASE_SIZE = typer.Option(None, "--selftrain-target-base-size", help=(
    f"Repeatable, {BASE_SIZE_FORM}: --target-base-size for the self-training rounds only (without :N, the "
    "whole self-training batch); not given or 'none': the warm-up's list. The authors' Cityscapes "
    "self-training: 512x1024:2 and 1024x2048:1 (the paper preset; their warm-up takes 1 and 2)."))
PSEUDO_SIZE = typer.Option(None, help=(
    "Size of the target images that pseudo-labels and centroids are computed from: native (their own "
    "size, the pseudo-labels stored at it; the centroids at the smallest evaluation scale: the authors' "
    "code predicts Cityscapes at 1024x2048 + 512x1024 and takes centroids from 512x1024; the paper preset) "
    "or base (resized to base_size; cpu and gpu presets)."))
DISTIL_RESOLUTION = typer.Option(None, help=(
    "Symmetric distillation computed on logits upsampled to the crop (crop: bilinear, align_corners=True, "
    "the authors' code and the paper preset) or at the network's output stride (output: cpu and gpu presets)."))
TEACHER_MODE = typer.Option(None, help=(
    "EMA teacher: train (BatchNorm normalises with each batch's statistics, dropout active, the EMA averages "
    "parameters only: the authors' code and the paper presets) or eval (running statistics, averaged like "
    "the weights, no dropout; cpu and gpu presets)."))
BLEND_SPACE = typer.Option(None, help=(
    "Where the second views are augmented and blended: authors (on the network input in the authors' "
    "normalisation, BGR (255x - mean)/128, re-mapped by 2y - 1: about (1 + beta)x - beta plus the jitter; "
    "the authors' code and the paper presets) or unit (on RGB images in [0, 1]; cpu and gpu presets)."))
AUGMENT_OPS = typer.Option(None, help=(
    "The photometric ops' semantics: kornia (kornia 0.5.8's, which the authors' code calls: additive "
    "brightness, contrast without the mean blend, HSV saturation, the jitter's op order drawn per call, a "
    "sharpness factor drawn from [0, 0.5]; the paper presets) or torchvision (cpu and gpu presets)."))
STUDENT_FORWARD = typer.Option(None, help=(
    "Self-training student forwards: separate (the source views and the mixed target crops apart, each "
    "normalised by its own BatchNorm batch statistics: the authors' code and the paper presets) or joint "
    "(one forward on all of them; cpu and gpu presets)."))
TARGET_MIX_IGNORE = typer.Option(None, help=(
    "Self-training's target cross-mix on the source's ignore pixels (label 255): paste (pasted with their "
    "label, so the loss skips them: the authors' code and the paper preset) or keep (the target image and "
    "its pseudo-label stay there; cpu and gpu presets)."))
SELECT_UPSAMPLE = typer.Option(None, help=(
    "Dynamic selection's prototype labels: bilinear (the softmax over the centroid distances upsampled "
    "bilinearly to the pseudo-label, then the argmax, unseen classes' zero centroids eligible: the authors' "
    "code and the paper preset) or nearest (the nearest centroid, nearest-upsampled, unseen classes "
    "excluded; cpu and gpu presets)."))
CENTROID_LABELS = typer.Option(None, help=(
    "Which pixels each class centroid averages between the stages: argmax (where the model's own prediction, "
    "from the same single-scale forward as the features, says the class: the authors' code and the paper "
    "presets) or pseudo (where the stored multi-scale pseudo-labels say it; cpu and gpu presets)."))
CENTROIDS_PER_ROUND = typer.Option(None, help=(
    "Class centroids of the self-training rounds: keep (computed once from the warm-up model, every round "
    "starts from them: the authors' code and the paper presets) or recompute (from each round's starting "
    "model; cpu and gpu presets)."))
CENTROID_MEAN = typer.Option(None, help=(
    "How each class centroid averages the images' class means: authors (a running mean over the set's order "
    "whose count stops at 3000, over 5 passes, so that past 3000 images the later ones weigh more: the "
    "authors' code and the paper presets) or once (their plain mean; cpu and gpu presets)."))
CENTROID_IMAGES = typer.Option(None, help=(
    "The images the class centroids average over: target (the target's training images; every preset but "
    "paper-semi) or all (the source's training images too, in path order: the authors' semi-supervised code "
    "averages over Cityscapes' whole train list, labelled part included; paper-semi). all needs "
    "--centroid-labels argmax."))
SELECTION = typer.Option(None, help="Pseudo-label selection: dynamic (DiGA), threshold or none.")
THRESHOLD = typer.Option(None, min=0.0, max=1.0, help="Confidence for --selection threshold.")
AMP = typer.Option(None, help="Mixed precision: auto, bf16, fp16 or fp32.")
SEED = typer.Option(None, help="Random seed (same seed and settings, same run).")
DEVICE = typer.Option(None, help="auto, cpu, cuda, cuda:N.")
WORKERS = typer.Option(None, min=0, help="Data-loading processes (0: load in the training process).")
EVAL_EVERY = typer.Option(None, min=0, help="Evaluate on --val every this many steps (0: only at the end).")
SELECT = typer.Option(None, help=(
    "Model a stage hands on: last, best (the best step on the --val labels; needs target labels), auto "
    "(best when labelled --val data is given, else last with a note; the paper preset, as the authors' code) "
    "or label-free (the evaluation point, every --eval-every steps and the last, with the lowest class drift "
    "on unlabelled target images: no labels needed; the references keep their last step)."))
DRIFT_GUARD = typer.Option(None, min=0.0, max=2.0, help=(
    "Reject a self-training round whose class drift on the unlabelled target (L1 distance between the "
    "predicted class shares and the source's label shares) ends more than this above the model it started "
    "from: the rounds stop and the model before it is handed on. 0: off (the paper presets, as the authors)."))
COMPILE = typer.Option(None, "--compile/--no-compile", help="torch.compile the model (faster steps after a slow start).")
SYNC_BN = typer.Option(None, "--sync-bn/--no-sync-bn", help="SyncBatchNorm across GPUs when run with torchrun.")
PROJECT = typer.Option(Path("runs"), help="Folder of all runs.")


def name_option(stage: str, extra: str = "") -> Any:
    return typer.Option("exp", help=f"Run name: runs/{stage}/NAME{extra}.")


def run_dir(project: Path, stage: str, name: str) -> Path:
    """``PROJECT/STAGE/NAME``, with NAME checked to be one folder name."""
    from diga.engine.rundir import check_run_name

    try:
        return project / stage / check_run_name(name)
    except ConfigError as e:
        raise typer.BadParameter(str(e), param_hint="--name") from None


def resume_option(stage: str) -> Any:
    return typer.Option(False, help=f"Continue runs/{stage}/NAME from its last checkpoint, with the same settings.")


def default_preset() -> str:
    import torch

    return "gpu" if torch.cuda.is_available() else "cpu"


def build_config(preset_name: str | None, config: Path | None = None, **overrides: Any) -> StageConfig:
    """A preset or a config file, with every non-None override applied; bad values become CLI errors."""
    from diga.engine.runtime import init_distributed_from_env

    init_distributed_from_env()  # no-op unless launched by torchrun with several processes
    if config is not None and preset_name is not None:
        raise typer.BadParameter("give --config or --preset, not both (a config file holds every setting)",
                                 param_hint="--preset")
    base = base_config(config=config, preset_name=preset_name)
    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        cfg = base.replace(**given).validate()
    except ConfigError as e:
        raise typer.BadParameter(str(e)) from None
    _check_device(cfg.device)
    return cfg


def _preset(name: str | None) -> StageConfig:
    name = name or default_preset()
    if name not in PRESETS:
        raise typer.BadParameter(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}",
                                 param_hint="--preset")
    return preset(name)


def _check_device(name: str) -> None:
    """Fail before any data is read when the device cannot be used here."""
    from diga.engine.runtime import resolve_device

    try:
        resolve_device(name)
    except RuntimeError as e:
        raise typer.BadParameter(str(e), param_hint="--device") from None


def check_spec(value: str | None, option: str) -> str | None:
    """Validate a KIND:PATH option early, with the valid kinds in the message."""
    if value is None:
        return None
    from diga.data import parse_spec

    try:
        parse_spec(value)
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint=option) from None
    return value


_SIZE = r"\s*(\d+)\s*[xX]\s*(\d+)\s*"  # HxW, as --base-size and the per-dataset base sizes take it


def size_or_none(value: str, option: str) -> tuple[int, int] | None:
    """An ``HxW`` option value -> (height, width); 'none' -> None."""
    if value.strip().lower() == "none":
        return None
    match = re.fullmatch(_SIZE, value)
    if not match or 0 in (size := (int(match[1]), int(match[2]))):
        raise typer.BadParameter(f"expected HxW with positive sides, e.g. 720x1280, or none; got {value!r}",
                                 param_hint=option)
    return size


def base_sizes_value(values: list[str] | None, option: str,
                     batch_size: Callable[[], int]) -> tuple[tuple[int, int, int], ...] | None:
    """Repeated ``--source-base-size``/``--target-base-size`` values -> (height, width, crops) entries;
    None when not given, () for 'none' (back to the one base size). A single size without :N takes the
    whole batch (``batch_size()``: the batch the command will run with)."""
    if not values:
        return None
    if [v.strip().lower() for v in values] == ["none"]:
        return ()
    parsed = []
    for value in values:
        match = re.fullmatch(_SIZE + r"(?::\s*(\d+)\s*)?", value)
        if not match:
            raise typer.BadParameter(f"expected {BASE_SIZE_FORM}, e.g. 720x1280:1, or none; got {value!r}",
                                     param_hint=option)
        parsed.append(tuple(int(g) if g is not None else None for g in match.groups()))
    if any(n is None for _, _, n in parsed):
        if len(parsed) > 1:
            raise typer.BadParameter(f"with several sizes, give each one's crops per batch as HxW:N "
                                     f"(got {', '.join(values)})", param_hint=option)
        parsed = [(*parsed[0][:2], batch_size())]
    return tuple(parsed)


def base_size_settings(given: dict[str, tuple[str, list[str] | None]], preset_name: str | None,
                       config: Path | None, batch_size: int | None,
                       selftrain_batch_size: int | None = None) -> dict[str, Any]:
    """The per-dataset base-size settings of the options: ``given`` maps each setting to (the option that
    sets it, the option's values or None when not given). A size given without :N takes the whole batch
    of the stage that reads the list (``stage_batch_size``): self-training's for its own lists."""

    def batch_of(setting: str) -> Callable[[], int]:
        stage = "selftrain" if setting.startswith("selftrain_") else "warmup"
        return lambda: stage_batch_size(stage, preset_name, config, batch_size, selftrain_batch_size)

    return {name: base_sizes_value(values, option, batch_of(name)) for name, (option, values) in given.items()}


def stage_batch_size(stage: str, preset_name: str | None, config: Path | None, batch_size: int | None = None,
                     selftrain_batch_size: int | None = None) -> int:
    """The batch ``stage`` (warmup or selftrain) runs with. The warm-up's: --batch-size, else the --config
    file's or the preset's batch_size. Self-training's: --selftrain-batch-size (`diga selftrain`: its
    --batch-size), else the file's or preset's selftrain_batch_size, else the warm-up's."""
    if stage == "warmup":
        return batch_size if batch_size is not None else base_config(preset_name, config).batch_size
    if selftrain_batch_size is not None:
        return selftrain_batch_size
    base = base_config(preset_name, config)
    if base.selftrain_batch_size is not None:
        return base.selftrain_batch_size
    return batch_size if batch_size is not None else base.batch_size


def base_config(preset_name: str | None, config: Path | None) -> StageConfig:
    """The --config file or the preset a command starts from, before its options."""
    try:
        return StageConfig.load(config) if config is not None else _preset(preset_name)
    except ConfigError as e:
        raise typer.BadParameter(str(e), param_hint="--config") from None


def pretrained_value(value: str | None) -> str | None:
    """--pretrained none -> '' (no pretrained weights); None stays "not given"."""
    return None if value is None else ("" if value.lower() == "none" else value)


def amp_value(amp: str | None) -> str:
    """--amp of a command that takes no config (not given: auto), or a usage error listing the choices."""
    if amp is None:
        return "auto"
    if amp not in AMP_CHOICES:
        raise typer.BadParameter(f"expected one of {', '.join(AMP_CHOICES)}, got {amp!r}", param_hint="--amp")
    return amp


def check_mode_option(mode: str | None) -> str | None:
    """``--mode`` as given (None: the model's default), or a usage error listing the modes."""
    from diga.inference import check_mode

    if mode is None:
        return None
    try:
        return check_mode(mode, "--mode")
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--mode") from None
