"""The look prior: what a look does to a face that a few numbers and tables can say, fit on before/after pairs
and painted on any face from its region labels. The teacher adds it to its diffusion (``teacher.formulation``);
a student with ``prior_input`` reads it as three input channels and adds it to its own output
(``student.model``), so both learn only the face-dependent correction to it.

* Region prior: per region (eyes, lips, skin, brows) the pairs' mean change, or a colour map of the photo where
  it predicts held-out pairs better (:func:`fit_region_prior`).
* Feature templates: around the eyes and on the lips the prior is not one colour per region but a map in the
  feature's own frame (:func:`makeup.render.eye_frame`: along and above/below the lash lines, in eye widths;
  :func:`makeup.render.lip_frame`: in the lips' box), fit per cell as a blend toward a colour,
  ``change = k - a * photo`` (:func:`fit_template`). Liner and lid shadow sit at the same place relative to
  every eye, a lipstick's edge and gloss at the same place on every mouth, so the template carries them onto a
  new face sharply, at full resolution, where a per-region prior smeared them over the whole region.
* The eyes' template with the lid in lid heights ("eyes_lid", the default since stop 27; "eyes" is the frame in
  eye widths throughout, kept for priors saved with it): over the upper lash line, past a liner's band, the
  height counts in lid heights (:func:`makeup.render.eye_frame` ``lid_from``), so lid colour fills the same share
  of a short lid as of a tall one.
* The lips' template in CIELAB ("lips_lab", the default since stop 27; "lips" is the RGB blend above, kept for
  priors saved with it): per cell and channel a line in the pixel and the lips' own mean, so a lipstick moves
  each mouth's lightness by what it lacks and its chroma toward the colour.
* Region models: the skin's and brows' change as a function of the photo (foundation, brow tint;
  :mod:`makeup.region_models`).
* The cheeks' template: blush in the cheeks' own frame (:func:`makeup.render.cheek_frame`, around the centre of
  the cheek map the student reads), fit on what the region prior and models leave and added over them (blush
  lies over foundation), where the eye and lip templates replace the region prior in their cells; "cheeks_lab"
  (the default since stop 34; "cheeks" is its RGB blend, kept for priors saved with it) is that frame in CIELAB
  as the lips' template.

:data:`DEFAULT_TEMPLATES` (eyes_band10, eyes_band15, lips_lab, cheeks_lab) is what the student's and the tiny-ddpm
teacher's priors fit, keeping one of the two eye bands (:data:`ALTERNATIVE_TEMPLATES`); the eyes' "eyes_liner" (stops
29-33) is "eyes_lid" in the liner's own frame with finer rows, "eyes_lab" (stops 34-35) is that grid in CIELAB as
the lips' template, added over the skin's model, its slopes clipped to a blend's and the pixel's term clamped to the
seeds' range, and "eyes_band10" / "eyes_band15" (since stop 36) are eyes_lab with the lid's rows in pure lid
heights past a liner's band of 0.10 / 0.15 eye widths and rows for the skin between the lash lines beside the
corners (see ``_frames``).

:class:`LookPrior` holds the fitted parts and paints them (:meth:`LookPrior.paint`).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable

import cv2
import numpy as np

from makeup.errors import TinyBeautyError
from makeup.regions import BROWS, EYES, LIPS, SKIN, feather

from .region_models import expand_models, fit_region_models, from_lab, modelled, models_from_moments, \
    region_model_change, region_model_moments, to_lab


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
    additive: bool = False  # the template adds to the region prior and models where it has support (blush over
    # foundation) instead of replacing them (liner, lipstick): fit on the change the prior leaves
    lab: bool = False  # per cell and CIELAB channel, change = k + a (pixel - mean) + b (mean - LIP_TONE), the mean
    # over the face's pixels in the frame (how much colour the feature has already): see fit_template
    trusted: tuple[float, float] | None = None  # rows of v (low, high) whose cells keep their support without the
    # held-out check (the liner's band: see fit_template)

    @property
    def channels(self) -> int:
        """A cell's values: :data:`TEMPLATE_CHANNELS`, and a lab frame that clamps its terms also their ranges
        (:data:`LAB_RANGE_CHANNELS`)."""
        return TEMPLATE_CHANNELS + (LAB_RANGE_CHANNELS if self.lab and self.clamp else 0)

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
    eyes = TemplateFrame("eyes", eye_frame, (-1.3, 1.9), (-0.8, 1.6), (0.025, 0.025), fade=0.3, clamp=True)

    # eyes_lid: the eye grid with v over the upper lash line in lid heights past EYE_LID_FROM eye widths (the liner's
    # band stays in eye widths): lid colour lies in a share of the lid. The prior fit on the 5 seeds, 40 new faces
    # vs the renderer (stop 27), natural / glamorous / smokey_eyes / red_lip / korean: eye zone 0.54 / 0.67 / 0.77 /
    # 0.60 / 0.64 -> 0.57 / 0.70 / 0.82 / 0.59 / 0.67, gain +0.2 / +0.1 / +1.7 / +0.0 / +0.4 dB; on the astronaut,
    # whose lids are short (0.36-0.41 eye widths), visible spill glamorous 0.93 -> 0.74 %, smokey 0.98 -> 0.81 %.
    # Past 0 eye widths (the whole lid in lid heights): smokey the same, glamorous' winged liner worse (-1.0 dB)
    def eye_lid_coords(labels, geometry=None):
        return eye_frame(labels, geometry, lid_from=EYE_LID_FROM)

    def cheek_coords(labels, geometry=None):
        # the cheek frame takes the skin the eye grid does not hold at full support: below its faded lower rows
        # (there the cheek template, laid after the eyes', replaces the eye template) and beyond its sides
        from makeup.render import cheek_frame

        u, v, valid = cheek_frame(labels, geometry)
        eu, ev, evalid = eye_frame(labels, geometry)
        core = evalid & (ev >= eyes.v_range[0] + eyes.fade) & (ev < eyes.v_range[1]) \
            & (eu >= eyes.u_range[0]) & (eu < eyes.u_range[1])
        return u, v, valid & ~core

    # cheeks: the skin around each cheek's centre (the cheek map's), in eye widths (blush, contour), added over the
    # region prior and the skin's model. The student's prior and, since stop 27, the tiny-ddpm teacher's fit it (its
    # prior fit on the 5 seeds, 40 new faces vs the renderer: glamorous cheeks 0.28 -> 0.64, natural 0.36 -> 0.74; the
    # teachers of stop 22 had learned 0.60 / 0.50 with their diffusion). Measured on stop 22's amplified pairs, the
    # prior alone fit on 64 of them as the student fits it, 35 val pairs vs the teacher: glamorous skin / cheeks 0.65 /
    # 0.33 -> 0.75 / 0.77 (+14.7 -> +15.9 dB), korean 0.68 / 0.36 -> 0.80 / 0.85 (+11.8 -> +15.8 dB). Replacing the
    # skin's model in its cells (as the eye template does) instead: glamorous cheeks 0.65, and a student reading that
    # prior learned less (val cheeks at epoch 15: 0.66 vs 0.74 without the template; natural, korean alike): it had to
    # learn the foundation's smoothing there. The eye grid reaching 2.0 eye widths down: cheeks 0.60; cells of 0.05: the
    # same.
    # lips_lab: the lips' box as "lips", each cell's change a line per CIELAB channel in the pixel and the lips' own
    # mean (a lipstick moves lightness by what the lips lack, chroma toward its colour). The RGB blend ("lips", kept
    # for priors saved with it) cannot say the first: fit on 5 seeds, 40 new faces vs the renderer, the lips alone
    # (stop 27): glamorous 0.66 -> 0.89, natural 0.74 -> 0.91; without the mean, in CIELAB: 0.66, 0.75
    # eyes_liner: eyes_lid in the liner's own frame (makeup.render.eye_frame liner=True: the lash line it is drawn
    # on, the place between the corners), rows of 0.0125 eye widths, and the liner's band (0..0.1 eye widths over
    # the lash line) trusted (fit_template). Natural's liner alone, its alpha replaced by the frame's cell means over
    # 20 faces (all else exact), eye zone on 20 others: 0.72 in eyes_lid, 0.79 on the liner's line and place, 0.85
    # with the finer rows. The prior alone fit on the 5 demo seeds, 40 new faces vs the renderer (stop 29),
    # natural / glamorous / smokey_eyes / red_lip / korean: eye zone 0.58 / 0.75 / 0.86 / 0.64 / 0.64 -> 0.67 /
    # 0.78 / 0.85 / 0.77 / 0.70, gain +8.8 / +11.2 / +15.7 / +10.0 / +10.2 -> +11.1 / +12.5 / +15.9 / +12.2 / +11.7
    # dB, the other regions within 0.01; on the astronaut eye zone 0.38 / 0.66 / 0.81 / 0.65 / 0.52 -> 0.51 / 0.73 /
    # 0.82 / 0.79 / 0.60, visible spill the same or lower (glamorous 0.50 -> 0.41 %, smokey_eyes 0.59 -> 0.39 %).
    def eye_liner_coords(labels, geometry=None):
        return eye_frame(labels, geometry, lid_from=EYE_LID_FROM, liner=True)

    liner = TemplateFrame("eyes_liner", eye_liner_coords, eyes.u_range, eyes.v_range, (0.025, 0.0125), fade=eyes.fade,
                          clamp=True, trusted=(0.0, 0.1))
    # eyes_lab: eyes_liner's cells in CIELAB, added over the skin's model (the renderer lays foundation first, then lid
    # colour and liner over it), each cell's change per channel k + a d + b m as lips_lab's (d: the pixel less the
    # mean over the face's pixels in the frame, m: that mean less LIP_TONE) with a clipped to [-1, 0] and d clamped
    # to the seeds' range in the cell (fit_template). A pigment moves lightness by what the lid's mean lacks and
    # keeps a share of the pixel's own shading (makeup.render._pigment: the change is w (target - (1 - t) mean -
    # t L)), which one RGB blend per cell cannot say: it takes the slope across the seeds' tones for the pixel's own
    # and flattens the lid. The prior fit on stop 33's five demo seeds (40 new faces vs the renderer), eyes_liner ->
    # eyes_lab, natural / glamorous / smokey_eyes / red_lip / korean: eye zone 0.706 / 0.799 / 0.853 / 0.790 /
    # 0.699 -> 0.779 / 0.827 / 0.877 / 0.808 / 0.747, gain +11.3 / +12.9 / +15.4 / +12.2 / +11.3 -> +12.2 / +13.3 /
    # +16.0 / +12.2 / +11.9 dB, skin within -0.007..+0.017; on the astronaut eye zone 0.52 / 0.70 / 0.81 / 0.76 /
    # 0.58 -> 0.59 / 0.76 / 0.87 / 0.76 / 0.64, gain +8.0 / +11.1 / +13.4 / +12.3 / +9.2 -> +8.2 / +12.0 / +15.5 /
    # +12.1 / +9.6 dB, visible spill 0.07 / 0.62 / 0.47 / 0.28 / 0.13 -> 0.06 / 0.44 / 0.27 / 0.32 / 0.08 %, her skin
    # 0.74 / 0.62 / 0.70 / 0.79 / 0.76 -> 0.73 / 0.57 / 0.70 / 0.80 / 0.72. Without the clip on a (slopes of -2.5
    # and +1.0 fit on a few lash-line pixels) her lash line came out in white dots (natural: gain +6.4 dB); without
    # the clamp on d her under-eye shadows were lifted away (natural, glamorous, korean: eye zone -0.02 to -0.06,
    # skin -0.02 to -0.04); clamping m (the lid's mean) to the seeds' too lost up to 0.04 on new faces and gained
    # nothing; replacing the skin's model instead of adding to it: natural's eye zone 0.73, the astronaut's 0.45.
    # The change beyond the models is fit and painted as a CIELAB change of the photo itself, not of the photo with
    # the models' change laid on it: cv2's float RGB -> CIELAB steps on a grid of about 1/512, so a model change a
    # ten-millionth apart (the web page's float32 against numpy) moved a pixel by a quarter level (the same figures
    # within 0.006).
    # eyes_band10, eyes_band15: eyes_lab with the lid's rows in pure lid heights past the liner's band
    # (eye_frame lid_blend: LID_BLEND eye widths past the band they reach them): a lid colour is laid from the lash
    # line over a share of the lid (makeup.render._eyeshadow_alpha), so on eyes_lab's rows (the band's 0.1 eye
    # widths, then lid heights) a short lid's shadow came out a sixth of its reach higher than a tall one's, and the
    # cells fit across the seeds' lids (0.36-0.59 eye widths) blurred it. The band is a look's: a thin liner
    # (natural, korean: 0.035 eye widths at the outer corner) lets the lid start at 0.1, a bold or winged one
    # (glamorous, smokey_eyes) keeps its rows in eye widths to 0.15; fit_templates fits both and keeps the one
    # that predicts a left-out seed better (ALTERNATIVE_TEMPLATES). The prior fit on the five demo seeds, 40 new
    # faces vs the renderer (stop 36), eyes_lab -> band 0.10 / band 0.15, natural / glamorous / smokey_eyes /
    # red_lip / korean: eye zone 0.794 / 0.837 / 0.880 / 0.805 / 0.768 -> 0.809 / 0.840 / 0.895 / 0.801 / 0.789
    # and 0.794 / 0.852 / 0.898 / 0.804 / 0.773, gain +12.42 / +13.52 / +16.10 / +12.21 / +12.17 -> +12.56 /
    # +12.87 / +16.65 / +12.03 / +12.41 and +12.38 / +13.79 / +17.27 / +12.20 / +12.20 dB; the held-out check picks
    # 0.10 for natural and korean, 0.15 for the other three. Tried: one band for all (0.05-0.07 without the blend:
    # natural 0.81, korean 0.78, glamorous' gain -0.5 dB, red_lip's eye zone -0.01); a blend of 0.05 or 0.2 eye
    # widths (within 0.005 of 0.1); the support without the held-out check's blur (smokey_eyes +0.03, natural and
    # korean -0.01 to -0.02).
    # Their rows also part the skin beside the corners between the lash lines (eye_frame corner=EYE_CORNER: until
    # then one row, v = 0, took it whole, and recovered 0.58 of korean's change there, 8 % of its eye zone's error):
    # eye zone 0.809 / 0.852 / 0.898 / 0.804 / 0.789 -> 0.820 / 0.867 / 0.902 / 0.825 / 0.801, gain +12.56 / +13.79
    # / +17.27 / +12.20 / +12.41 -> +12.83 / +14.61 / +17.73 / +12.81 / +12.77 dB (0.05 and 0.1 eye widths: within
    # 0.001 of the eye zone).
    def band_coords(band: float):
        return lambda labels, geometry=None: eye_frame(labels, geometry, lid_from=band, liner=True, lid_blend=LID_BLEND,
                                                       corner=EYE_CORNER)

    cheeks = TemplateFrame("cheeks", cheek_coords, (-1.6, 1.6), (-1.2, 1.2), (0.1, 0.1), fade=0.3, clamp=True,
                           additive=True)
    return {"eyes": eyes,
            "eyes_lid": TemplateFrame("eyes_lid", eye_lid_coords, eyes.u_range, eyes.v_range, eyes.step, fade=eyes.fade,
                                      clamp=True),
            "eyes_liner": liner,
            "eyes_lab": replace(liner, name="eyes_lab", lab=True, additive=True),
            **{name: replace(liner, name=name, coords=band_coords(band), lab=True, additive=True)
               for name, band in EYE_BANDS.items()},
            "lips": TemplateFrame("lips", lip_frame, (0.0, 0.7), (-0.8, 0.8), (0.05, 0.1)),
            "lips_lab": TemplateFrame("lips_lab", lip_frame, (0.0, 0.7), (-0.8, 0.8), (0.05, 0.1), lab=True),
            "cheeks": cheeks,
            # cheeks_lab: the cheeks' cells in CIELAB, added over the skin's model as "cheeks" is, each cell's change
            # per channel k + a d + b m as lips_lab's: a blush is a pigment (makeup.render._pigment) that moves the
            # cheek's lightness by what its mean lacks, which an RGB blend per cell fit across the seeds' tones
            # cannot say. Neither clipped nor clamped: clamping d to the seeds' range took back most of what it gains
            # on the astronaut (natural's cheeks 0.75 -> 0.68). The prior fit on the five demo seeds, cheeks ->
            # cheeks_lab, 40 new faces vs the renderer (stop 34), natural / glamorous / korean (the looks with a
            # blush; smokey_eyes and red_lip keep no cell of either): cheeks 0.736 / 0.775 / 0.801 -> 0.745 / 0.781
            # / 0.790, skin 0.776 / 0.703 / 0.763 -> 0.777 / 0.704 / 0.753; on the astronaut cheeks 0.56 / 0.71 /
            # 0.73 -> 0.75 / 0.84 / 0.83, skin 0.73 / 0.57 / 0.72 -> 0.75 / 0.59 / 0.74, gain +0.15 / +0.05 / +0.24
            # dB, visible spill the same or lower.
            "cheeks_lab": replace(cheeks, name="cheeks_lab", lab=True, clamp=False)}


EYE_LID_FROM = 0.1  # eye widths over the upper lash line past which the eyes_lid frame counts in lid heights
EYE_BANDS = {"eyes_band10": 0.10, "eyes_band15": 0.15}  # the liner's band (eye widths) of each banded eye frame
LID_BLEND = 0.1  # eye widths past the band over which the banded frames' rows reach pure lid heights
EYE_CORNER = 0.025  # the banded frames' rows of v for the skin between the lash lines beside the corners
TEMPLATE_FRAMES = _frames()
# what a prior fits unless told; "eyes", "eyes_lid", "eyes_liner", "eyes_lab" and "lips" are the older forms, kept for
# priors and teachers saved with them
DEFAULT_TEMPLATES = ("eyes_band10", "eyes_band15", "lips_lab", "cheeks_lab")
# frames of which a fit keeps one: the one whose held-out error over the seeds is lowest (fit_templates)
ALTERNATIVE_TEMPLATES = (tuple(EYE_BANDS),)
TRUSTED_ERROR = 0.5  # a trusted row's cell keeps its support where the template's error over the seeds is below
# this share of the region prior's (a liner: far below; the foundation the prior already paints: near it)
LIP_TONE = np.array([50.0, 25.0, 10.0])  # a mid lip colour in CIELAB: a lab frame's mean is measured from it
LAB_MEAN_RIDGE = 1.0  # a lab frame's shrinkage of b (per pixel, in CIELAB units^2): where the seeds' means do not
# differ (a cell only one seed reaches) the constant k carries the change, not an extrapolating b


PRIOR_RIDGE = 1e-3  # fit_region_prior's shrinkage of a colour map toward 0, relative to the photo's spread


# per cell: k (RGB), a, support (where the template applies, 0..1), and the photo's range in the seeds' pixels
# of the cell, low (RGB) and high (RGB): the template is a line fit on a few faces, so a photo outside the range
# it saw is clamped to it (a darker face than every seed must not extrapolate the seeds' foundation)
TEMPLATE_CHANNELS = 11
# a lab frame that clamps (eyes_lab) stores after them, per cell, the range of d (low, high; CIELAB, 3 each) its
# seeds showed there: fit_template
LAB_RANGE_CHANNELS = 6


def _cell_moments(cells: int, idx: np.ndarray, before, after, baseline=None, subtract: bool = False) -> np.ndarray:
    """(cells, 11) per-cell sums over one pair's pixels (``idx``: each pixel's cell, -1 outside the frame): n,
    sum x (3), sum |x|^2, sum y (3), sum x.y, sum |y|^2 and, with ``baseline`` (H, W, 3, a prediction of the
    change), sum |y - baseline|^2 (x: photo, y: change, in 0..1). ``subtract``: y is the change less the
    baseline (what an additive template fits)."""
    idx = idx.ravel()
    keep = idx >= 0
    i = idx[keep]
    x = before.reshape(-1, 3)[keep].astype(np.float64) / 255.0
    y = (after.astype(np.float64) - before).reshape(-1, 3)[keep] / 255.0
    if subtract:
        y = y - baseline.reshape(-1, 3)[keep]
    base = np.zeros(len(i)) if baseline is None else \
        ((y if subtract else y - baseline.reshape(-1, 3)[keep]) ** 2).sum(1)
    cols = [np.ones(len(i)), *x.T, (x ** 2).sum(1), *y.T, (x * y).sum(1), (y ** 2).sum(1), base]
    return np.stack([np.bincount(i, c, minlength=cells) for c in cols], axis=1)


def _lab_terms(x: np.ndarray):
    """A lab frame's per-pixel terms: the pixel less the frame's mean, and the mean less :data:`LIP_TONE` ((n, 3)
    CIELAB of the face's pixels in the frame; float32, the mean taken in float64)."""
    mean = x.astype(np.float64).mean(0).astype(np.float32) if len(x) else LIP_TONE.astype(np.float32)
    return x - mean, np.broadcast_to(mean - LIP_TONE.astype(np.float32), x.shape)


LAB_MOMENTS = 10  # per CIELAB channel: n, sum d, sum m, sum d^2, sum d m, sum m^2, sum y, sum d y, sum m y, sum y^2


def _lab_cell_moments(cells: int, idx: np.ndarray, before, after, baseline=None, subtract: bool = False) -> np.ndarray:
    """(cells, 31) a lab frame's per-cell sums over one pair's pixels: per CIELAB channel the :data:`LAB_MOMENTS`
    of ``y = change ~ k + a d + b m`` (d: the pixel less the frame's mean, m: that mean less LIP_TONE), then, with
    ``baseline`` (H, W, 3 RGB change), the sum over channels of |y - the baseline's change in CIELAB|^2.
    ``subtract`` (an additive frame): y is what the after less the baseline's change is in CIELAB less the photo
    (the change beyond the baseline, in CIELAB on the photo), so the last sum is |y|^2."""
    idx = idx.ravel()
    keep = idx >= 0
    i = idx[keep]
    photo = before.reshape(-1, 3)[keep].astype(np.float32) / 255.0
    x = to_lab(photo)
    done = after.reshape(-1, 3)[keep].astype(np.float32) / 255.0
    if subtract:
        done = np.clip(done - baseline.reshape(-1, 3)[keep], 0.0, 1.0).astype(np.float32)
    y = (to_lab(done) - x).astype(np.float64)
    d, m = (t.astype(np.float64) for t in _lab_terms(x))
    cols = []
    for c in range(3):
        dc, mc, yc = d[:, c], m[:, c], y[:, c]
        cols += [np.ones(len(i)), dc, mc, dc * dc, dc * mc, mc * mc, yc, dc * yc, mc * yc, yc * yc]
    if baseline is None:
        cols.append(np.zeros(len(i)))
    elif subtract:
        cols.append((y ** 2).sum(1))
    else:
        pred = to_lab(np.clip(photo + baseline.reshape(-1, 3)[keep], 0.0, 1.0)) - x
        cols.append(((y - pred) ** 2).sum(1))
    return np.stack([np.bincount(i, c, minlength=cells) for c in cols], axis=1)


def _lab_normal(mom: np.ndarray, c: int):
    n, sd, sm, sdd, sdm, smm, sy, sdy, smy, _ = (mom[:, LAB_MOMENTS * c + j] for j in range(LAB_MOMENTS))
    lhs = np.stack([np.stack([n, sd, sm], -1), np.stack([sd, sdd, sdm], -1), np.stack([sm, sdm, smm], -1)], -2)
    return lhs, np.stack([sy, sdy, smy], -1)


def _solve_lab_cells(mom: np.ndarray, shape, smooth: float, ridge: float,
                     blend: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(cells, 3, 3) = (k, a, b) per CIELAB channel from summed moments blurred over ``smooth`` cells, ``ridge``
    (relative to the cell's pixel count) on k and a and :data:`LAB_MEAN_RIDGE` on b; (cells,) bool: the cells
    with (blurred) pixels; zero elsewhere. ``blend``: a is clipped to [-1, 0] (a blend keeps between none and all
    of the pixel's own variation) and k, b are fit again with it."""
    width = 3 * LAB_MOMENTS
    if smooth > 0:
        grid = mom[:, :width].reshape(*shape, width).astype(np.float32)
        mom = np.stack([cv2.GaussianBlur(grid[..., j], (0, 0), smooth, borderType=cv2.BORDER_CONSTANT)
                        for j in range(width)], -1).reshape(-1, width).astype(np.float64)
    out = np.zeros((len(mom), 3, 3))
    has = mom[:, 0] > 1e-3
    for c in range(3):
        lhs, rhs = _lab_normal(mom[has], c)
        diag = mom[has, 0][:, None, None] * np.diag([ridge, ridge, LAB_MEAN_RIDGE])
        theta = np.linalg.solve(lhs + diag, rhs[..., None])[..., 0]
        if blend:  # k and b again, a held at its clipped value
            a = np.clip(theta[:, 1], -1.0, 0.0)
            keep = [0, 2]
            kb = np.linalg.solve((lhs + diag)[:, keep][:, :, keep], (rhs[:, keep] - a[:, None] * lhs[:, keep, 1])[..., None])
            theta = np.stack([kb[:, 0, 0], a, kb[:, 1, 0]], -1)
        out[has, c] = theta
    return out, has


def _lab_cell_error(theta: np.ndarray, mom: np.ndarray) -> np.ndarray:
    """Per cell sum over the pixels and CIELAB channels of |y - (k + a d + b m)|^2, from one pair's moments."""
    err = np.zeros(len(mom))
    for c in range(3):
        lhs, rhs = _lab_normal(mom, c)
        t = theta[:, c]
        err += mom[:, LAB_MOMENTS * c + 9] - 2 * (t * rhs).sum(1) + np.einsum("ni,nij,nj->n", t, lhs, t)
    return err


def _dilated_range(shape, lo: np.ndarray, hi: np.ndarray, empty_lo, empty_hi) -> tuple[np.ndarray, np.ndarray]:
    """Per-cell (cells, C) low and high widened to the cells within two (a 5 x 5 erosion / dilation: the moments'
    blur reaches about that far); ``empty_lo``, ``empty_hi`` where no cell near has any."""
    c = lo.shape[1]
    fill_lo, fill_hi = np.finfo(np.float32).max, np.finfo(np.float32).min
    grid = lambda a, fill: np.where(np.isfinite(a), a, fill).reshape(*shape, c).astype(np.float32)  # noqa: E731
    kernel = np.ones((5, 5), np.uint8)
    near_lo = cv2.erode(grid(lo, fill_lo), kernel).reshape(-1, c).astype(np.float64)
    near_hi = cv2.dilate(grid(hi, fill_hi), kernel).reshape(-1, c).astype(np.float64)
    none = near_lo[:, 0] >= fill_lo
    near_lo[none], near_hi[none] = empty_lo, empty_hi
    return near_lo, near_hi


def _lab_cell_range(shape, cells_per_seed, befores) -> np.ndarray:
    """(cells, 6) a clamping lab frame's range of d: low and high (CIELAB, :func:`_lab_terms` of each seed photo)
    over the seeds' pixels in each cell and the cells within two of it; 0 where none has pixels."""
    n = shape[0] * shape[1]
    lo = np.full((n, 3), np.inf)
    hi = np.full((n, 3), -np.inf)
    for idx, b in zip(cells_per_seed, befores):
        idx = idx.ravel()
        keep = idx >= 0
        d = _lab_terms(to_lab(b.reshape(-1, 3)[keep].astype(np.float32) / 255.0))[0].astype(np.float64)
        np.minimum.at(lo, idx[keep], d)
        np.maximum.at(hi, idx[keep], d)
    return np.concatenate(_dilated_range(shape, lo, hi, 0.0, 0.0), axis=1)


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
    return _dilated_range(shape, lo, hi, 0.0, 1.0)


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
                 ridge: float = 1e-3, baselines=None, held_out: bool = True, scores: dict | None = None) -> np.ndarray:
    """A feature template (``frame.shape + (11,)``, float32; the channels in TEMPLATE_CHANNELS' comment) from seed
    pairs (uint8 before/after, label maps).

    Per cell of the frame the change is a blend toward a colour, ``change = k - a * photo`` (RGB in 0..1; a
    product laid at opacity ``a`` in colour ``c`` gives ``k = a c``), least squares over every seed pixel in the
    cell (both eyes, both halves of the lips share their frame). The moments are blurred over ``smooth`` cells
    (a liner is a few cells thick: more blurs it) and ``ridge`` (relative to the cell's pixel count) shrinks
    toward no change. Channel 4 is the support: 1 where the (blurred) seeds had pixels, else 0 (the region prior
    applies there).

    A ``lab`` frame (the lips' "lips_lab") fits per CIELAB channel ``change = k + a (pixel - mean) + b (mean -
    LIP_TONE)``, the mean over the face's pixels in the frame: a lipstick moves the lightness by what the lips
    lack and the chroma toward its colour, which one blend in RGB cannot say. The cell's channels are then
    k (3), 0, support, a (3), b (3); ``b`` is shrunk by :data:`LAB_MEAN_RIDGE`, and the held-out check compares
    errors in CIELAB. A lab frame that clamps (the eyes' "eyes_lab") clips ``a`` to [-1, 0] (a blend keeps between
    none and all of the pixel's own variation; k and b are fit again with it) and stores after those 11 channels
    the range of d its seeds showed in each cell and the cells within two (:data:`LAB_RANGE_CHANNELS`): a photo's d
    is clamped to it. One that adds is fit on what the baselines leave: ``y`` is CIELAB(after less the baseline's
    change) less the photo's CIELAB.

    ``baselines`` (one (H, W, 3) change per seed: what the region prior fit WITHOUT that seed predicts on it,
    see :func:`fit_templates`): a cell keeps its support only where the template fit without a seed predicts
    that seed better than the baseline does, summed over the seeds (leave one seed out); in a frame's
    ``trusted`` rows a cell also keeps it where the template's error over all the seeds is under
    :data:`TRUSTED_ERROR` of the baseline's (the liner's band: a liner a few cells thick, cut into cells of
    0.0125 eye widths, left the held-out seed's pixels in cells the other four barely reach, and the check
    dropped most of it; keeping every cell there painted the seeds' foundation on darker faces). Where the seeds'
    change there is only what the region prior already says (foundation on the skin around the eyes), the
    photo slope fit on a few skin tones extrapolates: on a darker face than the seeds it painted a lighter
    box around the eyes (glamorous, the amplified faces of stop 21's first run); such cells now fall back to
    the region prior (``scores``, a dict: the frame's name -> that held-out error, summed over the cells, each
    the lower of the template's and the baseline's). The support is then blurred over one cell, and faded out toward the grid's edge
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
    if frame.additive and baselines is None:
        raise TinyBeautyError(f"template {frame.name!r} adds to the region prior: fit it with its baselines")
    if frame.lab:
        moments = lambda idx, b, a, base: _lab_cell_moments(shape[0] * shape[1], idx, b, a, base,  # noqa: E731
                                                            subtract=frame.additive)
        solve = lambda mom, shape, smooth, ridge: _solve_lab_cells(mom, shape, smooth, ridge,  # noqa: E731
                                                                   blend=frame.clamp)
        error, width = _lab_cell_error, 3 * LAB_MOMENTS + 1
    else:
        moments = lambda idx, b, a, base: _cell_moments(shape[0] * shape[1], idx, b, a, base,  # noqa: E731
                                                        subtract=frame.additive)
        solve, error, width = _solve_cells, _cell_error, 11
    per_seed = [moments(idx, b, a, None if baselines is None else baselines[k])
                for k, (idx, b, a) in enumerate(zip(cells, befores, afters))]
    total = np.sum(per_seed, axis=0) if per_seed else np.zeros((shape[0] * shape[1], width))
    theta, has = solve(total, shape, smooth, ridge)
    support = has.astype(np.float32)
    if held_out and baselines is not None and len(per_seed) >= 3:
        err_tpl = sum(error(solve(total - m, shape, smooth, ridge)[0], m) for m in per_seed)
        keep = (has & (err_tpl < total[:, width - 1])).astype(np.float32)
        if scores is not None:
            scores[frame.name] = float(np.minimum(err_tpl, total[:, width - 1]).sum())
        support = cv2.GaussianBlur(keep.reshape(shape), (0, 0), 1.0, borderType=cv2.BORDER_CONSTANT).ravel() * has
        if frame.trusted is not None:  # the band keeps the cells where the template says much more than the prior
            rows = frame.v_range[0] + (np.arange(shape[0]) + 0.5) * frame.step[1]
            band = np.repeat((rows >= frame.trusted[0]) & (rows < frame.trusted[1]), shape[1])
            strong = has & (error(theta, total) < TRUSTED_ERROR * total[:, width - 1])
            support = np.where(band & strong, 1.0, support)
    support = support * frame.taper()
    out = np.zeros((len(theta), frame.channels), np.float32)
    if frame.lab:  # k (L, a, b), 0, support, the slopes a (L, a, b), the mean's b (L, a, b)
        out[:, :3], out[:, 5:8], out[:, 8:11] = theta[:, :, 0], theta[:, :, 1], theta[:, :, 2]
    else:
        out[:, :4] = theta
    out[:, 4] = support
    if frame.lab and frame.clamp:  # the range of d (zero where the cell has no support: a smaller file)
        out[:, TEMPLATE_CHANNELS:] = _lab_cell_range(shape, cells, befores) * (support > 0)[:, None]
    elif frame.clamp:
        out[:, 5:8], out[:, 8:11] = _cell_range(shape, cells, befores)
    elif not frame.lab:
        out[:, 8:11] = 1.0
    return out.reshape(*shape, frame.channels)


def fit_templates(befores, afters, labels, names=DEFAULT_TEMPLATES, radius: float = 2.0,
                  held_out: bool = True, models: bool = False) -> dict[str, np.ndarray]:
    """:func:`fit_template` for each named frame, of each group of :data:`ALTERNATIVE_TEMPLATES` named the one
    whose held-out error (``scores``) is lowest. ``held_out``: each cell keeps the template only where it
    predicts a left-out seed better than the region prior fit without that seed (``fit_region_prior`` with
    ``radius``; needs 3 seeds or more); ``models``: that prior's skin and brows are the region models
    (:func:`makeup.region_models.fit_region_models`, also fit without the seed) where they fit."""
    unknown = sorted(set(names) - set(TEMPLATE_FRAMES))
    if unknown:
        raise TinyBeautyError(f"templates: unknown frame {unknown[0]!r} (known: {', '.join(TEMPLATE_FRAMES)})")
    baselines = None
    check = bool(held_out and len(befores) >= 3 and names)
    additive = any(TEMPLATE_FRAMES[n].additive for n in names)
    if check or additive:  # an additive template is fit on what the prior leaves: in sample without the check
        baselines = []
        moments = _region_moments(befores, afters, labels, radius)
        model_moments = region_model_moments(befores, afters, labels) if models else None
        for k, (b, lab) in enumerate(zip(befores, labels)):
            rest = np.arange(len(befores)) != k if check else np.ones(len(befores), bool)
            const, colour, _ = _prior_from_moments(*(m[rest] for m in moments), True, PRIOR_RIDGE)
            beta = models_from_moments(model_moments, rest) if models else None
            photo = b.astype(np.float32) / 255.0
            const, colour = modelled_prior(const, colour, beta)
            baselines.append(prior_image(region_stack(lab, None, radius), photo, const, colour,
                                         prior_field(photo, lab, None, beta)))
    scores: dict[str, float] = {}
    out = {n: fit_template(n, befores, afters, labels, held_out=check, scores=scores,
                           baselines=baselines if check or TEMPLATE_FRAMES[n].additive else None) for n in names}
    for group in ALTERNATIVE_TEMPLATES:  # keep the one that predicts a left-out seed best (without the check: the first)
        fitted = [n for n in group if n in out]
        best = min(fitted, key=lambda n: scores.get(n, 0.0), default=None)
        out = {n: t for n, t in out.items() if n not in fitted or n == best}
    return out


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
    :func:`makeup.region_models.region_model_change`), at the photo's resolution (photo (H, W, 3) in 0..1).
    None without either."""
    if not templates and models is None:
        return None
    from makeup.render import FaceGeometry

    geometry = FaceGeometry.from_labels(labels)
    tpl = template_field(labels, templates, geometry=geometry, photo=photo)
    if tpl is None and models is None:
        return None
    if tpl is None:
        tpl = np.zeros((TEMPLATE_CHANNELS,) + np.asarray(labels).shape, np.float32)
        tpl[8:11] = 1.0
    base = np.zeros_like(tpl[:3]) if models is None else \
        region_model_change(photo, labels, models, geometry).transpose(2, 0, 1)
    return np.ascontiguousarray(np.concatenate([tpl, base]), dtype=np.float32)


def template_field(labels: np.ndarray, templates: dict | None, size: int | None = None,
                   geometry=None, photo: np.ndarray | None = None) -> np.ndarray | None:
    """The templates laid on one face: (11, S, S) float32 = [s k (RGB), s a, s, low (RGB), high (RGB)] with s the
    support, at the label map's resolution, area-resized to ``size``; the prior there is
    ``(1 - s) * region prior + s k - s a * clamp(photo, low, high)``. A lab frame's cells are painted on the
    ``photo`` ((H, W, 3) RGB in 0..1; needed then): k is its RGB change there, a 0, no clamp. One that clamps
    clamps d to its cells' range; one that adds adds its change to the region prior's and models' (s 0 in the
    field; it was fit on what they leave, as a CIELAB change of the photo).
    The frames are laid in :data:`TEMPLATE_FRAMES`' order, a later one replacing an earlier where both hold a
    pixel (the cheeks' frame takes the eye grid's faded lower rows). None without a template with support."""
    templates = templates or {}
    live = {n: np.asarray(templates[n], np.float32).reshape(-1, TEMPLATE_FRAMES[n].channels) for n in TEMPLATE_FRAMES
            if templates.get(n) is not None}
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
        frame = TEMPLATE_FRAMES[name]
        if frame.lab:
            if photo is None:
                raise TinyBeautyError(f"template {name!r} is painted on the photo: pass it")
            rgb = np.asarray(photo, np.float32)[inside]
            x = to_lab(rgb)
            d, m = _lab_terms(x)
            if frame.clamp:
                r = TEMPLATE_CHANNELS  # d low, d high (3 each)
                d = np.minimum(np.maximum(d, vals[:, r:r + 3]), vals[:, r + 3:r + 6])
            change = from_lab(x + (vals[:, 0:3] + vals[:, 5:8] * d + vals[:, 8:11] * m)) - rgb
            field[inside] = 0.0
            field[inside, :3] = change * vals[:, 4:5]
            field[inside, 4] = 0.0 if frame.additive else vals[:, 4]
            field[inside, 8:11] = 1.0
            continue
        field[inside] = np.concatenate([vals[:, :4] * vals[:, 4:5], vals[:, 4:]], axis=1)
        if frame.additive:
            field[inside, 4] = 0.0  # laid over the region prior and models, not blended with them
    field = np.ascontiguousarray(field.transpose(2, 0, 1), dtype=np.float32)
    return field if size is None else _resize_field(field, size)


def _resize_field(field: np.ndarray, size: int) -> np.ndarray:
    """A (C, S, S) field area-resized to (C, size, size)."""
    if size == field.shape[-1]:
        return field
    out = cv2.resize(np.ascontiguousarray(field.transpose(1, 2, 0)), (size, size), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(out.transpose(2, 0, 1), dtype=np.float32)


def _region_moments(befores, afters, labels, radius: float):
    """Per pair and region, the soft-mask weighted normal equations of residual ~ [photo, 1] @ W:
    X^T w X (4, 4), X^T w y (4, 3) and y^T w y, photo and residual in 0..1. Shapes (pairs, 4 regions, ...).

    The eyes' weight is the eye opening's own pixels, not its feathered mask: that mask reaches a pixel or two
    onto the lash line, where the liner is darkest, and the constant fit there painted the eyeballs, which no
    look changes (stop 28, the prior alone on the 40 truth faces: the opening held 12 % of the eye zone's error;
    fit on the opening, eye zone natural 0.57 -> 0.61, glamorous 0.70 -> 0.74, on the astronaut 0.33 -> 0.38,
    0.62 -> 0.66). The other regions keep the mask they are painted with (hard masks for all of them changed
    nothing more)."""
    xtx, xty, yty = [], [], []
    for b, a, lab in zip(befores, afters, labels):
        m = region_stack(lab, None, radius)
        m[MAKEUP_REGIONS.index(EYES)] = np.asarray(lab) == EYES
        m = m.reshape(len(MAKEUP_REGIONS), -1)
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


PRIOR_ARRAYS = ("region_prior", "region_colour", "template_eyes", "template_lips", "models", "gate")
# absent from priors written before those frames: none
OPTIONAL_ARRAYS = ("template_eyes_lid", "template_eyes_liner", "template_eyes_lab",
                   *(f"template_{n}" for n in EYE_BANDS), "template_lips_lab", "template_cheeks", "template_cheeks_lab")


@dataclass
class LookPrior:
    """A look's prior, ready to paint on any face: the region prior (``region_prior`` (4, 3) constants,
    ``region_colour`` (4, 3, 3) colour maps; the rows of modelled regions 0), the feature ``templates``
    (:data:`TEMPLATE_FRAMES` by name, :data:`DEFAULT_TEMPLATES` when fit: :func:`fit_template`), the skin's and
    brows' ``models`` (:mod:`makeup.region_models`), and ``gate`` (4,): each region's weight on its soft mask (the
    teacher's FGMM weights times its alpha; 1 for a prior fit by :meth:`fit`). Regions are
    :data:`MAKEUP_REGIONS`, soft masks :func:`region_stack` at ``radius``."""

    region_prior: np.ndarray
    region_colour: np.ndarray | None = None
    templates: dict | None = None
    models: np.ndarray | None = None
    gate: np.ndarray = field(default_factory=lambda: np.ones(len(MAKEUP_REGIONS), np.float32))
    radius: float = 2.0

    @classmethod
    def fit(cls, befores, afters, labels, radius: float = 2.0, templates=DEFAULT_TEMPLATES,
            region_models: bool = True) -> "LookPrior":
        """Fit on before/after pairs (uint8 (H, W, 3) images, (H, W) label maps), as the teacher fits its prior
        on the seeds: the region models where they predict held-out pairs better, the region prior (colour maps
        where they do), then the templates (each cell kept where it predicts held-out pairs better)."""
        if not len(befores):
            raise TinyBeautyError("a look prior needs at least one before/after pair")
        models = fit_region_models(befores, afters, labels) if region_models else None
        const, colour, _ = fit_region_prior(befores, afters, labels, radius)
        const, colour = modelled_prior(const, colour, models)
        tpl = fit_templates(befores, afters, labels, tuple(templates), radius, models=models is not None) or None
        return cls(const, colour, tpl, models, radius=radius)

    def paint(self, photo: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """(H, W, 3) float32 change the prior lays on one face: photo (H, W, 3) float in 0..1 (or uint8), labels
        (H, W). Zero outside the four regions (the soft masks' union), exactly."""
        photo = np.asarray(photo)
        photo = photo.astype(np.float32) / 255.0 if photo.dtype == np.uint8 else photo.astype(np.float32)
        masks = region_stack(labels, None, self.radius)
        change = prior_image(masks, photo, self.region_prior, self.region_colour,
                             prior_field(photo, labels, self.templates, self.models))
        return (np.tensordot(np.asarray(self.gate, np.float32), masks, axes=1)[..., None] * change).astype(np.float32)

    def arrays(self) -> dict[str, np.ndarray]:
        """Every part as a float32 array (absent parts as empty arrays): :meth:`from_arrays` reads them back."""
        empty = np.zeros(0, np.float32)
        tpl = self.templates or {}
        out = {"region_prior": self.region_prior, "region_colour": self.region_colour,
               **{f"template_{n}": tpl.get(n) for n in TEMPLATE_FRAMES}, "models": self.models, "gate": self.gate}
        return {k: empty if v is None else np.ascontiguousarray(v, np.float32) for k, v in out.items()} | \
            {"radius": np.array([self.radius], np.float32)}

    @classmethod
    def from_arrays(cls, arrays) -> "LookPrior":
        """From :meth:`arrays` (or the same keys as torch tensors or nested lists); a part of
        :data:`OPTIONAL_ARRAYS` may be missing (none)."""
        as_array = lambda v: np.asarray(v.numpy() if hasattr(v, "numpy") else v, np.float32)  # noqa: E731
        some = lambda v: v if v.size else None  # noqa: E731
        try:
            a = {k: as_array(arrays[k]) for k in (*PRIOR_ARRAYS, "radius")}
            a |= {k: as_array(arrays[k]) if k in arrays else np.zeros(0, np.float32) for k in OPTIONAL_ARRAYS}
            tpl = {n: a[f"template_{n}"].reshape(*TEMPLATE_FRAMES[n].shape, TEMPLATE_FRAMES[n].channels)
                   for n in TEMPLATE_FRAMES if a[f"template_{n}"].size}
            return cls(a["region_prior"].reshape(len(MAKEUP_REGIONS), 3),
                       None if not a["region_colour"].size else a["region_colour"].reshape(len(MAKEUP_REGIONS), 3, 3),
                       tpl or None, expand_models(some(a["models"])), a["gate"].reshape(len(MAKEUP_REGIONS)),
                       float(a["radius"][0]))
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise TinyBeautyError(f"not a look prior ({exc.__class__.__name__}: {exc})") from None

    @classmethod
    def from_meta(cls, meta: dict) -> "LookPrior | None":
        """The prior a student checkpoint's meta keeps under "look_prior" (:meth:`state`), or None."""
        data = (meta or {}).get("look_prior")
        return None if data is None else cls.from_arrays(data)

    def to_dict(self, decimals: int = 5) -> dict:
        """JSON-able (nested lists, rounded): what an export ships beside the model. A template cell without
        support (to ``decimals``) paints nothing (its clamp range only scales its zero slope), so it is written as
        zeros."""
        arrays = self.arrays()
        for name in TEMPLATE_FRAMES:
            tpl = arrays[f"template_{name}"]
            if tpl.size:
                arrays[f"template_{name}"] = np.where(np.round(tpl[..., 4:5], decimals) > 0, tpl, 0.0)
        return {k: np.round(v.astype(np.float64), decimals).tolist() for k, v in arrays.items()}

    def state(self) -> dict:
        """As torch tensors (a checkpoint's meta is loaded with ``weights_only``)."""
        import torch

        return {k: torch.from_numpy(v.copy()) for k, v in self.arrays().items()}
