"""Pair datasets on disk (README.md, "Pair dataset format").

PAIRS/manifest.jsonl          one JSON object a line: {"id", "source", "target", "mask", "style", "origin", ...}
PAIRS/source|target|mask/ID.png

Writes are atomic: each image goes through temp file + rename and the manifest line is appended last, in one
``write`` on an ``O_APPEND`` descriptor (so several processes may append to one manifest). A killed writer
leaves no half pair in the manifest; a rerun skips ids already present and finishes the rest.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from .config import check_keys
from .errors import TinyBeautyError
from .io import load_image, load_label_map, remove_stale_temps, save_image, write_text_atomic
from .regions import NUM_LABELS

MANIFEST = "manifest.jsonl"
SUBDIRS = ("source", "target", "mask")
REQUIRED_KEYS = ("id", "source", "target", "mask", "style", "origin")


@dataclass
class Pair:
    id: str
    source: np.ndarray  # (H, W, 3) uint8, before
    target: np.ndarray  # (H, W, 3) uint8, after
    mask: np.ndarray  # (H, W) uint8 region labels
    record: dict = field(default_factory=dict)


def _valid_id(pair_id: str) -> str:
    if not pair_id or any(c in pair_id for c in "/\\\n\r\t") or pair_id.startswith("."):
        raise TinyBeautyError(f"invalid pair id {pair_id!r}: use letters, digits, '-', '_' and '.'")
    return pair_id


def read_manifest(root: str | os.PathLike, *, strict: bool = False) -> list[dict]:
    """Records of ``root/manifest.jsonl`` in file order.

    A torn last line (a writer killed mid-append) is ignored unless ``strict``; a malformed line elsewhere
    is an error.
    """
    path = Path(root) / MANIFEST
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8").split("\n")
    records = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            if not isinstance(rec, dict):
                raise ValueError("not an object")
        except ValueError:
            torn_tail = i == len(lines) - 1 and not strict
            if torn_tail:
                continue
            raise TinyBeautyError(f"{path}:{i + 1}: malformed manifest line") from None
        records.append(rec)
    return records


class PairWriter:
    """Append pairs to a dataset directory; resumable and safe to kill at any point."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        if self.root.exists() and not self.root.is_dir():
            raise TinyBeautyError(f"{self.root}: exists and is not a folder")
        for sub in SUBDIRS:
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self._repair_manifest()
        self._ids = {r["id"] for r in read_manifest(self.root)}

    def _repair_manifest(self) -> None:
        """Drop a torn last line left by a killed writer (rewritten atomically, complete lines kept)."""
        path = self.root / MANIFEST
        if not path.exists():
            return
        text = path.read_text(encoding="utf-8")
        if not text or text.endswith("\n"):
            return
        keep = text[: text.rfind("\n") + 1] if "\n" in text else ""
        write_text_atomic(path, keep)

    @property
    def ids(self) -> set[str]:
        return set(self._ids)

    def __contains__(self, pair_id: str) -> bool:
        return pair_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def refresh(self) -> None:
        """Re-read ids (other processes may append to the same manifest)."""
        self._ids = {r["id"] for r in read_manifest(self.root)}

    def write(self, pair_id: str, source: np.ndarray, target: np.ndarray, mask: np.ndarray, *,
              style: str, origin: str, **extra) -> dict:
        """Write one pair; returns its manifest record. An id already in the manifest is an error."""
        _valid_id(pair_id)
        if pair_id in self._ids:
            raise TinyBeautyError(f"{self.root}: pair {pair_id!r} already exists")
        source, target, mask = np.asarray(source), np.asarray(target), np.asarray(mask)
        if source.shape != target.shape or source.ndim != 3 or source.shape[2] != 3:
            raise TinyBeautyError(f"pair {pair_id}: before {source.shape} and after {target.shape} differ or are not RGB")
        if mask.shape != source.shape[:2]:
            raise TinyBeautyError(f"pair {pair_id}: mask {mask.shape} does not match image {source.shape[:2]}")
        rec = {"id": pair_id, "source": f"source/{pair_id}.png", "target": f"target/{pair_id}.png",
               "mask": f"mask/{pair_id}.png", "style": style, "origin": origin, **extra}
        for key in ("source", "target", "mask"):  # an id is written by one process (shards never overlap)
            remove_stale_temps(self.root / rec[key])
        save_image(self.root / rec["source"], source.astype(np.uint8))
        save_image(self.root / rec["target"], target.astype(np.uint8))
        save_image(self.root / rec["mask"], mask.astype(np.uint8))
        line = (json.dumps(rec, sort_keys=True) + "\n").encode("utf-8")
        fd = os.open(self.root / MANIFEST, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)
        self._ids.add(pair_id)
        return rec


