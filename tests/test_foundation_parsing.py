"""Region parsing backends and prepare_face (makeup.parsing)."""
from __future__ import annotations

import numpy as np
import pytest

from makeup.errors import NoFaceError, TinyBeautyError
from makeup.io import save_image
from makeup.parsing import (FACER_WEIGHTS_ENV, LAPA_TO_OURS, AutoParser, get_parser, lapa_logits_to_labels,
                            landmarks_to_labels, prepare_face, sidecar_path)
from makeup.regions import BROWS, EYES, LIPS, OTHER, SKIN, RegionMap


@pytest.fixture(scope="module")
def astronaut_labels(astronaut) -> np.ndarray:
    return get_parser("mediapipe").parse(astronaut, path="astronaut.png")


@pytest.fixture(autouse=True)
def no_facer_env(monkeypatch):
    monkeypatch.delenv(FACER_WEIGHTS_ENV, raising=False)


def _centroid_y(labels: np.ndarray, label: int) -> float:
    return float(np.nonzero(labels == label)[0].mean())


def _check_face_layout(labels: np.ndarray) -> None:
    counts = np.bincount(labels.ravel(), minlength=5)
    assert all(counts[k] > 0 for k in (EYES, LIPS, SKIN, BROWS))
    assert counts[SKIN] == max(counts[EYES], counts[LIPS], counts[SKIN], counts[BROWS])  # skin largest region
    assert _centroid_y(labels, BROWS) < _centroid_y(labels, EYES) < _centroid_y(labels, LIPS)
    # Two eyes and two brows side by side: the left half and the right half of the face each hold one.
    xs = np.nonzero(labels == EYES)[1]
    mid = np.nonzero(labels == LIPS)[1].mean()
    assert (xs < mid).sum() > 0.3 * xs.size and (xs > mid).sum() > 0.3 * xs.size


def test_mediapipe_parses_astronaut(astronaut, astronaut_labels):
    assert astronaut_labels.shape == astronaut.shape[:2] and astronaut_labels.dtype == np.uint8
    _check_face_layout(astronaut_labels)
    RegionMap(astronaut_labels)  # valid label values
    # The face is in the upper middle of the photo; nothing is labelled on the spacesuit or the flag.
    ys, xs = np.nonzero(astronaut_labels)
    assert 40 < ys.min() and ys.max() < 200 and 130 < xs.min() and xs.max() < 300
    # Lips are red-ish, skin is not: colours agree with the regions.
    lips = astronaut[astronaut_labels == LIPS].astype(float).mean(axis=0)
    skin = astronaut[astronaut_labels == SKIN].astype(float).mean(axis=0)
    assert lips[0] - lips[1] > skin[0] - skin[1]


def test_inner_mouth_is_other_not_lips(astronaut_labels):
    from makeup.align import detect_landmarks
    from skimage import data

    lm = detect_landmarks(data.astronaut())
    between_lips = np.round((lm[13] + lm[14]) / 2).astype(int)  # upper/lower inner lip midpoints: teeth
    assert astronaut_labels[between_lips[1], between_lips[0]] == OTHER


def test_prepare_face_aligns_and_parses_crop(astronaut):
    face = prepare_face(astronaut, size=256, parser="mediapipe")
    assert face.crop.shape == (256, 256, 3) and face.labels.shape == (256, 256)
    _check_face_layout(face.labels)
    # Eyes sit near the template's eye line (0.47 of the side), lips near the mouth line (0.745).
    assert abs(_centroid_y(face.labels, EYES) / 256 - 0.47) < 0.05
    assert abs(_centroid_y(face.labels, LIPS) / 256 - 0.745) < 0.05
    np.testing.assert_array_equal(face.crop, face.aligned.crop)


def test_landmarks_to_labels_draws_on_any_canvas(astronaut):
    from makeup.align import detect_landmarks

    lm = detect_landmarks(astronaut)
    small = landmarks_to_labels(lm / 2, (256, 256))
    assert small.shape == (256, 256)
    _check_face_layout(small)


