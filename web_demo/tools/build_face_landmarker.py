"""Assemble ``face_landmarker.task`` offline from the face models inside the mediapipe 0.10.21 wheel.

No package ships the MediaPipe Tasks face-landmarker bundle, and nothing may be downloaded here. The
wheel has what it needs: ``face_detection_short_range.tflite`` (the Tasks face detector is that model)
and ``face_landmark_with_attention.tflite``, the model behind ``FaceMesh(refine_landmarks=True)`` that
``makeup.align`` uses. The Tasks graph, however, decodes exactly 478 x 3 values from the landmark model's
*first* output and a face-presence logit from its second, while the attention model has seven outputs:
the 468-point mesh plus separate lips (80 points), eyes (71 each) and irises (5 each) in x, y only.

The legacy graph combines them with a ``LandmarksRefinementCalculator`` whose index tables live in the
wheel's ``_framework_bindings`` library (serialised protobuf). This script reads those tables from the
library and appends the same refinement to the model as plain TFLite ops (RESHAPE, SLICE, CONCATENATION,
GATHER, MEAN): refined x, y overwrite the mesh's at the mapped indices (later refinements win, as in the
calculator), the mesh keeps its z, each iris gets the mean z of its eye contour. The new graph has two
outputs, ``[1, 1, 1, 1434]`` landmarks and the presence logit, which is what the Tasks graph expects.
The result is bundled with mediapipe's own ``model_asset_bundle_utils`` (an aligned, stored zip).

    python web_demo/tools/build_face_landmarker.py --out web_demo/assets/face_landmarker.task [--check]

``--check`` runs the bundle in the wheel's Python ``FaceLandmarker`` on ``skimage.data.astronaut()`` and
compares it with ``mediapipe.solutions.face_mesh`` (what ``makeup.align`` uses); it prints the largest
landmark distance in pixels.
"""
from __future__ import annotations

import argparse
import glob
import sys
from pathlib import Path

import numpy as np

DETECTOR = "modules/face_detection/face_detection_short_range.tflite"
LANDMARKER = "modules/face_landmark/face_landmark_with_attention.tflite"
MESH_POINTS = 468
ALL_POINTS = 478
# (points per refinement, coordinates per point) in the attention model's output order.
REFINEMENTS = (("mesh", 468), ("lips", 80), ("left_eye", 71), ("right_eye", 71), ("left_iris", 5),
               ("right_iris", 5))


def mediapipe_dir() -> Path:
    import mediapipe

    return Path(mediapipe.__file__).resolve().parent


# ---- the refinement tables, read from the wheel's serialised LandmarksRefinementCalculator options ----

def _varint(data: bytes, i: int) -> tuple[int, int]:
    n = shift = 0
    while True:
        b = data[i]
        n |= (b & 0x7F) << shift
        shift += 7
        i += 1
        if not b & 0x80:
            return n, i


def _int_run(data: bytes, i: int) -> tuple[list[int], int]:
    """A run of field-1 varints (tag 0x08 each: ``repeated int32 indexes_mapping``, unpacked)."""
    out = []
    while i < len(data) and data[i] == 0x08:
        v, i = _varint(data, i + 1)
        out.append(v)
    return out, i


