"""The DDA formulation every backend shares: conditional residual diffusion (RDM) gated by FGMM.

* RDM: the diffusion variable is the makeup residual ``after - before`` at the working resolution (64/128),
  multiplied by ``residual_scale`` so it has about unit spread (a faint residual would drown in the noise).
  The model is conditioned on the before image and its soft region masks (channel concat). A sampled residual
  is upsampled and added to the FULL-resolution source, so every detail the makeup does not touch comes from
  the photo itself. The seed document's RDM adds ``alpha * residual_input`` to the network output; here the
  residual input is the region prior (each region's mean seed residual, painted with the soft masks), so the
  network only learns the face-dependent correction and an undertrained model still paints the look.
* Feature templates: around the eyes and on the lips the prior is not one colour per region but a map in the
  feature's own frame (:func:`makeup.render.eye_frame`: along and above/below the lash lines, in eye widths;
  :func:`makeup.render.lip_frame`: in the lips' box), fit on the seeds per cell as a blend toward a colour,
  ``change = k - a * photo`` (:func:`fit_template`). Liner and lid shadow sit at the same place relative to
  every eye, a lipstick's edge and gloss at the same place on every mouth, so the template carries them onto a
  new face sharply, at full resolution, where a per-region prior smeared them over the whole region.
* FGMM: learnable per-region weights (eyes, lips, skin, brows). They weight the training loss by region and
  gate the predicted residual with feathered masks that are exactly zero outside the four regions, so no
  makeup can leak into hair or background.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import cv2
import numpy as np
import torch
from torch import nn

from makeup.errors import TinyBeautyError
from makeup.regions import BROWS, EYES, LIPS, SKIN, feather

from .region_models import FEATURES as MODEL_FEATURES, MODELLED_REGIONS, modelled, models_from_moments, \
    region_model_change, region_model_moments

MAKEUP_REGIONS = (EYES, LIPS, SKIN, BROWS)  # channel order of every region stack
EYE_CHANNEL = 0


def region_stack(labels: np.ndarray, size: int | None = None, radius: float = 2.0) -> np.ndarray:
    """Soft masks (4, S, S) float32 of eyes, lips, skin, brows: feathered at full resolution, then cut by the
    union of the regions (zero outside them, exactly), then area-resized to ``size``."""
    lab = np.asarray(labels)
    union = (lab > 0).astype(np.float32)
    masks = [feather((lab == r).astype(np.float32), radius) * union for r in MAKEUP_REGIONS]
    out = np.stack(masks)
    if size is not None and size != lab.shape[0]:
        out = np.stack([cv2.resize(m, (size, size), interpolation=cv2.INTER_AREA) for m in out])
    return out.astype(np.float32)


@dataclass(frozen=True)
class TemplateFrame:
    """A feature's own coordinate frame (``coords(labels, geometry) -> u, v, valid``), cut into cells in which
    the prior's template is fit."""

    name: str
    coords: Callable
    u_range: tuple[float, float]
    v_range: tuple[float, float]
    step: tuple[float, float]  # (u, v) cell size
    fade: float = 0.0  # the support fades to 0 over this distance (in frame units) toward the grid's edge
    clamp: bool = False  # clamp the photo to the range the seeds showed in each cell (see fit_template)

    def taper(self) -> np.ndarray:
        """(cells,) 1 inside the grid, falling smoothly to 0 at its edge over :attr:`fade`: where the template
        meets the region prior at the grid's edge there is no seam."""
        nv, nu = self.shape
        if self.fade <= 0:
            return np.ones(nv * nu)

        def ramp(n, step):
            centre = (np.arange(n) + 0.5) * step
            d = np.minimum(centre, n * step - centre) / self.fade
            t = np.clip(d, 0.0, 1.0)
            return t * t * (3 - 2 * t)

        return np.outer(ramp(nv, self.step[1]), ramp(nu, self.step[0])).ravel()

    @property
    def shape(self) -> tuple[int, int]:
        """(v cells, u cells)."""
        return (int(round((self.v_range[1] - self.v_range[0]) / self.step[1])),
                int(round((self.u_range[1] - self.u_range[0]) / self.step[0])))

    def cells(self, labels: np.ndarray, geometry=None) -> np.ndarray:
        """(H, W) int64: each pixel's cell (row-major in :attr:`shape`), -1 outside the frame."""
        u, v, valid = self.coords(labels, geometry)
        nv, nu = self.shape
        iu = np.floor((u - self.u_range[0]) / self.step[0]).astype(np.int64)
        iv = np.floor((v - self.v_range[0]) / self.step[1]).astype(np.int64)
        ok = valid & (iu >= 0) & (iu < nu) & (iv >= 0) & (iv < nv)
        return np.where(ok, iv * nu + iu, -1)


