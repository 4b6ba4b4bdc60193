import json

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from makeup.errors import TinyBeautyError
from makeup.pairs import (MANIFEST, PairDataset, PairTorchDataset, PairWriter, check_pairs, is_val_id,
                          read_manifest, split_ids)


def _pair(rng, h=24, w=20):
    src = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    tgt = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    mask = rng.integers(0, 5, (h, w), dtype=np.uint8)
    return src, tgt, mask


def test_write_read_round_trip(tmp_path, rng):
    w = PairWriter(tmp_path / "p")
    written = {}
    for i in range(4):
        written[f"id{i}"] = _pair(rng)
        w.write(f"id{i}", *written[f"id{i}"], style="red_lip", origin="test", score=0.5)
    ds = PairDataset(tmp_path / "p")
    assert ds.ids == ["id0", "id1", "id2", "id3"]
    for pair in ds:
        for got, want in zip((pair.source, pair.target, pair.mask), written[pair.id]):
            np.testing.assert_array_equal(got, want)
        assert pair.record["score"] == 0.5 and pair.record["source"] == f"source/{pair.id}.png"
    rep = check_pairs(tmp_path / "p")
    assert rep.count == 4 and rep.size == (24, 20) and rep.styles == {"red_lip": 4}


def test_duplicate_id_refused_and_resume_sees_ids(tmp_path, rng):
    w = PairWriter(tmp_path)
    w.write("a", *_pair(rng), style="s", origin="o")
    with pytest.raises(TinyBeautyError, match="already exists"):
        w.write("a", *_pair(rng), style="s", origin="o")
    assert "a" in PairWriter(tmp_path)


def test_torn_manifest_line_is_repaired(tmp_path, rng):
    w = PairWriter(tmp_path)
    w.write("a", *_pair(rng), style="s", origin="o")
    with open(tmp_path / MANIFEST, "a") as f:
        f.write('{"id": "b", "sour')  # a writer killed mid-append
    assert [r["id"] for r in read_manifest(tmp_path)] == ["a"]
    w2 = PairWriter(tmp_path)
    w2.write("b", *_pair(rng), style="s", origin="o")
    assert PairDataset(tmp_path).ids == ["a", "b"]
    assert check_pairs(tmp_path).count == 2


def test_orphan_images_without_manifest_line_are_not_pairs(tmp_path, rng):
    w = PairWriter(tmp_path)
    w.write("a", *_pair(rng), style="s", origin="o")
    # images of "b" written but the process died before its manifest line
    (tmp_path / "source" / "b.png").write_bytes((tmp_path / "source" / "a.png").read_bytes())
    assert PairDataset(tmp_path).ids == ["a"]
    PairWriter(tmp_path).write("b", *_pair(rng), style="s", origin="o")  # rerun completes it
    assert check_pairs(tmp_path).count == 2


_WRITER_SCRIPT = """
import sys, numpy as np
from makeup.pairs import PairWriter
w = PairWriter(sys.argv[1])
for i in range(int(sys.argv[2])):
    pid = f"p{i:03d}"
    if pid in w:
        continue
    rng = np.random.default_rng(i)
    w.write(pid, rng.integers(0, 256, (160, 160, 3), dtype=np.uint8), rng.integers(0, 256, (160, 160, 3),
            dtype=np.uint8), rng.integers(0, 5, (160, 160), dtype=np.uint8), style="s", origin="o")
    print(pid, flush=True)
"""


def test_writer_killed_mid_run_then_rerun_completes_without_duplicates(tmp_path):
    import os
    import signal
    import subprocess
    import sys

    root, n = tmp_path / "p", 40
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    proc = subprocess.Popen([sys.executable, "-c", _WRITER_SCRIPT, str(root), str(n)], stdout=subprocess.PIPE,
                            text=True, env=env)
    for _ in range(5):  # let it write a few pairs, then SIGKILL it mid-write
        proc.stdout.readline()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = check_pairs(root)  # readable as it stands
    assert 5 <= partial.count < n
    # a killed atomic write leaves a temp file; simulate one for an id the rerun still has to write
    (root / "source" / f".p{n - 1:03d}.png.abc123.tmp.png").write_bytes(b"half")
    subprocess.run([sys.executable, "-c", _WRITER_SCRIPT, str(root), str(n)], check=True, env=env,
                   stdout=subprocess.DEVNULL)
    ids = [r["id"] for r in read_manifest(root, strict=True)]
    assert sorted(ids) == [f"p{i:03d}" for i in range(n)] and len(ids) == len(set(ids))
    assert check_pairs(root).count == n
    assert not [p for sub in ("source", "target", "mask") for p in (root / sub).iterdir() if ".tmp" in p.name]
    rng = np.random.default_rng(7)  # every pair holds what its id's writer drew, killed run or not
    np.testing.assert_array_equal(PairDataset(root)["p007"].source,
                                  rng.integers(0, 256, (160, 160, 3), dtype=np.uint8))


@pytest.mark.parametrize("bad", ["mismatch", "mask", "gray"])
def test_writer_rejects_bad_shapes(tmp_path, rng, bad):
    src, tgt, mask = _pair(rng)
    if bad == "mismatch":
        tgt = tgt[:-1]
    elif bad == "mask":
        mask = mask[:, :-1]
    else:
        src = src[..., 0]
    with pytest.raises(TinyBeautyError):
        PairWriter(tmp_path).write("x", src, tgt, mask, style="s", origin="o")
    assert read_manifest(tmp_path) == []


