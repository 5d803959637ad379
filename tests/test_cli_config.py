"""Configs that round-trip: --config re-runs a run from its config.yaml, unknown keys and changed
resumes are refused, every option is settable and documented; one self-training rounds loop."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
import typer

from diga.engine.config import RESUME_MAY_CHANGE, StageConfig, changed_settings, preset
from diga.errors import ConfigError


# --- StageConfig <-> YAML ---------------------------------------------------------------------
def test_config_yaml_round_trips_every_field():
    cfg = preset("cpu").replace(source="gta5:/data/gta5", crop=(48, 96), eval_scales=(1.0, 0.75), eval_size=None,
                                selftrain_steps=7, compile=True, select="best")
    assert StageConfig.from_yaml(cfg.to_yaml()) == cfg


def test_unknown_keys_are_one_error_for_files_and_replace(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("lr: 0.01\nstepz: 3\n")
    with pytest.raises(ConfigError) as from_file:
        StageConfig.load(path)
    with pytest.raises(ConfigError) as from_replace:
        preset("cpu").replace(stepz=3)
    for message in (str(from_file.value), str(from_replace.value)):
        assert "unknown setting(s) 'stepz' (did you mean 'steps'?)" in message
        assert "valid settings: source, target," in message and "compile" in message
    assert str(path) in str(from_file.value)


@pytest.mark.parametrize("text,expected", [
    ("crop: big", "crop must be [int, int] (got 'big')"),
    ("steps: 1.5", "steps must be int (got 1.5)"),
    ("distil: 1", "distil must be true or false (got 1)"),
    ("base_size: [1, 2, 3]", "base_size must be [int, int] or null"),
    ("- steps", "expected a mapping of settings"),
    ("steps: [", "not valid YAML"),
])
def test_bad_values_in_a_config_file_name_the_setting_and_the_type(tmp_path, text, expected):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=r"c\.yaml") as err:
        StageConfig.load(path)
    assert expected in str(err.value)
    with pytest.raises(ConfigError, match="does not exist"):
        StageConfig.load(tmp_path / "missing.yaml")


def test_config_file_numbers_take_the_field_type():
    cfg = StageConfig.from_yaml("lr: 1\nscale: [1, 2]\neval_scales: [1]\n")
    assert cfg.lr == 1.0 and isinstance(cfg.lr, float) and cfg.scale == (1.0, 2.0) and cfg.eval_scales == (1.0,)


def test_changed_settings_ignore_only_the_listed_execution_settings():
    saved = preset("cpu")
    assert set(RESUME_MAY_CHANGE) == {"workers", "ckpt_every", "channels_last"}
    assert changed_settings(saved, saved.replace(workers=9, ckpt_every=3, channels_last=not saved.channels_last)) == []
    assert changed_settings(saved, saved.replace(lr=0.5, workers=9)) == [("lr", saved.lr, 0.5)]


# --- the stage configs: no hidden overrides ---------------------------------------------------
def test_stage_configs_use_the_users_weights():
    from diga.engine.pipeline import selftrain_config, warmup_config

    cfg = preset("paper").replace(distil_weight=0.7, blend_beta=0.6, selftrain_distil_weight=0.1,
                                  selftrain_blend_beta=0.2, selftrain_steps=5)
    assert (warmup_config(cfg).distil_weight, warmup_config(cfg).blend_beta) == (0.7, 0.6)
    st = selftrain_config(cfg, Path("w.safetensors"), Path("m.json"), Path("c.safetensors"))
    assert (st.distil_weight, st.blend_beta, st.steps, st.init) == (0.1, 0.2, 5, "w.safetensors")
    paper = preset("paper")  # the paper's per-stage values are plain defaults
    assert (paper.distil_weight, paper.blend_beta, paper.selftrain_distil_weight, paper.selftrain_blend_beta) == (
        0.5, 0.4, 0.25, 0.3)


# --- every option documented ------------------------------------------------------------------
def _commands(group: click.Group, prefix: str = ""):
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from _commands(command, f"{prefix}{name} ")
        else:
            yield f"{prefix}{name}", command


def test_every_option_of_every_command_has_help():
    from diga.cli.main import app

    root = typer.main.get_command(app)
    undocumented = [f"diga {name} {param.opts[0]}" for name, command in _commands(root)
                    for param in command.params if not (getattr(param, "help", None) or "").strip()]
    undocumented += [f"diga {param.opts[0]}" for param in root.params if not (param.help or "").strip()]
    assert len(list(_commands(root))) >= 10
    assert undocumented == []


@pytest.mark.parametrize("command", ["train", "warmup", "selftrain", "adapt"])
def test_stage_commands_take_a_config_and_the_runtime_settings(command):
    from diga.cli.main import app

    options = {opt for param in typer.main.get_command(app).commands[command].params
               for opt in (*param.opts, *param.secondary_opts)}
    assert {"--config", "--select", "--compile", "--no-compile", "--sync-bn", "--eval-every"} <= options
    config_help = next(p.help for p in typer.main.get_command(app).commands[command].params if "--config" in p.opts)
    assert "override" in config_help


# --- --config through the CLI ------------------------------------------------------------------
def _train_args(tmp_path, *extra):
    return ["train", "--project", tmp_path, "--name", "rt", *extra]


def test_train_reruns_from_its_config_file_and_options_override_it(cli, tiny_cfg, tmp_path):
    file = tmp_path / "start.yaml"
    start = tiny_cfg.replace(source=tiny_cfg.target, steps=2, eval_every=0, vis_every=0, seed=3)
    file.write_text(start.to_yaml())
    r = cli(*_train_args(tmp_path, "--config", file, "--steps", "1", "--select", "best", "--no-compile"))
    assert r.exit_code == 0, r.output
    saved_path = tmp_path / "train/rt/config.yaml"
    saved = StageConfig.load(saved_path)
    assert saved == start.replace(steps=1, select="best")

    # the saved file re-runs the run; a resume must keep its settings
    r = cli(*_train_args(tmp_path, "--config", saved_path, "--resume", "--lr", "0.5"))
    assert r.exit_code == 1
    assert f"lr: saved {start.lr!r}, now 0.5" in r.text and "Traceback" not in r.text
    r = cli(*_train_args(tmp_path, "--config", saved_path, "--resume"))
    assert r.exit_code == 0, r.output

    r = cli(*_train_args(tmp_path, "--config", saved_path, "--preset", "cpu"))
    assert r.exit_code != 0 and "--config or --preset" in r.text


def test_resume_without_a_checkpoint_is_refused(cli, tiny_bench, tmp_path):
    r = cli("warmup", "--source", tiny_bench["source"], "--target", tiny_bench["target"], "--preset", "cpu",
            "--name", "never", "--project", tmp_path, "--resume")
    assert r.exit_code == 1 and "no run" in r.text and "without --resume" in r.text
    (tmp_path / "warmup/early").mkdir(parents=True)  # stopped before its first checkpoint
    r = cli("warmup", "--source", tiny_bench["source"], "--target", tiny_bench["target"], "--preset", "cpu",
            "--name", "early", "--project", tmp_path, "--resume")
    assert r.exit_code == 1 and "no checkpoint to resume from" in r.text


def test_unknown_key_in_a_config_file_is_a_cli_error(cli, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("source: gta5:/x\nlearning_rate: 0.1\n")
    r = cli("warmup", "--config", bad, "--project", tmp_path)
    assert r.exit_code != 0
    assert "learning_rate" in r.text and "valid settings:" in r.text and "Traceback" not in r.text


def test_adapt_refuses_to_continue_a_run_with_changed_settings(cli, tiny_cfg, tmp_path):
    """Nothing trains: the saved config.yaml is compared before the first stage starts."""
    from diga.engine.pipeline import adapt

    run = tmp_path / "adapt/a"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(tiny_cfg.to_yaml())
    with pytest.raises(ConfigError, match=r"selection: saved 'dynamic', now 'none'"):
        adapt(tiny_cfg.replace(selection="none"), run)
    assert not (run / "warmup").exists()
    r = cli("adapt", "--config", run / "config.yaml", "--name", "a", "--project", tmp_path, "--lr", "0.5",
            "--rounds", "3")
    assert r.exit_code == 1, r.output
    assert f"lr: saved {tiny_cfg.lr!r}, now 0.5" in r.text and "rounds: saved 1, now 3" in r.text
    assert "another --name" in r.text and not (run / "warmup").exists()


def test_a_run_from_before_a_setting_existed_continues(tmp_path):
    """A config.yaml written before head_norm existed reads back with the new default (gn); the run
    used the old behaviour (bn, what the cpu preset keeps), so it must continue, not be refused."""
    from diga.engine.pipeline import check_same_settings

    cfg = preset("cpu").replace(source="gta5:/s", target="cityscapes:/t")
    assert cfg.head_norm == "bn" and StageConfig().head_norm == "gn"
    old = "\n".join(line for line in cfg.to_yaml().splitlines() if not line.startswith("head_norm:"))
    (tmp_path / "config.yaml").write_text(old + "\n")
    check_same_settings(tmp_path, cfg)  # not refused
    (tmp_path / "config.yaml").write_text(cfg.replace(head_norm="gn").to_yaml())
    with pytest.raises(ConfigError, match=r"head_norm: saved 'gn', now 'bn'"):
        check_same_settings(tmp_path, cfg)


# --- one self-training rounds loop -------------------------------------------------------------
def test_cli_selftrain_runs_the_engines_rounds_loop(cli, tiny_bench, tmp_path, monkeypatch):
    from conftest import make_checkpoint

    from diga.engine import pipeline
    from diga.engine.trainer import StageResult

    calls = []

    def rounds(cfg, init, run_dir, console):
        calls.append((cfg, init, run_dir))
        return pipeline.Rounds([StageResult(run_dir / "round1/selftrain", init, None, {})], [{}])

    monkeypatch.setattr(pipeline, "self_training_rounds", rounds)
    init = make_checkpoint(tmp_path / "warm.safetensors")
    r = cli("selftrain", "--init", init, "--target", tiny_bench["target"], "--source", tiny_bench["source"],
            "--preset", "cpu", "--steps", "5", "--name", "s", "--project", tmp_path)
    assert r.exit_code == 0, r.output
    (cfg, start, run_dir), = calls
    assert start == init and run_dir == tmp_path / "selftrain/s"
    assert (cfg.rounds, cfg.selftrain_steps, cfg.init) == (1, 5, str(init))
    assert StageConfig.load(run_dir / "config.yaml") == cfg  # re-runnable with --config
    r = cli("selftrain", "--config", run_dir / "config.yaml", "--name", "s", "--project", tmp_path)
    assert r.exit_code == 0, r.output
    assert len(calls) == 2


def test_the_paper_presets_name_the_authors_network_for_each_published_number():
    """Adaptation and generalisation: DeepLab-V2 ResNet-101; semi-supervised: HRNetV2-W48 + OCR."""
    from diga.engine.config import preset
    from diga.engine.generalization import generalization_config
    from diga.models import list_models

    assert preset("paper").model == preset("paper-dg").model == "deeplabv2_resnet101"
    dg = generalization_config(preset("paper-dg").replace(source="gta5:/data/GTA5"))
    assert dg.batch_size == 4 and not dg.mix
    semi = preset("paper-semi").replace(source="cityscapes:/cs?fraction=1/16",
                                        target="cityscapes:/cs?fraction=1/16&part=unlabelled").validate()
    assert semi.model == "hrnet_w48_ocr" and semi.model in list_models()
    assert (semi.lr, semi.poly_power, semi.crop, semi.translator, semi.mix) == (1e-3, 1.0, (512, 1024), "none", False)


def test_the_semi_supervised_preset_takes_the_authors_crops():
    """Their semi-supervised scripts: 1 crop of the half-size and 2 of the full-size image per batch in both
    stages, unscaled in the warm-up, rescaled by U[0.7, 1] per side in self-training, stretched when smaller."""
    from diga.engine.config import preset
    from diga.engine.pipeline import selftrain_config

    semi = preset("paper-semi").replace(source="cityscapes:/cs?fraction=1/16",
                                        target="cityscapes:/cs?fraction=1/16&part=unlabelled").validate()
    assert semi.source_base_sizes == semi.target_base_sizes == ((512, 1024, 1), (1024, 2048, 2))
    assert (semi.scale, semi.scale_mode, semi.crop_fill) == ((1.0, 1.0), "axis", "stretch")
    selftrain = selftrain_config(semi, Path("warm.safetensors"), Path("manifest.json"), Path("c.safetensors"))
    assert selftrain.scale == (0.7, 1.0)
    assert selftrain.source_base_sizes == selftrain.target_base_sizes == ((512, 1024, 1), (1024, 2048, 2))
