"""One callable per artifact: ``load_runner(path)(batch, labels)`` maps NCHW float32 [0, 1] batches to NCHW outputs.

A student with region input (``StudentConfig.region_input``: 7 or 8 input channels, RGB + the face's soft
region masks, ``makeup.gate.INPUT_MASKS``) needs the batch's label maps; the runner appends their masks
(``student.model.model_input``), so callers hand every artifact the same RGB batch and labels. A student with
prior input (10 or 11 channels: then the look prior painted on the face, ``StudentConfig.prior_input``) also
needs its look prior: a checkpoint carries it, an exported file has :data:`LOOK_PRIOR_FILE` beside it. The
channel count is read from the artifact.

``.pt`` student checkpoints run in torch (QAT checkpoints through their converted int8 reference graph, i.e.
what export ships); ``.tflite`` runs in ai-edge-litert's interpreter, ``.onnx`` and ``.ort`` (ONNX Runtime
Mobile's format) in onnxruntime. The layout (NHWC vs NCHW), a fixed batch/size and int8 I/O are read from the
file, so eval/apply/parity need not know how an artifact was exported.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import numpy as np

from makeup.errors import TinyBeautyError

SUFFIXES = (".pt", ".tflite", ".onnx", ".ort")


CHANNELS = (3, 7, 8, 10, 11)  # RGB; + the 4 region masks; + those and the cheeks (makeup.gate.INPUT_MASKS); + the prior
LOOK_PRIOR_FILE = "look_prior.json"  # an exported prior-input model's look prior, beside it (export writes it)


class Runner:
    """Callable ((N, 3, H, W) float32[, (N, H, W) labels]) -> (N, 3, H, W) float32. ``size`` = (H, W) when
    the artifact is fixed; ``channels`` = what the artifact takes (7 or 8: it needs ``labels``, or a batch that
    already carries the region channels)."""

    def __init__(self, fn: Callable[[np.ndarray], np.ndarray], kind: str, path: Path,
                 size: tuple[int, int] | None = None, layout: str = "NCHW", qat: bool = False, channels: int = 3,
                 look_prior: Callable | None = None):
        self._fn = fn
        self.kind, self.path, self.size, self.layout, self.qat = kind, path, size, layout, qat
        self.channels = channels
        self._look_prior = look_prior  # () -> LookPrior, read when a prior-input model first needs it

    @property
    def region_input(self) -> bool:
        return self.channels > 3

    @property
    def look_prior(self):
        """The look prior this model reads (``makeup.lookprior.LookPrior``), or None for a model without
        prior input. Read once, on first use."""
        from .model import split_channels

        if not split_channels(self.channels)[1]:
            return None
        if callable(self._look_prior):
            self._look_prior = self._look_prior()
        return self._look_prior

    def __call__(self, batch, labels=None) -> np.ndarray:
        if hasattr(batch, "detach"):
            batch = batch.detach().cpu().numpy()
        x = np.asarray(batch, dtype=np.float32)
        if x.ndim != 4 or x.shape[1] not in (3, self.channels):
            raise TinyBeautyError(f"{self.path.name}: expected an (N, 3, H, W) batch, got {x.shape}")
        if self.channels != x.shape[1]:
            from .model import model_input  # torch only for region input

            try:
                x = model_input(self.channels, x, labels, self.look_prior)
            except TinyBeautyError as exc:
                raise TinyBeautyError(f"{self.path.name}: {exc}") from None
        x = np.ascontiguousarray(x)
        if self.size is not None and tuple(x.shape[2:]) != tuple(self.size):
            raise TinyBeautyError(f"{self.path.name}: takes {self.size[1]}x{self.size[0]} images, "
                                  f"got {x.shape[3]}x{x.shape[2]}")
        return np.asarray(self._fn(x), dtype=np.float32)

    def __repr__(self) -> str:
        return f"Runner({self.kind}, {self.path.name}, layout={self.layout}, size={self.size})"


def _torch_runner(path: Path) -> Runner:
    import torch

    from .checkpoint import load_student
    from .model import check_input_size

    ckpt = load_student(path)
    if ckpt.qat:
        from .qat import convert_qat, restore_qat

        net = convert_qat(restore_qat(ckpt, dynamic_batch=True, dynamic_size=True), fold_quantize=True)
    else:
        net = ckpt.model.eval()

    def run(x: np.ndarray) -> np.ndarray:
        check_input_size(x.shape[2], x.shape[3], ckpt.config)
        with torch.no_grad():
            return net(torch.from_numpy(x)).numpy()

    return Runner(run, "torch-qat" if ckpt.qat else "torch", path, qat=ckpt.qat,
                  channels=ckpt.config.in_channels, look_prior=lambda: ckpt.look_prior)


def look_prior_beside(path: Path):
    """The look prior an exported prior-input model reads: :data:`LOOK_PRIOR_FILE` beside it."""
    import json

    from makeup.lookprior import LookPrior

    file = path.parent / LOOK_PRIOR_FILE
    try:
        return LookPrior.from_arrays(json.loads(file.read_text(encoding="utf-8")))
    except FileNotFoundError:
        raise TinyBeautyError(f"{path.name} takes the look prior as input and {file} is missing (export writes "
                              "it beside the model: copy it along)") from None
    except (OSError, ValueError, TinyBeautyError) as exc:
        raise TinyBeautyError(f"{file}: unreadable look prior ({str(exc).splitlines()[0][:160]})") from None


def layout_of(shape) -> str:
    """'NHWC' when the last dim is a channel count (:data:`CHANNELS`) and dim 1 is not, else 'NCHW'."""
    shape = list(shape)
    return "NHWC" if len(shape) == 4 and shape[-1] in CHANNELS and shape[1] not in CHANNELS else "NCHW"


def channels_of(shape, layout: str) -> int:
    return int(shape[-1] if layout == "NHWC" else shape[1])


def _fixed_hw(shape, layout: str) -> tuple[int, int] | None:
    h, w = (shape[1], shape[2]) if layout == "NHWC" else (shape[2], shape[3])
    return (int(h), int(w)) if isinstance(h, (int, np.integer)) and isinstance(w, (int, np.integer)) \
        and h > 0 and w > 0 else None


def _per_image(fn: Callable[[np.ndarray], np.ndarray], layout: str) -> Callable[[np.ndarray], np.ndarray]:
    """Wrap a single-image NCHW/NHWC function as a batched NCHW one."""
    def run(x: np.ndarray) -> np.ndarray:
        outs = []
        for img in x:
            inp = img[None].transpose(0, 2, 3, 1) if layout == "NHWC" else img[None]
            out = fn(np.ascontiguousarray(inp))
            outs.append(out.transpose(0, 3, 1, 2) if layout_of(out.shape) == "NHWC" else out)
        return np.concatenate(outs, axis=0)
    return run


def _tflite_runner(path: Path) -> Runner:
    from ai_edge_litert.interpreter import Interpreter

    try:
        interp = Interpreter(model_path=str(path))
        interp.allocate_tensors()
    except Exception as exc:
        raise TinyBeautyError(f"{path}: not a loadable TFLite model ({exc.__class__.__name__})") from None
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    layout = layout_of(inp["shape"])

    def quantize(x: np.ndarray, detail) -> np.ndarray:
        scale, zero = detail["quantization"]
        if detail["dtype"] in (np.int8, np.uint8) and scale:
            info = np.iinfo(detail["dtype"])
            return np.clip(np.round(x / scale + zero), info.min, info.max).astype(detail["dtype"])
        return x.astype(detail["dtype"])

    def dequantize(y: np.ndarray, detail) -> np.ndarray:
        scale, zero = detail["quantization"]
        if detail["dtype"] in (np.int8, np.uint8) and scale:
            return (y.astype(np.float32) - zero) * scale
        return y.astype(np.float32)

    def one(x: np.ndarray) -> np.ndarray:
        interp.set_tensor(inp["index"], quantize(x, inp))
        interp.invoke()
        return dequantize(interp.get_tensor(out["index"]), out)

    return Runner(_per_image(one, layout), "tflite", path, _fixed_hw(inp["shape"], layout), layout,
                  channels=channels_of(inp["shape"], layout), look_prior=lambda: look_prior_beside(path))


def _onnx_runner(path: Path) -> Runner:
    import onnxruntime as ort

    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise TinyBeautyError(f"{path}: not a loadable ONNX model ({exc.__class__.__name__})") from None
    inp = session.get_inputs()[0]
    layout = layout_of([d if isinstance(d, int) else -1 for d in inp.shape])
    batch_dim = inp.shape[0]

    def one(x: np.ndarray) -> np.ndarray:
        return session.run(None, {inp.name: x})[0]

    if isinstance(batch_dim, int):  # a fixed batch (1): one image per call
        fn = _per_image(one, layout)
    else:
        def fn(x: np.ndarray) -> np.ndarray:
            y = one(np.ascontiguousarray(x.transpose(0, 2, 3, 1)) if layout == "NHWC" else x)
            return y.transpose(0, 3, 1, 2) if layout_of(y.shape) == "NHWC" else y
    shape = [d if isinstance(d, int) else -1 for d in inp.shape]
    return Runner(fn, "onnx", path, _fixed_hw(shape, layout), layout, channels=channels_of(shape, layout),
                  look_prior=lambda: look_prior_beside(path))


def prior_only(runner: Runner) -> Runner:
    """The look prior a prior-input model reads, painted alone, no network: ``clamp(photo + prior)`` from the
    same inputs (``tinybeauty eval --prior-only``: what the model adds over its prior is the difference of the
    two scores). One clear error for a model that reads no prior."""
    from .model import PRIOR_CHANNELS, split_channels

    if not split_channels(runner.channels)[1]:
        raise TinyBeautyError(f"{runner.path.name} reads no look prior (--prior-only needs a prior-input model)")

    def paint(x: np.ndarray) -> np.ndarray:
        return np.clip(x[:, :3] + x[:, -PRIOR_CHANNELS:], 0.0, 1.0)

    return Runner(paint, "look-prior", runner.path, runner.size, "NCHW", channels=runner.channels,
                  look_prior=lambda: runner.look_prior)


LOADERS: dict[str, Callable[[Path], Runner]] = {".pt": _torch_runner, ".tflite": _tflite_runner,
                                                 ".onnx": _onnx_runner, ".ort": _onnx_runner}


def load_runner(path: str | os.PathLike) -> Runner:
    """A :class:`Runner` for a student checkpoint (.pt), a TFLite or an ONNX artifact."""
    path = Path(path)
    loader = LOADERS.get(path.suffix.lower())
    if loader is None:
        hint = " (CoreML predicts only on macOS; evaluate the .tflite or .onnx)" \
            if path.suffix.lower() in (".mlpackage", ".mlmodel") else ""
        raise TinyBeautyError(f"{path}: unsupported model type; give one of {', '.join(SUFFIXES)}{hint}")
    if not path.exists():
        raise TinyBeautyError(f"{path}: no such model file")
    return loader(path)
