"""TinyBeauty model, checkpoints and PT2E QAT: shapes, residual identity, budget, round trips."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from makeup.errors import TinyBeautyError
from student.checkpoint import load_student, save_checkpoint
from student.model import (DEFAULT_CONFIG, StudentConfig, TinyBeauty, build_model, check_input_size,
                           count_macs, count_params)

SMALL = StudentConfig(widths=(4, 6, 8, 8))


def _rand(cfg: StudentConfig, n: int, h: int, w: int) -> torch.Tensor:
    """A model input: RGB in channels 0-2 (and, with region input, mask-like values in 3-6)."""
    return torch.rand(n, cfg.in_channels, h, w)


@pytest.mark.parametrize("hw", [(8, 8), (16, 40), (64, 64), (256, 256)])
def test_output_shape_matches_input_for_multiples_of_8(hw):
    model = build_model(SMALL).eval()
    x = _rand(SMALL, 2, *hw)
    with torch.no_grad():
        y = model(x)
    assert y.shape == (2, 3, *hw)
    assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0


@settings(max_examples=10, deadline=None)
@given(h=st.integers(1, 12), w=st.integers(1, 12), skip=st.sampled_from(["add", "concat"]))
def test_any_multiple_of_8_works_and_others_are_refused(h, w, skip):
    model = build_model(StudentConfig(widths=(2, 3, 4, 4), skip=skip, convs_per_level=1)).eval()
    with torch.no_grad():
        assert model(torch.rand(1, 8, 8 * h, 8 * w)).shape == (1, 3, 8 * h, 8 * w)
    with pytest.raises(TinyBeautyError):
        check_input_size(8 * h + 4, 8 * w)


def test_zero_final_conv_makes_the_net_the_identity():
    model = build_model(SMALL).eval()
    torch.nn.init.zeros_(model.head.weight)
    torch.nn.init.zeros_(model.head.bias)
    x = _rand(SMALL, 3, 32, 48)
    with torch.no_grad():
        assert torch.equal(model(x), x[:, :3])  # the RGB channels come back; the masks only steer
    # and a non-zero head really changes the output (the residual path is live)
    torch.nn.init.constant_(model.head.bias, 0.1)
    with torch.no_grad():
        assert not torch.equal(model(x * 0.5), x[:, :3] * 0.5)


def test_default_config_is_within_the_budget():
    model = TinyBeauty()
    params, macs = count_params(model), count_macs(model, 256)
    assert model.config == DEFAULT_CONFIG
    assert 40_000 <= params <= 65_000, params  # ~60K params keep every int8 artifact under 100 KB
    assert macs <= 0.7e9, macs
    # no normalisation layers and no reflect padding: they do not travel to int8 TFLite/ONNX/CoreML
    for m in model.modules():
        assert not isinstance(m, (torch.nn.BatchNorm2d, torch.nn.InstanceNorm2d, torch.nn.GroupNorm))
        if isinstance(m, torch.nn.Conv2d):
            assert m.padding_mode == "zeros"
    pools = [m for m in model.modules() if isinstance(m, torch.nn.MaxPool2d)]
    assert len(pools) == len({id(p) for p in pools}) == 3


def test_mac_count_scales_with_area():
    model = build_model(SMALL)
    assert count_macs(model, 128) * 4 == count_macs(model, 256)


def test_config_round_trip_and_validation():
    cfg = StudentConfig(widths=(8, 16, 24, 32), skip="concat", act="relu6", decoder_convs=2)
    assert StudentConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(TinyBeautyError, match="unknown student model options"):
        StudentConfig.from_dict({"width": [1, 2, 3, 4]})
    with pytest.raises(TinyBeautyError):
        StudentConfig(widths=(8, 16, 24))
    with pytest.raises(TinyBeautyError):
        StudentConfig(skip="mul")


def test_checkpoint_round_trip(tmp_path):
    model = build_model(SMALL)
    path = save_checkpoint(tmp_path / "s.pt", model, meta={"epoch": 7})
    ckpt = load_student(path)
    assert ckpt.config == SMALL and not ckpt.qat and ckpt.meta == {"epoch": 7}
    x = _rand(SMALL, 1, 16, 16)
    with torch.no_grad():
        assert torch.equal(ckpt.model(x), model.eval()(x))
    assert not list(tmp_path.glob(".*tmp*"))  # atomic write leaves no temp file


def test_checkpoints_saved_before_the_architecture_options_load_as_they_were_built(tmp_path):
    """A stop-14 checkpoint's config has no stem/upsample/head: it loads as nearest upsampling + 3x3 head (the
    function it was trained as; NearestUp2 is nn.Upsample's nearest bit for bit); one saved before stop 20 has
    no region_input: it loads as the RGB-only net it was."""
    from student.model import LEGACY

    legacy = StudentConfig.from_dict({**LEGACY, "widths": (4, 6, 8, 8)})
    model = build_model(legacy)
    path = save_checkpoint(tmp_path / "old.pt", model)
    payload = torch.load(path, weights_only=False)
    for key in LEGACY:
        payload["config"].pop(key)
    torch.save(payload, path)
    ckpt = load_student(path)
    assert ckpt.config == legacy and ckpt.config.in_channels == 3 and not ckpt.config.region_input
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(ckpt.model(x), model.eval()(x))
        # and the default (xnnpack) spelling of the same weights is the same function (to float rounding:
        # 1 - (1 - y) is not always y in float32)
        new = build_model(StudentConfig(widths=(4, 6, 8, 8), region_input=False))
        new.load_state_dict(model.state_dict())
        assert torch.allclose(new.eval()(x), ckpt.model(x), atol=1e-6, rtol=0)


@settings(max_examples=20, deadline=None)
@given(h=st.integers(1, 6), w=st.integers(1, 6), c=st.integers(1, 5))
def test_nearest_up2_is_nn_upsample_bit_for_bit(h, w, c):
    from student.model import NearestUp2

    x = torch.rand(2, c, h, w)
    assert torch.equal(NearestUp2()(x), torch.nn.Upsample(scale_factor=2, mode="nearest")(x))


@settings(max_examples=20, deadline=None)
@given(h=st.integers(1, 6), w=st.integers(1, 6), n=st.integers(1, 2))
def test_depth_to_space_places_each_channel_in_its_subpixel(h, w, n):
    from student.model import DepthToSpace2

    x = torch.rand(n, 12, h, w)
    y = DepthToSpace2()(x)
    assert y.shape == (n, 3, 2 * h, 2 * w)
    for dy in (0, 1):
        for dx in (0, 1):
            c = 6 * dy + 3 * dx
            assert torch.equal(y[:, :, dy::2, dx::2], x[:, c:c + 3])


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(-3, 3, width=32), min_size=1, max_size=64))
def test_clamp01_is_clamp(values):
    from student.model import clamp01

    y = torch.tensor(values)
    assert torch.allclose(clamp01(y), y.clamp(0, 1), atol=1e-6)


@pytest.mark.parametrize("options", [{"stem": "s2d"}, {"head": "s2d"}, {"head": "1x1"}, {"upsample": "bilinear"},
                                     {"spelling": "torch"}, {"head": "subpixel"}, {"last_relu": False}, {}])
def test_every_architecture_option_keeps_shape_range_and_identity(options):
    cfg = StudentConfig.from_dict({"widths": (4, 6, 8, 8), **options})
    model = build_model(cfg).eval()
    torch.nn.init.zeros_(model.head.weight)
    torch.nn.init.zeros_(model.head.bias)
    x = _rand(cfg, 2, 32, 48)
    with torch.no_grad():
        assert torch.equal(model(x), x[:, :3])  # a zero head is the identity in every variant
        torch.nn.init.constant_(model.head.bias, 0.6)
        y = model(x)
    assert y.shape == (2, 3, 32, 48) and float(y.max()) == 1.0 and float(y.min()) >= 0.0
    if cfg.stem == "s2d":
        with pytest.raises(TinyBeautyError, match="multiples of 16"):
            check_input_size(24, 32, cfg)


def test_linear_features_into_the_head_cannot_all_die():
    """The failure last_relu=False removes: once every unit of the last decoder conv is negative on every input,
    its ReLU passes nothing, the head gets no gradient and the net is stuck at its head's bias (stop 25's red_lip
    student: 0 of 12 units live, +0.0 dB over its prior). The same weights without that ReLU still feed the
    head, and training moves it."""
    torch.manual_seed(0)
    for last_relu, stuck in ((True, True), (False, False)):
        cfg = StudentConfig(widths=(4, 6, 8, 8), last_relu=last_relu)
        model = build_model(cfg)
        last = model.dec[-1].convs
        assert isinstance(last[-1], torch.nn.ReLU) == last_relu
        assert sum(isinstance(m, torch.nn.ReLU) for m in model.modules()) == 14 - (not last_relu)
        with torch.no_grad():  # every unit of the last layer negative on every input; a small head
            last[0].weight.zero_()
            last[0].bias.fill_(-1.0)
            model.head.weight.mul_(0.01)
        x = _rand(cfg, 2, 16, 16)
        loss = (model(x) - x[:, :3] - 0.1).abs().mean()
        loss.backward()
        assert (float(model.head.weight.grad.abs().sum()) == 0.0) == stuck
        assert (float(last[0].weight.grad.abs().sum()) == 0.0) == stuck


@settings(max_examples=15, deadline=None)
@given(h=st.integers(1, 6), w=st.integers(1, 6), cin=st.integers(1, 5), seed=st.integers(0, 2**16))
def test_subpixel_head_is_the_3x3_conv(h, w, cin, seed):
    """The 4x4 stride-2 + depth-to-space spelling computes the 3x3 head exactly, borders included, and a
    "conv" model's weights load into it as they are."""
    from student.model import DepthToSpace2, SubpixelConv3x3

    torch.manual_seed(seed)
    conv = torch.nn.Conv2d(cin, 3, 3, padding=1)
    sub = SubpixelConv3x3(cin, 3)
    sub.load_state_dict(conv.state_dict())
    x = torch.randn(2, cin, 2 * h, 2 * w)
    with torch.no_grad():
        assert torch.allclose(DepthToSpace2()(sub(x)), conv(x), atol=1e-5)
    plain, spelled = build_model(SMALL).eval(), build_model(StudentConfig.from_dict({**SMALL.to_dict(),
                                                                                     "head": "subpixel"})).eval()
    torch.nn.init.normal_(plain.head.weight, std=0.05)
    spelled.load_state_dict(plain.state_dict())
    x = _rand(SMALL, 1, 8 * h, 8 * w)
    with torch.no_grad():
        assert torch.allclose(spelled(x), plain(x), atol=1e-5)


