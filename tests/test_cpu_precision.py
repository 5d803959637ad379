"""The cpu preset's precision: bf16 autocast where the CPU has bf16 units, fp32 elsewhere, decided
on the machine and recorded in the run's config."""

from __future__ import annotations

import pytest
import torch

from diga.engine import runtime
from diga.engine.config import StageConfig, preset


def test_the_cpu_preset_takes_bf16_only_where_the_cpu_has_bf16_units(monkeypatch):
    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: True)
    assert preset("cpu").amp == "bf16" and not preset("cpu").channels_last  # the layout bf16 was measured in
    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: False)
    assert preset("cpu").amp == "fp32" and preset("cpu").channels_last  # faster in fp32 on both CPUs measured
    # the other presets do not depend on the machine
    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: True)
    assert preset("gpu").amp == "auto" and preset("paper").amp == "fp32"


def test_the_precision_taken_is_what_the_config_file_records(monkeypatch):
    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: True)
    saved = preset("cpu").to_yaml()
    assert "amp: bf16" in saved
    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: False)
    assert StageConfig.from_yaml(saved).amp == "bf16"  # a re-run from the file keeps it


def test_native_bf16_is_read_from_torchs_cpu_probes(monkeypatch):
    monkeypatch.undo()  # the real function, not the test-wide fp32 stand-in
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    assert runtime.cpu_has_native_bf16() is False
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True, raising=False)
    assert runtime.cpu_has_native_bf16() is True
    monkeypatch.delattr(torch.cpu, "_is_amx_tile_supported")
    monkeypatch.delattr(torch.cpu, "_is_avx512_bf16_supported")
    assert runtime.cpu_has_native_bf16() is False  # a torch without the probes counts as no


def test_a_bf16_warmup_step_on_the_cpu_runs_its_convolutions_in_bf16(tiny_cfg, tmp_path):
    from diga.engine.warmup import WarmupTrainer

    trainer = WarmupTrainer(tiny_cfg.replace(amp="bf16", steps=1, eval_every=0, vis_every=0, ckpt_every=0),
                            tmp_path)
    trainer.source, trainer.target = trainer.branch.loaders(0)
    seen = []
    hook = torch.nn.modules.module.register_module_forward_hook(
        lambda module, args, out: seen.append(out.dtype) if isinstance(module, torch.nn.Conv2d) else None)
    try:
        before = [p.detach().clone() for p in trainer.model.parameters()]
        losses = trainer.optimization_step(0)
    finally:
        hook.remove()
    assert seen and set(seen) == {torch.bfloat16}
    assert all(torch.isfinite(v).all() for v in losses.values())
    assert any(not torch.equal(b, p) for b, p in zip(before, trainer.model.parameters()))
    assert all(p.dtype == torch.float32 for p in trainer.model.parameters())  # autocast, fp32 weights


def test_a_run_moved_to_a_cpu_without_bf16_units_is_refused_naming_amp_and_continues_with_it(
        monkeypatch, tiny_bench, tmp_path):
    """The cpu preset's amp is decided by the machine; a run started in bf16 keeps it only when asked."""
    from diga.engine.pipeline import check_same_settings
    from diga.errors import ConfigError

    def config(native: bool, **options) -> StageConfig:
        monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: native)
        return preset("cpu").replace(source=tiny_bench["source"], target=tiny_bench["target"], **options)

    run = tmp_path / "adapt/a"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(config(True).to_yaml())  # started on a CPU with bf16 units
    with pytest.raises(ConfigError, match=r"amp: saved 'bf16', now 'fp32'") as refused:
        check_same_settings(run, config(False))
    assert "channels_last" not in str(refused.value)  # a memory layout, chosen by the CPU too: not the method
    check_same_settings(run, config(False, amp="bf16"))  # --amp bf16: the same run, no refusal
