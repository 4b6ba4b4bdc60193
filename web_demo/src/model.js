// tinybeauty.tflite in LiteRT.js: the I/O convention of the model card (model_card.json "io"): one NHWC
// float32 tensor [1, H, W, 3], RGB, values in [0, 1] (pixel / 255); the output has the same layout and
// range (clamp, multiply by 255 and round: student/apply.py). H = W is read from the model's input.
import {loadLiteRt, loadAndCompile, Tensor, isWebGPUSupported} from '@litertjs/core';
import {roundEven} from './align.js';

const WASM_DIR = new URL('../node_modules/@litertjs/core/wasm/', import.meta.url).href;
let runtime = null;

/** Load LiteRT.js once: the threaded wasm when the page is cross-origin isolated, else single-threaded. */
export function initLiteRt() {
  if (!runtime) {
    const threads = globalThis.crossOriginIsolated === true;
    runtime = loadLiteRt(WASM_DIR, {threads}).then(() => ({threads}));
  }
  return runtime;
}

/** The threads this page can use: 1 without cross-origin isolation (no SharedArrayBuffer). */
export async function maxThreads() {
  const {threads} = await initLiteRt();
  return threads ? Math.max(1, navigator.hardwareConcurrency || 1) : 1;
}

/** True when the browser has WebGPU and an adapter (headless Chromium without a GPU has none). */
export async function webGpuAvailable() {
  try {
    return isWebGPUSupported() && Boolean(await navigator.gpu?.requestAdapter());
  } catch {
    return false;
  }
}

/** True when the bytes carry the TFLite flatbuffer identifier ("TFL3" at offset 4). */
export function looksLikeTflite(bytes) {
  return bytes.length > 8 && String.fromCharCode(...bytes.subarray(4, 8)) === 'TFL3';
}

export class MakeupModel {
  constructor(compiled, bytes, options) {
    this.compiled = compiled;
    this.bytes = bytes;
    this.options = options;
    const input = compiled.getInputDetails()[0];
    const output = compiled.getOutputDetails()[0];
    const shape = Array.from(input.shape);
    if (shape.length !== 4 || shape[0] !== 1 || shape[3] !== 3 || shape[1] !== shape[2] || shape[1] < 16) {
      throw new Error(`expected an NHWC input [1, H, H, 3] (model_card.json io), got [${shape}]`);
    }
    if (input.dtype !== 'float32' || output.dtype !== 'float32') {
      throw new Error(`expected float32 input and output, got ${input.dtype} -> ${output.dtype}`);
    }
    if (Array.from(output.shape).join() !== shape.join()) {
      throw new Error(`output [${Array.from(output.shape)}] differs from input [${shape}]`);
    }
    this.shape = shape;
    this.size = shape[1];
    this.inputName = input.name;
    this.outputName = output.name;
  }

  /** Compile .tflite bytes on 'wasm' (numThreads) or 'webgpu'. Throws with the runtime's reason. */
  static async load(bytes, {accelerator = 'wasm', numThreads = 1} = {}) {
    await initLiteRt();
    const options = {accelerator};
    if (accelerator === 'wasm') options.cpuOptions = {numThreads};
    // LiteRT.js may keep the buffer: hand it a copy so the caller's bytes stay usable.
    const compiled = await loadAndCompile(new Uint8Array(bytes), options);
    return new MakeupModel(compiled, bytes, {accelerator, numThreads});
  }

  /** Float32 NHWC [1, H, W, 3] in, Float32Array out (the raw model output, not clamped). */
  async runFloat(input) {
    const tensor = new Tensor(input, this.shape);
    let outputs;
    try {
      outputs = await this.compiled.run([tensor]);
    } finally {
      tensor.delete();
    }
    try {
      const out = outputs[0].accelerator === 'wasm' ? outputs[0] : await outputs[0].moveTo('wasm');
      const data = Float32Array.from(out.toTypedArray());
      if (out !== outputs[0]) out.delete();
      return data;
    } finally {
      for (const t of outputs) if (!t.deleted) t.delete();
    }
  }

  /** An RGBA crop (size x size) in, the made-up RGBA crop out, plus the model's wall time in ms. */
  async run(cropRgba) {
    const n = this.size;
    const input = new Float32Array(n * n * 3);
    for (let i = 0; i < n * n; i++) {
      for (let c = 0; c < 3; c++) input[i * 3 + c] = cropRgba[i * 4 + c] / 255;
    }
    const t0 = performance.now();
    const y = await this.runFloat(input);
    const ms = performance.now() - t0;
    const out = new Uint8ClampedArray(n * n * 4);
    for (let i = 0; i < n * n; i++) {
      for (let c = 0; c < 3; c++) {
        // float32 arithmetic and round-half-even, as np.round(np.clip(y, 0, 1) * 255.0) on float32
        out[i * 4 + c] = roundEven(Math.fround(Math.min(1, Math.max(0, y[i * 3 + c])) * 255));
      }
      out[i * 4 + 3] = 255;
    }
    return {out, ms};
  }

  delete() {
    this.compiled.delete();
  }
}