def _frames() -> dict[str, TemplateFrame]:
    from makeup.render import eye_frame, lip_frame

    # eyes: the skin around each eye in eye widths (u toward the outer corner, v over / under the lash lines);
    # lips: the lip pixels in the lips' box (u = |x - centre| / width, v = (y - centre) / height)
    # The eye grid stops 0.8 eye widths under the lower lash line. Reaching 2.0 (over the cheekbones, where blush
    # lies) was measured (stop 24, glamorous, 40 held-out truth faces): the prior alone paints the blush better
    # (cheeks 0.27 -> 0.52), the trained teacher does not (make demo, 2 threads, both: cheeks 0.55 -> 0.54, skin
    # 0.53 -> 0.51; two trainings of the same teacher differ by ~0.05 there): the template fits the seeds' blush,
    # so the diffusion learns no correction there, and its own blush generalises as well.
    # the eye frame's skin clamps (foundation must not be extrapolated to a darker face); the lips do not (a
    # lipstick is a blend toward its colour: a lip paler than every seed's needs more change, not a red lip's)
    return {"eyes": TemplateFrame("eyes", eye_frame, (-1.3, 1.9), (-0.8, 1.6), (0.025, 0.025), fade=0.3,
                                  clamp=True),
            "lips": TemplateFrame("lips", lip_frame, (0.0, 0.7), (-0.8, 0.8), (0.05, 0.1))}


TEMPLATE_FRAMES = _frames()
PRIOR_RIDGE = 1e-3  # fit_region_prior's shrinkage of a colour map toward 0, relative to the photo's spread
# per cell: k (RGB), a, support (where the template applies, 0..1), and the photo's range in the seeds' pixels
# of the cell, low (RGB) and high (RGB): the template is a line fit on a few faces, so a photo outside the range
# it saw is clamped to it (a darker face than every seed must not extrapolate the seeds' foundation)
TEMPLATE_CHANNELS = 11


def _cell_moments(cells: int, idx: np.ndarray, before, after, baseline=None) -> np.ndarray:
    """(cells, 11) per-cell sums over one pair's pixels (``idx``: each pixel's cell, -1 outside the frame): n,
    sum x (3), sum |x|^2, sum y (3), sum x.y, sum |y|^2 and, with ``baseline`` (H, W, 3, a prediction of the
    change), sum |y - baseline|^2 (x: photo, y: change, in 0..1)."""
    idx = idx.ravel()
    keep = idx >= 0
    i = idx[keep]
    x = before.reshape(-1, 3)[keep].astype(np.float64) / 255.0
    y = (after.astype(np.float64) - before).reshape(-1, 3)[keep] / 255.0
    base = np.zeros(len(i)) if baseline is None else ((y - baseline.reshape(-1, 3)[keep]) ** 2).sum(1)
    cols = [np.ones(len(i)), *x.T, (x ** 2).sum(1), *y.T, (x * y).sum(1), (y ** 2).sum(1), base]
    return np.stack([np.bincount(i, c, minlength=cells) for c in cols], axis=1)


def _cell_range(shape, cells_per_seed, befores) -> tuple[np.ndarray, np.ndarray]:
    """(cells, 3) low and high of the photo (0..1) over the seeds' pixels in each cell and the cells within two of
    it (the moments' blur reaches about that far); 0..1 where none has pixels."""
    lo = np.full((shape[0] * shape[1], 3), np.inf)
    hi = np.full((shape[0] * shape[1], 3), -np.inf)
    for idx, b in zip(cells_per_seed, befores):
        idx = idx.ravel()
        keep = idx >= 0
        x = b.reshape(-1, 3)[keep].astype(np.float64) / 255.0
        np.minimum.at(lo, idx[keep], x)
        np.maximum.at(hi, idx[keep], x)
    grid = lambda a, fill: np.where(np.isfinite(a), a, fill).reshape(*shape, 3).astype(np.float32)  # noqa: E731
    kernel = np.ones((5, 5), np.uint8)
    near_lo = cv2.erode(grid(lo, 2.0), kernel).reshape(-1, 3)
    near_hi = cv2.dilate(grid(hi, -1.0), kernel).reshape(-1, 3)
    lo, hi = near_lo.astype(np.float64), near_hi.astype(np.float64)
    none = lo[:, 0] > 1.0
    lo[none], hi[none] = 0.0, 1.0
    return lo, hi