def refinement_tables(library: bytes) -> dict[str, dict]:
    """{name: {"indexes": [...], "z_average": [...] | None}} for the six refinements, in order.

    The calculator's options are six ``Refinement`` messages, each ``indexes_mapping`` (field 1) then
    ``z_refinement`` (field 2). They are found by their first run: the 468-point identity mapping.
    """
    identity = b"".join(b"\x08" + bytes([v]) for v in range(0x80))  # 0..127 each fits one byte
    start = library.find(identity)
    while start >= 0:
        tables, i, ok = {}, start, True
        for name, count in REFINEMENTS:
            indexes, i = _int_run(library, i)
            if len(indexes) != count or max(indexes) >= ALL_POINTS:
                ok = False
                break
            if library[i] != 0x12:  # z_refinement (field 2, length-delimited)
                ok = False
                break
            length, j = _varint(library, i + 1)
            z_msg, i = library[j:j + length], j + length
            z_average = None
            if z_msg[:1] == b"\x1a":  # assign_average (field 3) { indexes_for_average (field 1) }
                inner_len, k = _varint(z_msg, 1)
                z_average, _ = _int_run(z_msg[k:k + inner_len], 0)
            tables[name] = {"indexes": indexes, "z_average": z_average}
            if library[i] == 0x0A:  # the next Refinement message's header (field 1 of the options)
                _, i = _varint(library, i + 1)
        if ok and tables["mesh"]["indexes"] == list(range(MESH_POINTS)) \
                and len(tables["left_iris"]["z_average"] or []) == len(tables["right_iris"]["z_average"] or []) > 0:
            return tables
        start = library.find(identity, start + 1)
    raise SystemExit("error: the face-mesh refinement tables were not found in mediapipe's library "
                     "(expected mediapipe 0.10.21)")


# ---- appending the refinement to the TFLite graph ----

class _Graph:
    """Adds constant tensors and ops to subgraph 0 of a ``schema_py_generated.ModelT``."""

    def __init__(self, model) -> None:
        from mediapipe.tasks.metadata import schema_py_generated as fb

        self.fb, self.model, self.sub = fb, model, model.subgraphs[0]
        self._codes: dict[int, int] = {}

    def opcode(self, builtin: int) -> int:
        fb = self.fb
        for i, code in enumerate(self.model.operatorCodes):
            if max(code.builtinCode, code.deprecatedBuiltinCode) == builtin and not code.customCode:
                return i
        code = fb.OperatorCodeT()
        code.builtinCode = builtin
        code.deprecatedBuiltinCode = min(builtin, 127)
        code.version = 1
        self.model.operatorCodes.append(code)
        return len(self.model.operatorCodes) - 1

    def tensor(self, name: str, shape, dtype: str = "float32", data: np.ndarray | None = None) -> int:
        fb = self.fb
        t = fb.TensorT()
        t.name = name.encode()
        t.shape = list(shape)
        t.type = {"float32": fb.TensorType.FLOAT32, "int32": fb.TensorType.INT32}[dtype]
        buf = fb.BufferT()
        if data is not None:
            buf.data = np.ascontiguousarray(data, dtype=dtype).tobytes()
        self.model.buffers.append(buf)
        t.buffer = len(self.model.buffers) - 1
        self.sub.tensors.append(t)
        return len(self.sub.tensors) - 1

    def const(self, name: str, values) -> int:
        arr = np.asarray(values, dtype=np.int32)
        return self.tensor(name, arr.shape, "int32", arr)

    def op(self, builtin: int, inputs, outputs, options_type: int = 0, options=None) -> None:
        op = self.fb.OperatorT()
        op.opcodeIndex = self.opcode(builtin)
        op.inputs, op.outputs = list(inputs), list(outputs)
        op.builtinOptionsType, op.builtinOptions = options_type, options
        self.sub.operators.append(op)

    def reshape(self, src: int, shape, name: str) -> int:
        fb = self.fb
        out = self.tensor(name, shape)
        opts = fb.ReshapeOptionsT()
        opts.newShape = list(shape)
        self.op(fb.BuiltinOperator.RESHAPE, [src, self.const(name + "/shape", shape)], [out],
                fb.BuiltinOptions.ReshapeOptions, opts)
        return out

    def slice(self, src: int, begin, size, name: str) -> int:
        fb = self.fb
        out = self.tensor(name, size)
        self.op(fb.BuiltinOperator.SLICE, [src, self.const(name + "/begin", begin), self.const(name + "/size", size)],
                [out], fb.BuiltinOptions.SliceOptions, fb.SliceOptionsT())
        return out

    def concat(self, srcs, axis: int, shape, name: str) -> int:
        fb = self.fb
        out = self.tensor(name, shape)
        opts = fb.ConcatenationOptionsT()
        opts.axis = axis
        self.op(fb.BuiltinOperator.CONCATENATION, srcs, [out], fb.BuiltinOptions.ConcatenationOptions, opts)
        return out

    def gather(self, src: int, indexes, width: int, name: str) -> int:
        fb = self.fb
        out = self.tensor(name, [len(indexes), width])
        opts = fb.GatherOptionsT()
        opts.axis = 0
        self.op(fb.BuiltinOperator.GATHER, [src, self.const(name + "/indexes", indexes)], [out],
                fb.BuiltinOptions.GatherOptions, opts)
        return out

    def mean_rows(self, src: int, name: str) -> int:
        fb = self.fb
        out = self.tensor(name, [1, 1])
        opts = fb.ReducerOptionsT()
        opts.keepDims = True
        self.op(fb.BuiltinOperator.MEAN, [src, self.const(name + "/axis", [0])], [out],
                fb.BuiltinOptions.ReducerOptions, opts)
        return out


