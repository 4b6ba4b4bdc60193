"""``tinybeauty export``: checkpoint -> int8 graphs -> one artifact per format -> budget + parity gate -> report.

Every artifact is built in a staging folder beside EXPORT and measured and run there. Only when every
required format passes the gate are the artifacts moved into EXPORT (each by rename, a package folder
replaced whole), then ``model_card.json``, ``report.md``, ``settings.yaml`` (:class:`ExportSettings` and the
inputs) and ``report.json`` (last, so its presence means a complete export). A refused export changes no
artifact: it writes ``report.failed.json`` with every size and PSNR and its settings, and fails with one line
naming each failing format. A killed export leaves only its hidden staging
folder, which the next export beside it removes.
"""
from __future__ import annotations

import json
import logging
import os
import platform
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np

from makeup.config import StageSettings
from makeup.errors import TinyBeautyError
from student.runtime import LOOK_PRIOR_FILE  # the file the runners read beside a prior-input model

from .formats import BUDGET_BYTES, DEPENDS_ON, ExportFormat, artifact_bytes, parse_formats
from .parity import ParitySet, compare, load_parity_set, parity_failures, run_each, run_torch

log = logging.getLogger("tinybeauty")

@dataclass(frozen=True)
class ExportSettings(StageSettings):
    """What `export` runs with: the profile's ``export:`` section (thresholds, sizes) over these defaults."""

    STAGE: ClassVar[str] = "export"
    size: int = 256                    # artifacts are specialised to one square input size
    budget_bytes: int = BUDGET_BYTES
    min_psnr_vs_torch_db: float = 45.0    # exported vs its PyTorch reference
    max_target_psnr_drop_db: float = 0.1  # exported may lose at most this vs target, compared with PyTorch
    parity_images: int = 16            # validation pairs run through every runtime
    calib_images: int = 64             # training-split pairs for post-training calibration
    onnx_opset: int = 18
    coreml_modes: list = field(default_factory=lambda: ["qat", "int8", "palettize6"])


DEFAULTS: dict = ExportSettings().to_dict()  # every key, for reference
REPORT, FAILED_REPORT, CARD, REPORT_MD = "report.json", "report.failed.json", "model_card.json", "report.md"


class ExportRefused(TinyBeautyError):
    """The gate refused the export (over budget, parity below threshold, or an exporter failed)."""


@dataclass
class ExportRequest:
    checkpoint: Path
    out: Path
    formats: list[ExportFormat]
    calib: Path | None = None
    pairs: Path | None = None
    config: ExportSettings = field(default_factory=ExportSettings)

    @classmethod
    def build(cls, checkpoint, out, formats: str | None = None, calib=None, pairs=None,
              config: ExportSettings | dict | None = None) -> "ExportRequest":
        """Validate everything cheap before any conversion starts."""
        out = Path(out)
        if out.exists() and not out.is_dir():
            raise TinyBeautyError(f"{out}: exists and is not a folder (--out names the export folder)")
        selected = parse_formats(formats)
        names = {f.name for f in selected}
        for fmt, needs in DEPENDS_ON.items():
            if fmt in names and needs not in names:
                selected = parse_formats(",".join(sorted(names | {needs})))
        for flag, p in (("--calib", calib), ("--pairs", pairs)):
            if p is not None and not Path(p).is_dir():
                raise TinyBeautyError(f"{flag} {p}: no such pair dataset folder")
        cfg = ExportSettings.of(config)
        return cls(Path(checkpoint), out, selected, Path(calib) if calib else None,
                   Path(pairs) if pairs else None, cfg)


def _synthetic_inputs(size: int, count: int) -> ParitySet:
    """Parity inputs when no pairs are given: synthetic faces and their label maps (no targets)."""
    from makeup.synth import generate_face

    faces = [generate_face(seed=1000 + i, size=size) for i in range(count)]
    sources = np.stack([f.image for f in faces]).astype(np.float32).transpose(0, 3, 1, 2) / 255.0
    return ParitySet([f"synthetic_{i}" for i in range(count)], sources, None,
                     np.stack([f.labels for f in faces]).astype(np.uint8))