def _write_synth(folder, stem="face_00000", size=256, label_size=None, seed=0):
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    n = label_size or size
    labels = rng.integers(0, 5, (n, n), dtype=np.uint8)
    save_image(folder / f"{stem}.png", image)
    save_image(folder / "labels" / f"{stem}.png", labels)
    return folder / f"{stem}.png", image, labels


def test_synth_layout_is_taken_as_is(tmp_path):
    path, image, labels = _write_synth(tmp_path)
    assert sidecar_path(path) == tmp_path / "labels" / "face_00000.png"
    for parser in ("auto", "synthetic"):
        face = prepare_face(path, size=256, parser=parser)
        np.testing.assert_array_equal(face.crop, image)
        np.testing.assert_array_equal(face.labels, labels)
        np.testing.assert_array_equal(face.aligned.matrix, np.eye(2, 3))
        assert face.aligned.landmarks is None


def test_synth_crop_rescales_to_requested_size(tmp_path):
    path, image, labels = _write_synth(tmp_path)
    face = prepare_face(path, size=128)
    assert face.crop.shape == (128, 128, 3) and face.labels.shape == (128, 128)
    np.testing.assert_array_equal(face.labels, labels[1::2, 1::2])  # nearest to each 2x2 block's centre
    assert set(np.unique(face.labels)) <= {0, 1, 2, 3, 4}


def test_auto_reports_its_choice(tmp_path, astronaut):
    path, image, labels = _write_synth(tmp_path)
    auto = get_parser("auto")
    assert isinstance(auto, AutoParser) and auto.name == "auto"
    np.testing.assert_array_equal(auto.parse(image, path=path), labels)
    assert auto.name == "synthetic"
    auto.parse(astronaut, path=tmp_path / "astronaut.png")  # no sidecar, no facer weights
    assert auto.name == "mediapipe"


def test_synthetic_parser_errors(tmp_path, astronaut):
    with pytest.raises(TinyBeautyError, match="no exact label map"):
        get_parser("synthetic").parse(astronaut, path=tmp_path / "a.png")
    with pytest.raises(TinyBeautyError, match="needs the image's path"):
        get_parser("synthetic").parse(astronaut)
    path, image, _ = _write_synth(tmp_path, label_size=64)
    with pytest.raises(TinyBeautyError, match="label map is 64x64, image is 256x256"):
        prepare_face(path, parser="synthetic")


def test_unknown_parser_name():
    with pytest.raises(TinyBeautyError, match="unknown parser 'farl'"):
        get_parser("farl")


def test_prepare_face_without_a_face_names_the_file(tmp_path):
    from skimage import data

    save_image(tmp_path / "coffee.png", data.coffee())
    with pytest.raises(NoFaceError, match="coffee.png"):
        prepare_face(tmp_path / "coffee.png", parser="mediapipe")


def test_prepare_face_accepts_grayscale_and_rgba(tmp_path, astronaut):
    from PIL import Image

    Image.fromarray(astronaut).convert("L").save(tmp_path / "gray.png")
    Image.fromarray(astronaut).convert("RGBA").save(tmp_path / "rgba.png")
    for name in ("gray.png", "rgba.png"):
        face = prepare_face(tmp_path / name, size=128, parser="auto")
        assert face.crop.shape == (128, 128, 3)
        _check_face_layout(face.labels)
    gray_face = prepare_face(np.asarray(Image.fromarray(astronaut).convert("L")), size=128, parser="mediapipe")
    assert gray_face.crop.shape == (128, 128, 3)


# --- facer (FaRL LaPa) -------------------------------------------------------------------------------


def test_lapa_mapping_on_constructed_logits():
    # One pixel per LaPa class: the argmax picks it, the table maps it.
    logits = np.zeros((1, 11, 1, 11), np.float32)
    for k in range(11):
        logits[0, k, 0, k] = 5.0
    out = lapa_logits_to_labels(logits)
    expected = [OTHER, SKIN, BROWS, BROWS, EYES, EYES, SKIN, LIPS, OTHER, LIPS, OTHER]
    np.testing.assert_array_equal(out[0], expected)
    np.testing.assert_array_equal(LAPA_TO_OURS, expected)
    with pytest.raises(TinyBeautyError, match="11 classes"):
        lapa_logits_to_labels(np.zeros((19, 4, 4)))