def test_bad_checkpoints_are_one_clear_error(tmp_path):
    with pytest.raises(TinyBeautyError, match="no such student checkpoint"):
        load_student(tmp_path / "missing.pt")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(TinyBeautyError, match="not a readable student checkpoint"):
        load_student(garbage)
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(TinyBeautyError, match="not a TinyBeauty student checkpoint"):
        load_student(foreign)


@pytest.fixture(scope="module")
def qat_trained(tmp_path_factory):
    """A small model, QAT-prepared with dynamic batch and size, trained a few steps, saved."""
    from student.qat import float_state_from_prepared, prepare_qat, set_qat_mode

    torch.manual_seed(0)
    model = build_model(SMALL)
    x = _rand(SMALL, 4, 32, 32)
    prepared, _ = prepare_qat(model, x, dynamic_batch=True, dynamic_size=True)
    opt = torch.optim.Adam(prepared.parameters(), lr=1e-3)
    for _ in range(5):
        loss = (prepared(x) - x[:, :3]).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    set_qat_mode(prepared, train=False)
    model.load_state_dict(float_state_from_prepared(prepared, model))
    path = save_checkpoint(tmp_path_factory.mktemp("qat") / "q.pt", model, qat_state=prepared.state_dict())
    return prepared, model.eval(), path


