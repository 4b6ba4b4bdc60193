"""The teacher's detail refiner (teacher/refine.py): identity at init, learns the detail a low-resolution
residual loses (measured per region vs the renderer on held-out faces), never paints outside the regions,
saved/loaded with the teacher, refused in one line when broken."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from makeup.errors import TinyBeautyError

SIZE, LOW = 96, 24


def _faces(seeds, size=SIZE, style="glamorous"):
    from makeup.render import render_makeup
    from makeup.synth import generate_face
    from teacher.train import SeedPair

    out = []
    for s in seeds:
        f = generate_face(s, size)
        out.append(SeedPair(str(s), f.image, render_makeup(f.image, f.labels, style), f.labels))
    return out


def _paste(pair, refiner):
    """The teacher's paste of a PERFECT low-resolution residual (the seed after taken down and back)."""
    from teacher.formulation import paste_residual, resize_image

    b, a = pair.before.astype(np.float32) / 255, pair.after.astype(np.float32) / 255
    low = resize_image(a, LOW) - resize_image(b, LOW)
    return paste_residual(pair.before, pair.labels, low, np.ones(4, np.float32), 0.0, refiner=refiner)


@pytest.fixture(scope="module")
def trained():
    from teacher.refine import train_refiner

    torch.manual_seed(0)
    pairs = _faces(range(300, 305))
    refiner, record = train_refiner(pairs, LOW, 2.0, {"steps": 250, "width": 12, "crop": 64, "pool": 3},
                                    {"flip": True}, progress=False)
    return refiner, record


def test_an_untrained_refiner_is_the_bicubic_paste():
    from teacher.refine import DetailRefiner, Refiner

    pair = _faces([7])[0]
    untrained = Refiner(DetailRefiner(8).eval(), LOW, SIZE)
    assert np.array_equal(_paste(pair, untrained), _paste(pair, None))


def test_refiner_recovers_detail_a_low_res_residual_loses(trained):
    """On held-out faces (never seen in training), vs the renderer: the refined paste recovers more of the eye
    zone (the liner) and spills less than the bicubic one. An identity refiner would fail both."""
    from makeup.metrics import look_fidelity

    refiner, record = trained
    held = _faces(range(900, 906))
    src = np.stack([p.before for p in held])
    gt = np.stack([p.after for p in held])
    labels = np.stack([p.labels for p in held])
    plain = look_fidelity(np.stack([_paste(p, None) for p in held]), src, gt, labels)
    refined = look_fidelity(np.stack([_paste(p, refiner) for p in held]), src, gt, labels)
    assert np.isfinite(record["final_loss"]) and record["steps"] == 250
    assert refined["recovery"]["eyes"] > plain["recovery"]["eyes"] + 0.05, (plain, refined)
    assert refined["psnr_gain"] > plain["psnr_gain"] + 0.5, (plain, refined)


def test_refined_paste_leaves_pixels_outside_the_regions_alone(trained):
    refiner, _ = trained
    pair = _faces([901])[0]
    out = _paste(pair, refiner)
    outside = pair.labels == 0
    assert outside.any() and np.array_equal(out[outside], pair.before[outside])


def test_save_load_round_trip_and_broken_file(trained, tmp_path):
    from teacher.refine import load_refiner

    refiner, _ = trained
    path = refiner.save(tmp_path / "refiner.pt")
    back = load_refiner(path)
    pair = _faces([902])[0]
    assert back.resolution == LOW and back.size == SIZE and back.settings["width"] == 12
    assert np.array_equal(_paste(pair, back), _paste(pair, refiner))
    path.write_bytes(b"not a torch file")
    with pytest.raises(TinyBeautyError, match="unreadable detail refiner"):
        load_refiner(path)


def test_refiner_refuses_a_teacher_at_full_resolution():
    from teacher.refine import train_refiner

    with pytest.raises(TinyBeautyError, match="already works at 96 px"):
        train_refiner(_faces([1]), SIZE, 2.0, {"steps": 1}, progress=False)


