"""The makeup renderer: nothing changes outside ``touched_mask``, makeup is present inside, each product
does what the real one does."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from makeup.errors import TinyBeautyError
from makeup.regions import BROWS, EYES, LIPS, OTHER, SKIN
from makeup.render import FaceGeometry, product_alphas, render_makeup, touched_mask
from makeup.styles import BUILTIN_STYLES, load_style, style_from_dict
from makeup.synth import generate_face

from test_foundation_styles import random_style_dicts

# Where each product may paint (the eyeballs and "other" never).
ALLOWED = {"lipstick": {LIPS}, "brow_tint": {BROWS}, "eyeshadow": {SKIN}, "eyeliner": {SKIN},
           "blush": {SKIN}, "foundation": {SKIN}}
_FACES: dict[tuple[int, int], object] = {}


def face(seed: int, size: int = 128):
    if (seed, size) not in _FACES:
        _FACES[(seed, size)] = generate_face(seed, size)
    return _FACES[(seed, size)]


def lab(img: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(img.astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)


@settings(max_examples=30, deadline=None)
@given(data=random_style_dicts(), seed=st.integers(0, 7), size=st.sampled_from([96, 128]))
def test_pixels_outside_touched_mask_are_unchanged(data, seed, size):
    style = style_from_dict(data)
    f = face(seed, size)
    out = render_makeup(f.image, f.labels, style)
    touched = style.touched_mask(f.labels)
    assert out.shape == f.image.shape and out.dtype == np.uint8
    assert np.array_equal(out[~touched], f.image[~touched])
    # The touched pixels lie in the regions the style's products may paint: never eyeballs or background.
    allowed = set().union(*(ALLOWED[k] for k in style.products))
    assert set(np.unique(f.labels[touched]).tolist()) <= allowed
    assert not touched[np.isin(f.labels, [EYES, OTHER])].any()


@pytest.mark.parametrize("name", BUILTIN_STYLES)
def test_builtin_looks_put_visible_makeup_inside(name):
    style = load_style(name)
    for seed in (0, 1, 2):
        f = face(seed, 256)
        out = render_makeup(f.image, f.labels, style)
        touched = touched_mask(f.labels, style)
        diff = np.abs(out.astype(int) - f.image.astype(int)).max(axis=2)
        assert touched.mean() > 0.02
        # Foundation alone may be subtle on skin already near its tone; the coloured products are not.
        assert diff[touched].mean() > 1.5, f"{name} seed {seed}: mean change {diff[touched].mean():.2f}"
        assert np.percentile(diff[touched], 99) > 15
        if "lipstick" in style.products:
            assert diff[f.labels == LIPS].mean() > 8


def test_lipstick_moves_lips_toward_its_colour_and_gloss_brightens():
    f = face(3, 256)
    lips = f.labels == LIPS
    red = style_from_dict({"lipstick": {"color": "#d0102a", "opacity": 1.0}})
    blue = style_from_dict({"lipstick": {"color": "#2040d0", "opacity": 1.0}})
    glossy = style_from_dict({"lipstick": {"color": "#d0102a", "opacity": 1.0, "gloss": 1.0}})
    before, r, b, g = (lab(x)[lips] for x in (f.image, render_makeup(f.image, f.labels, red),
                                                 render_makeup(f.image, f.labels, blue),
                                                 render_makeup(f.image, f.labels, glossy)))
    assert r[:, 1].mean() > before[:, 1].mean() + 10          # redder (a*)
    assert b[:, 2].mean() < before[:, 2].mean() - 20          # bluer (b*)
    assert g[:, 0].max() > r[:, 0].max() + 5                  # a specular highlight
    assert np.corrcoef(before[:, 0], r[:, 0])[0, 1] > 0.5     # the lip's own shading survives


def test_eye_products_paint_lid_and_lash_line_not_eyeballs():
    f = face(4, 256)
    g = FaceGeometry.from_labels(f.labels)
    assert len(g.eyes) == 2 and {e.outward for e in g.eyes} == {-1, 1}
    liner = style_from_dict({"eyeliner": {"thickness": 1.0, "wing": 1.0}})
    shadow = style_from_dict({"eyeshadow": {"color": "#402040", "opacity": 1.0, "extent": 1.0}})
    a_liner = product_alphas(f.labels, liner)["eyeliner"]
    a_shadow = product_alphas(f.labels, shadow)["eyeshadow"]
    for eye in g.eyes:
        col = int(eye.cols[len(eye.cols) // 2])
        row = int(eye.top[len(eye.cols) // 2]) - 1  # the skin pixel just above the upper lash line
        assert a_liner[row, col] > 0.5 and a_shadow[row, col] > 0.5
        below = int(eye.bottom.max()) + 3
        assert a_liner[below, col] == 0  # liner follows the upper lash line only
        # The wing reaches past the outer corner, above the corner's height.
        outer = eye.cols[-1] + 3 if eye.outward > 0 else eye.cols[0] - 3
        assert a_liner[:, outer].max() > 0.5
        assert np.argmax(a_liner[:, outer]) < eye.top[eye.outer_index]
    out = render_makeup(f.image, f.labels, liner)
    assert np.array_equal(out[f.labels == EYES], f.image[f.labels == EYES])
    assert lab(out)[..., 0][a_liner > 0.9].mean() < lab(f.image)[..., 0][a_liner > 0.9].mean() - 20


def test_foundation_evens_skin_and_blush_sits_on_cheeks():
    f = face(5, 256)
    skin = f.labels == SKIN
    foundation = style_from_dict({"foundation": {"tone": "#e0b090", "coverage": 1.0, "smoothing": 1.0}})
    out = render_makeup(f.image, f.labels, foundation)
    inner = product_alphas(f.labels, foundation)["foundation"] > 0.99
    assert lab(out)[inner][:, 1:].std(axis=0).mean() < 0.8 * lab(f.image)[inner][:, 1:].std(axis=0).mean()
    blush = style_from_dict({"blush": {"color": "#e04060", "opacity": 1.0, "size": 0.5}})
    alpha = product_alphas(f.labels, blush)["blush"]
    ys, xs = np.nonzero(alpha > 0.5)
    g = FaceGeometry.from_labels(f.labels)
    eye_y = max(e.cy for e in g.eyes)
    assert eye_y < ys.mean() < g.lips_box[1] and skin[alpha > 0].all()
    left, right = xs[xs < g.lips_box[0]], xs[xs > g.lips_box[0]]
    assert len(left) and len(right)  # one blush on each cheek


def test_real_photo_with_parser_labels(astronaut):
    """skimage's astronaut through the face parser: the renderer's promises hold on real labels too."""
    from makeup.parsing import prepare_face

    prepared = prepare_face(astronaut, size=256, parser="mediapipe")
    style = load_style("glamorous")
    out = render_makeup(prepared.crop, prepared.labels, style)
    touched = style.touched_mask(prepared.labels)
    assert np.array_equal(out[~touched], prepared.crop[~touched])
    assert np.abs(out.astype(int) - prepared.crop)[prepared.labels == LIPS].mean() > 5


def test_bad_inputs_are_clear_errors():
    f = face(0, 96)
    with pytest.raises(TinyBeautyError, match="does not match"):
        render_makeup(f.image, f.labels[:-1], "natural")
    with pytest.raises(TinyBeautyError, match="RGB uint8"):
        render_makeup(f.image[..., 0], f.labels, "natural")
    with pytest.raises(TinyBeautyError, match="unknown style"):
        render_makeup(f.image, f.labels, "nope")
    empty = np.zeros_like(f.labels)  # no face regions at all: nothing to paint
    assert np.array_equal(render_makeup(f.image, empty, "glamorous"), f.image)
