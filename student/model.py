"""TinyBeauty: a residual U-Net small enough for a < 100 KB int8 artifact in TFLite, ONNX and CoreML.

output = clamp(input + predicted residual, 0, 1). Makeup changes few pixels by little, so predicting the
residual lets a tiny net spend its capacity on the change instead of on copying the face.

Only ops that survive int8 export to all three formats (measured with litert-torch, torch.onnx and
coremltools): zero-padded 3x3/1x1 convs, ReLU, one ``MaxPool2d`` instance per level (the PT2E QAT path was
verified with a separate instance per pooling), nearest (or bilinear) upsampling, add/concat, and an
upsampling and a clamp spelled so that XNNPACK takes them (:class:`NearestUp2`, :func:`clamp01`): the whole
int8 graph is one XNNPACK partition (``tests/test_export_latency.py``). No normalisation layers, no reflect padding.

:data:`DEFAULT_CONFIG` is the one architecture every stage reads; nothing shrinks it automatically: when an
artifact is over budget, export refuses it (``tinybeauty export``) and a smaller ``student: model:`` in the
profile is the remedy.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

import numpy as np
import torch
from torch import nn

from makeup.errors import TinyBeautyError

REGION_CHANNELS = 4  # makeup.metrics.FIDELITY_REGIONS: eyes (zone), lips, skin, brows
PRIOR_CHANNELS = 3  # the painted look prior (RGB change), after the masks (StudentConfig.prior_input)
REGION_FEATHER = 0.02  # soft edge of the region input channels, a fraction of the crop side (the gate's default)
LEVELS_DOWN = 3  # downsampling levels; inputs must be divisible by 2**LEVELS_DOWN
SIZE_MULTIPLE = 2 ** LEVELS_DOWN


@dataclass(frozen=True)
class StudentConfig:
    """Architecture of the student. ``widths`` = channels at the four levels (full, 1/2, 1/4, 1/8 of the input
    with the ``full`` stem; each one halving further with ``s2d``).

    The defaults are the shipped architecture, chosen by measuring latency (``tinybeauty bench``) and look
    fidelity together (README, "Latency"); the other choices are kept because they are real trade-offs (each
    comment gives its measured cost). :data:`LEGACY` is what checkpoints saved before these options existed
    were built with.
    """

    widths: tuple[int, ...] = (12, 24, 28, 36)  # 59.4K params, 0.54 GMAC at 256x256
    convs_per_level: int = 2  # 3x3 convs per encoder level (and in the bottleneck)
    decoder_convs: int = 1  # 3x3 convs per decoder level after merging the skip
    skip: str = "add"  # "add": decoder adds the skip (fewer MACs at full res); "concat": concatenates it
    act: str = "relu"  # "relu" or "relu6"
    # "nearest": 1x1 conv at low resolution + nearest x2, spelled so XNNPACK takes it (:class:`NearestUp2`; as
    # nn.Upsample it split the graph into 4 partitions). "bilinear": int8 RESIZE_BILINEAR, also delegated,
    # but measured to learn lips slower (red_lip -0.5 dB, korean -0.4..-0.9 dB over the unchanged face).
    upsample: str = "nearest"
    # "conv": a 3x3 conv to the 3 residual channels. "1x1": a 1x1 conv (6 % faster, measured to lose the look:
    # red_lip +6.3 dB over the unchanged face instead of +8.3). "s2d": a 2x2 stride-2 conv to 12 channels +
    # depth-to-space (the 3x3 head's 0.8 ms -> 0.1 ms, but each 2x2 block is painted alone: grid artifacts,
    # glamorous lips 0.20 recovered instead of 0.55). "subpixel": the same function as "conv" (same parameters,
    # a "conv" checkpoint loads into it), computed as a 4x4 stride-2 conv to 12 channels + depth-to-space
    # (:class:`SubpixelConv3x3`): a kernel shape int8 kernels run better than 3 output channels.
    head: str = "conv"
    # "full": level 0 runs at the input resolution. "s2d": a 2x2 stride-2 conv in (space-to-depth + 1x1 conv)
    # and 1x1 conv + depth-to-space out, every level at half the resolution: 3.5x fewer MACs and 3.6x faster,
    # but measured to lose the look (red_lip +4.7 dB instead of +8.3, lips 0.68 vs 0.83 recovered).
    stem: str = "full"
    # How nearest upsampling and the final clamp are written. "xnnpack": NearestUp2 and clamp01, one XNNPACK
    # partition. "torch": nn.Upsample and torch.clamp, the same function as 4 partitions: what checkpoints
    # saved before stop 15 were QAT-prepared on (their fake-quant state is keyed to that graph's nodes).
    spelling: str = "xnnpack"
    # True: the input is 7 channels, RGB and the four soft region masks of the face (:func:`region_channels`:
    # eye zone, lips, skin, brows, as the look gate computes them from the face mesh); the residual is added to
    # the RGB channels. A student that sees only pixels learned what the synthetic faces' lips look like and
    # left a real face's pale lips alone (red_lip on the astronaut: lips 0.02 recovered, +0.3 dB gated); told
    # where the lips are it painted them (0.39, +4.1 dB; its teacher +4.3). Apps already parse every frame's
    # regions for the gate, so the masks cost no extra model. False: RGB only (checkpoints before stop 20).
    region_input: bool = True
    # True: with region_input, a fifth mask after the four, the cheeks (``makeup.metrics.cheek_map`` times the soft
    # skin mask): 8 input channels. Skin makeup is not the same all over the skin (blush lies on the cheekbones),
    # and a student told only "skin" left glamorous' blush out (the shipped .tflite's cheeks 0.30 of its
    # teacher's change; told where the cheeks are, 0.57, and on the astronaut 0.03 -> 0.51; README). False: the
    # four masks (checkpoints before stop 23). No effect without region_input (an RGB-only net reads no masks).
    cheek_input: bool = True
    # True: after the masks, 3 more input channels: the look prior painted on the face
    # (``makeup.lookprior.LookPrior.paint``: region colours, eye and lip templates, skin and brow models, fit on
    # the training pairs and carried by the checkpoint and the model card), and the net adds it to its output:
    # output = clamp(RGB + prior + residual). The net learns the face-dependent correction to the prior
    # instead of the whole look. A student given only pixels and masks underfits (stop 24: its own training
    # pairs no better than new ones; 4x the width +0.02..0.05 recovery); told the prior, the demo's glamorous
    # .tflite vs its teacher went eyes / lips / skin / brows / cheeks 0.65 / 0.73 / 0.31 / 0.61 / 0.58, +8.8 dB
    # -> 0.88 / 0.88 / 0.79 / 0.90 / 0.80, +18.0 dB (README). Apps paint the prior per frame (look_prior.json
    # beside an export): the web page does, the Android app not yet, so it is off here and on in the demo
    # profile. Needs region_input.
    prior_input: bool = False
    # False: the last decoder conv feeds the head without its activation (linear features). With ReLU there, a
    # unit that is negative on every input is dead for good, and when all of that layer's units die the net adds
    # nothing but the head's bias: stop 25's red_lip and stop 26's first natural student ended with 0 of 12 live
    # there (the .tflite = its look prior, +0.0 dB over it), the others with 4-7 of 12. Linear features cannot
    # all die. True: the ReLU (checkpoints before stop 26).
    last_relu: bool = True

    @property
    def prior_channels(self) -> int:
        """3 with ``prior_input`` (the painted prior, RGB), else 0."""
        return PRIOR_CHANNELS if self.prior_input else 0

    @property
    def mask_channels(self) -> int:
        """How many of ``makeup.gate.INPUT_MASKS`` the net reads after RGB: 0, 4 or 5 (with the cheeks)."""
        return (REGION_CHANNELS + int(self.cheek_input)) if self.region_input else 0

    @property
    def in_channels(self) -> int:
        return 3 + self.mask_channels + self.prior_channels

    def __post_init__(self):
        if len(self.widths) != LEVELS_DOWN + 1 or any(int(w) < 1 for w in self.widths):
            raise TinyBeautyError(f"student widths must be {LEVELS_DOWN + 1} positive ints, got {self.widths}")
        for name, allowed in CHOICES.items():
            if getattr(self, name) not in allowed:
                raise TinyBeautyError(f"student {name} must be one of {list(allowed)}, got {getattr(self, name)!r}")
        if self.convs_per_level < 1 or self.decoder_convs < 1:
            raise TinyBeautyError("student convs_per_level and decoder_convs must be >= 1")
        if self.prior_input and not self.region_input:
            raise TinyBeautyError("student prior_input needs region_input (the prior is painted over the regions)")
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

    @classmethod
    def over_default(cls, options: dict | None) -> "StudentConfig":
        """:data:`DEFAULT_CONFIG` with ``options`` (a profile's ``student: model:``, ``bench --model``) on top."""
        return cls.from_dict({**DEFAULT_CONFIG.to_dict(), **dict(options or {})})

    @classmethod
    def from_saved(cls, data: dict) -> "StudentConfig":
        """A config as a checkpoint or model card stored it: keys it lacks predate them (:data:`LEGACY`)."""
        return cls.from_dict({**LEGACY, **dict(data)})


CHOICES = {"skip": ("add", "concat"), "act": ("relu", "relu6"), "stem": ("full", "s2d"),
           "upsample": ("nearest", "bilinear"), "head": ("conv", "1x1", "s2d", "subpixel"),
           "spelling": ("xnnpack", "torch")}
LEGACY = {"stem": "full", "upsample": "nearest", "head": "conv", "spelling": "torch",  # saved before stop 15
          "region_input": False,  # saved before stop 20
          "cheek_input": False,  # saved before stop 23
          "prior_input": False,  # saved before stop 25
          "last_relu": True}  # saved before stop 26


DEFAULT_CONFIG = StudentConfig()


def _act(kind: str) -> nn.Module:
    return nn.ReLU6() if kind == "relu6" else nn.ReLU()


def conv_stack(cin: int, cout: int, n: int, act: str, last_act: bool = True) -> nn.Sequential:
    """``n`` zero-padded 3x3 convs, each followed by the activation (the last one only with ``last_act``)."""
    layers: list[nn.Module] = []
    for i in range(n):
        layers += [nn.Conv2d(cin if i == 0 else cout, cout, 3, padding=1)]
        layers += [_act(act)] if last_act or i < n - 1 else []
    return nn.Sequential(*layers)


class UpBlock(nn.Module):
    """1x1 conv to the skip's width at low resolution (cheap), x2 up (nearest or bilinear), merge the skip,
    3x3 convs. (A 2x2 stride-2 transposed conv instead was measured: litert-torch's quantizer leaves it in
    float, 4x the parameters of the 1x1 conv: over budget and out of the int8 partition.)"""

    def __init__(self, cin: int, cskip: int, n: int, skip: str, act: str, upsample: str = "nearest",
                 spelling: str = "xnnpack", last_act: bool = True):
        super().__init__()
        self.skip = skip
        self.reduce = nn.Sequential(nn.Conv2d(cin, cskip, 1), _act(act))
        if upsample == "bilinear":
            self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
        else:
            self.up = NearestUp2() if spelling == "xnnpack" else nn.Upsample(scale_factor=2, mode="nearest")
        self.convs = conv_stack(cskip * (2 if skip == "concat" else 1), cskip, n, act, last_act)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = self.up(self.reduce(x))
        x = torch.cat([x, skip], dim=1) if self.skip == "concat" else x + skip
        return self.convs(x)


class TinyBeauty(nn.Module):
    """Residual U-Net, 3 downsampling levels with skips; NCHW float [0, 1] in (RGB, then the region masks with
    ``region_input``) and RGB out."""

    def __init__(self, config: StudentConfig | dict | None = None):
        super().__init__()
        cfg = config if isinstance(config, StudentConfig) else StudentConfig.from_dict(config) \
            if config is not None else DEFAULT_CONFIG
        self.config = cfg
        w, n, a = cfg.widths, cfg.convs_per_level, cfg.act
        if cfg.stem == "s2d":
            first = nn.Sequential(nn.Conv2d(cfg.in_channels, w[0], 2, stride=2), _act(a),
                                  *conv_stack(w[0], w[0], n - 1, a))
        else:
            first = conv_stack(cfg.in_channels, w[0], n, a)
        if cfg.stem == "s2d":  # 4 sub-pixels x RGB of the residual at half resolution
            self.head, self.shuffle = nn.Conv2d(w[0], 3 * 4, 1), DepthToSpace2()
        elif cfg.head == "subpixel":  # the 3x3 head, written for int8 kernels
            self.head, self.shuffle = SubpixelConv3x3(w[0], 3), DepthToSpace2()
        elif cfg.head == "s2d":  # each 2x2 block's residual from its features
            self.head, self.shuffle = nn.Conv2d(w[0], 3 * 4, 2, stride=2), DepthToSpace2()
        else:  # the residual; zeroing the head makes the net the identity
            k = 1 if cfg.head == "1x1" else 3
            self.head, self.shuffle = nn.Conv2d(w[0], 3, k, padding=k // 2), nn.Identity()
        self.enc = nn.ModuleList([first] + [conv_stack(w[i - 1], w[i], n, a) for i in range(1, LEVELS_DOWN)])
        self.pools = nn.ModuleList([nn.MaxPool2d(2) for _ in range(LEVELS_DOWN)])  # one instance per level
        self.bottleneck = conv_stack(w[LEVELS_DOWN - 1], w[LEVELS_DOWN], n, a)
        self.dec = nn.ModuleList([UpBlock(w[i + 1], w[i], cfg.decoder_convs, cfg.skip, a, cfg.upsample,
                                          cfg.spelling, last_act=cfg.last_relu or i > 0)
                                  for i in reversed(range(LEVELS_DOWN))])
        self.clamp = clamp01 if cfg.spelling == "xnnpack" else _torch_clamp01
        if cfg.prior_input:  # a new net is the prior itself, and learns the correction from there
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)

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
        rgb = x[:, :3] if self.config.region_input else x
        if self.config.prior_input:
            rgb = rgb + x[:, -PRIOR_CHANNELS:]
        return self.clamp(rgb + self.shuffle(self.head(h)))


class NearestUp2(nn.Module):
    """Nearest-neighbour x2, bit for bit ``nn.Upsample(scale_factor=2, mode="nearest")``, spelled in NHWC as
    concat + reshape twice: (H, W, C) -> cat along C -> (H, 2W, C) -> cat along W -> (2H, 2W, C).

    ``nn.Upsample`` converts to TFLite's RESIZE_NEAREST_NEIGHBOR, which XNNPACK does not take: each of the
    three split the graph (4 partitions, the resizes on the reference kernels). CONCATENATION and RESHAPE
    it takes, in int8, inside the one partition.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        y = x.permute(0, 2, 3, 1)
        y = torch.cat([y, y], dim=3).reshape(n, h, 2 * w, c)
        y = torch.cat([y, y], dim=2).reshape(n, 2 * h, 2 * w, c)
        return y.permute(0, 3, 1, 2)


class SubpixelConv3x3(nn.Module):
    """A zero-padded 3x3 conv to ``cout`` channels, computed at half resolution: a 4x4 stride-2 conv (padding 1)
    to ``4 * cout`` channels whose kernel for sub-pixel (dy, dx) is the 3x3 kernel shifted by (dy, dx), then
    :class:`DepthToSpace2` (channel ``(2 dy + dx) cout + c``). Output pixel (2i + dy, 2j + dx) reads input rows
    2i + dy - 1 .. 2i + dy + 1, which the stride-2 window of rows 2i - 1 .. 2i + 2 holds at offset dy.

    Same parameters as ``nn.Conv2d(cin, cout, 3, padding=1)`` (``weight``, ``bias``: its checkpoints load) and
    the same function; 16/9 x the MACs, but 12 output channels and a 16 x cin reduction at a quarter of the
    pixels instead of 3 output channels at full resolution, which int8 GEMM kernels (16 channels a tile) waste.
    Each 4x4 kernel holds one 3x3 kernel and zeros, so per-channel int8 scales are the 3x3 conv's.
    """

    def __init__(self, cin: int, cout: int):
        super().__init__()
        ref = nn.Conv2d(cin, cout, 3, padding=1)  # the same initialisation as the plain head
        self.weight, self.bias = ref.weight, ref.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shifted = [nn.functional.pad(self.weight, (dx, 1 - dx, dy, 1 - dy)) for dy in (0, 1) for dx in (0, 1)]
        return nn.functional.conv2d(x, torch.cat(shifted), torch.cat([self.bias] * 4), stride=2, padding=1)


class DepthToSpace2(nn.Module):
    """(N, 12, H, W) -> (N, 3, 2H, 2W), channels read as (dy, dx, colour): out[2h+dy, 2w+dx] =
    in[h, w, 6 dy + 3 dx + colour] (a fixed arrangement of the head's channels, learned into its weights).

    Written in NHWC with only slices, reshapes and a concat, so the converter keeps it NHWC: each dy half
    reshapes (H, W, 6) -> (H, 2W, 3) (one output row of pixel pairs), the two rows concatenate along width
    and reshape to (2H, 2W, 3). ``nn.PixelShuffle`` converts to rank-4 transposes instead, which also pull
    the graph's I/O into NCHW (two more full-resolution transposes). Two 6-channel head convs instead of the
    slices converted wrong (36 dB vs torch), so the slices stay.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        y = x.permute(0, 2, 3, 1)
        rows = [y[..., 6 * dy:6 * dy + 6].reshape(n, h, 2 * w, 3) for dy in (0, 1)]
        return torch.cat(rows, dim=2).reshape(n, 2 * h, 2 * w, 3).permute(0, 3, 1, 2)


def _torch_clamp01(y: torch.Tensor) -> torch.Tensor:
    return torch.clamp(y, 0.0, 1.0)


def clamp01(y: torch.Tensor) -> torch.Tensor:
    """clamp(y, 0, 1) as 1 - relu(1 - relu(y)), spelled with negations so it converts to ops XNNPACK runs.

    ``torch.clamp`` and min(relu(y), 1) convert to TFLite's RELU_0_TO_1, which XNNPACK does not take (the
    last op then ran outside the delegate); ``1.0 - t`` converts to a SUB with a fused ReLU that came out
    wrong (-1 everywhere) once the head ends in reshapes; relu(y) - relu(y - 1) pulled in transposes. This
    form converts to ADD/MUL with fused ReLUs, all delegated, and matches torch exactly (tests).
    """
    return -torch.relu(-torch.relu(y) + 1.0) + 1.0


def region_channels(labels, count: int = REGION_CHANNELS + 1) -> np.ndarray:
    """float32 (N, count, H, W) region input channels of (N, H, W) (or one (H, W)) label maps: the first
    ``count`` of ``makeup.gate.INPUT_MASKS`` (``makeup.gate.input_masks``) at :data:`REGION_FEATHER`."""
    from makeup.gate import input_masks

    lab = labels.cpu().numpy() if hasattr(labels, "cpu") else np.asarray(labels)
    if lab.ndim == 2:
        lab = lab[None]
    return np.stack([input_masks(m, count, REGION_FEATHER) for m in lab]) if len(lab) else \
        np.zeros((0, count) + lab.shape[1:], np.float32)


def split_channels(channels: int) -> tuple[int, int]:
    """(mask channels, prior channels) of a net taking ``channels`` inputs: 3 (RGB), 7 or 8 (+ 4 or 5 region
    masks), 10 or 11 (+ those and the 3 prior channels). Anything else is one clear error."""
    extra = channels - 3
    prior = PRIOR_CHANNELS if extra - PRIOR_CHANNELS in (REGION_CHANNELS, REGION_CHANNELS + 1) else 0
    masks = extra - prior
    if masks not in (0, REGION_CHANNELS, REGION_CHANNELS + 1):
        raise TinyBeautyError(f"a student takes 3, 7, 8, 10 or 11 input channels, not {channels}")
    return masks, prior


def prior_channels(look_prior, sources, labels) -> np.ndarray:
    """float32 (N, 3, H, W): ``look_prior`` (``makeup.lookprior.LookPrior``) painted on each source (N, 3, H, W)
    float in [0, 1] with its (N, H, W) label map."""
    src = sources.detach().cpu().numpy() if torch.is_tensor(sources) else np.asarray(sources, np.float32)
    lab = labels.cpu().numpy() if hasattr(labels, "cpu") else np.asarray(labels)
    return np.stack([look_prior.paint(s.transpose(1, 2, 0), m).transpose(2, 0, 1) for s, m in zip(src, lab)]) \
        if len(src) else np.zeros((0, PRIOR_CHANNELS) + src.shape[2:], np.float32)


def model_input(channels: int, sources, labels=None, prior=None):
    """What a net taking ``channels`` inputs (``StudentConfig.in_channels``) gets: ``sources`` (N, 3, H, W)
    float [0, 1] (numpy or torch, returned as the same kind), then for region input the region channels of
    ``labels``, then for prior input the look prior on each face: ``prior`` is that (N, 3, H, W) already
    painted, or a ``makeup.lookprior.LookPrior`` to paint. A batch already at ``channels`` is returned as it is."""
    have = sources.shape[1]
    if have == channels:
        return sources
    if have != 3:
        raise TinyBeautyError(f"the student takes {channels} input channels, got {have}")
    masks, with_prior = split_channels(channels)
    if labels is None:
        raise TinyBeautyError("this student takes the face's region masks as input: its label map is needed "
                              "(a face mesh on photos, the pair's mask on pairs)")
    parts = [region_channels(labels, masks)]
    if with_prior:
        if prior is None:
            raise TinyBeautyError("this student takes the look prior as input and none was given: a checkpoint "
                                  "carries it in its meta, an exported model in look_prior.json beside it")
        parts.append(prior_channels(prior, sources, labels) if hasattr(prior, "paint") else
                     (prior.detach().cpu().numpy() if torch.is_tensor(prior) else np.asarray(prior, np.float32)))
    extra = np.concatenate(parts, axis=1).astype(np.float32)
    if torch.is_tensor(sources):
        return torch.cat([sources, torch.from_numpy(extra).to(sources.device, sources.dtype)], dim=1)
    return np.concatenate([np.asarray(sources, np.float32), extra], axis=1)


def build_model(config: StudentConfig | dict | None = None) -> TinyBeauty:
    return TinyBeauty(config)


def size_multiple(config: StudentConfig | None = None) -> int:
    """Inputs must be divisible by this: 2 per halving (the s2d stem halves once more)."""
    return SIZE_MULTIPLE * (2 if (config or DEFAULT_CONFIG).stem == "s2d" else 1)


def check_input_size(height: int, width: int, config: StudentConfig | None = None) -> None:
    multiple = size_multiple(config)
    if height % multiple or width % multiple or height <= 0 or width <= 0:
        raise TinyBeautyError(f"student input {width}x{height}: both sides must be positive multiples of "
                              f"{multiple}")


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, size: int = 256) -> int:
    """Multiply-accumulates of one forward pass at ``size`` x ``size`` (torch's FLOP counter / 2)."""
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.zeros(1, model.config.in_channels, size, size)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model.eval()(x)
    return counter.get_total_flops() // 2
