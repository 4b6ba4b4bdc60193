"""The look prior (makeup.lookprior.LookPrior): fit on before/after pairs, painted on new faces from their
labels alone; what the teacher adds to its diffusion and a prior-input student reads and adds to its output."""
from __future__ import annotations

import json

import numpy as np
import pytest

from makeup.errors import TinyBeautyError
from makeup.lookprior import LookPrior
from makeup.metrics import look_fidelity
from makeup.render import render_makeup
from makeup.synth import generate_face


@pytest.fixture(scope="module")
def glamorous():
    """A prior fit on 6 rendered glamorous faces at 128 px, and 4 new faces with the renderer's truth."""
    faces = [generate_face(s, 128) for s in range(10)]
    pairs = [(f.image, render_makeup(f.image, f.labels, "glamorous"), f.labels) for f in faces]
    fit, new = pairs[:6], pairs[6:]
    return LookPrior.fit(*zip(*fit)), new, fit


def _fidelity(prior, faces) -> dict:
    src, tgt, lab = (np.stack(x) for x in zip(*faces))
    painted = np.stack([np.clip(b / 255.0 + prior.paint(b, m), 0, 1) for b, _, m in faces])
    return look_fidelity(painted, src / 255.0, tgt / 255.0, lab)


def test_a_prior_fit_on_a_few_pairs_paints_the_look_on_new_faces(glamorous):
    """The prior alone, no network, on new faces: a good part of the look's change in every region it
    touches, nothing outside the four regions (exactly); the templates and region models are what carry the
    eye makeup and the foundation (one colour per region does much worse there)."""
    prior, new, seeds = glamorous
    fid = _fidelity(prior, new)
    assert all(fid["recovery"][r] > 0.35 for r in ("eyes", "lips", "skin", "brows")), fid["recovery"]
    assert fid["psnr_gain"] > 4.0, fid
    for b, _, m in new:
        assert not prior.paint(b, m)[m == 0].any()  # outside eyes, lips, skin, brows: nothing
    plain = _fidelity(LookPrior.fit(*zip(*seeds), templates=(), region_models=False), new)
    assert fid["recovery"]["eyes"] > plain["recovery"]["eyes"] + 0.2, (fid["recovery"], plain["recovery"])
    assert fid["recovery"]["skin"] > plain["recovery"]["skin"] + 0.1, (fid["recovery"], plain["recovery"])


def test_the_prior_round_trips_through_arrays_tensors_and_json(glamorous):
    prior, new, _ = glamorous
    face, _, labels = new[0]
    want = prior.paint(face, labels)
    assert np.array_equal(LookPrior.from_arrays(prior.arrays()).paint(face, labels), want)
    assert np.array_equal(LookPrior.from_arrays(prior.state()).paint(face, labels), want)
    from_json = LookPrior.from_arrays(json.loads(json.dumps(prior.to_dict())))
    assert np.abs(from_json.paint(face, labels) - want).max() < 1e-3  # rounded to 5 decimals
    eyes = np.asarray(prior.to_dict()["template_eyes"])  # cells without support: written as zeros
    assert (prior.templates["eyes"][..., 4] == 0).any() and not eyes[eyes[..., 4] == 0].any()
    assert prior.templates and set(prior.templates) == {"eyes", "lips", "cheeks"} and prior.models is not None


def test_a_prior_written_before_the_cheeks_frame_still_loads(glamorous):
    """look_prior.json and checkpoints from before the cheeks' template have no "template_cheeks": they load as a
    prior without it and paint what it painted."""
    prior, new, _ = glamorous
    face, _, labels = new[0]
    old = {k: v for k, v in prior.to_dict().items() if k != "template_cheeks"}
    loaded = LookPrior.from_arrays(old)
    assert set(loaded.templates) == {"eyes", "lips"}
    without = LookPrior(prior.region_prior, prior.region_colour, {n: prior.templates[n] for n in ("eyes", "lips")},
                        prior.models, prior.gate, prior.radius)
    assert np.abs(loaded.paint(face, labels) - without.paint(face, labels)).max() < 1e-3
    with pytest.raises(TinyBeautyError, match="look prior"):  # a cheeks template of the wrong size
        LookPrior.from_arrays(old | {"template_cheeks": [[1.0, 2.0]]})


def test_the_cheeks_template_paints_the_blush(glamorous):
    """The blush lies below the eye grid: without the cheeks' frame the prior paints it as the skin's mean
    change (6 faces at 128 px: cheeks 0.28), with it in its place (0.72; 0.60 when the template replaced the
    skin's model instead of adding to it)."""
    prior, new, seeds = glamorous
    fid = _fidelity(prior, new)
    without = _fidelity(LookPrior.fit(*zip(*seeds), templates=("eyes", "lips")), new)
    assert fid["recovery"]["cheeks"] > without["recovery"]["cheeks"] + 0.2, (fid["recovery"], without["recovery"])
    assert fid["recovery"]["skin"] > without["recovery"]["skin"], (fid["recovery"], without["recovery"])


def test_a_prior_without_templates_or_models_paints_region_colours_only(glamorous):
    _, new, _ = glamorous
    plain = LookPrior.fit(*zip(*new[:3]), templates=(), region_models=False)
    assert plain.templates is None and plain.models is None
    face, _, labels = new[3]
    round_trip = LookPrior.from_arrays(plain.arrays())
    assert round_trip.templates is None and round_trip.models is None
    assert np.array_equal(round_trip.paint(face, labels), plain.paint(face, labels))


@pytest.mark.parametrize("data", [{}, {"region_prior": [1, 2]}, "not a prior"])
def test_a_broken_prior_is_one_clear_error(data):
    with pytest.raises(TinyBeautyError, match="look prior"):
        LookPrior.from_arrays(data)
    with pytest.raises(TinyBeautyError, match="at least one"):
        LookPrior.fit([], [], [])


def test_the_cheeks_template_adds_to_the_skin_model(glamorous):
    """Blush lies over foundation: where the cheeks' template holds (and the eye grid does not), the prior is the
    prior without it plus the template's own term, s k - s a clamp(photo), times the soft masks' union; the
    skin's model (the foundation's smoothing, face by face) stays under it."""
    from makeup.lookprior import TEMPLATE_FRAMES, region_stack, template_field

    prior, new, _ = glamorous
    face, _, labels = new[1]
    without = LookPrior(prior.region_prior, prior.region_colour, {n: prior.templates[n] for n in ("eyes", "lips")},
                        prior.models, prior.gate, prior.radius)
    photo = face / 255.0
    field = template_field(labels, {"cheeks": prior.templates["cheeks"]})
    term = field[:3] - field[3:4] * np.clip(photo.transpose(2, 0, 1), field[5:8], field[8:11])
    union = region_stack(labels, None, prior.radius).sum(0)
    cheeks = (TEMPLATE_FRAMES["cheeks"].cells(labels) >= 0) & (TEMPLATE_FRAMES["eyes"].cells(labels) < 0)
    assert cheeks.sum() > 200 and field[4][cheeks].max() == 0.0  # laid over the prior, not blended with it
    got = prior.paint(face, labels) - without.paint(face, labels)
    assert np.abs(got[cheeks] - (union[..., None] * term.transpose(1, 2, 0))[cheeks]).max() < 1e-5
    assert np.abs(got[cheeks]).max() > 0.02  # the blush: several levels
    assert not got[TEMPLATE_FRAMES["cheeks"].cells(labels) < 0].any()  # nothing outside the cheeks' frame
