"""TinyBeauty: a residual U-Net small enough for a < 100 KB int8 artifact in TFLite, ONNX and CoreML.

output = clamp(input + predicted residual, 0, 1). Makeup changes few pixels by little, so predicting the
residual lets a tiny net spend its capacity on the change instead of on copying the face.

Only ops that survive int8 export to all three formats (measured with litert-torch, torch.onnx and
coremltools): zero-padded 3x3/1x1 convs, ReLU, one ``MaxPool2d`` instance per level (the PT2E QAT path was
verified with a separate instance per pooling), nearest upsampling, add/concat. No normalisation layers, no
reflect padding.

:data:`DEFAULT_CONFIG` is the one architecture every stage reads; nothing shrinks it automatically: when an
artifact is over budget, export refuses it (``tinybeauty export``) and a smaller ``student: model:`` in the
profile is the remedy.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

import torch
from torch import nn

from makeup.errors import TinyBeautyError

LEVELS_DOWN = 3  # downsampling levels; inputs must be divisible by 2**LEVELS_DOWN
SIZE_MULTIPLE = 2 ** LEVELS_DOWN


@dataclass(frozen=True)
class StudentConfig:
    """Architecture of the student. ``widths`` = channels at full, 1/2, 1/4 and 1/8 resolution."""

    widths: tuple[int, ...] = (12, 24, 28, 36)  # 59.4K params, 0.54 GMAC at 256x256
    convs_per_level: int = 2  # 3x3 convs per encoder level (and in the bottleneck)
    decoder_convs: int = 1  # 3x3 convs per decoder level after merging the skip
    skip: str = "add"  # "add": decoder adds the skip (fewer MACs at full res); "concat": concatenates it
    act: str = "relu"  # "relu" or "relu6"

    def __post_init__(self):
        if len(self.widths) != LEVELS_DOWN + 1 or any(int(w) < 1 for w in self.widths):
            raise TinyBeautyError(f"student widths must be {LEVELS_DOWN + 1} positive ints, got {self.widths}")
        if self.skip not in ("add", "concat"):
            raise TinyBeautyError(f"student skip must be 'add' or 'concat', got {self.skip!r}")
        if self.act not in ("relu", "relu6"):
            raise TinyBeautyError(f"student act must be 'relu' or 'relu6', got {self.act!r}")
        if self.convs_per_level < 1 or self.decoder_convs < 1:
            raise TinyBeautyError("student convs_per_level and decoder_convs must be >= 1")
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["widths"] = list(self.widths)
        return d

    @classmethod
    def from_dict(cls, data: dict | None) -> "StudentConfig":
        data = dict(data or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise TinyBeautyError(f"unknown student model options {unknown}; known: {sorted(known)}")
        if "widths" in data:
            data["widths"] = tuple(data["widths"])
        return cls(**data)


DEFAULT_CONFIG = StudentConfig()


def _act(kind: str) -> nn.Module:
    return nn.ReLU6() if kind == "relu6" else nn.ReLU()


def conv_stack(cin: int, cout: int, n: int, act: str) -> nn.Sequential:
    """``n`` zero-padded 3x3 convs, each followed by the activation."""
    layers: list[nn.Module] = []
    for i in range(n):
        layers += [nn.Conv2d(cin if i == 0 else cout, cout, 3, padding=1), _act(act)]
    return nn.Sequential(*layers)


class UpBlock(nn.Module):
    """1x1 conv to the skip's width at low resolution (cheap), nearest x2, merge the skip, 3x3 convs."""

    def __init__(self, cin: int, cskip: int, n: int, skip: str, act: str):
        super().__init__()
        self.skip = skip
        self.reduce = nn.Sequential(nn.Conv2d(cin, cskip, 1), _act(act))
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.convs = conv_stack(cskip * (2 if skip == "concat" else 1), cskip, n, act)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = self.up(self.reduce(x))
        x = torch.cat([x, skip], dim=1) if self.skip == "concat" else x + skip
        return self.convs(x)


class TinyBeauty(nn.Module):
    """Residual U-Net, 3 downsampling levels with skips; NCHW float [0, 1] in and out."""

    def __init__(self, config: StudentConfig | dict | None = None):
        super().__init__()
        cfg = config if isinstance(config, StudentConfig) else StudentConfig.from_dict(config) \
            if config is not None else DEFAULT_CONFIG
        self.config = cfg
        w, n, a = cfg.widths, cfg.convs_per_level, cfg.act
        self.enc = nn.ModuleList([conv_stack(3 if i == 0 else w[i - 1], w[i], n, a) for i in range(LEVELS_DOWN)])
        self.pools = nn.ModuleList([nn.MaxPool2d(2) for _ in range(LEVELS_DOWN)])  # one instance per level
        self.bottleneck = conv_stack(w[LEVELS_DOWN - 1], w[LEVELS_DOWN], n, a)
        self.dec = nn.ModuleList([UpBlock(w[i + 1], w[i], cfg.decoder_convs, cfg.skip, a) for i in reversed(range(LEVELS_DOWN))])
        self.head = nn.Conv2d(w[0], 3, 3, padding=1)  # the residual; zeroing it makes the net the identity

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        h = x
        for enc, pool in zip(self.enc, self.pools):
            h = enc(h)
            skips.append(h)
            h = pool(h)
        h = self.bottleneck(h)
        for dec, skip in zip(self.dec, reversed(skips)):
            h = dec(h, skip)
        return torch.clamp(x + self.head(h), 0.0, 1.0)


def build_model(config: StudentConfig | dict | None = None) -> TinyBeauty:
    return TinyBeauty(config)


def check_input_size(height: int, width: int) -> None:
    if height % SIZE_MULTIPLE or width % SIZE_MULTIPLE or height <= 0 or width <= 0:
        raise TinyBeautyError(f"student input {width}x{height}: both sides must be positive multiples of "
                              f"{SIZE_MULTIPLE}")


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, size: int = 256) -> int:
    """Multiply-accumulates of one forward pass at ``size`` x ``size`` (torch's FLOP counter / 2)."""
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.zeros(1, 3, size, size)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model.eval()(x)
    return counter.get_total_flops() // 2
