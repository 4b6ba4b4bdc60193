"""The look gate (makeup.gate.LookGate): learned from pairs, clips a change to the look's range per region."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from makeup.gate import IDENTITY, OPPONENT, LookGate
from makeup.regions import BROWS, EYES, LIPS, SKIN


def _pairs(n=3, size=64, seed=0):
    rng = np.random.default_rng(seed)
    lab = np.zeros((size, size), np.uint8)
    lab[8:56, 8:56] = SKIN
    lab[18:20, 16:26] = BROWS
    lab[24:28, 16:26] = EYES
    lab[44:50, 24:40] = LIPS
    srcs = [rng.integers(60, 200, (size, size, 3)).astype(np.uint8) for _ in range(n)]
    tgts = []
    for s in srcs:
        t = s.astype(np.int16)
        t[lab == LIPS] += np.array([50, -30, -20], np.int16)  # red lipstick only
        tgts.append(np.clip(t, 0, 255).astype(np.uint8))
    return srcs, tgts, [lab] * n


def test_gate_learns_the_regions_and_signed_ranges_of_the_look():
    gate = LookGate.from_pairs(*_pairs(), basis=IDENTITY)  # per RGB channel: the ranges read directly
    assert gate.regions == ["lips"]
    lo, hi = gate.bounds["lips"]
    assert hi[0] == pytest.approx(50 / 255, abs=0.01) and lo[1] == pytest.approx(-30 / 255, abs=0.01)
    assert lo[0] == 0.0 and hi[1] == 0.0  # red only goes up, green only down
    again = LookGate.from_dict(gate.to_dict())
    assert again.regions == gate.regions and again.bounds["lips"] == (tuple(lo), tuple(hi))


@given(st.integers(0, 2**31 - 1))
@settings(max_examples=8, deadline=None)
def test_gating_keeps_pixels_outside_the_gate_equal_to_the_photo(seed):
    srcs, tgts, labs = _pairs()
    gate = LookGate.from_pairs(srcs, tgts, labs, basis=IDENTITY)
    rng = np.random.default_rng(seed)
    photo = rng.integers(0, 256, (64, 64, 3)).astype(np.uint8)
    garish = np.clip(photo.astype(int) + rng.integers(-120, 121, photo.shape), 0, 255).astype(np.uint8)
    out = gate.apply(photo, garish, labs[0])
    reach = int(np.ceil(3 * gate.feather * 64 / 2)) + 1  # the feathered edge's reach
    near_lips = np.zeros((64, 64), bool)
    near_lips[44 - reach:50 + reach, 24 - reach:40 + reach] = True
    np.testing.assert_array_equal(out[~near_lips], photo[~near_lips])
    # Inside the lips the change is kept, but only within the look's range per channel.
    delta = out[46:48, 28:36].astype(int) - photo[46:48, 28:36].astype(int)
    assert (delta[..., 0] >= -1).all() and (delta[..., 0] <= 51).all() and (delta[..., 1] <= 1).all()
    assert np.abs(delta).sum() > 0


@pytest.mark.parametrize("basis", [IDENTITY, OPPONENT])
def test_the_target_passes_the_gate_of_its_own_look(basis):
    srcs, tgts, labs = _pairs()
    gate = LookGate.from_pairs(srcs, tgts, labs, basis=basis)
    out = gate.apply(srcs[0], tgts[0], labs[0])
    inner = np.zeros((64, 64), bool)
    inner[46:48, 27:37] = True  # away from the feathered edge
    np.testing.assert_array_equal(out[inner], tgts[0][inner])


@pytest.mark.parametrize("basis", [IDENTITY, OPPONENT])
def test_a_region_keeps_its_whole_range_up_to_its_edge(basis):
    """The gate's limits are feathered outward: on a region's own pixels its range holds whole, up to the edge
    and on a thin one, not averaged with a neighbour's narrower range; outside the regions they fade. With the
    soft masks alone (0.5 on an edge, under 1 across thin lips, the skin's range mixed in) the astronaut's lips
    were cut (glamorous: 0.79 ungated, 0.56 gated)."""
    rng = np.random.default_rng(3)
    lab = np.zeros((128, 128), np.uint8)
    lab[16:112, 16:112] = SKIN
    lab[88:91, 48:80] = LIPS  # 3 px thin: its soft mask is under 1 everywhere
    skin = lab == SKIN
    srcs, tgts = [rng.integers(60, 200, (128, 128, 3)).astype(np.uint8) for _ in range(3)], []
    for s in srcs:
        t = s.astype(np.int16)
        t[lab == LIPS] += np.array([60, -35, -25], np.int16)
        t[skin] += 2  # a faint foundation: a narrow range next to the lips' wide one
        tgts.append(np.clip(t, 0, 255).astype(np.uint8))
    gate = LookGate.from_pairs(srcs, tgts, [lab] * len(srcs), basis=basis)
    assert gate.regions == ["lips", "skin"]
    out = gate.apply(srcs[0], tgts[0], lab)
    lips = lab == LIPS
    assert np.abs(out[lips].astype(int) - tgts[0][lips]).max() <= 1
    lo, hi = gate.limits(lab)
    np.testing.assert_allclose(hi[lips], np.broadcast_to(np.asarray(gate.bounds["lips"][1], np.float32),
                                                         hi[lips].shape), atol=1e-6)
    # Outside every region the limits fade from the edge (the soft skin mask, under 1 there) to 0 beyond its reach.
    edge = np.abs(hi[15, 20:108]).max(-1)
    skin_hi = np.abs(np.asarray(gate.bounds["skin"][1], np.float32)).max()
    assert (edge > 0.2 * skin_hi).all() and (edge < 0.8 * skin_hi).all()
    assert not hi[:10].any() and not lo[:10].any()


def _liner_pairs(n=3, size=64, seed=1):
    """A look that only darkens the eye zone (a liner: towards black), on skin-coloured faces."""
    rng = np.random.default_rng(seed)
    lab = np.zeros((size, size), np.uint8)
    lab[8:56, 8:56] = SKIN
    lab[28:32, 16:48] = EYES
    srcs, tgts = [], []
    for _ in range(n):
        s = np.clip(np.array([200, 160, 140]) + rng.integers(-15, 16, (size, size, 3)), 0, 255).astype(np.uint8)
        t = s.astype(np.float32)
        t[lab == EYES] *= rng.uniform(0.3, 0.9, ((lab == EYES).sum(), 1))  # darker, same hue
        srcs.append(s)
        tgts.append(np.round(t).astype(np.uint8))
    return srcs, tgts, [lab] * n


def _chroma(img):
    x = img.astype(np.float32)
    return np.stack([x[..., 0] - x[..., 1], (x[..., 0] + x[..., 1]) / 2 - x[..., 2]], axis=-1)


def test_opponent_gate_stops_a_red_stroke_where_the_look_only_darkens():
    """The red_lip student painted red on the astronaut's eye rims, where red_lip's liner only darkens: each RGB
    channel's move (R level, G and B down) is within the liner's range, so the RGB box let the red through; in
    the opponent basis the colour axes of a liner are closed and only the darkening passes."""
    srcs, tgts, labs = _liner_pairs()
    photo, lab = srcs[0], labs[0]
    zone = np.zeros((64, 64), bool)
    zone[29:31, 22:42] = True  # inside the eye zone, away from its feathered edge
    red = photo.astype(np.int16)
    red[zone] += np.array([0, -60, -60], np.int16)  # a red stroke: R kept, G and B down
    red = np.clip(red, 0, 255).astype(np.uint8)
    rgb = LookGate.from_pairs(srcs, tgts, labs, basis=IDENTITY).apply(photo, red, lab)
    opp = LookGate.from_pairs(srcs, tgts, labs).apply(photo, red, lab)
    shift = lambda out: np.abs(_chroma(out)[zone] - _chroma(photo)[zone]).mean()  # noqa: E731
    assert shift(rgb) > 30, "the RGB box lets the red through (what the astronaut showed)"
    assert shift(opp) < 6, shift(opp)
    # The darkening the stroke carries still passes: the zone got darker, not just left alone.
    assert (opp[zone].astype(float).mean(-1) < photo[zone].astype(float).mean(-1) - 10).mean() > 0.9
    # A liner-like change (darker, same hue) passes the opponent gate as it is.
    dark = np.round(photo.astype(np.float32) * np.where(zone[..., None], 0.6, 1.0)).astype(np.uint8)
    out = LookGate.from_pairs(srcs, tgts, labs).apply(photo, dark, lab)
    assert np.abs(out[zone].astype(int) - dark[zone].astype(int)).max() <= 1


def test_gate_basis_round_trips_and_older_cards_stay_rgb():
    srcs, tgts, labs = _pairs()
    gate = LookGate.from_pairs(srcs, tgts, labs)
    card = gate.to_dict()
    fwd, inv = (np.array(card[k], np.float64) for k in ("basis", "basis_inverse"))
    np.testing.assert_allclose(fwd @ inv, np.eye(3), atol=1e-6)
    again = LookGate.from_dict(card)
    assert again == gate and again.to_dict() == card
    rng = np.random.default_rng(0)
    pred = rng.integers(0, 256, (64, 64, 3)).astype(np.uint8)
    np.testing.assert_array_equal(again.apply(srcs[0], pred, labs[0]), gate.apply(srcs[0], pred, labs[0]))
    # A gate stored before the basis existed (no "basis" key) is the per-channel box it was written as.
    old = {k: v for k, v in LookGate.from_pairs(srcs, tgts, labs, basis=IDENTITY).to_dict().items()
           if k not in ("basis", "basis_inverse")}
    assert LookGate.from_dict(old).basis == IDENTITY


def test_the_cheek_map_lies_on_the_cheekbones_of_real_label_maps():
    """makeup.metrics.cheek_map from the label map alone: on synthetic faces of every build its blobs sit where
    the renderer's blush does (most of the blush's weight falls where the map is high, little of the map on
    the eyes, lips or background), one per side, mirrored with the face; nothing without lips; one blob with
    one eye; the same at twice the size (it scales with the face)."""
    import cv2

    from makeup.metrics import cheek_map
    from makeup.render import FaceGeometry, _blush_alpha
    from makeup.styles import load_style
    from makeup.synth import generate_face

    blush = load_style("glamorous").products["blush"]
    for seed in range(6):
        lab = generate_face(seed, 128).labels
        c = cheek_map(lab)
        assert c.dtype == np.float32 and c.shape == lab.shape and 0 <= c.min() and c.max() <= 1
        alpha = _blush_alpha(FaceGeometry.from_labels(lab), blush)
        assert (alpha * c).sum() / alpha.sum() > 0.6, seed  # the blush's weight sits under the map
        assert c[np.isin(lab, (EYES, LIPS))].max() < 0.5 and c[lab == 0].mean() < 0.05, seed
        left, right = c[:, :64], c[:, 64:]
        assert left.max() > 0.9 and right.max() > 0.9, seed
        mirrored = cheek_map(lab[:, ::-1].copy())
        assert np.abs(mirrored[:, ::-1] - c).max() < 0.02, seed
        big = cheek_map(cv2.resize(lab, (256, 256), interpolation=cv2.INTER_NEAREST))
        assert np.abs(cv2.resize(big, (128, 128), interpolation=cv2.INTER_AREA) - c).max() < 0.05, seed
    assert not cheek_map(np.where(lab == LIPS, SKIN, lab)).any()  # no lips, no cheeks
    one_eye = np.where((lab == EYES) & (np.arange(128)[None] < 64), SKIN, lab)
    assert cheek_map(one_eye)[:, :64].max() < 0.5 < cheek_map(one_eye)[:, 64:].max()


def test_input_masks_are_the_gate_masks_then_the_cheeks_on_the_skin():
    from makeup.gate import INPUT_MASKS, input_masks, soft_region_masks
    from makeup.metrics import cheek_map
    from makeup.synth import generate_face

    lab = generate_face(3, 64).labels
    five = input_masks(lab)
    assert five.shape == (len(INPUT_MASKS), 64, 64) and INPUT_MASKS[-1] == "cheeks"
    assert np.array_equal(five[:4], soft_region_masks(lab)) and np.array_equal(input_masks(lab, 4), five[:4])
    assert np.array_equal(five[4], cheek_map(lab) * five[2])  # the cheeks fade where the skin does
    with pytest.raises(ValueError):
        input_masks(lab, 6)