def _solve_cells(mom: np.ndarray, shape, smooth: float, ridge: float) -> tuple[np.ndarray, np.ndarray]:
    """(cells, 4) = k (RGB), a of ``change = k - a * photo`` from summed moments blurred over ``smooth`` cells,
    and (cells,) bool: the cells with (blurred) pixels; zero elsewhere."""
    if smooth > 0:
        grid = mom[:, :9].reshape(*shape, 9).astype(np.float32)
        mom = np.stack([cv2.GaussianBlur(grid[..., j], (0, 0), smooth, borderType=cv2.BORDER_CONSTANT)
                        for j in range(9)], -1).reshape(-1, 9).astype(np.float64)
    out = np.zeros((len(mom), 4))
    has = mom[:, 0] > 1e-3
    n, sx, sxx, sy, sxy = (mom[has, 0], mom[has, 1:4], mom[has, 4], mom[has, 5:8], mom[has, 8])
    lhs = np.zeros((len(n), 4, 4))
    lhs[:, :3, :3] = n[:, None, None] * np.eye(3)
    lhs[:, :3, 3] = lhs[:, 3, :3] = -sx
    lhs[:, 3, 3] = sxx
    lhs += ridge * n[:, None, None] * np.eye(4)
    rhs = np.concatenate([sy, -sxy[:, None]], axis=1)
    out[has] = np.linalg.solve(lhs, rhs[..., None])[..., 0]
    return out, has


def _cell_error(theta: np.ndarray, mom: np.ndarray) -> np.ndarray:
    """Per cell sum over the pixels (and channels) of |y - (k - a x)|^2, from one pair's moments."""
    k, a = theta[:, :3], theta[:, 3]
    n, sx, sxx, sy, sxy, syy = mom[:, 0], mom[:, 1:4], mom[:, 4], mom[:, 5:8], mom[:, 8], mom[:, 9]
    return (syy - 2 * (k * sy).sum(1) + 2 * a * sxy + n * (k ** 2).sum(1) - 2 * a * (k * sx).sum(1)
            + a ** 2 * sxx)


def fit_template(frame: TemplateFrame | str, befores, afters, labels, smooth: float = 0.5,
                 ridge: float = 1e-3, baselines=None) -> np.ndarray:
    """A feature template (``frame.shape + (11,)``, float32; the channels in TEMPLATE_CHANNELS' comment) from seed
    pairs (uint8 before/after, label maps).

    Per cell of the frame the change is a blend toward a colour, ``change = k - a * photo`` (RGB in 0..1; a
    product laid at opacity ``a`` in colour ``c`` gives ``k = a c``), least squares over every seed pixel in the
    cell (both eyes, both halves of the lips share their frame). The moments are blurred over ``smooth`` cells
    (a liner is a few cells thick: more blurs it) and ``ridge`` (relative to the cell's pixel count) shrinks
    toward no change. Channel 4 is the support: 1 where the (blurred) seeds had pixels, else 0 (the region prior
    applies there).

    ``baselines`` (one (H, W, 3) change per seed: what the region prior fit WITHOUT that seed predicts on it,
    see :func:`fit_templates`): a cell keeps its support only where the template fit without a seed predicts
    that seed better than the baseline does, summed over the seeds (leave one seed out). Where the seeds'
    change there is only what the region prior already says (foundation on the skin around the eyes), the
    photo slope fit on a few skin tones extrapolates: on a darker face than the seeds it painted a lighter
    box around the eyes (glamorous, the amplified faces of stop 21's first run); such cells now fall back to
    the region prior. The support is then blurred over one cell, and faded out toward the grid's edge
    (``frame.fade``), so the two priors meet without a seam. The photo's range over the seeds' pixels in each
    cell and its neighbours (5 x 5 cells) is stored with the cell in a frame that clamps (the eyes' skin): a
    photo outside it is clamped to it, so a face darker than every seed gets the darkest seed's change, not a
    line extrapolated from lighter ones. The lips do not clamp: clamped, the astronaut's pale lips got the
    change of the seeds' redder lips and came out paler (natural's teacher, lips recovery on her -0.17).

    Prior alone (no diffusion) on 40 held-out truth faces, stop 21, natural / glamorous / smokey_eyes / red_lip /
    korean, without the leave-one-out check: eye zone 0.39 / 0.65 / 0.75 / 0.49 / 0.51 with the eye template,
    0.02 / -0.03 / -0.02 / -0.03 / 0.14 with the region mean; lips 0.74 / 0.66 / 0.74 / 0.79 / 0.76 with the lip
    template, 0.62 / 0.38 / 0.65 / 0.57 / 0.57 with the colour map. Eye cells of 0.05 eye widths: natural 0.36;
    smoothing 1.5 cells: 0.15.
    """
    frame = TEMPLATE_FRAMES[frame] if isinstance(frame, str) else frame
    shape = frame.shape
    cells = [frame.cells(lab) for lab in labels]
    per_seed = [_cell_moments(shape[0] * shape[1], idx, b, a, None if baselines is None else baselines[k])
                for k, (idx, b, a) in enumerate(zip(cells, befores, afters))]
    total = np.sum(per_seed, axis=0) if per_seed else np.zeros((shape[0] * shape[1], 11))
    theta, has = _solve_cells(total, shape, smooth, ridge)
    support = has.astype(np.float32)
    if baselines is not None and len(per_seed) >= 3:
        err_tpl = sum(_cell_error(_solve_cells(total - m, shape, smooth, ridge)[0], m) for m in per_seed)
        keep = (has & (err_tpl < total[:, 10])).astype(np.float32)
        support = cv2.GaussianBlur(keep.reshape(shape), (0, 0), 1.0, borderType=cv2.BORDER_CONSTANT).ravel() * has
    support = support * frame.taper()
    out = np.zeros((len(theta), TEMPLATE_CHANNELS), np.float32)
    out[:, :4] = theta
    out[:, 4] = support
    if frame.clamp:
        out[:, 5:8], out[:, 8:11] = _cell_range(shape, cells, befores)
    else:
        out[:, 8:11] = 1.0
    return out.reshape(*shape, TEMPLATE_CHANNELS)


