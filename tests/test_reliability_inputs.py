"""Bad input rejected with clear messages; unsafe paths and files refused."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from diga.checkpoint import CheckpointError, load_model, model_metadata, save_weights
from diga.engine.pseudolabels import label_file_name
from diga.models import create


@pytest.mark.parametrize("args,expected", [
    (["--steps", "-5"], "greater than or equal to 0"),
    (["--preset", "huge"], "choose one of: paper, paper-synthia, paper-dg, paper-semi, gpu, cpu"),
    (["--crop", "512", "896"], "larger than the images"),
    (["--translator", "cyclegan"], "fda, color, none"),
    (["--batch-size", "0"], "greater than or equal to 1"),
])
def test_invalid_cli_values_are_rejected_with_the_valid_choices(cli, tiny_bench, tmp_path, args, expected):
    result = cli("warmup", "--source", tiny_bench["source"], "--target", tiny_bench["target"],
                 "--preset", "cpu", "--project", tmp_path, *args)
    assert result.exit_code != 0
    assert expected in result.text
    assert "Traceback" not in result.text


def test_unknown_dataset_kind_lists_the_kinds(cli, tmp_path):
    result = cli("train", "--data", f"kitti:{tmp_path}", "--project", tmp_path)
    assert result.exit_code != 0
    assert "gta5" in result.text and "cityscapes" in result.text


def test_missing_dataset_root_is_named(cli, tmp_path):
    result = cli("train", "--data", f"gta5:{tmp_path / 'nowhere'}", "--preset", "cpu", "--project", tmp_path)
    assert result.exit_code == 1 and "nowhere" in result.text


def test_cityscapes_root_given_as_gta5_is_recognised(cli, tiny_bench, tmp_path):
    root = tiny_bench["target"].split(":", 1)[1]
    result = cli("train", "--data", f"gta5:{root}", "--preset", "cpu", "--project", tmp_path)
    assert result.exit_code == 1 and "cityscapes" in result.text.lower()


def _checkpoint(tmp_path, arch="deeplabv2_light", space="cityscapes19", classes=19):
    model = create(arch, classes)
    path = tmp_path / f"{arch}-{classes}.safetensors"
    save_weights(path, model.state_dict(), model_metadata(arch, space))
    return path


def test_checkpoint_of_another_class_count_is_refused(tmp_path):
    path = _checkpoint(tmp_path, classes=16)  # weights of a 16-class model ...
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["num_classes"] == 19  # ... labelled as 19 classes
    with pytest.raises(CheckpointError, match="another architecture or class count"):
        load_model(path)


def test_checkpoint_of_another_architecture_is_refused(tmp_path):
    state = create("deeplabv2_light", 19).state_dict()
    path = tmp_path / "liar.safetensors"
    save_weights(path, state, model_metadata("deeplabv2_resnet50", "cityscapes19"))
    with pytest.raises(CheckpointError, match="does not fit"):
        load_model(path)


def test_file_without_diga_metadata_is_refused(tmp_path):
    path = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(path))
    with pytest.raises(CheckpointError, match="no diga metadata"):
        load_model(path)


def test_pickle_file_is_not_loaded_as_checkpoint(tmp_path):
    path = tmp_path / "evil.safetensors"
    torch.save({"w": torch.zeros(2)}, path)  # a pickle, renamed
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        load_model(path)


def test_foreign_backbone_is_loaded_without_unpickling(tmp_path):
    from diga.models.deeplabv2 import LightResNet
    from diga.models.weights import load_backbone_weights

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "backbone.pth"
    torch.save({"state_dict": Evil()}, path)
    with pytest.raises(Exception, match="[Ww]eights only load failed|Unsupported"):
        load_backbone_weights(LightResNet(), path)


@pytest.mark.parametrize("name", ["../../etc/passwd.png", "a/../../b.png", "ü ber/straße 1.png", "..png"])
def test_pseudo_label_names_never_escape_their_folder(tmp_path, name):
    root = tmp_path / "images"
    out = label_file_name(root / name, root)
    assert "/" not in out and "\\" not in out and not out.startswith("..")
    assert out.endswith(".png")
