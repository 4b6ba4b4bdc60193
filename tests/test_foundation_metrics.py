import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from makeup import metrics
from makeup.metrics import eye_zone, eyeliner_loss, load_lpips, psnr, psnr_per_image, sobel_edges, ssim


def test_psnr_known_value():
    a = np.zeros((8, 8, 3), np.uint8)
    b = a.copy()
    b[...] = 10  # MSE = 100 on a 255 range
    assert psnr(a, b) == pytest.approx(10 * math.log10(255**2 / 100))
    assert math.isinf(psnr(a, a))


def test_psnr_torch_and_numpy_agree(astronaut):
    noisy = np.clip(astronaut.astype(int) + np.random.default_rng(0).integers(-5, 6, astronaut.shape), 0, 255)
    noisy = noisy.astype(np.uint8)
    t = lambda x: torch.from_numpy(x.astype(np.float32) / 255).permute(2, 0, 1)[None]
    assert psnr(t(astronaut), t(noisy)) == pytest.approx(psnr(astronaut, noisy), abs=1e-3)


def test_psnr_is_per_image_mean():
    a = torch.zeros(2, 3, 4, 4)
    b = a.clone()
    b[0] += 0.1
    b[1] += 0.01
    per = psnr_per_image(a, b)
    assert per == pytest.approx([20.0, 40.0]) and psnr(a, b) == pytest.approx(30.0)


def test_ssim_bounds(astronaut):
    assert ssim(astronaut, astronaut) == pytest.approx(1.0)
    assert ssim(astronaut, 255 - astronaut) < 0.2


def test_sobel_finds_edges_and_eyeliner_loss_is_masked():
    img = torch.zeros(1, 3, 16, 16)
    img[..., 8:] = 1.0  # vertical edge at x = 8
    e = sobel_edges(img)
    assert e.shape == (1, 1, 16, 16)
    assert e[0, 0, 5, 7:9].min() > 1.0 and e[0, 0, 5, 2] < 1e-2
    flat = torch.zeros_like(img)
    mask_on_edge = torch.zeros(1, 16, 16)
    mask_on_edge[:, :, 6:10] = 1
    mask_away = torch.zeros(1, 16, 16)
    mask_away[:, :, 0:3] = 1
    assert eyeliner_loss(flat, img, mask_on_edge) > 1.0
    assert eyeliner_loss(flat, img, mask_away) < 1e-2
    assert eyeliner_loss(img, img, torch.zeros(1, 16, 16)) == 0
    # differentiable: it is a training loss
    x = flat.clone().requires_grad_(True)
    eyeliner_loss(x, img, mask_on_edge).backward()
    assert x.grad.abs().sum() > 0


def test_eyeliner_loss_sees_a_liner_drawn_just_outside_the_eye_opening():
    """The "eyes" label is the opening; a liner stroke a few pixels above it must still count."""
    size = 128
    before = torch.full((1, 3, size, size), 0.7)
    opening = torch.zeros(1, size, size)
    opening[:, 60:66, 40:70] = 1
    lined = before.clone()
    lined[..., 55:58, 38:74] = 0.05  # liner above the upper lash line, 2-5 px outside the opening
    assert eyeliner_loss(before, lined, opening) > 0.05
    far = before.clone()
    far[..., 10:13, 38:74] = 0.05  # the same stroke on the forehead is not the eye's business
    assert eyeliner_loss(before, far, opening) == 0
    assert eyeliner_loss(before, lined, opening, reach=0.0) == 0  # the bare opening misses the liner
    zone = eye_zone(opening)
    assert zone.shape == (1, 1, size, size) and zone[0, 0, 55, 40] == 1 and zone[0, 0, 40, 40] == 0


def test_lpips_is_none_without_local_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.delenv(metrics.LPIPS_ENV, raising=False)
    assert load_lpips() is None


def test_lpips_loads_a_local_alexnet_file(tmp_path, monkeypatch):
    """Plumbing only: a randomly initialised AlexNet saved where a user would put the real one."""
    import torchvision

    torch.manual_seed(0)
    path = tmp_path / metrics.ALEXNET_FILE
    torch.save(torchvision.models.alexnet(weights=None).state_dict(), path)
    monkeypatch.setenv(metrics.LPIPS_ENV, str(tmp_path))
    m = load_lpips()
    assert m is not None and m.weights == path
    x = torch.rand(1, 3, 64, 64)
    assert m(x, x) == pytest.approx(0.0, abs=1e-6)
    assert m(x, torch.rand(1, 3, 64, 64)) > 0
    # the backbone really holds the file's weights
    sd = torch.load(path)
    assert torch.equal(m.net.net.slice1[0].weight, sd["features.0.weight"])


def test_lpips_rejects_a_wrong_file(tmp_path):
    bad = tmp_path / "x.pth"
    torch.save({"fc.weight": torch.zeros(1)}, bad)
    with pytest.raises(ValueError, match="AlexNet"):
        metrics.LPIPSMetric(bad)


def test_eyeliner_loss_weight_scales_each_image_and_is_not_divided_out():
    """A per-image weight (the teacher's alpha-bar trust) must scale the term; inside the mask it cancelled."""
    torch.manual_seed(0)
    pred, target = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16)
    eye = torch.zeros(2, 16, 16)
    eye[:, 6:10, 4:12] = 1
    base = eyeliner_loss(pred, target, eye)
    assert torch.isclose(eyeliner_loss(pred, target, eye, weight=torch.full((2,), 0.02)), 0.02 * base)
    half = eyeliner_loss(pred, target, eye, weight=torch.tensor([1.0, 0.0]))
    assert torch.isclose(half, eyeliner_loss(pred[:1], target[:1], eye[:1]) / 2)


@settings(max_examples=25, deadline=None)
@given(h=st.integers(4, 40), w=st.integers(4, 40), reach=st.floats(0.0, 0.3), seed=st.integers(0, 2**16))
def test_eye_zone_is_the_square_max_filter(h, w, reach, seed):
    """The row-then-column pass is the (2r+1)^2 max filter it replaced (padding never wins), for any mask."""
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(seed)
    m = torch.rand(2, 1, h, w, generator=g) > 0.85
    r = int(round(reach * h))
    ref = F.max_pool2d(m.float(), 2 * r + 1, stride=1, padding=r) if r > 0 else m.float()
    assert torch.equal(eye_zone(m, reach), ref)


@given(h=st.integers(8, 48), w=st.integers(8, 48), reach=st.floats(0.0, 0.3), seed=st.integers(0, 2**31 - 1))
@settings(max_examples=25, deadline=None)
def test_eye_zone_of_a_soft_mask_is_the_square_max_filter(h, w, reach, seed):
    """On the CPU eye_zone is cv2's dilation: for soft masks too, the (2r+1)^2 max filter, value for value."""
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(seed)
    m = torch.rand(3, 1, h, w, generator=g) * (torch.rand(3, 1, h, w, generator=g) > 0.9)
    r = int(round(reach * h))
    ref = F.max_pool2d(m, 2 * r + 1, stride=1, padding=r) if r > 0 else m
    assert torch.equal(eye_zone(m, reach), ref)