def fit_templates(befores, afters, labels, names=tuple(TEMPLATE_FRAMES), radius: float = 2.0,
                  held_out: bool = True, models: bool = False) -> dict[str, np.ndarray]:
    """:func:`fit_template` for each named frame. ``held_out``: each cell keeps the template only where it
    predicts a left-out seed better than the region prior fit without that seed (``fit_region_prior`` with
    ``radius``; needs 3 seeds or more); ``models``: that prior's skin and brows are the region models
    (:func:`teacher.region_models.fit_region_models`, also fit without the seed) where they fit."""
    unknown = sorted(set(names) - set(TEMPLATE_FRAMES))
    if unknown:
        raise TinyBeautyError(f"templates: unknown frame {unknown[0]!r} (known: {', '.join(TEMPLATE_FRAMES)})")
    baselines = None
    if held_out and len(befores) >= 3 and names:
        baselines = []
        moments = _region_moments(befores, afters, labels, radius)
        model_moments = region_model_moments(befores, afters, labels) if models else None
        for k, (b, lab) in enumerate(zip(befores, labels)):
            rest = np.arange(len(befores)) != k
            const, colour, _ = _prior_from_moments(*(m[rest] for m in moments), True, PRIOR_RIDGE)
            beta = models_from_moments(model_moments, rest) if models else None
            photo = b.astype(np.float32) / 255.0
            const, colour = modelled_prior(const, colour, beta)
            baselines.append(prior_image(region_stack(lab, None, radius), photo, const, colour,
                                         prior_field(photo, lab, None, beta)))
    return {n: fit_template(n, befores, afters, labels, baselines=baselines) for n in names}


def modelled_prior(region_prior, region_colour, models) -> tuple[np.ndarray, np.ndarray | None]:
    """The region prior (constants, colour part) with the rows of the regions a region model paints set to 0
    (the model has its own constant)."""
    const = np.array(region_prior, np.float32)
    colour = None if region_colour is None else np.array(region_colour, np.float32)
    for r in modelled(models):
        const[MAKEUP_REGIONS.index(r)] = 0.0
        if colour is not None:
            colour[MAKEUP_REGIONS.index(r)] = 0.0
    return const, colour


def prior_field(photo: np.ndarray, labels: np.ndarray, templates: dict | None, models=None) -> np.ndarray | None:
    """What the prior lays on one face beyond one colour per region: (14, H, W) float32, the templates' 11
    channels (:func:`template_field`) and the region models' change (RGB,
    :func:`teacher.region_models.region_model_change`), at the photo's resolution (photo (H, W, 3) in 0..1).
    None without either."""
    if not templates and models is None:
        return None
    from makeup.render import FaceGeometry

    geometry = FaceGeometry.from_labels(labels)
    tpl = template_field(labels, templates, geometry=geometry)
    if tpl is None and models is None:
        return None
    if tpl is None:
        tpl = np.zeros((TEMPLATE_CHANNELS,) + np.asarray(labels).shape, np.float32)
        tpl[8:11] = 1.0
    base = np.zeros_like(tpl[:3]) if models is None else \
        region_model_change(photo, labels, models, geometry).transpose(2, 0, 1)
    return np.ascontiguousarray(np.concatenate([tpl, base]), dtype=np.float32)


