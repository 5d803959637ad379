"""Shared option handling: presets + CLI overrides -> a validated StageConfig."""

from __future__ import annotations

from typing import Any

import typer

from diga.engine.config import PRESETS, StageConfig, preset


def default_preset() -> str:
    import torch

    return "gpu" if torch.cuda.is_available() else "cpu"


def build_config(preset_name: str | None, base: StageConfig | None = None, **overrides: Any) -> StageConfig:
    """Preset (or ``base``) with every non-None override applied; bad values become CLI errors."""
    from diga.engine.runtime import init_distributed_from_env

    init_distributed_from_env()  # no-op unless launched by torchrun with several processes
    name = preset_name or default_preset()
    if name not in PRESETS:
        raise typer.BadParameter(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}",
                                 param_hint="--preset")
    cfg = base or preset(name)
    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        return cfg.replace(**given).validate()
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None


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