def extend_to_478(model_bytes: bytes, tables: dict[str, dict]) -> bytes:
    """The attention landmark model with one [1, 1, 1, 1434] refined-landmarks output and the face flag."""
    import flatbuffers
    from mediapipe.tasks.metadata import schema_py_generated as fb

    model = fb.ModelT.InitFromObj(fb.Model.GetRootAsModel(model_bytes, 0))
    g = _Graph(model)
    sub = g.sub
    outs = list(sub.outputs)
    names = [sub.tensors[i].name.decode() for i in outs]
    if len(outs) != 7 or not names[-1].endswith("faceflag"):
        raise SystemExit(f"error: unexpected outputs of {LANDMARKER}: {names}")
    mesh = g.reshape(outs[0], [MESH_POINTS, 3], "tb/mesh")
    parts_xy = [g.slice(mesh, [0, 0], [MESH_POINTS, 2], "tb/mesh_xy")]
    row = {"mesh": 0}
    offset = MESH_POINTS
    for (name, count), src in zip(REFINEMENTS[1:], outs[1:6]):
        parts_xy.append(g.reshape(src, [count, 2], f"tb/{name}_xy"))
        row[name] = offset
        offset += count
    xy_all = g.concat(parts_xy, 0, [offset, 2], "tb/xy_all")
    # Final point p takes its x, y from the last refinement that maps onto p (the calculator's order).
    xy_source = list(range(ALL_POINTS))
    for name, _count in REFINEMENTS[1:]:
        for k, p in enumerate(tables[name]["indexes"]):
            xy_source[p] = row[name] + k
    if sorted(p for name, _ in REFINEMENTS for p in tables[name]["indexes"] if p >= MESH_POINTS) \
            != list(range(MESH_POINTS, ALL_POINTS)):
        raise SystemExit("error: the iris refinements do not cover points 468..477")
    xy = g.gather(xy_all, xy_source, 2, "tb/xy")
    # z: the mesh's own, irises the mean of their eye contour's mesh z.
    mesh_z = g.slice(mesh, [0, 2], [MESH_POINTS, 1], "tb/mesh_z")
    z_parts, z_source = [mesh_z], list(range(MESH_POINTS)) + [0] * (ALL_POINTS - MESH_POINTS)
    for name in ("left_iris", "right_iris"):
        contour = g.gather(mesh_z, tables[name]["z_average"], 1, f"tb/{name}_contour_z")
        z_parts.append(g.mean_rows(contour, f"tb/{name}_z"))
        for p in tables[name]["indexes"]:
            z_source[p] = MESH_POINTS + len(z_parts) - 2
    z_all = g.concat(z_parts, 0, [MESH_POINTS + 2, 1], "tb/z_all")
    z = g.gather(z_all, z_source, 1, "tb/z")
    points = g.concat([xy, z], 1, [ALL_POINTS, 3], "tb/points")
    landmarks = g.reshape(points, [1, 1, 1, ALL_POINTS * 3], "landmarks_478")
    sub.outputs = [landmarks, outs[6]]
    model.description = b"face_landmark_with_attention + refinement to 478 points (TinyBeauty web demo)"
    _rewrite_output_metadata(model, ["landmarks_478", names[-1]])

    builder = flatbuffers.Builder(len(model_bytes) + 65536)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _rewrite_output_metadata(model, names: list[str]) -> None:
    """Keep the TFLite metadata (the input's normalisation) but list the two new outputs."""
    import flatbuffers
    from mediapipe.tasks.metadata import metadata_schema_py_generated as md

    for meta in model.metadata or []:
        if meta.name != b"TFLITE_METADATA":
            continue
        buf = model.buffers[meta.buffer]
        mm = md.ModelMetadataT.InitFromObj(md.ModelMetadata.GetRootAsModelMetadata(bytes(buf.data), 0))
        sub = mm.subgraphMetadata[0]
        keep = {t.name.decode() if isinstance(t.name, bytes) else t.name: t for t in sub.outputTensorMetadata}
        outs = []
        for n in names:
            t = keep.get(n) or md.TensorMetadataT()
            t.name = n
            outs.append(t)
        sub.outputTensorMetadata = outs
        b = flatbuffers.Builder(1024)
        b.Finish(mm.Pack(b), file_identifier=b"M001")
        buf.data = bytes(b.Output())