def test_qat_trains_in_batches_of_any_size(qat_trained):
    prepared, _, _ = qat_trained
    for n, h, w in [(1, 32, 32), (3, 64, 40)]:
        with torch.no_grad():
            assert prepared(_rand(SMALL, n, h, w)).shape == (n, 3, h, w)


def test_qat_converted_graph_stays_close_to_float(qat_trained):
    from student.qat import convert_qat

    prepared, model, _ = qat_trained
    x = _rand(SMALL, 2, 32, 32)
    with torch.no_grad():
        ref = model(x)
        for fold in (True, False):
            q = convert_qat(prepared, fold_quantize=fold)(x)
            assert q.shape == ref.shape
            assert float((q - ref).abs().mean()) < 0.02
            assert float((q - ref).abs().max()) < 0.15


def test_restore_qat_reproduces_the_prepared_graph(qat_trained):
    from student.qat import restore_qat

    prepared, _, path = qat_trained
    ckpt = load_student(path)
    assert ckpt.qat and ckpt.qat_state is not None
    restored = restore_qat(ckpt, example=_rand(SMALL, 1, 32, 32), dynamic_size=True)
    x = _rand(SMALL, 2, 32, 32)
    with torch.no_grad():
        assert torch.allclose(restored(x), prepared(x), atol=1e-6)
    with pytest.raises(TinyBeautyError, match="not a QAT checkpoint"):
        restore_qat(load_student(save_checkpoint(path.parent / "f.pt", build_model(SMALL))))


