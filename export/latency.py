"""How fast the exported student runs on this CPU, and how far that is from what the CPU can do.

- :func:`time_call` — median wall time of a call after warm-up (``time.perf_counter``), with its spread.
- :func:`delegate_partitions` — how many XNNPACK partitions LiteRT builds for a ``.tflite`` and which ops it
  leaves to the reference kernels (every op outside a partition costs a hand-off and runs unoptimised).
- :func:`op_profile` — a per-op time profile of a ``.tflite``: LiteRT's Python API has no profiler, so each
  operator is cut out into a one-op model (same tensors, weights and quantisation; its activation inputs
  fed random values of their dtype) and timed alone under the same delegate and thread count. The sum
  exceeds the whole model's time by a per-invoke overhead per op; the ranking is what it is for.
- :func:`roofline_probe` — the int8 3x3-conv throughput (MAC/s) LiteRT reaches on this CPU for a 4-layer
  64-channel conv stack converted through the student's own quantizer and converter: the peak a model of
  the same MACs could approach. ``roofline ms = model MACs / probe MAC/s``.
- :func:`measure` — all of it for one export folder (+ the float checkpoint it came from), at each thread
  count: LiteRT, ONNX Runtime and torch fp32 eager latency, ratios, partitions, profile.
"""
from __future__ import annotations

import copy
import json
import os
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from makeup.errors import TinyBeautyError

PROBE_CHANNELS, PROBE_SIZE, PROBE_LAYERS = 64, 64, 4


@dataclass(frozen=True)
class Timing:
    median_ms: float
    p10_ms: float
    p90_ms: float
    runs: int

    @classmethod
    def of(cls, times_ms: list[float]) -> "Timing":
        """Median and 10th/90th percentiles of timed calls (ms)."""
        q = statistics.quantiles(times_ms, n=10) if len(times_ms) >= 2 else times_ms * 9
        return cls(statistics.median(times_ms), q[0], q[-1], len(times_ms))

    def to_dict(self) -> dict:
        return {"median_ms": round(self.median_ms, 4), "p10_ms": round(self.p10_ms, 4),
                "p90_ms": round(self.p90_ms, 4), "runs": self.runs}


