// tinybeauty.tflite in LiteRT.js: the I/O convention of the model card (model_card.json "io"): one NHWC
// float32 input [1, H, W, C], values in [0, 1]: C = 3, RGB (pixel / 255); C = 7 or 8 (io.region_input), RGB
// then the crop's 4 soft region masks and (C = 8) the cheeks (gate.js softRegionMasks, in the card's
// io.region_input.channels order); C = 10 or 11 (io.prior_input), those then the look prior painted on the
// crop (prior.js paintPrior: an RGB change, may be negative). The
// output is [1, H, W, 3], RGB, same range (clamp, multiply by 255 and round: student/apply.py). H = W and C
// are read from the model's input.
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

/**
 * The shape of a .tflite file's first input ([1, H, W, C]) read from its flatbuffer without compiling it
 * (schema.fbs: Model.subgraphs[0] -> SubGraph.inputs[0] -> SubGraph.tensors[i].shape); null when the bytes
 * do not read as one. The page checks a dropped model against its card before compiling it: deleting a model
 * compiled a moment ago can hang LiteRT.js's wasm threads.
 */
export function tfliteInputShape(bytes) {
  try {
    const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const u32 = (at) => dv.getUint32(at, true);
    const field = (table, i) => { // absolute position of field i of the table at `table`, or null
      const vtable = table - dv.getInt32(table, true);
      const o = 4 + 2 * i < dv.getUint16(vtable, true) ? dv.getUint16(vtable + 4 + 2 * i, true) : 0;
      return o ? table + o : null;
    };
    const deref = (at) => at + u32(at);
    const vector = (at) => { const v = deref(at); return {length: u32(v), at: v + 4}; };
    const subgraphs = vector(field(u32(0), 2));
    const subgraph = deref(subgraphs.at);
    const inputs = vector(field(subgraph, 1));
    const tensors = vector(field(subgraph, 0));
    const index = dv.getInt32(inputs.at, true);
    if (!subgraphs.length || !inputs.length || index < 0 || index >= tensors.length) return null;
    const shape = vector(field(deref(tensors.at + 4 * index), 0));
    return Array.from({length: shape.length}, (_, k) => dv.getInt32(shape.at + 4 * k, true));
  } catch {
    return null;
  }
}

/** Input channels the page can feed: RGB; RGB + the 4 region masks; those + the cheeks; either + the look
 *  prior (student/runtime.py CHANNELS). */
export const INPUT_CHANNELS = [3, 7, 8, 10, 11];
export const REGION_CHANNELS = 4;
export const PRIOR_CHANNELS = 3;

/** student/model.py split_channels: {masks, prior} channels after RGB of a model taking `channels` inputs. */
export function splitChannels(channels) {
  const extra = channels - 3;
  const prior = [REGION_CHANNELS, REGION_CHANNELS + 1].includes(extra - PRIOR_CHANNELS) ? PRIOR_CHANNELS : 0;
  return {masks: extra - prior, prior};
}

export class MakeupModel {
  constructor(compiled, bytes, options) {
    this.compiled = compiled;
    this.bytes = bytes;
    this.options = options;
    const input = compiled.getInputDetails()[0];
    const output = compiled.getOutputDetails()[0];
    const shape = Array.from(input.shape);
    if (shape.length !== 4 || shape[0] !== 1 || !INPUT_CHANNELS.includes(shape[3]) || shape[1] !== shape[2] || shape[1] < 16) {
      throw new Error(`expected an NHWC input [1, H, H, C], C one of ${INPUT_CHANNELS.join(', ')} (model_card.json io), got [${shape}]`);
    }
    if (input.dtype !== 'float32' || output.dtype !== 'float32') {
      throw new Error(`expected float32 input and output, got ${input.dtype} -> ${output.dtype}`);
    }
    const outShape = [1, shape[1], shape[2], 3];
    if (Array.from(output.shape).join() !== outShape.join()) {
      throw new Error(`output [${Array.from(output.shape)}] is not [${outShape}] for input [${shape}]`);
    }
    this.shape = shape;
    this.size = shape[1];
    this.channels = shape[3];
    const {masks, prior} = splitChannels(this.channels);
    this.maskChannels = masks; // region masks after RGB: 0, 4, or 5 with the cheeks
    this.priorChannels = prior; // the look prior after the masks: 0 or 3
    this.regionInput = this.maskChannels > 0; // needs the crop's region masks
    this.priorInput = this.priorChannels > 0; // needs the look prior painted on the crop
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

  /** Float32 NHWC [1, H, W, channels] in, Float32Array [1, H, W, 3] out (the raw model output, not clamped). */
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

  /**
   * The model input for an RGBA crop (size x size): per pixel RGB / 255, then, for a region-input model, its
   * maskChannels masks (`masks`: Float32Arrays of size * size, in the card's io.region_input.channels order),
   * then, for a prior-input model, the look prior (`prior`: Float32Array size * size * 3, RGB per pixel:
   * prior.js paintPrior) — student/model.py model_input in NHWC.
   */
  pack(cropRgba, masks = null, prior = null) {
    const n = this.size, C = this.channels;
    if (this.regionInput) {
      if (!masks || masks.length !== this.maskChannels || masks.some((m) => !m || m.length !== n * n)) {
        throw new Error(`this model takes the face's ${this.maskChannels} region masks (${n}x${n} each) after RGB`);
      }
    } else if (masks) {
      throw new Error('this model takes RGB only: no region masks');
    }
    if (this.priorInput) {
      if (!prior || prior.length !== n * n * PRIOR_CHANNELS) {
        throw new Error(`this model takes the look prior (${n}x${n}x3) after the region masks`);
      }
    } else if (prior) {
      throw new Error('this model takes no look prior');
    }
    const input = new Float32Array(n * n * C);
    const at = 3 + this.maskChannels;
    for (let i = 0; i < n * n; i++) {
      for (let c = 0; c < 3; c++) input[i * C + c] = cropRgba[i * 4 + c] / 255;
      if (masks) for (let k = 0; k < masks.length; k++) input[i * C + 3 + k] = masks[k][i];
      if (prior) for (let c = 0; c < PRIOR_CHANNELS; c++) input[i * C + at + c] = prior[i * PRIOR_CHANNELS + c];
    }
    return input;
  }

  /**
   * An RGBA crop (size x size) and, for a region-input model, its soft region masks (4, or 5 with the cheeks)
   * and, for a prior-input model, the look prior on it in, the made-up RGBA crop out, plus the model's wall
   * time in ms.
   */
  async run(cropRgba, masks = null, prior = null) {
    const n = this.size;
    const input = this.pack(cropRgba, masks, prior);
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