def test_runtime_runs_float_and_qat_checkpoints(qat_trained, tmp_path):
    from student.runtime import load_runner

    prepared, model, path = qat_trained
    x = np.random.default_rng(0).random((2, 8, 32, 32), dtype=np.float32)
    qat_runner = load_runner(path)
    assert qat_runner.qat and qat_runner.channels == 8 and qat_runner(x).shape == (2, 3, 32, 32)
    float_path = save_checkpoint(tmp_path / "f.pt", model)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    assert np.allclose(load_runner(float_path)(x), ref, atol=1e-6)
    assert np.abs(qat_runner(x) - ref).mean() < 0.02
    with pytest.raises(TinyBeautyError, match="unsupported model type"):
        load_runner(tmp_path / "model.bin")


def test_runtime_runs_onnx_in_both_layouts(tmp_path):
    from student.runtime import load_runner

    model = build_model(SMALL).eval()
    x = _rand(SMALL, 1, 32, 32)

    class NHWC(torch.nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, t):
            return self.net(t.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)

    torch.onnx.export(model, (x,), tmp_path / "nchw.onnx", dynamo=False, input_names=["image"])
    torch.onnx.export(NHWC(model), (x.permute(0, 2, 3, 1),), tmp_path / "nhwc.onnx", dynamo=False)
    with torch.no_grad():
        ref = model(x).numpy()
    from export.onnx import onnx_to_ort

    onnx_to_ort(tmp_path / "nchw.onnx", tmp_path / "nchw.ort")  # ONNX Runtime Mobile's format, as export writes it
    for name, layout in (("nchw.onnx", "NCHW"), ("nhwc.onnx", "NHWC"), ("nchw.ort", "NCHW")):
        runner = load_runner(tmp_path / name)
        assert runner.layout == layout and runner.size == (32, 32) and runner.channels == 8
        batch = np.concatenate([x.numpy(), x.numpy()])
        assert np.allclose(runner(batch), np.concatenate([ref, ref]), atol=1e-5)
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x00junk")
    with pytest.raises(TinyBeautyError, match="not a loadable ONNX model"):
        load_runner(garbage)


def _face_labels(size: int = 32) -> np.ndarray:
    from makeup.regions import BROWS, EYES, LIPS, SKIN

    lab = np.zeros((size, size), np.uint8)
    lab[4:28, 4:28] = SKIN
    lab[9:12, 8:13] = EYES
    lab[9:12, 19:24] = EYES
    lab[5:8, 8:24] = BROWS
    lab[20:24, 11:21] = LIPS
    return lab