def time_call(fn: Callable[[], object], runs: int = 50, warmup: int = 5, min_seconds: float = 0.0) -> Timing:
    """Median of ``runs`` timed calls (more, up to ``min_seconds`` of timing) after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < runs or time.perf_counter() - start < min_seconds:
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    return Timing.of(times)


def time_interleaved(calls: dict[str, Callable[[], object]], blocks: int = 40, per_block: int = 5,
                     warmup: int = 10) -> dict[str, Timing]:
    """Time several calls in alternating blocks, so a noisy machine's drift lands on all of them alike:
    the way to compare two artifacts on a shared CPU (separate runs differed by up to 1 ms here)."""
    for fn in calls.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {k: [] for k in calls}
    for _ in range(blocks):
        for key, fn in calls.items():
            for _ in range(per_block):
                t = time.perf_counter()
                fn()
                times[key].append((time.perf_counter() - t) * 1e3)
    return {key: Timing.of(ts) for key, ts in times.items()}


def compare_tflite(paths: dict[str, str | Path], threads=(1, 2)) -> list[dict]:
    """LiteRT median ms of each ``.tflite`` at each thread count, timed interleaved; with partitions."""
    rows = []
    for t in threads:
        interps = {k: _interpreter(p, t) for k, p in paths.items()}
        for interp in interps.values():
            _random_inputs(interp, np.random.default_rng(0))
        timed = time_interleaved({k: i.invoke for k, i in interps.items()})
        rows.append({"threads": t, **{k: v.to_dict() for k, v in timed.items()}})
    return rows


def _interpreter(model: str | Path | bytes, threads: int):
    from ai_edge_litert.interpreter import Interpreter

    kwargs = {"model_content": bytes(model)} if isinstance(model, (bytes, bytearray)) else \
        {"model_path": str(model)}
    interp = Interpreter(num_threads=threads, **kwargs)
    interp.allocate_tensors()
    return interp


def _random_inputs(interp, rng: np.random.Generator) -> None:
    for d in interp.get_input_details():
        dtype = np.dtype(d["dtype"])
        if dtype.kind == "f":
            value = rng.random(d["shape"], dtype=np.float32).astype(dtype)
        else:
            info = np.iinfo(dtype)
            value = rng.integers(info.min, info.max, size=d["shape"], endpoint=True).astype(dtype)
        interp.set_tensor(d["index"], value)


def delegate_partitions(path: str | Path, threads: int = 1) -> dict:
    """``{"partitions": n, "outside": [op names run by the reference kernels], "ops": total}``.

    After delegation the interpreter lists the model's own ops followed by one ``DELEGATE`` node per
    partition; an op none of the partitions consumed still runs on its own.
    """
    ops = _interpreter(path, threads)._get_ops_details()
    own = [o for o in ops if o["op_name"] != "DELEGATE"]
    plan = _execution_plan(ops)
    outside = [ops[i]["op_name"] for i in plan if ops[i]["op_name"] != "DELEGATE"]
    return {"partitions": sum(ops[i]["op_name"] == "DELEGATE" for i in plan), "outside": outside, "ops": len(own)}


def _execution_plan(ops: list[dict]) -> list[int]:
    """Node indices the interpreter runs (the wrapper exposes no plan): every DELEGATE node, and every op of
    the model whose outputs are not all produced inside some DELEGATE node."""
    inside = _tensors_inside_delegates(ops)
    return [i for i, o in enumerate(ops)
            if o["op_name"] == "DELEGATE" or not all(int(t) in inside for t in o["outputs"])]


def _tensors_inside_delegates(ops: list[dict]) -> set[int]:
    """Outputs of the model's own ops that a DELEGATE node covers: walk back from each DELEGATE's outputs
    through producers until the DELEGATE's inputs."""
    producer = {int(t): o for o in ops if o["op_name"] != "DELEGATE" for t in o["outputs"]}
    inside: set[int] = set()
    for d in (o for o in ops if o["op_name"] == "DELEGATE"):
        stop = {int(t) for t in d["inputs"]}
        stack = [int(t) for t in d["outputs"]]
        while stack:
            t = stack.pop()
            if t in inside or t in stop or t not in producer:
                continue
            inside.add(t)
            stack.extend(int(x) for x in producer[t]["inputs"] if int(x) >= 0)
    return inside


def op_profile(path: str | Path, threads: int = 1, runs: int = 30) -> list[dict]:
    """One row per operator of the ``.tflite``: index, op name, output shape, median ms alone, delegated."""
    from ai_edge_litert.tools import flatbuffer_utils as fb

    model = fb.read_model_from_bytearray(Path(path).read_bytes())
    if len(model.subgraphs) != 1:
        raise TinyBeautyError(f"{path}: {len(model.subgraphs)} subgraphs; the profiler reads one")
    graph = model.subgraphs[0]
    has_data = {i for i, t in enumerate(graph.tensors)
                if t.buffer is not None and t.buffer < len(model.buffers)
                and model.buffers[t.buffer].data is not None and len(model.buffers[t.buffer].data) > 0}
    rng = np.random.default_rng(0)
    rows = []
    for index, op in enumerate(graph.operators):
        one = copy.copy(model)
        sub = copy.copy(graph)
        sub.operators = [op]
        sub.inputs = [int(t) for t in op.inputs if t >= 0 and int(t) not in has_data]
        sub.outputs = [int(t) for t in op.outputs]
        one.subgraphs = [sub]
        one.signatureDefs = []
        interp = _interpreter(bytes(fb.convert_object_to_bytearray(one)), threads)
        _random_inputs(interp, rng)
        name = fb.opcode_to_name(model, op.opcodeIndex)
        details = interp._get_ops_details()
        out = graph.tensors[int(op.outputs[0])]
        rows.append({"index": index, "op": name, "shape": [int(s) for s in out.shape],
                     "dtype": fb.type_to_name(out.type).lower(),
                     "delegated": any(d["op_name"] == "DELEGATE" for d in details),
                     "ms": round(time_call(interp.invoke, runs=runs, warmup=3).median_ms, 4)})
    return rows


