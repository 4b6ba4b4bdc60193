// The on-device latency benchmark: N warm-up runs, then M timed runs of the model alone (input tensor in,
// output read back), on one backend and thread count. The JSON it returns is what the panel downloads.

export const BENCHMARK_FIELDS = ['schema', 'model', 'backend', 'threads', 'warmup', 'runs', 'median_ms', 'p90_ms',
  'mean_ms', 'min_ms', 'max_ms', 'times_ms', 'crop_size', 'cross_origin_isolated', 'hardware_concurrency',
  'user_agent', 'litert', 'date', 'input_channels'];

/** Nearest-rank percentile of sorted values (q in [0, 1]). */
export function percentile(sorted, q) {
  if (!sorted.length) return null;
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[rank];
}

export function median(values) {
  const s = values.slice().sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

/**
 * Time `model.runFloat(input)` warmup + runs times; yields to the page between runs so it stays responsive.
 * `onProgress(done, total)` is called after each run.
 */
export async function runBenchmark(model, {warmup = 10, runs = 50, onProgress = () => {}} = {}) {
  const n = model.size;
  const input = new Float32Array(n * n * model.channels); // RGB (and the mask and look-prior channels a model reads)
  for (let i = 0; i < input.length; i++) input[i] = ((i * 2654435761) % 1000) / 1000; // fixed, face-free
  const times = [];
  const total = warmup + runs;
  for (let i = 0; i < total; i++) {
    const t0 = performance.now();
    await model.runFloat(input);
    const ms = performance.now() - t0;
    if (i >= warmup) times.push(ms);
    onProgress(i + 1, total);
    if (i % 5 === 4) await new Promise((r) => setTimeout(r, 0));
  }
  const sorted = times.slice().sort((a, b) => a - b);
  const round = (v) => Math.round(v * 1000) / 1000;
  return {
    schema: 'tinybeauty-web-benchmark/1',
    model: model.label,
    backend: model.options.accelerator,
    threads: model.options.accelerator === 'wasm' ? model.options.numThreads : null,
    warmup,
    runs,
    median_ms: round(median(times)),
    p90_ms: round(percentile(sorted, 0.9)),
    mean_ms: round(times.reduce((a, b) => a + b, 0) / times.length),
    min_ms: round(sorted[0]),
    max_ms: round(sorted[sorted.length - 1]),
    times_ms: times.map(round),
    crop_size: n,
    input_channels: model.channels,
    cross_origin_isolated: globalThis.crossOriginIsolated === true,
    hardware_concurrency: navigator.hardwareConcurrency || null,
    user_agent: navigator.userAgent,
    litert: '@litertjs/core 2.5.3',
    date: new Date().toISOString(),
  };
}
