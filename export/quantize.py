"""From a student checkpoint to the int8 PyTorch graphs every exporter converts.

A QAT checkpoint is restored into its prepared PT2E graph (trained fake-quant state included). A float
checkpoint is quantized post-training here, calibrated on the pairs named by ``--calib``. Either way the
prepared graph is converted twice: ``fold_quantize=False`` for litert-torch (it wants the q/dq pattern on
float weights) and folded (int8 weight tensors) for ONNX and CoreML.
"""
from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from makeup.errors import TinyBeautyError

log = logging.getLogger("tinybeauty")


@dataclass
class QuantizedStudent:
    prepared: object            # torch.fx.GraphModule with observers / fake-quant (QAT-trained or calibrated)
    quantizer: object           # the PT2EQuantizer that prepared it (litert-torch reads its static mode)
    quantization: str           # "qat" (trained with fake quant) or "ptq" (calibrated here)
    float_model: object         # the float nn.Module (the weights the quantized graph started from)
    size: int                   # square input side the artifacts are specialised to
    meta: dict = field(default_factory=dict)
    calib_images: int = 0

    @property
    def channels(self) -> int:
        """Input channels: 3 (RGB), 7 or 8 (RGB + region masks, ``StudentConfig.region_input``), 10 or 11 (+ the
        painted look prior, ``StudentConfig.prior_input``)."""
        return self.float_model.config.in_channels

    @cached_property
    def look_prior(self):
        """The look prior a prior-input student reads (from the checkpoint's meta), or None."""
        from makeup.lookprior import LookPrior

        return LookPrior.from_meta(self.meta)

    def example(self):
        """A fixed batch-1 input used for tracing (values do not matter once observers are frozen)."""
        import torch

        g = torch.Generator().manual_seed(0)
        return torch.rand(1, self.channels, self.size, self.size, generator=g)

    @cached_property
    def unfolded(self):
        """Converted graph with q/dq around float weights: what litert-torch turns into int8 TFLite."""
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e

        return _eval_mode(convert_pt2e(copy.deepcopy(self.prepared), fold_quantize=False))

    @cached_property
    def folded(self):
        """Converted graph with int8 weight constants: what ONNX QDQ and CoreML need."""
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e

        return _eval_mode(convert_pt2e(copy.deepcopy(self.prepared)))

    def graph(self, kind: str):
        return {"unfolded": self.unfolded, "folded": self.folded}[kind]


def _eval_mode(graph):
    """Exported graphs refuse ``.eval()``; torchao's helper switches them (converters warn otherwise)."""
    from torchao.quantization.pt2e import move_exported_model_to_eval

    move_exported_model_to_eval(graph)
    graph.training = False
    return graph


def load_checkpoint(path: str | Path):
    """``student.checkpoint.load_student`` with a clear error for anything that is not a TinyBeauty checkpoint."""
    from student.checkpoint import load_student

    p = Path(path)
    if not p.exists():
        raise TinyBeautyError(f"{p}: no such checkpoint (train one with `tinybeauty student train`)")
    if p.is_dir():
        raise TinyBeautyError(f"{p}: is a folder; give the checkpoint file (e.g. STUDENT/tinybeauty_final.pt)")
    try:
        return load_student(p)
    except TinyBeautyError:
        raise
    except Exception as exc:  # a pickle of something else, a truncated file, a foreign state dict
        raise TinyBeautyError(f"{p}: not a TinyBeauty student checkpoint ({exc.__class__.__name__})") from None


def quantize_student(ckpt, size: int, calib_images: np.ndarray | None = None) -> QuantizedStudent:
    """The prepared int8 graph of a checkpoint: restored QAT state, or PTQ calibrated on ``calib_images``.

    ``calib_images``: float32 (N, C, size, size) model inputs (``student.model.model_input``); required when
    the checkpoint has no QAT state.
    """
    import student.qat as sq

    model = ckpt.model.eval()
    meta = dict(getattr(ckpt, "meta", {}) or {})
    if getattr(ckpt, "qat", False):
        import torch

        prepared = sq.restore_qat(ckpt, example=torch.rand(1, ckpt.config.in_channels, size, size))
        return QuantizedStudent(prepared, sq.make_quantizer(), "qat", model, size, meta)
    if calib_images is None or len(calib_images) == 0:
        raise TinyBeautyError("the checkpoint has no QAT state, so it is quantized post-training here: "
                              "give calibration pairs with --calib PAIRS")
    return _post_training_quantize(model, size, calib_images, meta)


def ptq_quantizer():
    """The post-training twin of ``student.qat.make_quantizer``: same int8 scheme (per-channel symmetric
    weights, int8 activations), histogram observers instead of fake quantizers."""
    from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config

    return PT2EQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True, is_qat=False))


def _post_training_quantize(model, size: int, calib_images: np.ndarray, meta: dict) -> QuantizedStudent:
    import torch
    from torchao.quantization.pt2e.quantize_pt2e import prepare_pt2e

    quantizer = ptq_quantizer()
    # Dynamic batch like the QAT graph (ONNX keeps a batch dim); torch.export specialises a size-1 example.
    example = torch.from_numpy(np.ascontiguousarray(np.repeat(calib_images[:1], 2, axis=0)))
    batch = torch.export.Dim("batch", min=1, max=4096)
    gm = torch.export.export(model, (example,), dynamic_shapes=({0: batch},)).module()
    prepared = prepare_pt2e(gm, quantizer)
    with torch.no_grad():
        for start in range(0, len(calib_images), 8):
            prepared(torch.from_numpy(np.ascontiguousarray(calib_images[start:start + 8])))
    _eval_mode(prepared)
    log.info("post-training int8: calibrated on %d images", len(calib_images))
    return QuantizedStudent(prepared, quantizer, "ptq", model, size, meta, calib_images=len(calib_images))
