"""Stage 0: `diga translator` trains, resumes, previews; the learned translator plugs into the warm-up."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from diga.engine.config import StageConfig
from diga.engine.trainer import RunExistsError
from diga.engine.translator import TranslatorConfig, TranslatorTrainer, train_translator
from diga.errors import ConfigError
from diga.models.translator import ImageTranslator, load_translator, save_translator, translator_metadata


@pytest.fixture()
def translator_cfg(tiny_bench):
    """A few steps of narrow translators on 64x64 crops of the tiny benchmark, random VGG features, no workers."""
    return TranslatorConfig(source=tiny_bench["source"], target=tiny_bench["target"], steps=3, batch_size=1,
                            crop=(64, 64), base_size=None, scale=(1.0, 1.0), width=8, res_blocks=1, vgg="none",
                            device="cpu", workers=0,
                            log_every=1, ckpt_every=2, preview_every=2)


class _Crash(Exception):
    pass


def test_training_writes_translator_preview_and_resumes_identically(translator_cfg, tmp_path):
    straight = train_translator(translator_cfg, tmp_path / "straight")
    assert straight.weights.is_file() and straight.preview.is_file()
    assert (tmp_path / "straight" / "preview" / "step_0000002.png").is_file()
    with Image.open(straight.preview) as im:
        assert im.width == 3 * 64  # source | translated | target
    records = [json.loads(line) for line in (tmp_path / "straight" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3]
    assert {"adversarial", "cycle", "edge", "perceptual", "self", "loss", "d_loss"} <= set(records[0])
    translator, meta = load_translator(straight.weights)
    assert meta["step"] == 3 and translator.settings == {"dim": 8, "n_res": 1}

    class Crashing(TranslatorTrainer):
        def train_step(self, s, labels, t):
            if self.calls == 2:  # after the step-2 checkpoint
                raise _Crash
            self.calls += 1
            return super().train_step(s, labels, t)

    crashing = Crashing(translator_cfg, tmp_path / "broken")
    crashing.calls = 0
    with pytest.raises(_Crash):
        crashing.run()
    with pytest.raises(RunExistsError, match="--resume"):
        TranslatorTrainer(translator_cfg, tmp_path / "broken")
    resumed = train_translator(translator_cfg, tmp_path / "broken", resume=True)
    a, b = load_file(straight.weights), load_file(resumed.weights)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    sa = load_file(tmp_path / "straight" / "weights" / "state.safetensors")
    sb = load_file(tmp_path / "broken" / "weights" / "state.safetensors")
    assert all(torch.equal(sa[k], sb[k]) for k in sa if not k.startswith("rng/"))


def test_resume_needs_a_checkpoint_and_the_same_settings(translator_cfg, tmp_path):
    with pytest.raises(ConfigError, match="no translator checkpoint"):
        train_translator(translator_cfg, tmp_path / "none", resume=True)
    train_translator(translator_cfg.__class__(**{**translator_cfg.__dict__, "steps": 1}), tmp_path / "run")
    with pytest.raises(ConfigError, match="steps: saved 1, now 3"):
        train_translator(translator_cfg, tmp_path / "run", resume=True)


def test_bad_settings_are_refused(translator_cfg):
    with pytest.raises(ConfigError, match="crop must be at least 64x64 and a multiple of 4"):
        TranslatorConfig(**{**translator_cfg.__dict__, "crop": (48, 96)}).validate()
    with pytest.raises(ConfigError, match="--target"):
        TranslatorConfig(source=translator_cfg.source).validate()


def test_cli_trains_and_refuses_a_bad_vgg_file(cli, tiny_bench, tmp_path):
    common = ["translator", "--source", tiny_bench["source"], "--target", tiny_bench["target"], "--crop", "64", "64",
              "--steps", "1", "--batch-size", "1", "--width", "8", "--res-blocks", "1", "--workers", "0", "--device", "cpu",
              "--project", tmp_path]
    bad = tmp_path / "vgg.pth"
    bad.write_bytes(b"junk")
    result = cli(*common, "--vgg", bad, "--name", "bad")
    assert result.exit_code == 1
    assert "--vgg" in result.text and str(bad) in result.text and "Traceback" not in result.output
    result = cli(*common, "--vgg", "none")
    assert result.exit_code == 0, result.output
    run = tmp_path / "translator" / "exp"
    assert (run / "weights" / "translator.safetensors").is_file() and (run / "preview.png").is_file()
    assert "--translator learned --translator-weights" in result.text
    again = cli(*common, "--vgg", "none")
    assert again.exit_code == 1 and "--resume" in again.text


def test_cli_base_size_sets_or_clears_the_resize(cli, tiny_bench, tmp_path):
    import yaml

    common = ["translator", "--source", tiny_bench["source"], "--target", tiny_bench["target"], "--crop", "64", "64",
              "--steps", "1", "--batch-size", "1", "--width", "8", "--res-blocks", "1", "--workers", "0",
              "--device", "cpu", "--vgg", "none", "--project", tmp_path]
    for value, expected in (("none", None), ("96x80", [96, 80]), (None, [720, 1280])):
        name = f"base-{value}"
        result = cli(*common, "--name", name, *(["--base-size", value] if value else []))
        assert result.exit_code == 0, result.output
        config = yaml.safe_load((tmp_path / "translator" / name / "config.yaml").read_text())
        assert config["base_size"] == expected
    bad = cli(*common, "--name", "bad", "--base-size", "720")
    assert bad.exit_code == 2 and "--base-size" in bad.text and "HxW" in bad.text
    assert not (tmp_path / "translator" / "bad").exists()


def _random_translator(path):
    torch.manual_seed(5)
    net = ImageTranslator(8, 1)
    return save_translator(path, net, translator_metadata(net))


def test_learned_translator_plugs_into_the_warmup(tiny_cfg, tmp_path):
    from diga.engine.warmup import WarmupTrainer

    weights = _random_translator(tmp_path / "translator.safetensors")
    cfg = tiny_cfg.replace(translator="learned", translator_weights=str(weights), steps=1, eval_every=0,
                           vis_every=1, warmup_target_bn=False)
    trainer = WarmupTrainer(cfg, tmp_path / "warmup")
    assert trainer.branch.translator.net is not None
    assert not trainer.branch.needs_target  # the network carries its style: no target images needed
    calls = []
    translate = trainer.branch.translator.net.translate

    def spy(x):
        calls.append(x.shape)
        return translate(x)

    trainer.branch.translator.net.translate = spy
    trainer.run()
    assert calls and calls[0][-2:] == tuple(cfg.crop)
    expected = translate(trainer._vis["source"].float())
    assert torch.allclose(trainer._vis["translated"], expected)
    assert (tmp_path / "warmup" / "vis" / "step_0000001.png").is_file()


def test_learned_translator_needs_valid_weights(tiny_cfg, tmp_path, cli):
    from diga.engine.warmup import WarmupTrainer

    StageConfig().replace(translator="learned").validate()  # `diga adapt` trains the file itself
    with pytest.raises(ConfigError, match="--translator-weights FILE .* `diga adapt` trains one itself"):
        WarmupTrainer(tiny_cfg.replace(translator="learned"), tmp_path / "none")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"junk")
    with pytest.raises(ConfigError, match="--translator-weights"):
        WarmupTrainer(tiny_cfg.replace(translator="learned", translator_weights=str(bad)), tmp_path / "w")
    result = cli("warmup", "--source", tiny_cfg.source, "--target", tiny_cfg.target, "--preset", "cpu",
                 "--translator", "learned", "--translator-weights", bad, "--steps", "1", "--workers", "0",
                 "--project", tmp_path)
    assert result.exit_code == 1 and "--translator-weights" in result.text and str(bad) in result.text


@pytest.mark.slow  # a whole (tiny) adapt run; the warm-up test above covers the call site
def test_learned_translator_through_adapt_and_its_options(tiny_cfg, tmp_path, cli):
    from diga.engine.pipeline import adapt

    weights = _random_translator(tmp_path / "translator.safetensors")
    cfg = tiny_cfg.replace(translator="learned", translator_weights=str(weights), steps=1, selftrain_steps=1,
                           eval_every=0, vis_every=0)
    result = adapt(cfg, tmp_path / "adapt")
    assert result.final_weights.is_file()
    assert not (tmp_path / "adapt" / "translator").exists()  # a given file: no stage 0
    selftrain = StageConfig.load(tmp_path / "adapt" / "round1" / "selftrain" / "config.yaml")
    assert (selftrain.translator, selftrain.translator_weights) == ("learned", str(weights))
    for command in ("warmup", "selftrain", "adapt"):
        assert "--translator-weights" in cli(command, "--help").text


def test_adapt_trains_its_own_translator_first_and_once(tiny_cfg, tmp_path, cli):
    """--translator learned without a file (the paper preset): stage 0 trains the authors' translator
    on the run's source and target into RUN/translator, the stages use it, a re-run skips it."""
    from diga.engine.config import preset
    from diga.engine.pipeline import adapt, own_translator_file

    run = tmp_path / "adapt"
    cfg = tiny_cfg.replace(crop=(64, 64), translator="learned", translator_steps=2, translator_vgg="none",
                           steps=1, selftrain_steps=1, eval_every=0, vis_every=0)
    adapt(cfg, run)
    weights = own_translator_file(run)
    translator, meta = load_translator(weights)
    assert meta["step"] == 2 and meta["source"] == cfg.source and meta["target"] == cfg.target
    assert (run / "translator" / "preview.png").is_file()
    for stage in ("warmup", "round1/selftrain"):
        saved = StageConfig.load(run / stage / "config.yaml")
        assert (saved.translator, saved.translator_weights) == ("learned", str(weights))
    stamp = (run / "translator" / "summary.json").stat().st_mtime_ns
    adapt(cfg, run)  # finished: neither stage 0 nor anything else runs again
    assert (run / "translator" / "summary.json").stat().st_mtime_ns == stamp
    assert preset("paper").translator == "learned"
    assert "--translator-steps" in cli("adapt", "--help").text