def test_facer_without_weights_is_one_clear_error(tmp_path, monkeypatch):
    with pytest.raises(TinyBeautyError, match="--facer-weights PATH or set TINYBEAUTY_FACER_WEIGHTS"):
        get_parser("facer")
    with pytest.raises(TinyBeautyError, match="no such file"):
        get_parser("facer", facer_weights=tmp_path / "missing.pt")
    monkeypatch.setenv(FACER_WEIGHTS_ENV, str(tmp_path / "env_missing.pt"))
    with pytest.raises(TinyBeautyError, match="env_missing.pt: no such file"):
        get_parser("facer")
    (tmp_path / "junk.pt").write_bytes(b"not a model")
    with pytest.raises(TinyBeautyError, match="not a FaRL LaPa TorchScript model"):
        get_parser("facer", facer_weights=tmp_path / "junk.pt")


@pytest.fixture(scope="module")
def tiny_lapa_model(tmp_path_factory):
    """A TorchScript stand-in with FaRL's I/O: (B, 3, 448, 448) in [0, 1] -> (logits (B, 11, 448, 448), aux).

    It calls the aligned 448 crop's upper third brows (LaPa 2), the middle skin (1), the lower third upper
    lip (7), so the map that comes back shows whether the warp to and from the crop went the right way.
    """
    import torch

    class TinyLapa(torch.nn.Module):
        def forward(self, x: torch.Tensor):
            b, _, h, w = x.shape
            rows = torch.arange(h, dtype=torch.float32).view(1, h, 1).expand(b, h, w)
            cls = torch.ones(b, h, w, dtype=torch.long)
            cls = torch.where(rows < h / 3, torch.full_like(cls, 2), cls)
            cls = torch.where(rows >= 2 * h / 3, torch.full_like(cls, 7), cls)
            logits = torch.nn.functional.one_hot(cls, 11).permute(0, 3, 1, 2).float() * 10.0
            return logits, x.mean(dim=(1, 2, 3))

    path = tmp_path_factory.mktemp("facer") / "face_parsing.farl.lapa.tiny.pt"
    torch.jit.script(TinyLapa()).save(str(path))
    return path


def test_facer_loads_local_torchscript_and_maps_labels(astronaut, tiny_lapa_model, monkeypatch):
    parser = get_parser("facer", facer_weights=tiny_lapa_model)
    assert parser.name == "facer"
    labels = parser.parse(astronaut, path="astronaut.png")
    assert labels.shape == astronaut.shape[:2]
    # FaRL's tanh warp reaches the whole photo, so every pixel gets one of the stand-in's three classes.
    assert set(np.unique(labels)) == {SKIN, BROWS, LIPS}
    # Upright photo: the crop's top third comes back above its bottom third.
    assert _centroid_y(labels, BROWS) < _centroid_y(labels, SKIN) < _centroid_y(labels, LIPS)
    # The env variable is the other way to name the weights, and auto then prefers facer to mediapipe.
    monkeypatch.setenv(FACER_WEIGHTS_ENV, str(tiny_lapa_model))
    auto = get_parser("auto")
    face = prepare_face(astronaut, size=128, parser=auto)
    assert auto.name == "facer" and face.labels.shape == (128, 128)
    assert _centroid_y(face.labels, BROWS) < _centroid_y(face.labels, LIPS)


def test_mediapipe_agrees_with_exact_synthetic_maps():
    """The two backends share one convention (eyes = the opening, lids = skin, inner mouth = other)."""
    synth = pytest.importorskip("makeup.synth")
    face = synth.generate_face(1, 256)
    ours = get_parser("mediapipe").parse(face.image)

    def iou(k: int) -> float:
        return ((ours == k) & (face.labels == k)).sum() / max(((ours == k) | (face.labels == k)).sum(), 1)

    assert iou(EYES) > 0.5 and iou(LIPS) > 0.6 and iou(SKIN) > 0.75
