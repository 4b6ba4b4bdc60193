"""PT2E quantization-aware training of the student (int8 activations, per-channel symmetric int8 weights).

The graph comes from ``torch.export`` with a dynamic batch dim (and optionally dynamic height/width, so QAT can
train at a reduced size and still evaluate at 256); ``torchao.quantization.pt2e.prepare_qat_pt2e`` inserts
fake quantizers chosen by litert-torch's ``PT2EQuantizer``. A QAT checkpoint stores the float config and the
prepared graph's ``state_dict`` (weights + observer/fake-quant state): :func:`restore_qat` rebuilds the same
graph from a fresh model and loads it, so export can convert it twice (unfolded for TFLite, folded for
ONNX/CoreML).
"""
from __future__ import annotations

import logging

import torch
from torch import nn

from .model import build_model, size_multiple

log = logging.getLogger("tinybeauty")

DEFAULT_QAT_SIZE = 256


def make_quantizer():
    """litert-torch's PT2E quantizer for static QAT: per-channel symmetric weights, int8 activations."""
    from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config

    quantizer = PT2EQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True, is_qat=True))
    # torch 2.13/2.14: the conv+BN QAT patterns fail to match; the student has no BatchNorm anyway.
    quantizer.STATIC_QAT_ONLY_OPS = []
    return quantizer


def _dynamic_shapes(dynamic_batch: bool, dynamic_size: bool, multiple: int):
    dims: dict[int, object] = {}
    if dynamic_batch:
        dims[0] = torch.export.Dim("batch", min=1, max=4096)
    if dynamic_size:
        # Height/width stay multiples of the model's size multiple so its halvings and doublings line up.
        dims[2] = multiple * torch.export.Dim("hm", min=1, max=4096 // multiple)
        dims[3] = multiple * torch.export.Dim("wm", min=1, max=4096 // multiple)
    return ({**dims},) if dims else None


def prepare_qat(model: nn.Module, example: torch.Tensor, dynamic_batch: bool = True,
                dynamic_size: bool = False):
    """(prepared GraphModule in train mode, quantizer). ``example`` is an NCHW float batch.

    torch.export specialises a dim whose example size is 1, so a batch of one is repeated to two when the batch
    is dynamic.
    """
    from torchao.quantization.pt2e import move_exported_model_to_train
    from torchao.quantization.pt2e.quantize_pt2e import prepare_qat_pt2e

    example = example.detach().float().cpu()
    if dynamic_batch and example.shape[0] == 1:
        example = example.repeat(2, 1, 1, 1)
    model = model.cpu().train()
    exported = torch.export.export(model, (example,), dynamic_shapes=_dynamic_shapes(
        dynamic_batch, dynamic_size, size_multiple(getattr(model, "config", None))))
    quantizer = make_quantizer()
    prepared = prepare_qat_pt2e(exported.module(), quantizer)
    move_exported_model_to_train(prepared)
    return prepared, quantizer


def set_qat_mode(prepared, train: bool):
    """Train or eval mode for a prepared graph.

    PT2E graphs ignore ``.train()``/``.eval()`` (``move_exported_model_to_*`` swaps their dropout/BN ops), and
    fake quantizers keep updating their range observers in either mode; evaluation must freeze them, or
    validating would move the int8 ranges towards the validation images.
    """
    from torchao.quantization.pt2e import move_exported_model_to_eval, move_exported_model_to_train

    (move_exported_model_to_train if train else move_exported_model_to_eval)(prepared)
    for module in prepared.modules():
        toggle = getattr(module, "enable_observer" if train else "disable_observer", None)
        if callable(toggle) and hasattr(module, "observer_enabled"):
            toggle()
    return prepared


def float_state_from_prepared(prepared, reference: nn.Module) -> dict[str, torch.Tensor]:
    """The QAT-trained float weights under the float model's parameter names (for ``.model`` of a QAT ckpt)."""
    prepared_state = prepared.state_dict()
    own = reference.state_dict()
    missing = [k for k in own if k not in prepared_state]
    if missing:
        raise KeyError(f"prepared graph lacks float parameters {missing[:3]}")
    return {k: prepared_state[k].detach().clone() for k in own}


def restore_qat(ckpt, example: torch.Tensor | None = None, dynamic_batch: bool = True,
                dynamic_size: bool = False):
    """A fresh prepared GraphModule (eval mode) with the checkpoint's QAT weights and observer state loaded.

    ``ckpt`` is a :class:`student.checkpoint.StudentCheckpoint` (or a path to one) saved with ``qat=True``.
    """
    from makeup.errors import TinyBeautyError

    from .checkpoint import StudentCheckpoint, load_student

    if not isinstance(ckpt, StudentCheckpoint):
        ckpt = load_student(ckpt)
    if not ckpt.qat or ckpt.qat_state is None:
        raise TinyBeautyError(f"{ckpt.path}: not a QAT checkpoint (train with QAT epochs > 0)")
    model = build_model(ckpt.config)
    model.load_state_dict(ckpt.model.state_dict())
    if example is None:
        example = torch.rand(1, ckpt.config.in_channels, DEFAULT_QAT_SIZE, DEFAULT_QAT_SIZE)
    prepared, _ = prepare_qat(model, example, dynamic_batch=dynamic_batch, dynamic_size=dynamic_size)
    # Fake-quant scales start as 1-element buffers; their _load_from_state_dict resizes them to per-channel.
    prepared.load_state_dict(ckpt.qat_state, strict=True)
    set_qat_mode(prepared, train=False)
    return prepared


def convert_qat(prepared, fold_quantize: bool = True):
    """The int8 reference graph (quantize/dequantize ops) of a prepared QAT model."""
    import copy

    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e

    return convert_pt2e(copy.deepcopy(prepared), fold_quantize=fold_quantize)
