"""The learned source -> target image translator (stage 0 of DiGA) and the networks that train it.

``ImageTranslator`` is an instance-norm encoder/decoder: a 7x7 stem, two stride-2 downsamplings to
256 channels, four residual blocks, then four residual blocks, two nearest-upsampling 5x5 stages
and a 7x7 tanh output (reflection padding throughout). It is trained against multi-scale LSGAN
discriminators with a perceptual loss on VGG-19 features (``diga.engine.translator``).

The networks work in the authors' pixel space: ``(255 * rgb - PIXEL_MEAN) / 128`` (the Caffe
ImageNet pixel means), and the tanh output lives in the same space; ``translate`` takes and
returns the [0, 1] RGB images the rest of the package uses.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..data.transforms import PIXEL_MEAN, PIXEL_SCALE, from_caffe_space, to_caffe_space
from ..errors import ConfigError
from .weights import offline_weights_error

TRANSLATOR_FORMAT = "diga-translator"
TRANSLATOR_FORMAT_VERSION = 1
N_SAMPLE = 2  # stride-2 stages of the encoder (and upsamplings of the decoder)
# The stride-2 stages must divide the input exactly for the decoder to return the input's size.
SIZE_MULTIPLE = 2 ** N_SAMPLE
MAX_WIDTH = 512
MAX_RES_BLOCKS = 16


def to_translator_space(x01: torch.Tensor) -> torch.Tensor:
    """[0, 1] RGB (B,3,H,W) -> the translator's pixel space."""
    return to_caffe_space(x01)


def from_translator_space(y: torch.Tensor) -> torch.Tensor:
    """The translator's pixel space -> [0, 1] RGB, clamped."""
    return from_caffe_space(y).clamp(0.0, 1.0)


def _conv(cin: int, cout: int, kernel: int, stride: int = 1, norm: bool = True,
          act: nn.Module | None = None, pad: str = "reflect", bias: bool = True) -> nn.Sequential:
    """Pad -> conv -> InstanceNorm (no affine, no running statistics) -> activation."""
    p = (kernel - 1) // 2 if stride == 1 else 1
    layers: list[nn.Module] = [nn.ReflectionPad2d(p) if pad == "reflect" else nn.ZeroPad2d(p),
                               nn.Conv2d(cin, cout, kernel, stride, bias=bias)]
    if norm:
        layers.append(nn.InstanceNorm2d(cout))
    if act is not None:
        layers.append(act)
    return nn.Sequential(*layers)