def _conv_stack(channels: int, layers: int):
    from torch import nn

    return nn.Sequential(*[m for _ in range(layers) for m in (nn.Conv2d(channels, channels, 3, padding=1),
                                                                nn.ReLU())]).eval()


def build_probe(path: str | Path, channels: int = PROBE_CHANNELS, size: int = PROBE_SIZE,
                layers: int = PROBE_LAYERS) -> int:
    """Write the roofline probe ``.tflite`` (int8 through the student's quantizer); return its MACs."""
    import torch
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    from student.qat import make_quantizer

    from .tflite import convert_pt2e_graph

    torch.manual_seed(0)
    example = torch.rand(1, channels, size, size)
    quantizer = make_quantizer()
    prepared = prepare_pt2e(torch.export.export(_conv_stack(channels, layers), (example,)).module(), quantizer)
    with torch.no_grad():
        for _ in range(2):
            prepared(torch.rand_like(example))
    convert_pt2e_graph(convert_pt2e(prepared, fold_quantize=False), quantizer, example, Path(path))
    return layers * size * size * channels * channels * 9


def roofline_probe(path: str | Path, macs: int, threads: int = 1, runs: int = 30) -> dict:
    """``{"gmac_per_s", "ms", "macs", "threads", "shape"}`` of the probe ``.tflite`` (:func:`build_probe`) at
    ``threads``."""
    interp = _interpreter(path, threads)
    _random_inputs(interp, np.random.default_rng(0))
    t = time_call(interp.invoke, runs=runs)
    return {"gmac_per_s": round(macs / (t.median_ms * 1e-3) / 1e9, 2), "ms": round(t.median_ms, 4),
            "macs": macs, "threads": threads,
            "shape": f"{PROBE_LAYERS} x conv3x3 {PROBE_CHANNELS}->{PROBE_CHANNELS} at {PROBE_SIZE}x{PROBE_SIZE}"}


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def export_default(out: str | Path, size: int = 256, formats: str = "tflite,onnx", config=None,
                   head_bias: float | None = None) -> tuple[Path, dict]:
    """Export a student (``config``, default DEFAULT_CONFIG) at ``size`` without training: PT2E QAT
    preparation, observers set on two random batches, a non-zero head (latency does not depend on the
    weights). ``head_bias`` spreads the head's biases over [-head_bias, head_bias] (drives outputs past 0
    and 1). Writes OUT/default_qat.pt and OUT/export/; returns ``(checkpoint, report)``."""
    import torch

    from student.checkpoint import save_checkpoint
    from student.model import StudentConfig, build_model
    from student.qat import float_state_from_prepared, prepare_qat

    from .pipeline import ExportRequest, run_export

    config = config if isinstance(config, StudentConfig) else StudentConfig.over_default(config)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    model = build_model(config)
    torch.nn.init.normal_(model.head.weight, 0.0, 0.02)  # a non-identity residual, as after training
    if head_bias is not None:
        with torch.no_grad():
            model.head.bias.copy_(torch.linspace(-head_bias, head_bias, model.head.bias.numel()))
    channels = config.in_channels
    prepared, _ = prepare_qat(model, torch.rand(2, channels, size, size))
    with torch.no_grad():
        for _ in range(2):
            prepared(torch.rand(2, channels, size, size))
    model.load_state_dict(float_state_from_prepared(prepared, model))
    ckpt = save_checkpoint(out / "default_qat.pt", model, config=config,
                           qat_state=prepared.state_dict(), meta={"style": "benchmark"})
    report = run_export(ExportRequest.build(ckpt, out / "export", formats, config={"size": size}), progress=False)
    return ckpt, report