def test_region_channels_are_the_gates_soft_masks_in_region_order_then_the_cheeks():
    """The student's region input is makeup.gate.soft_region_masks at REGION_FEATHER: eye zone, lips, skin
    outside the zone, brows; 1 inside a region away from its edge, 0 far outside, soft at the edge; then the
    cheeks (the cheek map times the soft skin); a count of 4 leaves the cheeks out."""
    from makeup.gate import soft_region_masks
    from makeup.metrics import cheek_map
    from makeup.metrics import FIDELITY_REGIONS, region_masks
    from student.model import REGION_FEATHER, region_channels

    lab = _face_labels(64 // 2).repeat(2, 0).repeat(2, 1)  # 64x64: sigma 0.64 px
    ch = region_channels(np.stack([lab, lab]))
    assert ch.shape == (2, 5, 64, 64) and ch.dtype == np.float32
    assert np.array_equal(ch[0, :4], soft_region_masks(lab, REGION_FEATHER)) and np.array_equal(ch[0], ch[1])
    assert np.array_equal(ch[0, 4], cheek_map(lab) * ch[0, 2])
    assert np.array_equal(region_channels(lab, 4)[0], ch[0, :4])
    hard = region_masks(lab)
    for i, region in enumerate(FIDELITY_REGIONS):
        m = hard[region][0].numpy()
        inner = ~np.asarray(torch.nn.functional.max_pool2d(torch.from_numpy(~m)[None, None].float(), 5, 1, 2)[0, 0],
                            bool)
        assert ch[0, i][inner].min() > 0.99, region
        far = ~np.asarray(torch.nn.functional.max_pool2d(torch.from_numpy(m)[None, None].float(), 9, 1, 4)[0, 0],
                          bool)
        assert ch[0, i][far].max() < 1e-3, region
        edge = (ch[0, i] > 0.05) & (ch[0, i] < 0.95)
        assert edge.any(), region


def test_a_four_mask_student_takes_seven_channels_and_its_checkpoint_loads_as_it_was(tmp_path):
    """A region-input checkpoint saved before the cheeks (no cheek_input in its config) is the 7-channel net it
    was: the runner feeds it the four masks."""
    from student.model import model_input
    from student.runtime import load_runner

    four = StudentConfig(widths=(4, 6, 8, 8), cheek_input=False)
    assert four.in_channels == 7 and four.mask_channels == 4
    model = build_model(four).eval()
    torch.nn.init.normal_(model.head.weight, std=0.1)
    path = save_checkpoint(tmp_path / "four.pt", model)
    payload = torch.load(path, weights_only=False)
    payload["config"].pop("cheek_input")
    torch.save(payload, path)
    runner = load_runner(path)
    lab = _face_labels()[None]
    rgb = np.random.default_rng(2).random((1, 3, 32, 32), dtype=np.float32)
    assert runner.channels == 7
    with torch.no_grad():
        ref = model(torch.from_numpy(model_input(7, rgb, lab))).numpy()
    assert np.allclose(runner(rgb, lab), ref, atol=1e-6)
    assert StudentConfig(region_input=False).in_channels == 3  # RGB only: no masks, the cheeks' neither


def test_the_runner_builds_the_region_input_from_labels_and_refuses_without_them(tmp_path):
    """Every artifact is called with an RGB batch and its labels: a region-input runner appends the masks
    (the same input the net gets from model_input); without labels it is one clear error."""
    from student.model import model_input
    from student.runtime import load_runner

    torch.manual_seed(0)
    model = build_model(SMALL).eval()
    torch.nn.init.normal_(model.head.weight, std=0.1)
    path = save_checkpoint(tmp_path / "f.pt", model)
    runner = load_runner(path)
    lab = np.stack([_face_labels(), np.roll(_face_labels(), 3, axis=1)])
    rgb = np.random.default_rng(1).random((2, 3, 32, 32), dtype=np.float32)
    full = model_input(SMALL.in_channels, rgb, lab)
    assert full.shape == (2, 8, 32, 32) and np.array_equal(full[:, :3], rgb)
    with torch.no_grad():
        ref = model(torch.from_numpy(full)).numpy()
    assert np.allclose(runner(rgb, lab), ref, atol=1e-6) and np.allclose(runner(full), ref, atol=1e-6)
    # the masks steer the output: other labels, other output
    assert not np.allclose(runner(rgb, lab[::-1].copy()), ref, atol=1e-3)
    with pytest.raises(TinyBeautyError, match="region masks"):
        runner(rgb)
    with pytest.raises(TinyBeautyError, match="expected an"):
        runner(np.zeros((1, 5, 32, 32), np.float32))


@pytest.fixture(scope="module")
def look_prior():
    """A look prior fit on two rendered 64-px faces (glamorous): what a prior-input student's trainer keeps."""
    from makeup.lookprior import LookPrior
    from makeup.render import render_makeup
    from makeup.synth import generate_face

    faces = [generate_face(s, 64) for s in range(2)]
    return LookPrior.fit([f.image for f in faces], [render_makeup(f.image, f.labels, "glamorous") for f in faces],
                         [f.labels for f in faces])


def test_a_prior_input_student_reads_the_painted_prior_and_starts_as_the_prior(look_prior):
    """RGB, the 5 masks, then the look prior painted on the face (11 channels; 10 with 4 masks); the net adds
    the prior to its output and a new net (zero head) is exactly the prior: clamp(RGB + prior)."""
    from makeup.synth import generate_face
    from student.model import model_input, prior_channels, split_channels

    cfg = StudentConfig(widths=(4, 6, 8, 8), prior_input=True)
    assert cfg.in_channels == 11 and StudentConfig(prior_input=True, cheek_input=False).in_channels == 10
    assert [split_channels(c) for c in (3, 7, 8, 10, 11)] == [(0, 0), (4, 0), (5, 0), (4, 3), (5, 3)]
    with pytest.raises(TinyBeautyError, match="not 9"):
        split_channels(9)
    with pytest.raises(TinyBeautyError, match="needs region_input"):
        StudentConfig(prior_input=True, region_input=False)
    faces = [generate_face(s, 64) for s in (5, 6)]
    rgb = torch.from_numpy(np.stack([f.image for f in faces]).transpose(0, 3, 1, 2).astype(np.float32) / 255)
    lab = np.stack([f.labels for f in faces])
    x = model_input(cfg.in_channels, rgb, lab, look_prior)
    painted = prior_channels(look_prior, rgb, lab)
    assert x.shape == (2, 11, 64, 64) and torch.equal(x[:, 8:], torch.from_numpy(painted))
    assert np.abs(painted).max() > 0.05  # the look is in it
    assert torch.equal(model_input(cfg.in_channels, rgb, lab, torch.from_numpy(painted)), x)  # painted already
    with pytest.raises(TinyBeautyError, match="look prior"):
        model_input(cfg.in_channels, rgb, lab)
    model = build_model(cfg).eval()
    with torch.no_grad():
        assert torch.allclose(model(x), (rgb + x[:, 8:]).clamp(0, 1), atol=1e-6)


def test_the_runner_paints_the_checkpoints_look_prior(look_prior, tmp_path):
    """A prior-input checkpoint carries its look prior in its meta; the runner paints it from an RGB batch and
    labels, as the trainer fed the net. Without the prior in the meta: one clear error."""
    from makeup.synth import generate_face
    from student.model import model_input
    from student.runtime import load_runner

    torch.manual_seed(0)
    cfg = StudentConfig(widths=(4, 6, 8, 8), prior_input=True)
    model = build_model(cfg).eval()
    torch.nn.init.normal_(model.head.weight, std=0.1)
    path = save_checkpoint(tmp_path / "p.pt", model, meta={"look_prior": look_prior.state()})
    face = generate_face(9, 64)
    rgb = (face.image.transpose(2, 0, 1)[None] / 255.0).astype(np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(model_input(cfg.in_channels, rgb, face.labels[None], look_prior))).numpy()
    runner = load_runner(path)
    assert runner.channels == 11 and np.allclose(runner(rgb, face.labels[None]), ref, atol=1e-6)
    assert load_student(path).config == cfg
    bare = load_runner(save_checkpoint(tmp_path / "bare.pt", model))
    with pytest.raises(TinyBeautyError, match="look prior"):
        bare(rgb, face.labels[None])


def test_prior_only_scores_the_look_prior_without_the_network(look_prior, tmp_path):
    """``eval --prior-only``: the runner's inputs, painted alone: clamp(photo + prior), whatever the net
    learned; a model that reads no prior is one clear error."""
    from makeup.synth import generate_face
    from student.model import prior_channels
    from student.runtime import load_runner, prior_only

    model = build_model(StudentConfig(widths=(4, 6, 8, 8), prior_input=True)).eval()
    torch.nn.init.normal_(model.head.weight, std=0.1)  # a net that changes the face beyond its prior
    runner = load_runner(save_checkpoint(tmp_path / "p.pt", model, meta={"look_prior": look_prior.state()}))
    face = generate_face(9, 64)
    rgb = (face.image.transpose(2, 0, 1)[None] / 255.0).astype(np.float32)
    want = np.clip(rgb + prior_channels(look_prior, rgb, face.labels[None]), 0, 1)
    alone = prior_only(runner)
    assert np.array_equal(alone(rgb, face.labels[None]), want)
    assert not np.allclose(runner(rgb, face.labels[None]), want, atol=1e-3)
    with pytest.raises(TinyBeautyError, match="reads no look prior"):
        prior_only(load_runner(save_checkpoint(tmp_path / "n.pt", build_model(SMALL))))