def test_check_catches_bad_datasets(tmp_path, rng):
    with pytest.raises(TinyBeautyError, match="no such pair dataset"):
        check_pairs(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(TinyBeautyError, match="manifest"):
        check_pairs(tmp_path / "empty")
    w = PairWriter(tmp_path / "d")
    w.write("a", *_pair(rng), style="s", origin="o")
    (tmp_path / "d" / "target" / "a.png").write_bytes(b"garbage")
    with pytest.raises(TinyBeautyError, match="a.png"):
        check_pairs(tmp_path / "d")
    # a manifest line missing required keys
    (tmp_path / "e").mkdir()
    (tmp_path / "e" / MANIFEST).write_text(json.dumps({"id": "x"}) + "\n")
    with pytest.raises(TinyBeautyError, match="lacks"):
        check_pairs(tmp_path / "e")


@settings(max_examples=50, deadline=None)
@given(st.lists(st.text(alphabet="abcdefghij0123456789_-", min_size=1, max_size=12), min_size=2, max_size=60,
                unique=True))
def test_split_is_deterministic_disjoint_and_order_free(ids):
    train, val = split_ids(ids)
    assert set(train) | set(val) == set(ids) and not set(train) & set(val)
    assert train and val
    rtrain, rval = split_ids(list(reversed(ids)))
    assert set(rtrain) == set(train) and set(rval) == set(val)


def test_split_side_of_an_id_does_not_depend_on_the_rest():
    ids = [f"face_{i:05d}" for i in range(2000)]
    _, val = split_ids(ids)
    assert 150 < len(val) < 250  # ~10 %
    assert all(is_val_id(i) for i in val)
    _, val_half = split_ids(ids[:1000])
    assert set(val_half) == set(v for v in val if v in set(ids[:1000]))


def test_torch_dataset_augmentation_is_consistent(tmp_path):
    h = w = 16
    src = np.zeros((h, w, 3), np.uint8)
    src[:, : w // 2] = 200  # left half bright
    tgt = src.copy()
    mask = np.zeros((h, w), np.uint8)
    mask[:, : w // 2] = 2
    pw = PairWriter(tmp_path)
    for i in range(6):
        pw.write(f"p{i}", src, tgt, mask, style="s", origin="o")
    ds = PairTorchDataset(PairDataset(tmp_path), augment=True, seed=3)
    flips = 0
    for i in range(len(ds)):
        item = ds[i]
        assert item["source"].shape == (3, h, w) and item["mask"].dtype.is_floating_point is False
        # the same flip and jitter hit both images, the flip hits the mask too
        assert (item["source"] - item["target"]).abs().max() == 0
        bright_left = bool(item["source"][0, 0, 0] > 0.5)
        assert bool(item["mask"][0, 0] == 2) == bright_left
        flips += not bright_left
    assert 0 < flips < len(ds)
    again = PairTorchDataset(PairDataset(tmp_path), augment=True, seed=3)
    assert (again[2]["source"] == ds[2]["source"]).all()


def test_photo_augmentation_keeps_the_pair_and_labels_consistent(tmp_path):
    """zoom/blur/noise hit source and target alike: a pair whose target equals its source stays equal, the
    label map stays labels and follows the zoom with the image; deterministic; unknown keys are one line."""
    h = w = 32
    src = np.full((h, w, 3), 90, np.uint8)
    src[8:24, 8:24] = 200  # a bright square, labelled 3
    mask = np.zeros((h, w), np.uint8)
    mask[8:24, 8:24] = 3
    pw = PairWriter(tmp_path)
    for i in range(8):
        pw.write(f"p{i}", src, src.copy(), mask, style="s", origin="o")
    photo = {"zoom": 0.3, "blur": 2.0, "noise": 0.05, "jitter": 0.2}
    ds = PairTorchDataset(PairDataset(tmp_path), augment=True, seed=1, photo=photo)
    plain = PairTorchDataset(PairDataset(tmp_path), augment=True, seed=1)
    sizes = set()
    for i in range(len(ds)):
        item = ds[i]
        assert (item["source"] - item["target"]).abs().max() == 0
        assert set(np.unique(item["mask"].numpy())) <= {0, 3}
        labelled = item["mask"].numpy() == 3
        sizes.add(int(labelled.sum()))
        # the square is still where its label is (zoom moved both); blur softens only its border
        assert item["source"][0].numpy()[labelled].mean() > item["source"][0].numpy()[~labelled].mean() + 0.2
        assert not np.array_equal(item["source"].numpy(), plain[i]["source"].numpy())
    assert len(sizes) > 1  # the zoom varies per item
    again = PairTorchDataset(PairDataset(tmp_path), augment=True, seed=1, photo=photo)
    assert (again[3]["source"] == ds[3]["source"]).all()
    with pytest.raises(TinyBeautyError, match="unknown photo augmentation setting 'jpeg'"):
        PairTorchDataset(PairDataset(tmp_path), photo={"jpeg": 0.5})


def test_torch_dataset_resize(tmp_path, rng):
    PairWriter(tmp_path).write("a", *_pair(rng, 32, 32), style="s", origin="o")
    item = PairTorchDataset(PairDataset(tmp_path), size=16)[0]
    assert item["source"].shape == (3, 16, 16) and item["mask"].shape == (16, 16)
    assert int(item["mask"].max()) <= 4
