"""Paired transforms keep image and label aligned; padding, sizes, normalisation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from diga.data import IMAGENET_MEAN, IMAGENET_STD, EvalTransform, TrainTransform, normalize


def _pair(h: int = 24, w: int = 32, block: int = 1):
    """An image whose red channel equals the label (constant over ``block`` x ``block`` tiles) and
    whose green channel encodes the column (to see flips)."""
    g = torch.Generator().manual_seed(0)
    tiles = torch.randint(0, 19, ((h + block - 1) // block, (w + block - 1) // block), generator=g)
    label = tiles.repeat_interleave(block, 0).repeat_interleave(block, 1)[:h, :w].to(torch.int64)
    image = torch.zeros(3, h, w, dtype=torch.uint8)
    image[0] = label.to(torch.uint8) * 10
    image[1] = torch.arange(w, dtype=torch.uint8)[None, :].expand(h, w) * 5
    return image, label


def test_crop_and_flip_keep_alignment():
    image, label = _pair()
    t = TrainTransform(crop=(16, 20), scale=(1.0, 1.0))
    flipped = 0
    for seed in range(20):
        torch.manual_seed(seed)
        img, lab = t(image, label)
        assert img.dtype == torch.uint8 and img.shape == (3, 16, 20)
        assert lab.dtype == torch.int64 and lab.shape == (16, 20)
        assert torch.equal(img[0].long(), lab * 10)  # exact: no resampling at scale 1
        cols = img[1, 0].long()
        flipped += bool(cols[0] > cols[-1])
    assert 0 < flipped < 20  # both orientations happen


@pytest.mark.parametrize("axis", [0, 1])
def test_random_scale_keeps_alignment(axis):
    """label = row (or column) index, image red = 2 * label: a linear ramp survives bilinear
    resizing, so after scale + crop + flip the image must still read 2 * label everywhere
    (up to the half-pixel difference between nearest and bilinear sampling)."""
    h, w = 100, 120
    coords = torch.arange(h if axis == 0 else w)
    label = (coords[:, None].expand(h, w) if axis == 0 else coords[None, :].expand(h, w)).long()
    image = torch.stack([label * 2, label * 0, label * 0]).to(torch.uint8)
    t = TrainTransform(crop=(64, 64), scale=(0.5, 2.0))
    for seed in range(12):
        torch.manual_seed(seed)
        img, lab = t(image, label)
        valid = lab != 255
        err = (img[0].float() / 2 - lab.float()).abs()[valid]
        # edge pixels of the ramp are blurred by the antialias filter on downscaling
        inner = valid & (lab > 2) & (lab < (h if axis == 0 else w) - 3)
        assert (img[0].float() / 2 - lab.float()).abs()[inner].max() <= 1.5, seed
        assert err.numel() > 0


def test_crop_pads_label_with_255_and_image_with_0():
    image, label = _pair(5, 6)
    img, lab = TrainTransform(crop=(10, 12), scale=(1.0, 1.0), hflip=False)(image, label)
    assert img.shape == (3, 10, 12) and lab.shape == (10, 12)
    assert (lab == 255).sum() == 10 * 12 - 5 * 6
    assert (img[:, lab == 255] == 0).all()
    assert torch.equal(img[0][lab != 255].long(), lab[lab != 255] * 10)


def test_base_size_then_scale():
    image, label = _pair(20, 40)
    t = TrainTransform(crop=(10, 10), scale=(1.0, 1.0), base_size=(10, 20), hflip=False)
    img, lab = t(image, label)
    assert img.shape == (3, 10, 10) and (lab != 255).all()
    with pytest.raises(ValueError):
        TrainTransform(crop=(0, 10))
    with pytest.raises(ValueError):
        TrainTransform(crop=(10, 10), scale=(2.0, 1.0))
    with pytest.raises(ValueError, match="same size"):
        TrainTransform(crop=4)(image, label[:5])


def test_eval_transform_resizes_image_only():
    image, label = _pair(20, 40)
    img, lab = EvalTransform((10, 20))(image, label)
    assert img.shape == (3, 10, 20) and img.dtype == torch.uint8
    assert lab is label
    img, lab = EvalTransform()(image, label)
    assert img is image and lab is label


def test_normalize():
    x = torch.rand(2, 3, 4, 5)
    y = normalize(x)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    assert torch.allclose(y, (x - mean) / std)
    assert torch.allclose(normalize(x[0]), y[0])
    assert normalize(x.double()).dtype == torch.float64
    with pytest.raises(TypeError):
        normalize(torch.zeros(1, 3, 2, 2, dtype=torch.uint8))
    with pytest.raises(ValueError):
        normalize(torch.zeros(1, 4, 2, 2))


def test_dataset_with_train_transform(tmp_path):
    try:
        from fixtures_data import make_gta5
    except ImportError:
        from tests.fixtures_data import make_gta5
    from diga.data import GTA5Dataset

    ids = np.tile(np.array([[7, 26], [24, 33]], np.uint8), (6, 6))  # 12 x 12
    ds = GTA5Dataset(make_gta5(tmp_path, {"00001.png": ids}),
                     transform=TrainTransform(crop=(8, 8), scale=(1.0, 1.0)))
    lut = {7: 0, 26: 13, 24: 11, 33: 18}
    for seed in range(5):
        torch.manual_seed(seed)
        image, label = ds[0]
        raw = image[0].long()  # fixture: red channel = raw id
        expected = raw.clone().apply_(lambda v: lut[v])
        assert torch.equal(label, expected)


def _ramp_pair(h: int, w: int):
    """Horizontal bands 8 rows high of labels 0 and 18 (no label between: a bilinear resize would
    make some), image red = 10 * label."""
    label = (torch.arange(h) // 8 % 2 * 18)[:, None].expand(h, w).long()
    image = torch.stack([label * 10, label * 0, label * 0]).to(torch.uint8)
    return image, label


@pytest.mark.parametrize("size", [(96, 72), (72, 128)])  # 3:4 and 16:9
def test_base_resize_cover_keeps_the_aspect_ratio_and_covers_the_base_size(size):
    from diga.data.transforms import covering_size

    image, label = _ramp_pair(*size)
    h, w = covering_size(size, (60, 80))
    assert h >= 60 and w >= 80 and (h == 60 or w == 80)
    assert abs(h / w - size[0] / size[1]) < 0.02  # aspect kept (up to rounding)
    t = TrainTransform(crop=(60, 80), scale=(1.0, 1.0), base_size=(60, 80), base_resize="cover",
                       crop_fill="pad", hflip=False)
    torch.manual_seed(0)
    img, lab = t(image, label)
    assert img.shape == (3, 60, 80) and not (lab == 255).any()


@pytest.mark.parametrize("size", [(96, 72), (72, 128)])  # 3:4 and 16:9
def test_crop_fill_rescale_never_pads_and_keeps_the_aspect_ratio(size, monkeypatch):
    from diga.data import transforms

    image, label = _ramp_pair(*size)
    seen = []
    resize = transforms._resize_pair
    monkeypatch.setattr(transforms, "_resize_pair", lambda i, m, s: seen.append(tuple(s)) or resize(i, m, s))
    t = TrainTransform(crop=(80, 100), scale=(0.5, 0.9), crop_fill="rescale", hflip=False)
    for seed in range(8):
        torch.manual_seed(seed)
        seen.clear()
        img, lab = t(image, label)
        assert img.shape == (3, 80, 100) and lab.shape == (80, 100)
        assert not (lab == 255).any(), seed  # no ignore padding
        assert set(lab.unique().tolist()) <= {0, 18}  # labels resized with nearest neighbour
        assert (img[0].long() - lab * 10).abs().le(90).float().mean() > 0.85  # and aligned with the image
        scaled, fitted = seen  # the random scale, then the rescale up to the crop
        assert fitted[0] >= 80 and fitted[1] >= 100 and (fitted[0] == 80 or fitted[1] == 100)
        assert abs(fitted[0] / fitted[1] - scaled[0] / scaled[1]) < 0.02  # one factor for both sides


def test_crop_fill_stretch_resizes_the_whole_small_image_to_the_crop_and_pad_pads():
    image, label = _ramp_pair(40, 60)
    stretch = TrainTransform(crop=(48, 64), scale=(1.0, 1.0), crop_fill="stretch", hflip=False)
    img, lab = stretch(image, label)
    assert img.shape == (3, 48, 64) and not (lab == 255).any()
    assert lab[0, 0] == 0 and lab[-1, 0] == label[-1, 0]  # the whole image: first and last bands
    assert set(lab.unique().tolist()) == {0, 18}
    padded = TrainTransform(crop=(48, 64), scale=(1.0, 1.0), crop_fill="pad", hflip=False)(image, label)[1]
    assert (padded == 255).sum() == 48 * 64 - 40 * 60


def test_geometry_options_are_checked():
    with pytest.raises(ValueError, match="crop_fill must be one of"):
        TrainTransform(crop=(8, 8), crop_fill="zoom")
    with pytest.raises(ValueError, match="base_resize must be one of"):
        TrainTransform(crop=(8, 8), base_resize="fit")
