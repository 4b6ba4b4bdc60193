"""The look gate (makeup.gate.LookGate): learned from pairs, clips a change to the look's range per region."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from makeup.gate import LookGate
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
    gate = LookGate.from_pairs(*_pairs())
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
    gate = LookGate.from_pairs(srcs, tgts, labs)
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


def test_the_target_passes_the_gate_of_its_own_look():
    srcs, tgts, labs = _pairs()
    gate = LookGate.from_pairs(srcs, tgts, labs)
    out = gate.apply(srcs[0], tgts[0], labs[0])
    inner = np.zeros((64, 64), bool)
    inner[46:48, 27:37] = True  # away from the feathered edge
    np.testing.assert_array_equal(out[inner], tgts[0][inner])