class ResidualBlock(nn.Module):
    """x + IN(conv(ReLU(IN(conv(x))))), 3x3 convs."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.body = nn.Sequential(_conv(dim, dim, 3, act=nn.ReLU(inplace=True)), _conv(dim, dim, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class TranslatorEncoder(nn.Sequential):
    """3 -> ``dim`` (7x7) -> ``n_down`` stride-2 4x4 stages doubling the width -> ``n_res`` residual blocks."""

    def __init__(self, dim: int = 64, n_down: int = 2, n_res: int = 4) -> None:
        layers: list[nn.Module] = [_conv(3, dim, 7, act=nn.ReLU(inplace=True))]
        for _ in range(n_down):
            layers.append(_conv(dim, 2 * dim, 4, stride=2, act=nn.ReLU(inplace=True)))
            dim *= 2
        layers += [ResidualBlock(dim) for _ in range(n_res)]
        super().__init__(*layers)
        self.out_channels = dim


class TranslatorDecoder(nn.Sequential):
    """``n_res`` residual blocks -> ``n_up`` x (nearest 2x upsampling, 5x5 conv halving the width) -> 7x7 tanh."""

    def __init__(self, dim: int = 256, n_up: int = 2, n_res: int = 4) -> None:
        layers: list[nn.Module] = [ResidualBlock(dim) for _ in range(n_res)]
        for _ in range(n_up):
            layers += [nn.Upsample(scale_factor=2, mode="nearest"), _conv(dim, dim // 2, 5, act=nn.ReLU(inplace=True))]
            dim //= 2
        layers.append(_conv(dim, 3, 7, norm=False, act=nn.Tanh()))
        super().__init__(*layers)


class ImageTranslator(nn.Module):
    """Encoder + decoder: a source image in the style of the target domain."""

    def __init__(self, dim: int = 64, n_res: int = 4) -> None:
        """``dim``: channels of the first layer (doubled by each of the two downsamplings); ``n_res``:
        residual blocks in the encoder and in the decoder. The authors': 64 and 4."""
        super().__init__()
        self.settings = {"dim": dim, "n_res": n_res}
        self.encoder = TranslatorEncoder(dim, N_SAMPLE, n_res)
        self.decoder = TranslatorDecoder(self.encoder.out_channels, N_SAMPLE, n_res)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Translator space in, translator space out; H and W multiples of SIZE_MULTIPLE."""
        return self.decoder(self.encoder(x))

    def translate(self, x01: torch.Tensor) -> torch.Tensor:
        """[0, 1] RGB of any size in, [0, 1] RGB of the same size out (reflect-padded to SIZE_MULTIPLE)."""
        h, w = x01.shape[-2:]
        ph, pw = -h % SIZE_MULTIPLE, -w % SIZE_MULTIPLE
        x = to_translator_space(x01.float())
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="reflect" if min(h, w) > max(ph, pw) else "replicate")
        return from_translator_space(self(x)[..., :h, :w]).to(x01.dtype)


class MultiScaleDiscriminator(nn.Module):
    """LSGAN patch discriminators at ``scales`` resolutions (each 3x3-average-pooled by 2 from the last)."""

    def __init__(self, dim: int = 64, n_layers: int = 4, scales: int = 3) -> None:
        super().__init__()
        self.downsample = nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False)
        self.nets = nn.ModuleList(self._net(dim, n_layers) for _ in range(scales))

    @staticmethod
    def _net(dim: int, n_layers: int) -> nn.Sequential:
        def lrelu() -> nn.Module:
            return nn.LeakyReLU(0.2, inplace=True)

        layers = [_conv(3, dim, 4, stride=2, norm=False, act=lrelu(), pad="zero", bias=False)]
        for _ in range(n_layers - 1):
            layers.append(_conv(dim, 2 * dim, 4, stride=2, norm=False, act=lrelu(), pad="zero", bias=False))
            dim *= 2
        layers.append(nn.Conv2d(dim, 1, 1))
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outputs = []
        for net in self.nets:
            outputs.append(net(x))
            x = self.downsample(x)
        return outputs


# --- VGG-19 features for the perceptual loss --------------------------------------------------
# torchvision's vgg19().features up to relu5_1 (indices 0..29), cut after relu1_1, relu2_1,
# relu3_1, relu4_1 and relu5_1. "M" is a 2x2 max-pooling.
_VGG19_LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512)
VGG_CUTS = (2, 7, 12, 21, 30)
VGG_OPTION = "--vgg"


class VGGFeatures(nn.Module):
    """Frozen VGG-19 convolutions, returning the relu1_1 ... relu5_1 activations.

    The layers carry torchvision's indices (``features.N``) so its state dicts load as they are.
    """

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = 3
        for v in _VGG19_LAYOUT:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(cin, int(v), 3, padding=1), nn.ReLU()]
                cin = int(v)
        self.features = nn.Sequential(*layers)
        assert len(self.features) == VGG_CUTS[-1]
        self.requires_grad_(False)
        self.eval()

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        out, start = [], 0
        for end in VGG_CUTS:
            for layer in self.features[start:end]:
                x = layer(x)
            out.append(x)
            start = end
        return out

    def train(self, mode: bool = True) -> "VGGFeatures":
        return super().train(False)  # a fixed feature extractor


def build_vgg_features(vgg: str | Path) -> VGGFeatures:
    """``"imagenet"`` (torchvision's VGG-19 weights), ``"none"`` (random: tests, or no perceptual prior)
    or a file holding a torchvision VGG-19 state dict (.safetensors, or .pth read with weights_only)."""
    net = VGGFeatures()
    if str(vgg) == "none":
        return net
    state = _imagenet_vgg_state() if str(vgg) == "imagenet" else _read_state_dict(Path(vgg), VGG_OPTION)
    _load_vgg_state(net, state, vgg)
    return net


def _imagenet_vgg_state() -> dict[str, torch.Tensor]:
    from torchvision.models import VGG19_Weights

    weights = VGG19_Weights.IMAGENET1K_V1
    try:
        return weights.get_state_dict(progress=False)
    except OSError as e:  # URLError, HTTPError, socket errors and unwritable caches are all OSErrors
        raise offline_weights_error(VGG_OPTION, weights, e, "a VGG-19 state dict",
                                    "train without a pretrained perceptual network") from None


def _read_state_dict(path: Path, option: str) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise ConfigError(f"{option} {path}: no such file; expected a state dict (.safetensors or .pth), "
                          f"'imagenet' or 'none'")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # any reader failure means the same thing to the user: not a state dict
        raise ConfigError(f"{option} {path}: not a readable state dict ({type(e).__name__}: "
                          f"{' '.join(str(e).split())[:200]})") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConfigError(f"{option} {path}: expected a state dict of tensors, got {type(state).__name__}")
    return state


def _load_vgg_state(net: VGGFeatures, state: dict[str, torch.Tensor], origin: str | Path) -> None:
    """Load the ``features.N`` tensors a VGG-19 state dict holds for layers 0..29 (``N.weight`` works too)."""
    expected = net.features.state_dict()
    found = {}
    for key, tensor in state.items():
        short = key[len("features."):] if key.startswith("features.") else key
        if short in expected:
            found[short] = tensor
    missing = [k for k in expected if k not in found]
    wrong = [f"{k}: file {tuple(found[k].shape)} vs VGG-19 {tuple(v.shape)}"
             for k, v in expected.items() if k in found and found[k].shape != v.shape]
    if missing or wrong:
        problem = (f"shape mismatches ({'; '.join(wrong[:2])})" if wrong
                   else f"{len(missing)} of its {len(expected)} tensors are missing (e.g. features.{missing[0]})")
        raise ConfigError(f"{VGG_OPTION} {origin}: not a VGG-19 state dict: {problem}; expected torchvision's "
                          f"vgg19 keys features.0.weight ... features.28.bias")
    net.features.load_state_dict({k: v.float() for k, v in found.items()})


# --- translator files ---------------------------------------------------------------------------

def translator_metadata(translator: ImageTranslator, **extra: Any) -> dict[str, Any]:
    """What a translator file records: its format, pixel space and architecture, plus ``extra``."""
    return {"format": TRANSLATOR_FORMAT, "format_version": TRANSLATOR_FORMAT_VERSION,
            "pixel_mean": list(PIXEL_MEAN), "pixel_scale": PIXEL_SCALE,
            "architecture": dict(translator.settings), **extra}


def check_architecture(dim: Any, n_res: Any) -> list[str]:
    """What is wrong with these translator settings (empty: nothing)."""
    problems = []
    if not (isinstance(dim, int) and not isinstance(dim, bool) and 1 <= dim <= MAX_WIDTH):
        problems.append(f"width must be an integer 1..{MAX_WIDTH} (got {dim!r})")
    if not (isinstance(n_res, int) and not isinstance(n_res, bool) and 0 <= n_res <= MAX_RES_BLOCKS):
        problems.append(f"res_blocks must be an integer 0..{MAX_RES_BLOCKS} (got {n_res!r})")
    return problems


def save_translator(path: str | Path, translator: ImageTranslator, meta: dict[str, Any]) -> Path:
    """Write the translator's weights (safetensors, metadata in the header) and a JSON sidecar, atomically."""
    from safetensors.torch import save_file

    from ..io import atomic_write, atomic_write_text

    tensors = {k: v.detach().cpu().contiguous() for k, v in translator.state_dict().items()}
    header = {"diga_translator": json.dumps(meta, sort_keys=True)}
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=header))
    atomic_write_text(Path(path).with_suffix(".json"), json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return Path(path)


def load_translator(path: str | Path, option: str = "--translator-weights") -> tuple[ImageTranslator, dict[str, Any]]:
    """The translator a ``diga translator`` run wrote (eval mode, frozen), with its metadata."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file, safe_open

    path = Path(path)
    expected = "the translator.safetensors written by `diga translator`"
    if not path.is_file():
        raise ConfigError(f"{option} {path}: no such file; expected {expected}")
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise ConfigError(f"{option} {path}: not a readable safetensors file ({e}); expected {expected}") from None
    try:
        meta = json.loads(header.get("diga_translator", "null"))
    except ValueError:
        meta = None
    if not isinstance(meta, dict) or meta.get("format") != TRANSLATOR_FORMAT:
        raise ConfigError(f"{option} {path}: holds no {TRANSLATOR_FORMAT} metadata; expected {expected}")
    version = meta.get("format_version")
    if not isinstance(version, int) or not 1 <= version <= TRANSLATOR_FORMAT_VERSION:
        raise ConfigError(f"{option} {path}: format_version {version!r} is not one this diga reads "
                          f"(1..{TRANSLATOR_FORMAT_VERSION})")
    arch = meta.get("architecture")
    problems = check_architecture(*(arch.get(k) for k in ("dim", "n_res"))) if isinstance(arch, dict) else [
        f"architecture must be an object, got {arch!r}"]
    if problems:
        raise ConfigError(f"{option} {path}: invalid translator architecture: {'; '.join(problems)}")
    translator = ImageTranslator(arch["dim"], arch["n_res"])
    own = translator.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [k for k in own if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or wrong:
        first = (missing or unexpected or wrong)[0]
        raise ConfigError(f"{option} {path}: its tensors do not fit the translator ({len(missing)} missing, "
                          f"{len(unexpected)} unexpected, {len(wrong)} of another shape; e.g. {first})")
    damaged = [k for k, t in state.items() if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if damaged:
        raise ConfigError(f"{option} {path}: {len(damaged)} tensor(s) hold NaN or infinite values "
                          f"(e.g. {damaged[0]}); the weights are damaged")
    translator.load_state_dict(state)
    return translator.eval().requires_grad_(False), meta


__all__ = ["ImageTranslator", "MultiScaleDiscriminator", "TranslatorDecoder", "TranslatorEncoder", "VGGFeatures",
           "PIXEL_MEAN", "PIXEL_SCALE", "build_vgg_features", "from_translator_space", "load_translator",
           "save_translator", "to_translator_space", "translator_metadata"]