def test_teacher_train_writes_uses_and_drops_its_refiner(tmp_path):
    """`teacher train` trains the refiner with the teacher (config.yaml says so), load_teacher uses it unless
    told not to (and the pairs' fingerprint tells the two apart); a retrain with steps 0 removes the file."""
    from teacher.amplify import teacher_fingerprint
    from teacher.inference import load_teacher
    from teacher.train import train_teacher

    from test_teacher_amplify import TINY_MODEL, write_seed_pairs

    seeds = write_seed_pairs(tmp_path / "seeds")
    out = tmp_path / "teacher"
    cfg = {"epochs": 1, "sample_every": 1, "held_out_faces": 0, "device": "cpu", "model": TINY_MODEL,
           "refiner": {"steps": 5, "width": 4, "crop": 32, "pool": 1}}
    train_teacher(seeds, out, cfg, progress=False)
    import yaml

    recorded = yaml.safe_load((out / "config.yaml").read_text())["refiner"]
    assert (out / "refiner.pt").is_file() and recorded["steps"] == 5 and recorded["file"] == "refiner.pt"
    with_ref, without = load_teacher(out, "cpu"), load_teacher(out, "cpu", refiner=False)
    assert with_ref.refiner is not None and without.refiner is None
    assert teacher_fingerprint(with_ref) != teacher_fingerprint(without)
    train_teacher(seeds, out, {**cfg, "refiner": {"steps": 0}}, progress=False)
    assert not (out / "refiner.pt").exists() and load_teacher(out, "cpu").refiner is None
    assert yaml.safe_load((out / "config.yaml").read_text())["refiner"] is None


def test_refiner_training_is_deterministic_and_leaves_the_global_rng_alone():
    """Same seeds, same refiner (a resumed teacher may retrain it); the teacher trained after it draws from the
    same global torch stream as a teacher without one."""
    from teacher.refine import train_refiner

    pairs = _faces(range(310, 312))
    cfg = {"steps": 3, "width": 4, "crop": 32, "pool": 1}
    torch.manual_seed(5)
    state = torch.get_rng_state()
    a, _ = train_refiner(pairs, LOW, 2.0, cfg, progress=False)
    assert torch.equal(torch.get_rng_state(), state)
    b, _ = train_refiner(pairs, LOW, 2.0, cfg, progress=False)
    for (k, va), vb in zip(a.model.state_dict().items(), b.model.state_dict().values()):
        assert torch.equal(va, vb), k


def test_refiner_trains_on_what_a_perfect_teacher_pastes_with_its_prior():
    """The paste hands the refiner the upsampled correction to the prior plus the prior painted at full
    resolution (the eye template's liner is sharp there); the refiner's training input is exactly that for a
    perfect correction, and without a prior the plain low-resolution residual."""
    from teacher.formulation import (fit_region_prior, fit_templates, make_condition, prior_image, region_stack,
                                     prior_field, resize_image)
    from teacher.refine import _training_pool, low_res_residual

    pairs = _faces(range(320, 323))
    cols = [[p.before for p in pairs], [p.after for p in pairs], [p.labels for p in pairs]]
    const, colour, _ = fit_region_prior(*cols)
    tpl = fit_templates(*cols)
    terms = {"region_prior": const, "region_colour": colour, "templates": tpl}
    _, ups, _, _, _ = _training_pool(pairs[:1], LOW, 2.0, 1, {}, 0, terms)
    _, plain, _, _, _ = _training_pool(pairs[:1], LOW, 2.0, 1, {}, 0)
    p = pairs[0]
    b, a = p.before.astype(np.float32) / 255, p.after.astype(np.float32) / 255
    np.testing.assert_allclose(plain[0].numpy().transpose(1, 2, 0), low_res_residual(b, a, LOW), atol=1e-6)
    low = make_condition(p.before, p.labels, LOW, 2.0, tpl)
    low_prior = prior_image(low.masks.numpy(), low.source.numpy().transpose(1, 2, 0), const, colour, low.field.numpy())
    correction = (resize_image(a, LOW) - resize_image(b, LOW)) - low_prior
    pasted = resize_image(correction, SIZE) + prior_image(region_stack(p.labels, None, 2.0), b, const, colour,
                                                         prior_field(b, p.labels, tpl))
    np.testing.assert_allclose(ups[0].numpy().transpose(1, 2, 0), pasted, atol=1e-4)
    assert np.abs(ups[0] - plain[0]).max() > 0.02  # the prior's full-resolution detail is there