def template_field(labels: np.ndarray, templates: dict | None, size: int | None = None,
                   geometry=None) -> np.ndarray | None:
    """The templates laid on one face: (11, S, S) float32 = [s k (RGB), s a, s, low (RGB), high (RGB)] with s the
    support, at the label map's resolution, area-resized to ``size``; the prior there is
    ``(1 - s) * region prior + s k - s a * clamp(photo, low, high)``.
    The frames cover disjoint labels (skin around the eyes, lips). None without a template with support."""
    live = {n: np.asarray(t, np.float32).reshape(-1, TEMPLATE_CHANNELS) for n, t in (templates or {}).items()
            if t is not None}
    live = {n: t for n, t in live.items() if t[:, 4].any()}
    if not live:
        return None
    from makeup.render import FaceGeometry

    geometry = geometry or FaceGeometry.from_labels(labels)
    field = np.zeros(np.asarray(labels).shape + (TEMPLATE_CHANNELS,), np.float32)
    field[..., 8:11] = 1.0  # no clamp where no template applies
    for name, tpl in live.items():
        idx = TEMPLATE_FRAMES[name].cells(labels, geometry)
        inside = idx >= 0
        vals = tpl[idx[inside]]
        field[inside] = np.concatenate([vals[:, :4] * vals[:, 4:5], vals[:, 4:]], axis=1)
    field = np.ascontiguousarray(field.transpose(2, 0, 1), dtype=np.float32)
    return field if size is None else _resize_field(field, size)