def build_bundle(out: Path) -> Path:
    from mediapipe.tasks.python.metadata.metadata_writers import model_asset_bundle_utils as bundle

    mp = mediapipe_dir()
    libs = glob.glob(str(mp / "python" / "_framework_bindings*.so"))
    if not libs:
        raise SystemExit(f"error: mediapipe's _framework_bindings library not found under {mp / 'python'}")
    tables = refinement_tables(Path(libs[0]).read_bytes())
    landmarks = extend_to_478((mp / LANDMARKER).read_bytes(), tables)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    bundle.create_model_asset_bundle({"face_detector.tflite": (mp / DETECTOR).read_bytes(),
                                      "face_landmarks_detector.tflite": landmarks}, str(tmp))
    tmp.replace(out)
    return out


def python_landmarks(task: Path, image: np.ndarray) -> np.ndarray:
    """The bundle in mediapipe's Python ``FaceLandmarker`` (IMAGE mode): the largest face, (478, 2) pixels
    with pixel centres at integers (``makeup.align``'s convention)."""
    import mediapipe as mp
    from mediapipe.tasks.python import BaseOptions
    from mediapipe.tasks.python.vision import FaceLandmarker, FaceLandmarkerOptions

    opts = FaceLandmarkerOptions(base_options=BaseOptions(model_asset_path=str(task)), num_faces=4)
    with FaceLandmarker.create_from_options(opts) as lm:
        result = lm.detect(mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(image)))
    h, w = image.shape[:2]
    faces = [np.array([[p.x * w - 0.5, p.y * h - 0.5] for p in face]) for face in result.face_landmarks]
    if not faces:
        raise SystemExit("error: the bundle found no face in the check image")
    return max(faces, key=lambda pts: float(np.ptp(pts[:, 0]) * np.ptp(pts[:, 1])))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True, help="where to write face_landmarker.task")
    ap.add_argument("--check", action="store_true",
                    help="compare the bundle with mediapipe's FaceMesh on skimage's astronaut")
    args = ap.parse_args(argv)
    out = build_bundle(args.out)
    print(f"wrote {out} ({out.stat().st_size:,} B)")
    if args.check:
        from skimage import data

        sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
        from makeup.align import detect_landmarks

        photo = data.astronaut()
        got = python_landmarks(out, photo)
        ref = detect_landmarks(photo)
        err = np.linalg.norm(got - ref, axis=1)
        print(f"check: {len(got)} landmarks, vs FaceMesh max {err.max():.2f} px, mean {err.mean():.3f} px")
    return 0


if __name__ == "__main__":
    sys.exit(main())