class PairDataset:
    """Read-only view of a pair dataset directory."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        if not self.root.exists():
            raise TinyBeautyError(f"{self.root}: no such pair dataset folder")
        if not self.root.is_dir():
            raise TinyBeautyError(f"{self.root}: expected a pair dataset folder, got a file")
        if not (self.root / MANIFEST).exists():
            raise TinyBeautyError(f"{self.root}: no {MANIFEST} (not a pair dataset; make one with "
                                  "`tinybeauty render` or `tinybeauty amplify`)")
        self.records = read_manifest(self.root)
        seen: set[str] = set()
        for rec in self.records:
            missing = [k for k in REQUIRED_KEYS if k not in rec]
            if missing:
                raise TinyBeautyError(f"{self.root / MANIFEST}: record {rec.get('id', '?')} lacks {missing}")
            if rec["id"] in seen:
                raise TinyBeautyError(f"{self.root / MANIFEST}: duplicate pair id {rec['id']!r}")
            seen.add(rec["id"])
        self._index = {r["id"]: i for i, r in enumerate(self.records)}

    def __len__(self) -> int:
        return len(self.records)

    @property
    def ids(self) -> list[str]:
        return [r["id"] for r in self.records]

    def __getitem__(self, key: int | str) -> Pair:
        rec = self.records[self._index[key] if isinstance(key, str) else key]
        src = load_image(self.root / rec["source"])
        tgt = load_image(self.root / rec["target"])
        mask = load_label_map(self.root / rec["mask"])
        if src.shape != tgt.shape:
            raise TinyBeautyError(f"{self.root}: pair {rec['id']}: before {src.shape[:2]} and after {tgt.shape[:2]} sizes differ")
        if mask.shape != src.shape[:2]:
            raise TinyBeautyError(f"{self.root}: pair {rec['id']}: mask {mask.shape} does not match image {src.shape[:2]}")
        return Pair(rec["id"], src, tgt, mask, rec)

    def __iter__(self) -> Iterator[Pair]:
        for i in range(len(self)):
            yield self[i]

    def split(self, val_fraction: float = 0.1) -> tuple[list[str], list[str]]:
        return split_ids(self.ids, val_fraction)


def is_val_id(pair_id: str, val_fraction: float = 0.1) -> bool:
    """Deterministic split by id: the same id lands on the same side whatever else is in the dataset."""
    h = int.from_bytes(hashlib.sha1(pair_id.encode("utf-8")).digest()[:8], "big")
    return (h % 10_000) < round(val_fraction * 10_000)


def split_ids(ids: Iterable[str], val_fraction: float = 0.1) -> tuple[list[str], list[str]]:
    """(train, val) ids. Both sides non-empty whenever there are >= 2 ids and 0 < val_fraction < 1."""
    ids = list(ids)
    val = [i for i in ids if is_val_id(i, val_fraction)]
    train = [i for i in ids if not is_val_id(i, val_fraction)]
    if len(ids) >= 2 and 0 < val_fraction < 1:
        # Tiny datasets: keep both sides non-empty, moving the id with the extreme hash deterministically.
        if not val:
            k = min(train, key=lambda i: hashlib.sha1(i.encode()).hexdigest())
            train.remove(k), val.append(k)
        elif not train:
            k = max(val, key=lambda i: hashlib.sha1(i.encode()).hexdigest())
            val.remove(k), train.append(k)
    return train, val


@dataclass
class CheckReport:
    root: Path
    count: int
    size: tuple[int, int] | None
    styles: dict[str, int]
    origins: dict[str, int]
    label_pixels: list[int]

    def summary(self) -> str:
        size = f"{self.size[1]}x{self.size[0]}" if self.size else "mixed sizes"
        styles = ", ".join(f"{k}: {v}" for k, v in sorted(self.styles.items()))
        total = max(sum(self.label_pixels), 1)
        cover = ", ".join(f"{n} {100 * c / total:.1f}%" for n, c in
                          zip(("other", "eyes", "lips", "skin", "brows"), self.label_pixels))
        return f"{self.root}: {self.count} valid pairs, {size}, styles [{styles}], region cover [{cover}]"


def check_pairs(root: str | os.PathLike, progress: bool = False) -> CheckReport:
    """Validate every pair (files readable, RGB, sizes match, labels in range, no orphans in the manifest).

    Raises :class:`TinyBeautyError` naming the first bad pair.
    """
    ds = PairDataset(root)
    if len(ds) == 0:
        raise TinyBeautyError(f"{ds.root}: the manifest lists no pairs")
    sizes, styles, origins = set(), {}, {}
    label_pixels = [0] * NUM_LABELS
    it: Iterable[int] = range(len(ds))
    if progress:
        from tqdm import tqdm

        it = tqdm(it, desc="pairs check", unit="pair")
    for i in it:
        pair = ds[i]
        if int(pair.mask.max(initial=0)) >= NUM_LABELS:
            raise TinyBeautyError(f"{ds.root}: pair {pair.id}: mask has label {int(pair.mask.max())} (valid 0..4)")
        sizes.add(pair.source.shape[:2])
        styles[pair.record["style"]] = styles.get(pair.record["style"], 0) + 1
        origins[pair.record["origin"]] = origins.get(pair.record["origin"], 0) + 1
        counts = np.bincount(pair.mask.ravel(), minlength=NUM_LABELS)
        label_pixels = [a + int(b) for a, b in zip(label_pixels, counts)]
    return CheckReport(ds.root, len(ds), sizes.pop() if len(sizes) == 1 else None, styles, origins, label_pixels)


class PairTorchDataset:
    """torch ``Dataset`` over a :class:`PairDataset` (a subset of ids).

    Items: {"id", "source", "target" (float32 (3, H, W) in [0, 1]), "mask" (int64 (H, W))}. ``size`` resizes
    (area for images, nearest for labels). ``augment`` applies a horizontal flip and a small colour jitter
    identically to both images (the flip mirrors the mask too), drawn from ``seed`` + epoch + index.
    ``photo`` (with ``augment``) adds what separates a photo from a rendered face, each drawn per item and
    applied to both images alike (so the pair's change stays the look's): ``zoom`` (scale about the centre by up
    to +-zoom, the mask nearest), ``blur`` (Gaussian, sigma up to this many pixels), ``noise`` (the same
    Gaussian noise on both, std up to this, 0..1 scale), ``jitter`` (replaces the colour jitter's range).
    ``prior`` (a ``makeup.lookprior.LookPrior``, or any ``paint(photo, labels) -> (H, W, 3)``): items also carry
    "prior" (float32 (3, H, W)), painted once per pair on the unaugmented source and then flipped and zoomed
    with it (a change, not a photo: the colour jitter, blur and noise leave it as it is).
    """

    PHOTO_KEYS = ("zoom", "blur", "noise", "jitter")

    def __init__(self, pairs: PairDataset, ids: Iterable[str] | None = None, size: int | None = None,
                 augment: bool = False, jitter: float = 0.05, seed: int = 0, cache: bool = True,
                 photo: dict | None = None, prior=None):
        photo = dict(photo or {})
        self.prior = prior
        check_keys(photo, self.PHOTO_KEYS, "photo augmentation")
        self.photo = {k: float(v) for k, v in photo.items() if k != "jitter"}
        jitter = float(photo.get("jitter", jitter))
        self.pairs = pairs
        self.ids = list(pairs.ids if ids is None else ids)
        self.size = size
        self.augment = augment
        self.jitter = jitter
        self.seed = seed
        self.epoch = 0
        self._cache: dict[str, tuple] | None = {} if cache else None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.ids)

    def _load(self, pair_id: str):
        if self._cache is not None and pair_id in self._cache:
            return self._cache[pair_id]
        p = self.pairs[pair_id]
        src, tgt, mask = p.source, p.target, p.mask
        if self.size and src.shape[:2] != (self.size, self.size):
            import cv2

            src = cv2.resize(src, (self.size, self.size), interpolation=cv2.INTER_AREA)
            tgt = cv2.resize(tgt, (self.size, self.size), interpolation=cv2.INTER_AREA)
            mask = cv2.resize(mask, (self.size, self.size), interpolation=cv2.INTER_NEAREST)
        item = (src, tgt, mask, None if self.prior is None else self.prior.paint(src, mask))
        if self._cache is not None:
            self._cache[pair_id] = item
        return item

    def __getitem__(self, index: int) -> dict:
        import torch

        pair_id = self.ids[index]
        src, tgt, mask, prior = self._load(pair_id)
        src = src.astype(np.float32) / 255.0
        tgt = tgt.astype(np.float32) / 255.0
        if self.augment:
            rng = np.random.default_rng([self.seed, self.epoch, index])
            if rng.random() < 0.5:
                src, tgt, mask = src[:, ::-1], tgt[:, ::-1], mask[:, ::-1]
                prior = None if prior is None else prior[:, ::-1]
            gain = 1.0 + rng.uniform(-self.jitter, self.jitter, size=3).astype(np.float32)
            bias = rng.uniform(-self.jitter / 2, self.jitter / 2, size=3).astype(np.float32)
            src = np.clip(src * gain + bias, 0, 1)
            tgt = np.clip(tgt * gain + bias, 0, 1)
            if self.photo:
                src, tgt, mask, prior = _photo_augment(src, tgt, mask, rng, prior=prior, **self.photo)
        item = {
            "id": pair_id,
            "source": torch.from_numpy(np.ascontiguousarray(src.transpose(2, 0, 1))),
            "target": torch.from_numpy(np.ascontiguousarray(tgt.transpose(2, 0, 1))),
            "mask": torch.from_numpy(np.ascontiguousarray(mask).astype(np.int64)),
        }
        if prior is not None:
            item["prior"] = torch.from_numpy(np.ascontiguousarray(prior.transpose(2, 0, 1), dtype=np.float32))
        return item


def _photo_augment(src, tgt, mask, rng, zoom: float = 0.0, blur: float = 0.0, noise: float = 0.0, prior=None):
    """See :class:`PairTorchDataset` ``photo``: float (H, W, 3) images in [0, 1] and the label map (and the
    painted prior, zoomed with them, or None)."""
    import cv2

    h, w = mask.shape[:2]
    if zoom > 0:
        m = cv2.getRotationMatrix2D((w / 2 - 0.5, h / 2 - 0.5), 0.0, 1.0 + rng.uniform(-zoom, zoom))
        warp = lambda a, flag: cv2.warpAffine(np.ascontiguousarray(a), m, (w, h), flags=flag,  # noqa: E731
                                              borderMode=cv2.BORDER_REFLECT)
        src, tgt, mask = warp(src, cv2.INTER_LINEAR), warp(tgt, cv2.INTER_LINEAR), warp(mask, cv2.INTER_NEAREST)
        prior = None if prior is None else warp(prior, cv2.INTER_LINEAR)
    if blur > 0:
        sigma = rng.uniform(0.0, blur)
        if sigma > 0.3:
            src, tgt = (cv2.GaussianBlur(np.ascontiguousarray(a), (0, 0), sigma) for a in (src, tgt))
    if noise > 0:
        grain = rng.normal(0.0, rng.uniform(0.0, noise), size=src.shape).astype(np.float32)
        src, tgt = np.clip(src + grain, 0, 1), np.clip(tgt + grain, 0, 1)
    return src.astype(np.float32), tgt.astype(np.float32), mask, prior