def _ort_session(path: Path, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    inp = session.get_inputs()[0]
    shape = [d if isinstance(d, int) else 1 for d in inp.shape]
    x = np.random.default_rng(0).random(shape, dtype=np.float32)
    return lambda: session.run(None, {inp.name: x})


def _torch_call(model, size: int, threads: int):
    import torch

    torch.set_num_threads(threads)
    x = torch.rand(1, model.config.in_channels, size, size)

    def call():
        with torch.inference_mode():
            return model(x)
    return call


def measure(export_dir: str | Path, checkpoint: str | Path | None = None, threads=(1, 2), runs: int = 50,
            top: int = 12, progress: bool = True) -> dict:
    """Latency of one export folder's ``.tflite`` (LiteRT + XNNPACK) and ``.onnx`` (ONNX Runtime) and of its
    float checkpoint in torch fp32 eager, at each thread count, beside the roofline probe; partitions and a
    per-op profile of the ``.tflite``. One process, one run: every figure is comparable with every other."""
    import torch
    from tqdm import tqdm

    from student.checkpoint import load_student
    from student.model import build_model, count_macs, count_params

    export_dir = Path(export_dir)
    report_path = export_dir / "report.json"
    if not report_path.is_file():
        raise TinyBeautyError(f"{export_dir}: no report.json (run `tinybeauty export` first, or omit --export)")
    report = json.loads(report_path.read_text())
    size = int(report["size"])
    tflite, onnx = export_dir / "tinybeauty.tflite", export_dir / "tinybeauty.onnx"
    if not tflite.is_file():
        raise TinyBeautyError(f"{export_dir}: no tinybeauty.tflite (export with --formats including tflite)")
    checkpoint = Path(checkpoint or report["checkpoint"])
    if checkpoint.is_file():
        ckpt = load_student(checkpoint)
        model, config, weights = ckpt.model.float().eval(), ckpt.config, str(checkpoint)
    else:
        from student.model import StudentConfig

        card = json.loads((export_dir / "model_card.json").read_text())
        config = StudentConfig.from_saved(card["student_config"])
        model, weights = build_model(config).eval(), "random (checkpoint not found; latency does not depend on it)"
    macs, params = count_macs(model, size), count_params(model)
    before = torch.get_num_threads()
    rows = []
    steps = [(t, what) for t in threads for what in ("probe", "tflite", "onnx", "torch")]
    results: dict[int, dict] = {t: {"threads": t} for t in threads}
    probe_dir = tempfile.TemporaryDirectory(prefix="tinybeauty-probe-")
    probe = Path(probe_dir.name) / "probe.tflite"
    probe_macs = build_probe(probe)  # converted once, timed at each thread count
    bar = tqdm(steps, desc="bench", unit="run", disable=not progress)
    try:
        for t, what in bar:
            bar.set_postfix_str(f"{what} x{t} thread{'s' if t > 1 else ''}")
            if what == "probe":
                results[t]["probe"] = roofline_probe(probe, probe_macs, t, runs=runs)
            elif what == "tflite":
                interp = _interpreter(tflite, t)
                _random_inputs(interp, np.random.default_rng(0))
                results[t]["tflite"] = time_call(interp.invoke, runs=runs).to_dict()
            elif what == "onnx" and onnx.is_file():
                results[t]["onnx"] = time_call(_ort_session(onnx, t), runs=runs).to_dict()
            elif what == "torch":
                results[t]["torch_fp32"] = time_call(_torch_call(model, size, t), runs=runs).to_dict()
    finally:
        torch.set_num_threads(before)
        probe_dir.cleanup()
    for t in threads:
        r = results[t]
        roof_ms = macs / (r["probe"]["gmac_per_s"] * 1e9) * 1e3
        r["roofline_ms"] = round(roof_ms, 4)
        r["tflite_over_roofline"] = round(r["tflite"]["median_ms"] / roof_ms, 3)
        r["tflite_speedup_vs_torch"] = round(r["torch_fp32"]["median_ms"] / r["tflite"]["median_ms"], 3)
        if "onnx" in r:
            r["onnx_speedup_vs_torch"] = round(r["torch_fp32"]["median_ms"] / r["onnx"]["median_ms"], 3)
        rows.append(r)
    base = results[threads[0]]
    for r in rows[1:]:
        r["tflite_scaling"] = round(base["tflite"]["median_ms"] / r["tflite"]["median_ms"], 3)
    profile = op_profile(tflite, threads=threads[0], runs=max(10, runs // 2))
    parts = delegate_partitions(tflite, threads[0])
    return {
        "export": str(export_dir), "checkpoint": weights, "size": size, "macs": int(macs), "params": int(params),
        "student_config": config.to_dict(),
        "bytes": {name: r.get("bytes") for name, r in report["formats"].items() if r.get("shipped", True)},
        "fidelity": {name: r.get("fidelity") for name, r in report["formats"].items() if r.get("fidelity")},
        "cpu": cpu_name(), "cpus": cpu_count(), "runs": runs,
        "partitions": parts["partitions"], "outside_delegate": parts["outside"], "ops": parts["ops"],
        "latency": rows,
        "op_profile": {"threads": threads[0], "sum_ms": round(sum(r["ms"] for r in profile), 4),
                       "top": sorted(profile, key=lambda r: -r["ms"])[:top], "ops": profile},
    }


def format_table(result: dict, command: str = "") -> str:
    """The bench result as markdown: one latency table (each figure with its thread count), the graph facts,
    the per-op profile's top ops."""
    lines = [f"# Latency of `{result['export']}` ({result['size']}x{result['size']})", ""]
    if command:
        lines += [f"Command: `{command}`", ""]
    lines += [f"CPU: {result['cpu']} ({result['cpus']} cores); median of {result['runs']} runs after warm-up. "
              f"{result['macs'] / 1e9:.3f} GMAC, {result['params']:,} params; XNNPACK partitions: "
              f"**{result['partitions']}**" + (f" (outside: {', '.join(result['outside_delegate'])})"
                                              if result["outside_delegate"] else "") + ".", ""]
    lines += ["| threads | LiteRT .tflite ms | ONNX Runtime .onnx ms | torch fp32 eager ms | int8 roofline probe "
              "GMAC/s | roofline ms (MACs / probe) | LiteRT / roofline | LiteRT speed-up vs torch | ORT speed-up "
              "vs torch |", "|---|---|---|---|---|---|---|---|---|"]
    for r in result["latency"]:
        onnx = r.get("onnx", {}).get("median_ms")
        lines.append(
            f"| {r['threads']} | {r['tflite']['median_ms']:.3f} | {onnx:.3f} | " if onnx is not None else
            f"| {r['threads']} | {r['tflite']['median_ms']:.3f} | - | ")
        lines[-1] += (f"{r['torch_fp32']['median_ms']:.3f} | {r['probe']['gmac_per_s']:.1f} | {r['roofline_ms']:.3f} "
                      f"| {r['tflite_over_roofline']:.2f}x | {r['tflite_speedup_vs_torch']:.2f}x | "
                      + (f"{r['onnx_speedup_vs_torch']:.2f}x |" if "onnx_speedup_vs_torch" in r else "- |"))
    scaling = [f"{r['threads']} threads {r['tflite_scaling']:.2f}x" for r in result["latency"] if "tflite_scaling" in r]
    if scaling:
        lines += ["", "LiteRT scaling over 1 thread: " + ", ".join(scaling) + "."]
    lines += ["", "Artifact bytes: " + ", ".join(f"{k} {v:,}" for k, v in result["bytes"].items() if v) + ".",
              "", f"Roofline probe: {result['latency'][0]['probe']['shape']}, int8 through the student's own "
              "quantizer and converter.", "",
              f"## Per-op profile of the .tflite ({result['op_profile']['threads']} thread; each op cut out and "
              f"timed alone; sum {result['op_profile']['sum_ms']:.3f} ms)", "",
              "| # | op | output | dtype | delegated | ms |", "|---|---|---|---|---|---|"]
    for r in result["op_profile"]["top"]:
        lines.append(f"| {r['index']} | {r['op']} | {'x'.join(map(str, r['shape']))} | {r['dtype']} | "
                     f"{'yes' if r['delegated'] else '**no**'} | {r['ms']:.3f} |")
    if result.get("compare"):
        names = [k for k in result["compare"][0] if k != "threads"]
        lines += ["", f"## LiteRT, interleaved: {' vs '.join(f'`{n}`' for n in names)}", "",
                  "| threads | " + " | ".join(f"{n} ms" for n in names) + " |", "|---" * (len(names) + 1) + "|"]
        for r in result["compare"]:
            lines.append(f"| {r['threads']} | " + " | ".join(f"{r[n]['median_ms']:.3f}" for n in names) + " |")
    return "\n".join(lines) + "\n"
