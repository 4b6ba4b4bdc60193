"""Look fidelity (makeup.metrics.LookFidelity) on constructed images whose answers are known."""
import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from makeup.metrics import LookFidelity, look_fidelity, look_score, region_masks
from makeup.regions import BROWS, EYES, LIPS, SKIN


def _face(size=64):
    lab = np.zeros((size, size), np.uint8)
    lab[8:56, 8:56] = SKIN
    lab[18:20, 16:26] = BROWS
    lab[24:28, 16:26] = EYES
    lab[44:50, 24:40] = LIPS
    rng = np.random.default_rng(0)
    src = np.round(rng.uniform(0.3, 0.7, (size, size, 3)) * 255).astype(np.float32) / 255  # 8-bit images
    tgt = src.copy()
    tgt[lab == LIPS] += np.array([0.25, -0.15, -0.1], np.float32)  # a lipstick-only look
    return src, np.round(np.clip(tgt, 0, 1) * 255) / 255, lab


@given(st.floats(0.0, 1.0))
@settings(max_examples=15, deadline=None)
def test_a_prediction_with_a_share_of_the_change_recovers_that_share(share):
    src, tgt, lab = _face()
    pred = src + share * (tgt - src)
    fid = look_fidelity(pred, src, tgt, lab)
    assert fid["recovery"]["lips"] == pytest.approx(share, abs=0.015)  # the 8-bit image: within half a level
    # The look leaves eyes, skin and brows alone: no recovery figure for them.
    assert fid["recovery"]["eyes"] is None and fid["recovery"]["skin"] is None and fid["recovery"]["brows"] is None
    assert fid["spill"] == pytest.approx(0.0, abs=1e-6)


def test_identity_and_perfect_predictions():
    src, tgt, lab = _face()
    same = look_fidelity(src, src, tgt, lab)
    assert same["recovery"]["lips"] == pytest.approx(0.0) and same["psnr_gain"] == pytest.approx(0.0)
    perfect = look_fidelity(tgt, src, tgt, lab)
    assert perfect["recovery"]["lips"] == pytest.approx(1.0) and perfect["spill"] == 0.0
    assert perfect["psnr_gain"] > 20
    wrong_way = look_fidelity(src - (tgt - src), src, tgt, lab)  # paints the opposite colour: worse than nothing
    assert wrong_way["recovery"]["lips"] < 0 and wrong_way["psnr_gain"] < 0


def test_paint_outside_the_look_is_spill():
    src, tgt, lab = _face()
    pred = tgt.copy()
    nose = (slice(30, 40), slice(28, 36))  # skin the look leaves alone: 80 of 4096 pixels
    pred[nose] += 0.2
    fid = look_fidelity(pred, src, tgt, lab)
    assert fid["recovery"]["lips"] == pytest.approx(1.0)
    assert fid["spill"] == pytest.approx(255 * 0.2 * 80 / 64**2, rel=1e-4)
    assert fid["visible_spill"] == pytest.approx(100 * 80 / 64**2)
    assert look_score(fid) < look_score(look_fidelity(tgt, src, tgt, lab))
    faint = pred.copy()
    faint[nose] = tgt[nose] + 4 / 255  # below what a person sees
    assert look_fidelity(faint, src, tgt, lab)["visible_spill"] == 0.0


def test_uint8_float_and_torch_inputs_agree_and_batches_accumulate():
    src, tgt, lab = _face()
    pred = src + 0.5 * (tgt - src)
    u8 = lambda x: np.round(x * 255).astype(np.uint8)  # noqa: E731
    a = look_fidelity(u8(pred), u8(src), u8(tgt), lab)
    b = look_fidelity(u8(pred) / 255.0, u8(src) / 255.0, u8(tgt) / 255.0, lab)
    t = lambda x: torch.from_numpy(u8(x).transpose(2, 0, 1)[None] / 255.0)  # noqa: E731
    c = look_fidelity(t(pred), t(src), t(tgt), torch.from_numpy(lab))
    for other in (b, c):
        assert other["recovery"]["lips"] == pytest.approx(a["recovery"]["lips"], abs=1e-6)
        assert other["spill"] == pytest.approx(a["spill"], abs=1e-6)
    acc = LookFidelity().update(pred[None], src[None], tgt[None], lab[None]).update(src[None], src[None], tgt[None], lab[None])
    assert acc.result()["recovery"]["lips"] == pytest.approx(0.25, abs=0.01)  # pooled over both images


def test_a_prediction_is_scored_as_the_8_bit_image_it_is_shown_as():
    """Targets are 8-bit images (the teacher's pairs, the renderer's truth). A float prediction of the exact
    change, off the 1/255 grid by less than half a level, is the target once shown: recovery 1, no spill; the
    same prediction a level off in the lips recovers less."""
    src, tgt, lab = _face()
    rng = np.random.default_rng(1)
    exact = tgt + rng.uniform(-0.45, 0.45, tgt.shape).astype(np.float32) / 255
    fid = look_fidelity(exact, src, tgt, lab)
    assert fid["recovery"]["lips"] == 1.0 and fid["spill"] == 0.0
    off = exact.copy()
    off[lab == LIPS] += 1.0 / 255
    assert look_fidelity(off, src, tgt, lab)["recovery"]["lips"] < 0.99


def test_eye_region_is_the_zone_where_liner_lies():
    _, _, lab = _face()
    masks = region_masks(lab)
    eyes = masks["eyes"][0].numpy()
    assert eyes[24:28, 16:26].all() and eyes[22, 20]  # the opening and the lid just above it
    assert not (masks["skin"][0].numpy() & eyes).any()


def test_shape_mismatch_is_an_error():
    src, tgt, lab = _face()
    with pytest.raises(ValueError):
        look_fidelity(src[:32], src, tgt, lab)


def test_the_cheeks_are_reported_and_see_a_blush_that_the_whole_skin_hides():
    """"cheeks" (the skin where makeup.metrics.cheek_map is above 0.5) is reported beside the four regions:
    on a rendered face with a foundation and a blush, a prediction that paints the foundation and no blush
    scores the whole skin 0.81 but the cheeks 0.24; half the blush on top raises the cheeks to 0.62; the cheeks
    are null when the look leaves the skin alone."""
    from dataclasses import replace

    from makeup.render import render_makeup
    from makeup.styles import load_style
    from makeup.synth import generate_face

    face = generate_face(2, 128)
    src = face.image.astype(np.float32) / 255
    base = load_style("glamorous")

    def only(*kinds):
        return replace(base, products={k: base.products[k] for k in kinds})

    tgt = render_makeup(face.image, face.labels, only("foundation", "blush")).astype(np.float32) / 255
    found = render_makeup(face.image, face.labels, only("foundation")).astype(np.float32) / 255
    no_blush = look_fidelity(found, src, tgt, face.labels)["recovery"]
    assert no_blush["skin"] > no_blush["cheeks"] + 0.3 and no_blush["cheeks"] < 0.35, no_blush
    half = look_fidelity(found + 0.5 * (tgt - found), src, tgt, face.labels)["recovery"]
    assert no_blush["cheeks"] + 0.2 < half["cheeks"] < 1.0, half
    src, tgt, lab = _face()  # a lipstick-only look
    assert look_fidelity(src, src, tgt, lab)["recovery"]["cheeks"] is None
