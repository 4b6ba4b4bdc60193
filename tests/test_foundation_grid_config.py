import numpy as np
import pytest

from makeup.config import load_profile, merge
from makeup.errors import TinyBeautyError
from makeup.grid import heatmap, make_grid, save_grid
from makeup.io import load_image
from makeup.regions import RegionMap, feather, overlay


def test_grid_layout(tmp_path):
    a = np.full((10, 12, 3), 50, np.uint8)
    b = np.full((20, 24, 3), 200, np.uint8)  # resized to the first tile
    g = save_grid(tmp_path / "g.png", [[a, b], [b, a]], titles=["x", "y"])
    assert g.shape == (16 + 2 * 12 + 2, 2 * 14 + 2, 3)
    np.testing.assert_array_equal(load_image(tmp_path / "g.png"), g)
    assert (g[18:28, 2:14] == 50).all() and (g[18:28, 16:28] == 200).all()


def test_heatmap_monotone():
    h = heatmap(np.linspace(0, 1, 20).reshape(4, 5))
    lum = h.astype(int).sum(axis=2).ravel()
    assert (np.diff(lum) >= 0).all() and lum[0] == 0 and lum[-1] == 765


def test_region_map_and_feather():
    lab = np.zeros((20, 20), np.uint8)
    lab[5:10, 5:15] = 2
    rm = RegionMap(lab)
    assert rm.area("lips") == 50 and rm.mask("lips", "eyes").sum() == 50
    soft = rm.feathered("lips", radius=3)
    assert 0 < soft[4, 10] < 1 and soft[7, 10] > 0.9 and soft[0, 0] == 0
    with pytest.raises(ValueError):
        RegionMap(np.full((4, 4), 7, np.uint8))
    ov = overlay(np.zeros((20, 20, 3), np.uint8), lab)
    assert ov[0, 0].sum() == 0 and ov[7, 7, 0] > 0
    assert feather(rm.mask("lips"), 0).sum() == 50


def test_profiles_load_and_merge(tmp_path):
    for name in ("demo", "paper"):
        p = load_profile(name)
        assert {"teacher", "amplify", "student", "export"} <= set(p)
    with pytest.raises(TinyBeautyError, match="unknown profile"):
        load_profile("nope")
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1,\n")
    with pytest.raises(TinyBeautyError, match="not valid YAML"):
        load_profile(bad)
    assert merge({"a": {"b": 1, "c": 2}}, {"a": {"b": 3}, "d": None}) == {"a": {"b": 3, "c": 2}}