def _calibration_images(calib: Path, size: int, limit: int, channels: int, look_prior=None) -> np.ndarray:
    from student.model import model_input

    from makeup.pairs import PairDataset, PairTorchDataset, split_ids

    ds = PairDataset(calib)
    if len(ds) == 0:
        raise TinyBeautyError(f"--calib {calib}: the manifest lists no pairs")
    train_ids = split_ids(ds.ids)[0] or ds.ids
    items = PairTorchDataset(ds, train_ids[:limit], size=size)
    batch = [items[i] for i in range(len(items))]
    return model_input(channels, np.stack([b["source"].numpy() for b in batch]).astype(np.float32),
                       np.stack([b["mask"].numpy() for b in batch]), look_prior)


def _reference(qs, fmt: ExportFormat, details: dict):
    return qs.float_model if details.get("reference") == "float" else qs.graph(fmt.reference)


def _verify(fmt: ExportFormat, path: Path, qs, parity_set: ParitySet, inputs: np.ndarray, cfg: ExportSettings,
            details: dict) -> dict:
    """Run the artifact where a runtime exists here; otherwise validate what can be validated. ``inputs``: the
    parity set's model inputs (``parity_set.inputs``), the same for every format."""
    ok, why_not = fmt.runs_here()
    if not ok:
        check = fmt.validator_fn()(path, qs.size, qs.channels)
        reason = why_not if check["ok"] else "validation failed: " + "; ".join(check["problems"])
        return {"verified": False, "reason": reason, "spec_check": check, "psnr_vs_torch": None,
                "psnr_vs_target": None, "torch_psnr_vs_target": None, "max_abs_diff": None,
                "failures": [] if check["ok"] else [f"{fmt.name}: {reason}"]}
    exported = run_each(fmt.runner_fn()(path), inputs)
    reference = run_torch(_reference(qs, fmt, details), inputs)
    p = compare(exported, reference, parity_set.targets, parity_set)
    fails = parity_failures(p, cfg.min_psnr_vs_torch_db, cfg.max_target_psnr_drop_db)
    return {**p.to_dict(), "verified": not fails, "reason": "; ".join(fails) or None,
            "failures": [f"{fmt.name}: {f}" for f in fails]}


def _export_one(fmt: ExportFormat, qs, staging: Path, staged: dict, parity_set: ParitySet, inputs: np.ndarray,
                cfg: ExportSettings) -> dict:
    path = staging / fmt.filename
    t0 = time.perf_counter()
    try:
        details = fmt.exporter_fn()(qs, path, cfg.to_dict(), staged)  # exporters take the settings as a mapping
    except TinyBeautyError:
        raise
    except Exception as exc:  # a converter bug is a refused format, not a traceback
        log.debug("exporter %s failed", fmt.name, exc_info=True)
        return {"path": fmt.filename, "bytes": 0, "within_budget": False, "psnr_vs_torch": None,
                "psnr_vs_target": None, "max_abs_diff": None, "verified": False, "shipped": False,
                "reason": f"export failed: {exc.__class__.__name__}: {(str(exc).splitlines() or [''])[0][:200]}",
                "failures": [f"{fmt.name}: export failed ({exc.__class__.__name__})"]}
    staged[fmt.name] = path
    size = artifact_bytes(path)
    budget = cfg.budget_bytes
    entry = {"path": fmt.filename, "bytes": size, "within_budget": size <= budget, "runtime": fmt.runtime,
             "seconds": round(time.perf_counter() - t0, 2), **details}
    entry.update(_verify(fmt, path, qs, parity_set, inputs, cfg, details))
    if size > budget:
        if fmt.required:
            entry["failures"].insert(0, f"{fmt.name}: {size:,} bytes > budget {budget:,}")
        else:  # optional extra (ORT): simply not shipped
            entry["reason"] = f"over budget ({size:,} > {budget:,} bytes), not shipped"
            entry["failures"] = []
    entry["shipped"] = size <= budget and not entry["failures"]
    return entry


