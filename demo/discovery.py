"""Which model the demo serves, and loading it: the newest adapted run, the export a backend
needs, the run's before-adaptation model. No Gradio here."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from diga.errors import ConfigError, DigaError
from diga.export.formats import CHECKPOINT_SUFFIX, format_named

ADAPTED_MODEL = f"final{CHECKPOINT_SUFFIX}"  # what `diga adapt` writes into runs/adapt/NAME/
BEFORE_MODEL = f"before{CHECKPOINT_SUFFIX}"


class NoModelError(DigaError, FileNotFoundError):
    """No model was given and none was found; the message says how to make one."""


def newest_model(project: str | Path = "runs") -> Path | None:
    """The newest (by modification time) ``PROJECT/adapt/*/final.safetensors``, or None."""
    found = [p for p in Path(project).glob(f"adapt/*/{ADAPTED_MODEL}") if p.is_file()]
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def resolve_model(model: str | Path | None, project: str | Path = "runs") -> Path:
    """``model`` if given (it must exist), else the newest adapted model; NoModelError otherwise."""
    if model is not None:
        path = Path(model).expanduser()
        if not path.exists():
            raise NoModelError(f"model not found: {path}")
        return path
    path = newest_model(project)
    if path is None:
        raise NoModelError(
            f"no model given and no adapted model found ({Path(project) / 'adapt' / '*' / ADAPTED_MODEL}). "
            "Make one with `diga adapt` (with no data options it adapts on the built-in synthetic benchmark; "
            f"`--preset cpu` for a machine without GPU), or pass --model PATH (a {CHECKPOINT_SUFFIX} checkpoint "
            "or an exported model).")
    return path


def model_metadata(path: Path) -> dict[str, Any]:
    """The diga metadata of a checkpoint or an exported model ({} if it has none)."""
    try:
        from diga.export import read_export_metadata

        meta = read_export_metadata(path)
        if isinstance(meta, dict):
            return meta
    except Exception:  # noqa: BLE001 - no metadata: the sibling rule still applies
        pass
    sidecar = path.with_suffix(".json")  # a checkpoint's sidecar beside an export of the same name
    if sidecar.is_file():
        try:
            meta = json.loads(sidecar.read_text())
            return meta if isinstance(meta, dict) else {}
        except (OSError, ValueError):
            return {}
    return {}


def model_for_backend(model_path: str | Path, backend: str) -> Path:
    """The file to load for ``backend``: a checkpoint asked to run on an exported format is replaced
    by its export beside it (``final.safetensors`` -> ``final.onnx``, what ``diga export`` writes;
    any suffix the format's backend opens); without one, a ValueError says how to make it."""
    model_path = Path(model_path)
    fmt = format_named(backend)
    if fmt is None or not fmt.exported or model_path.suffix.lower() != CHECKPOINT_SUFFIX:
        return model_path
    for suffix in fmt.suffixes:
        cand = model_path.with_suffix(suffix)
        if cand.is_file():
            return cand
    raise ConfigError(f"--backend {backend} needs an exported model and {model_path.name} has none beside it; "
                     f"export it first: `diga export {model_path} --format {fmt.argument}` (or use --backend torch)")


def find_before_model(model_path: str | Path) -> Path | None:
    """The "before adaptation" model of the run that produced ``model_path``, or None.

    The rule, in order:

    1. the model's metadata key ``before_adaptation`` (the safetensors header of a checkpoint,
       or the ``.json`` sidecar of an exported model): a path *relative to the model's folder*
       -- ``diga adapt`` writes ``"before.safetensors"`` into ``runs/adapt/NAME/final.safetensors``;
    2. a sibling file ``before.safetensors`` in the model's folder.

    The result is never the model itself; absolute paths in the metadata are ignored."""
    model_path = Path(model_path)
    folder = model_path.parent
    candidates = []
    rel = model_metadata(model_path).get("before_adaptation")
    if isinstance(rel, str) and rel and not Path(rel).is_absolute():
        candidates.append(folder / rel)
    candidates.append(folder / BEFORE_MODEL)
    for cand in candidates:
        try:
            if cand.is_file() and cand.resolve() != model_path.resolve():
                return cand
        except OSError:
            continue
    return None


def display_name(path: Path) -> str:
    """``runs/adapt/NAME/final.onnx`` -> ``adapt/NAME/final.onnx`` (the last three parts)."""
    parts = path.parts[-3:] if path.parent.name else path.parts[-1:]
    return "/".join(parts)


@dataclass
class LoadedModels:
    predictor: Any  # diga.export.Predictor
    path: Path  # the file actually loaded (an export when the backend asked for one)
    before: Any | None = None  # the before-adaptation Predictor, when found and loadable
    before_path: Path | None = None


def load_models(model: str | Path | None, backend: str = "auto", *, device: str | None = None,
                project: str | Path = "runs", compare: bool = True,
                warn: Callable[[str], None] = print) -> LoadedModels:
    """Resolve the model (:func:`resolve_model`), load it for ``backend`` and, with ``compare``,
    its before-adaptation model on the same device (a failure there is only a warning)."""
    model_path = resolve_model(model, project)  # first: "no model" must not depend on anything else

    from diga.export import Predictor

    load_path = model_for_backend(model_path, backend)
    predictor = Predictor.load(load_path, backend=backend, device=device)
    loaded = LoadedModels(predictor, load_path)
    before_path = find_before_model(model_path) if compare else None
    if before_path is None:
        return loaded
    try:  # its own export for the same backend if there is one, else the checkpoint with PyTorch
        try:
            before_path = model_for_backend(before_path, backend)
        except ValueError:
            pass
        loaded.before = Predictor.load(before_path, backend="auto", device=str(predictor.device))
        loaded.before_path = before_path
    except Exception as e:  # noqa: BLE001 - the comparison is optional
        warn(f"warning: before-adaptation model {before_path} not loaded ({type(e).__name__}: {e}); "
             "no before/after comparison")
    return loaded
