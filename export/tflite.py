"""int8 TFLite through litert-torch, with NHWC float I/O (the layout an Android ``Bitmap`` buffer has).

Imported only when TFLite is exported (the format table resolves exporters lazily).
"""
from __future__ import annotations

import contextlib
import io
import logging
from pathlib import Path

from torch import nn

from .onnx import INPUT_NAME, OUTPUT_NAME

log = logging.getLogger("tinybeauty")

LAYOUT = "NHWC"


@contextlib.contextmanager
def quiet_litert(verbose: bool):
    """litert-torch prints a progress line per conversion pass; keep the CLI's own progress bar readable."""
    import litert_torch

    before = litert_torch.config.show_progress
    litert_torch.config.show_progress = verbose
    sink = io.StringIO()
    try:
        with contextlib.redirect_stdout(sink) if not verbose else contextlib.nullcontext():
            yield
    finally:
        litert_torch.config.show_progress = before


def export_tflite(qs, path: Path, cfg: dict, staged: dict | None = None) -> dict:
    """Convert the unfolded QAT/PTQ graph: int8 weights and activations, float32 NHWC in and out.

    The channel-last wrapper adds the transposes inside the graph, so an app feeds its RGB buffer as is.
    """
    import litert_torch

    convert_pt2e_graph(qs.unfolded, qs.quantizer, qs.example(), path)
    return {"layout": LAYOUT, "batch": 1, "weights": "int8", "activations": "int8", "io_dtype": "float32",
            "input_name": INPUT_NAME, "output_name": OUTPUT_NAME,
            "converter": f"litert-torch {litert_torch.__version__}"}


def convert_pt2e_graph(graph, quantizer, example, path: Path) -> None:
    """Write the converted int8 PT2E ``graph`` (NCHW ``example``) as a ``.tflite`` with NHWC I/O."""
    import litert_torch
    from litert_torch.quantize.quant_config import QuantConfig

    wrapped = NamedIO(litert_torch.to_channel_last_io(graph, args=[0], outputs=[0]))
    wrapped.training = False  # plain wrappers; .eval() would recurse into the exported graph, which refuses it
    with quiet_litert(log.isEnabledFor(logging.DEBUG)):
        edge = litert_torch.convert(wrapped, sample_kwargs={INPUT_NAME: example.permute(0, 2, 3, 1).contiguous()},
                                    quant_config=QuantConfig(pt2e_quantizer=quantizer))
        edge.export(str(path))


class NamedIO(nn.Module):
    """Signature names an app can read (``image`` -> ``made_up``) instead of ``args_0`` -> ``output_0``:
    litert-torch names inputs after keyword arguments and outputs after the keys of a returned dict."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, image):
        return {OUTPUT_NAME: self.inner(image)}