def _staging_dir(out: Path) -> Path:
    """A fresh staging folder beside ``out`` (same filesystem, so promotion is a rename). Staging folders
    of exports that were killed (their pid is gone) are removed first."""
    prefix = f".{out.name}.staging-"
    for old in out.parent.glob(prefix + "*"):
        pid = old.name[len(prefix):].split("-")[0]
        if pid.isdigit() and not _pid_alive(int(pid)):
            shutil.rmtree(old, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-", dir=out.parent))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    return True


def _promote(staged_path: Path, target: Path) -> None:
    """Move a staged artifact over ``target`` atomically (a package folder is replaced whole)."""
    from makeup.io import atomic_path

    with atomic_path(target) as tmp:
        os.replace(staged_path, tmp)


def run_export(req: ExportRequest, progress: bool = True) -> dict:
    """Export, gate and report; returns the report. Raises :class:`ExportRefused` when the gate refuses."""
    from tqdm import tqdm

    from makeup.io import write_text_atomic

    from .quantize import load_checkpoint, quantize_student
    from .report import model_card, report_markdown

    cfg = req.config
    t_start = time.perf_counter()
    size = cfg.size
    ckpt = load_checkpoint(req.checkpoint)
    calib = None
    if req.calib is not None and not getattr(ckpt, "qat", False):
        calib = _calibration_images(req.calib, size, cfg.calib_images, ckpt.config.in_channels, ckpt.look_prior)
    parity_pairs = req.pairs or req.calib
    parity_set = (load_parity_set(parity_pairs, size, cfg.parity_images) if parity_pairs
                  else _synthetic_inputs(size, min(4, cfg.parity_images)))
    qs = quantize_student(ckpt, size, calib)
    parity_inputs = parity_set.inputs(qs.channels, qs.look_prior)  # painted once: every format runs them

    req.out.parent.mkdir(parents=True, exist_ok=True)
    staging = _staging_dir(req.out)
    try:
        entries: dict[str, dict] = {}
        staged: dict[str, Path] = {}
        bar = tqdm(req.formats, desc="export", unit="format", disable=not progress)
        for fmt in bar:
            bar.set_postfix_str(fmt.name)
            entries[fmt.name] = _export_one(fmt, qs, staging, staged, parity_set, parity_inputs, cfg)
        failures = [f for e in entries.values() for f in e.pop("failures")]
        report = {
            "formats": entries,
            "passed": not failures,
            "failures": failures,
            "checkpoint": str(req.checkpoint),
            "quantization": qs.quantization,
            "calibration_images": qs.calib_images,
            "size": size,
            "budget_bytes": cfg.budget_bytes,
            "thresholds": {"min_psnr_vs_torch_db": cfg.min_psnr_vs_torch_db,
                           "max_target_psnr_drop_db": cfg.max_target_psnr_drop_db},
            "parity_set": {"pairs": str(parity_pairs) if parity_pairs else None,
                           "split": "validation" if parity_pairs else "synthetic", "images": len(parity_set.ids)},
            "platform": platform.system(),
            "export_seconds": round(time.perf_counter() - t_start, 1),
        }
        inputs = {"checkpoint": str(req.checkpoint), "formats": [f.name for f in req.formats],
                  "calib": req.calib and str(req.calib), "pairs": req.pairs and str(req.pairs)}
        if failures:  # EXPORT keeps the shipped export's files (settings.yaml too); the refusal records its own
            failed = {**report, "settings": cfg.to_dict(), "inputs": inputs}
            write_text_atomic(req.out / FAILED_REPORT, json.dumps(failed, indent=2) + "\n")
            raise ExportRefused("export refused, nothing shipped: " + "; ".join(failures)
                                + f" (details: {req.out / FAILED_REPORT})")
        for name, entry in entries.items():
            if entry["shipped"]:
                _promote(staged[name], req.out / entry["path"])
        student_config = getattr(ckpt, "config", None)
        if hasattr(student_config, "to_dict"):
            student_config = student_config.to_dict()
        if qs.look_prior is not None:  # what a prior-input model reads, beside it (student.runtime)
            text = json.dumps(qs.look_prior.to_dict(), separators=(",", ":"))
            write_text_atomic(req.out / LOOK_PRIOR_FILE, text + "\n")
        else:
            (req.out / LOOK_PRIOR_FILE).unlink(missing_ok=True)
        write_text_atomic(req.out / CARD, json.dumps(model_card(qs, report, student_config), indent=2) + "\n")
        write_text_atomic(req.out / REPORT_MD, report_markdown(report))
        cfg.save(req.out, **inputs)
        write_text_atomic(req.out / REPORT, json.dumps(report, indent=2) + "\n")
        (req.out / FAILED_REPORT).unlink(missing_ok=True)
        return report
    finally:
        shutil.rmtree(staging, ignore_errors=True)