def _resize_field(field: np.ndarray, size: int) -> np.ndarray:
    """A (C, S, S) field area-resized to (C, size, size)."""
    if size == field.shape[-1]:
        return field
    out = cv2.resize(np.ascontiguousarray(field.transpose(1, 2, 0)), (size, size), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(out.transpose(2, 0, 1), dtype=np.float32)


def resize_image(img: np.ndarray, size: int) -> np.ndarray:
    """float (H, W, C) -> (size, size, C); area when shrinking, bicubic when growing (why: no aliasing)."""
    if img.shape[0] == size and img.shape[1] == size:
        return img
    interp = cv2.INTER_AREA if size < img.shape[0] else cv2.INTER_CUBIC
    out = cv2.resize(img, (size, size), interpolation=interp)
    return out if out.ndim == 3 else out[..., None]


class FineGrainedMakeupModule(nn.Module):
    """FGMM: one learnable weight per makeup region (initialised at 1, as in the seed document)."""

    def __init__(self):
        super().__init__()
        self.region_weights = nn.Parameter(torch.ones(len(MAKEUP_REGIONS)))

    def gate(self, masks: torch.Tensor) -> torch.Tensor:
        """(N, 4, H, W) soft masks -> (N, 1, H, W) gate = sum_r w_r m_r (zero where every mask is zero)."""
        return (masks * self.region_weights.view(1, -1, 1, 1)).sum(dim=1, keepdim=True)

    def loss_weights(self, masks: torch.Tensor) -> torch.Tensor:
        """(N, 1, H, W) per-pixel loss weight: 1 everywhere plus |w_r| inside region r (detached: the weights
        learn through the gate, the loss only reads them)."""
        w = self.region_weights.detach().abs().view(1, -1, 1, 1)
        return 1.0 + (masks * w).sum(dim=1, keepdim=True)

    def forward(self, residual: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        return residual * self.gate(masks)


class ResidualHead(nn.Module):
    """RDM + FGMM parameters that turn a predicted (scaled) residual into an after image."""

    def __init__(self, residual_scale: float = 1.0, region_prior=None, channels: int = 3, region_colour=None):
        super().__init__()
        self.fgmm = FineGrainedMakeupModule()
        self.alpha = nn.Parameter(torch.tensor(1.0))  # learnable residual weight (seed doc RDM)
        self.register_buffer("residual_scale", torch.tensor(float(residual_scale)))
        # channels: 3 for an image-space residual, the latent channels for a latent-space one (sd15-lora)
        r = len(MAKEUP_REGIONS)
        prior = torch.zeros(r, channels) if region_prior is None else torch.tensor(region_prior)
        self.register_buffer("region_prior", prior.float().reshape(r, channels))
        # the prior's colour part: residual += source @ region_colour[r] in region r (fit_region_prior)
        colour = torch.zeros(r, channels, channels) if region_colour is None else torch.tensor(region_colour)
        self.register_buffer("region_colour", colour.float().reshape(r, channels, channels))
        # the feature templates (fit_template; image-space teachers): all zero = none, the region prior only
        for name, frame in TEMPLATE_FRAMES.items():
            self.register_buffer(f"template_{name}", torch.zeros(*frame.shape, TEMPLATE_CHANNELS))
        # the skin's and brows' models (teacher.region_models; image-space teachers): all zero = none
        self.register_buffer("region_models", torch.zeros(len(MODELLED_REGIONS), len(MODEL_FEATURES), 3))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # A teacher saved before the colour part, the templates or the region models existed has none: they load
        # as zero.
        for key in ("region_colour", *(f"template_{n}" for n in TEMPLATE_FRAMES), "region_models"):
            state_dict.setdefault(prefix + key, torch.zeros_like(getattr(self, key)))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def set_statistics(self, residual_scale: float, region_prior, region_colour=None, templates=None,
                       models=None) -> None:
        """Seed statistics from ``prepare`` (the same values the constructor would have stored)."""
        with torch.no_grad():
            self.residual_scale.fill_(float(residual_scale))
            self.region_prior.copy_(torch.tensor(region_prior).float().reshape(self.region_prior.shape))
            colour = torch.zeros_like(self.region_colour) if region_colour is None else torch.tensor(region_colour)
            self.region_colour.copy_(colour.float().reshape(self.region_colour.shape))
            for name in TEMPLATE_FRAMES:
                buf = getattr(self, f"template_{name}")
                tpl = (templates or {}).get(name)
                buf.copy_(torch.zeros_like(buf) if tpl is None else torch.as_tensor(tpl).float().reshape(buf.shape))
            self.region_models.copy_(torch.zeros_like(self.region_models) if models is None
                                     else torch.as_tensor(np.asarray(models)).float().reshape(self.region_models.shape))

    def templates(self) -> dict[str, np.ndarray] | None:
        """The feature templates with support, as numpy; None when this head has none."""
        out = {n: getattr(self, f"template_{n}").detach().float().cpu().numpy() for n in TEMPLATE_FRAMES}
        out = {n: t for n, t in out.items() if t[..., 4].any()}
        return out or None

    def models(self) -> np.ndarray | None:
        """The region models (regions, 5, 3) as numpy; None when this head has none."""
        beta = self.region_models.detach().float().cpu().numpy()
        return beta if beta.any() else None

    def prior_map(self, masks: torch.Tensor, source: torch.Tensor, field: torch.Tensor | None = None) -> torch.Tensor:
        """(N, 4, h, w) masks, (N, C, h, w) source -> (N, C, h, w) residual input: in each region the seeds'
        mean residual plus its colour part (``fit_region_prior``) plus the region models' change (channels 11-13 of
        the ``field`` (N, 14, h, w) of :func:`prior_field`); where the templates have support s, ``(1 - s)`` of
        that plus ``s k - s a * source`` (the source clamped to the range the seeds showed there)."""
        prior = (torch.einsum("nrhw,rc->nchw", masks, self.region_prior)
                 + torch.einsum("nrhw,nkhw,rkc->nchw", masks, source, self.region_colour))
        if field is None:
            return prior
        prior = prior + field[:, TEMPLATE_CHANNELS:]
        clamped = torch.minimum(torch.maximum(source, field[:, 5:8]), field[:, 8:11])
        return (1 - field[:, 4:5]) * prior + field[:, :3] - field[:, 3:4] * clamped

    def to_diffusion(self, residual: torch.Tensor, masks: torch.Tensor, source: torch.Tensor,
                     field: torch.Tensor | None = None) -> torch.Tensor:
        """Image-space residual -> the diffusion variable (the scaled correction to ``alpha`` x the prior).

        ``alpha`` enters detached: the target and :meth:`residual` use the same alpha, so a learned alpha != 1
        changes what the network is asked to correct, never the after image it reconstructs."""
        return (residual - self.alpha.detach() * self.prior_map(masks, source, field)) * self.residual_scale

    def residual(self, x0: torch.Tensor, masks: torch.Tensor, source: torch.Tensor,
                 field: torch.Tensor | None = None) -> torch.Tensor:
        """Diffusion-space x0 (N, 3, h, w) -> gated image-space residual at the same resolution."""
        return self.fgmm(x0 / self.residual_scale + self.alpha * self.prior_map(masks, source, field), masks)

    def compose(self, source: torch.Tensor, x0: torch.Tensor, masks: torch.Tensor,
                field: torch.Tensor | None = None) -> torch.Tensor:
        """before + gated residual, same resolution, clamped to [0, 1]."""
        return (source + self.residual(x0, masks, source, field)).clamp(0, 1)


@dataclass
class Condition:
    """What a backend needs for one face at the working resolution (torch, no batch dim)."""

    source: torch.Tensor  # (3, s, s) in [0, 1]
    masks: torch.Tensor  # (4, s, s) soft region masks
    field: torch.Tensor | None = None  # (14, s, s) the templates and region models on this face (prior_field)


def make_condition(image: np.ndarray, labels: np.ndarray, size: int, radius: float = 2.0,
                   templates=None, models=None, field: np.ndarray | None = None) -> Condition:
    """``field``: the full-resolution prior field already laid on this face (:func:`prior_field`); else the
    ``templates`` and ``models`` are laid here."""
    photo = image.astype(np.float32) / 255.0
    src = resize_image(photo, size)
    full = prior_field(photo, labels, templates, models) if field is None else field
    field = None if full is None else _resize_field(full, size)
    return Condition(torch.from_numpy(np.ascontiguousarray(src.transpose(2, 0, 1))),
                     torch.from_numpy(region_stack(labels, size, radius)),
                     None if field is None else torch.from_numpy(field))


def _region_moments(befores, afters, labels, radius: float):
    """Per pair and region, the soft-mask weighted normal equations of residual ~ [photo, 1] @ W:
    X^T w X (4, 4), X^T w y (4, 3) and y^T w y, photo and residual in 0..1. Shapes (pairs, 4 regions, ...)."""
    xtx, xty, yty = [], [], []
    for b, a, lab in zip(befores, afters, labels):
        m = region_stack(lab, None, radius).reshape(len(MAKEUP_REGIONS), -1)
        x = b.astype(np.float64).reshape(-1, 3) / 255.0
        y = (a.astype(np.float64) - b).reshape(-1, 3) / 255.0
        X = np.concatenate([x, np.ones((len(x), 1))], axis=1)
        xtx.append(np.einsum("rp,pi,pj->rij", m, X, X))
        xty.append(np.einsum("rp,pi,pj->rij", m, X, y))
        yty.append(m @ (y ** 2).sum(axis=1))
    return np.stack(xtx), np.stack(xty), np.stack(yty)


def _solve_prior(xtx: np.ndarray, xty: np.ndarray, colour: bool, ridge: float) -> np.ndarray:
    """(4, 4, 3) affine prior per region from summed moments: the constant (mean) model when not ``colour``."""
    out = np.zeros((xtx.shape[0], 4, 3))
    for r in range(xtx.shape[0]):
        if not colour:
            out[r, 3] = xty[r, 3] / max(xtx[r, 3, 3], 1e-6)
            continue
        reg = np.diag([ridge * max(np.trace(xtx[r, :3, :3]) / 3, 1e-9)] * 3 + [0.0])
        out[r] = np.linalg.lstsq(xtx[r] + reg, xty[r], rcond=None)[0]
    return out


def _held_out_error(xtx: np.ndarray, xty: np.ndarray, W: np.ndarray, y2: np.ndarray) -> np.ndarray:
    """Weighted squared residual error per region of the affine model ``W`` on one pair's moments."""
    return np.einsum("rij,ric,rjc->r", xtx, W, W) - 2 * np.einsum("ric,ric->r", xty, W) + y2


COLOUR_REGIONS = (LIPS, BROWS)  # one pigment covers the whole region: candidates for a colour map


def fit_region_prior(befores, afters, labels, radius: float = 2.0, colour: bool = True,
                     ridge: float = PRIOR_RIDGE) -> tuple[np.ndarray, np.ndarray, list[bool]]:
    """The region prior from seed pairs: per region either a constant residual (the region's mean change) or a
    colour map ``residual = photo @ A_r + b_r`` (photo and residual RGB in 0..1).

    A pigment that covers (lipstick, brow tint) moves each pixel toward its own colour, so the change depends on
    the photo: a pale lip gets redder, a red lip stays; a constant shift instead paints every lip with the seeds'
    mean change (on skimage's astronaut, whose lips are nearly her skin colour, natural's constant lip prior made
    them paler). Lips and brows (:data:`COLOUR_REGIONS`) take the colour map where the seeds say it predicts a
    held-out seed better than the constant (leave-one-pair-out squared error, soft-mask weighted). Eyes and
    skin keep the constant: several products share them (liner and lid shadow lie on "skin" beside foundation
    and blush), and a colour map fit across them paints the shadow's tint by skin colour (on the astronaut,
    glamorous skin recovery -0.08 with the constant, -0.61 with a colour map). ``ridge`` shrinks A toward 0
    relative to the photo's spread.

    Returns (constant part b (4, 3), colour matrices A (4, 3, 3), which regions use a colour map).
    """
    return _prior_from_moments(*_region_moments(befores, afters, labels, radius), colour, ridge)


def _prior_from_moments(xtx: np.ndarray, xty: np.ndarray, y2: np.ndarray, colour: bool, ridge: float):
    """:func:`fit_region_prior` from the per-pair moments of :func:`_region_moments`."""
    n = len(xtx)
    use = [False] * len(MAKEUP_REGIONS)
    if colour and n >= 3:
        err = np.zeros((2, len(MAKEUP_REGIONS)))
        for k in range(n):
            rest = np.arange(n) != k
            for j, col in enumerate((False, True)):
                W = _solve_prior(xtx[rest].sum(0), xty[rest].sum(0), col, ridge)
                err[j] += _held_out_error(xtx[k], xty[k], W, y2[k])
        use = [MAKEUP_REGIONS[r] in COLOUR_REGIONS and bool(err[1, r] < err[0, r])
               for r in range(len(MAKEUP_REGIONS))]
    const, affine = (_solve_prior(xtx.sum(0), xty.sum(0), c, ridge) for c in (False, True))
    W = np.where(np.array(use)[:, None, None], affine, const)
    return W[:, 3].astype(np.float32), W[:, :3].astype(np.float32), use


def paste_residual(image: np.ndarray, labels: np.ndarray, residual_low: np.ndarray, fgmm_weights: np.ndarray,
                   alpha: float, radius: float = 2.0, upsample=None, region_prior=None, refiner=None,
                   region_colour=None, templates=None, models=None) -> np.ndarray:
    """Full-resolution after image (uint8): upsample the UNGATED image-space correction (h, w, 3), add
    ``alpha`` x the region prior painted with full-resolution masks, let the detail refiner (if any) add the
    full-resolution detail, gate with the FGMM masks (zero outside the regions) and add it to the untouched
    source.

    ``upsample(residual_low, size) -> (size, size, 3)`` replaces the bicubic upsampling (e.g. an SR model);
    ``refiner``: a :class:`teacher.refine.Refiner` (``refine(photo, masks, residual) -> residual``);
    ``region_colour`` (4, 3, 3): the prior's colour part, applied to the full-resolution photo;
    ``templates``: the prior's feature templates (:func:`fit_templates`), laid on the full-resolution labels;
    ``models``: the skin's and brows' models (:func:`teacher.region_models.fit_region_models`), on the
    full-resolution photo (its teacher's region prior then has 0 for those regions: :func:`modelled_prior`).
    """
    size = image.shape[0]
    up = upsample(residual_low, size) if upsample else resize_image(residual_low.astype(np.float32), size)
    masks = region_stack(labels, None, radius)
    photo = image.astype(np.float32) / 255.0
    if region_prior is not None:
        up = up + float(alpha) * prior_image(masks, photo, region_prior, region_colour,
                                             prior_field(photo, labels, templates, models))
    if refiner is not None:
        up = refiner.refine(photo, masks, up)
    gate = np.tensordot(np.asarray(fgmm_weights, np.float32), masks, axes=1)[..., None]
    out = photo + gate * up
    # Rounding the float source gives back the exact uint8 wherever the gate is zero.
    return np.clip(np.round(out * 255.0), 0, 255).astype(np.uint8)


def prior_detail(photo: np.ndarray, labels: np.ndarray, resolution: int, radius: float, region_prior,
                 region_colour=None, templates=None, models=None) -> np.ndarray:
    """What the paste's full-resolution prior adds over the prior a teacher at ``resolution`` holds: the prior
    painted on the full-resolution photo and labels minus the working-resolution prior upsampled (the sharp
    edges of the regions, the liner of the eye template). photo (S, S, 3) float in [0, 1] -> (S, S, 3)."""
    size = photo.shape[0]
    field = prior_field(photo, labels, templates, models)
    full = prior_image(region_stack(labels, None, radius), photo, region_prior, region_colour, field)
    low_prior = prior_image(region_stack(labels, resolution, radius), resize_image(photo, resolution), region_prior,
                            region_colour, None if field is None else _resize_field(field, resolution))
    return full - resize_image(low_prior, size)


def prior_image(masks: np.ndarray, photo: np.ndarray, region_prior, region_colour=None,
                field: np.ndarray | None = None) -> np.ndarray:
    """numpy twin of :meth:`ResidualHead.prior_map` for one image: masks (4, H, W), photo (H, W, 3) in 0..1,
    the ``field`` (14, H, W) of :func:`prior_field` or None -> (H, W, 3) prior residual."""
    out = np.einsum("rhw,rc->hwc", masks, np.asarray(region_prior, np.float32))
    if region_colour is not None:
        out = out + np.einsum("rhw,hwk,rkc->hwc", masks, photo, np.asarray(region_colour, np.float32))
    if field is not None:
        f = field.transpose(1, 2, 0)
        out = out + f[..., TEMPLATE_CHANNELS:]
        clamped = np.minimum(np.maximum(photo, f[..., 5:8]), f[..., 8:11])
        out = (1 - f[..., 4:5]) * out + f[..., :3] - f[..., 3:4] * clamped
    return out


def estimate_residual_scale(residuals: list[np.ndarray], target_std: float = 0.5) -> float:
    """Scale that gives the seed residuals inside the regions a spread of ``target_std`` (why: diffusion
    noise has unit variance; a faint residual would be drowned and sampled with a poor signal-to-noise)."""
    vals = np.concatenate([r.ravel() for r in residuals]) if residuals else np.zeros(1)
    std = float(np.sqrt(np.mean(vals.astype(np.float64) ** 2)))
    return float(np.clip(target_std / max(std, 1e-4), 1.0, 100.0)) if math.isfinite(std) else 1.0
