// The page: a photo (built-in sample, a file, or the webcam) -> FaceLandmarker -> alignment from the model
// card -> LiteRT.js -> paste-back, shown with a before/after slider; drop a .tflite (and its
// model_card.json) to replace the bundled model; a latency benchmark with a downloadable JSON. The look
// gate (the card's "look_gate", src/gate.js) clips the model's change on the crop before paste-back, as
// `tinybeauty apply` does; a checkbox turns it off. A region-input model (the card's io.region_input: RGB then
// the crop's 4 soft region masks, and the cheeks when the card names them) gets the masks of the same label map
// the gate uses, parsed once per frame; a prior-input model (the card's io.prior_input) also gets the look prior
// painted on the crop from that label map (src/prior.js, its parameters from look_prior.json beside the model).
import {alignFace, centredSquare, faceMask, pasteBack} from './align.js';
import {GATE_REGIONS, INPUT_MASKS, gateCrop, gateFromCard, landmarksToLabels, regionInputFromCard, softRegionMasks} from './gate.js';
import {createLandmarker, largestFace} from './landmarks.js';
import {MakeupModel, initLiteRt, looksLikeTflite, maxThreads, splitChannels, tfliteInputShape, webGpuAvailable} from './model.js';
import {lookPriorFromJson, paintPrior, priorInputFromCard} from './prior.js';
import {runBenchmark} from './bench.js';

const ASSETS = new URL('../assets/', import.meta.url);
const $ = (id) => document.getElementById(id);

const state = {
  card: null,          // model_card.json
  modelBytes: null,
  modelName: null,
  model: null,         // the MakeupModel the pipeline uses (wasm, the most threads available)
  benchModels: new Map(),
  retired: [],         // compiled models a card rejected after compiling, deleted at the next model switch
  gate: null,          // the look gate from the card (gate.js), null: ungated
  regionInput: null,   // {channels, feather, regions, cheeks} for a model that reads the region masks; null: RGB only
  priorInput: null,    // {file, firstChannel, prior, name} for a model that reads the look prior; null: none
  lookPrior: null,     // {prior, name}: the look prior that came with the current model (look_prior.json)
  gateNote: '',        // one line saying which
  gateOn: true,        // the page's toggle
  noFaceMessage: false, // the message box holds draw()'s no-face line
  landmarker: null,
  landmarkerProblem: null,
  photo: null,         // {data, width, height}
  photoName: null,
  last: null,          // the last processed frame
  webcam: null,
  busy: Promise.resolve(),
};

// ---- messages ----

function showMessage(text) {
  const el = $('message');
  el.textContent = text;
  el.hidden = !text;
  state.noFaceMessage = false; // set by draw() when this is its no-face line, which the next face clears
}

/** An error about the card (shown as it is, not as "LiteRT.js cannot run it"). */
class CardError extends Error {}

function setStatus(text) {
  $('status').textContent = text;
}

function describe() {
  const m = state.model;
  if (!m) return 'no model loaded';
  const style = state.card?.style ? `, look “${state.card.style}”` : '';
  const input = m.priorInput ? ', RGB + region masks + look prior' : m.regionInput ? ', RGB + region masks' : '';
  return `${state.modelName} (${m.size}x${m.size}${input}${style}) on ${m.options.accelerator} x${m.options.numThreads}`;
}

// ---- model and card ----

function validateCard(card, name) {
  if (!card || typeof card !== 'object' || !card.io || !card.artifacts) {
    throw new Error(`${name}: not a TinyBeauty model_card.json (no "io" / "artifacts")`);
  }
  const a = card.alignment;
  if (!a || !Array.isArray(a.template) || a.template.length !== 3 || !a.landmarks || typeof a.feather !== 'number') {
    throw new Error(`${name}: has no "alignment" entry (template, landmarks, feather); export it again with this toolkit`);
  }
  if (card.io.layout && card.io.layout !== 'NHWC') throw new Error(`${name}: io layout ${card.io.layout}, the page runs NHWC`);
  return card;
}

/**
 * The region input a model (its name and input channel count) needs from a card: null for an RGB model
 * (whatever the card says: the model's input decides), the card's io.region_input for a 7- or 8-channel one,
 * or a CardError when the card has none or names another number of masks than the model takes.
 */
function regionInputFor(name, channels, card, cardName) {
  const {masks} = splitChannels(channels);
  if (!masks) return null;
  let ri;
  try {
    ri = regionInputFromCard(card, cardName);
  } catch (err) {
    throw new CardError(err.message);
  }
  if (!ri) {
    throw new CardError(`${name}: takes ${channels} input channels (RGB + the face's region masks) and ` +
                        `${cardName} has no io.region_input: drop the model's own model_card.json with it`);
  }
  if (ri.channels.length !== masks) {
    throw new CardError(`${name}: takes ${masks} region masks after RGB and ${cardName} names ` +
                        `${ri.channels.length} (${ri.channels.join(', ')}): drop the model's own model_card.json with it`);
  }
  return ri;
}

/**
 * The look prior a model (its name and input channel count) needs: null for a model without prior channels;
 * else {file, firstChannel, prior, name} from the card's io.prior_input and `lookPrior` ({prior, name}: the
 * look_prior.json that came with the model), or a CardError when the card names none or the file is missing.
 */
function priorInputFor(name, channels, card, cardName, lookPrior) {
  if (!splitChannels(channels).prior) return null;
  let pi;
  try {
    pi = priorInputFromCard(card, cardName);
  } catch (err) {
    throw new CardError(err.message);
  }
  if (!pi) {
    throw new CardError(`${name}: takes ${channels} input channels (RGB, the face's region masks and the look prior) and ` +
                        `${cardName} has no io.prior_input: drop the model's own model_card.json with it`);
  }
  if (!lookPrior) {
    throw new CardError(`${name}: takes the look prior as input and ${pi.file} is missing: drop it with the model and ` +
                        'its model_card.json (all three lie in the export folder)');
  }
  return {...pi, prior: lookPrior.prior, name: lookPrior.name};
}

async function pipelineThreads() {
  return Math.min(await maxThreads(), 4);
}

function setGate(card, cardName, note) {
  const g = card ? gateFromCard(card, cardName) : {gate: null, note};
  state.gate = g.gate;
  state.gateNote = g.note;
  showGate();
}

function showGate() {
  const box = $('gate-toggle');
  box.checked = state.gateOn && Boolean(state.gate); // no gate in the card: shown off, and cannot be turned on
  box.disabled = !state.gate;
  $('gate-note').textContent = state.gate && !state.gateOn ? 'look gate off: the model\'s whole change is pasted back' : state.gateNote;
}

async function setModel(bytes, name, card, cardName = 'model_card.json', lookPrior = null) {
  const nextCard = card || state.card;
  if (!nextCard) throw new CardError(`${name}: drop its model_card.json too (the alignment comes from the card)`);
  // A model dropped without its card reads the regions the old card describes (the toolkit's, like the
  // alignment), at its feather. The card is checked before compiling (the file's input shape): a model
  // compiled and deleted at once can hang LiteRT.js (its wasm worker threads may not have started yet, and
  // deleting joins them on the main thread).
  // The look prior: the look_prior.json dropped with the model, or (a model dropped without its card, reading
  // the current one) the current model's.
  const fromCard = card ? cardName : 'the current model_card.json';
  const prior = lookPrior || (card ? null : state.lookPrior);
  const shape = tfliteInputShape(bytes);
  if (shape?.length === 4) {
    regionInputFor(name, shape[3], nextCard, fromCard);
    priorInputFor(name, shape[3], nextCard, fromCard, prior);
  }
  const model = await MakeupModel.load(bytes, {accelerator: 'wasm', numThreads: await pipelineThreads()});
  model.label = name;
  let regionInput, priorInput;
  try {
    regionInput = regionInputFor(name, model.channels, nextCard, fromCard);
    priorInput = priorInputFor(name, model.channels, nextCard, fromCard, prior);
  } catch (err) {
    state.retired.push(model); // the file's shape did not read as the compiled model's: delete it later
    throw err;
  }
  for (const m of state.retired.splice(0)) m.delete();
  for (const m of state.benchModels.values()) m.delete();
  state.benchModels.clear();
  if (state.model) state.model.delete();
  Object.assign(state, {model, modelBytes: bytes, modelName: name, card: nextCard, regionInput, priorInput,
                        lookPrior: prior});
  // The look gate belongs to the look: a model dropped without its card runs ungated (the old card still
  // frames the face: the alignment is the toolkit's, not the look's).
  if (card) setGate(card, cardName);
  else setGate(null, null, `ungated: ${name} came without its model_card.json (the look gate is in the card)`);
  const cardSize = nextCard.alignment.crop_size;
  const cardChannels = nextCard.io?.channels ?? 3;
  let note = cardSize && cardSize !== model.size ? ` (the card says ${cardSize}: the model's input decides)` : '';
  if (cardChannels !== model.channels) note += ` (the card says ${cardChannels} input channels: the model's input decides)`;
  setStatus(`model: ${describe()}${note}`);
  $('model-name').textContent = describe();
}

async function loadBundled() {
  const [cardRes, modelRes] = await Promise.all([fetch(new URL('model_card.json', ASSETS)),
                                                 fetch(new URL('tinybeauty.tflite', ASSETS))]);
  if (!cardRes.ok || !modelRes.ok) {
    throw new Error('no bundled model: run `make web-assets` (or drop a tinybeauty.tflite and its model_card.json here)');
  }
  const card = validateCard(await cardRes.json(), 'assets/model_card.json');
  const bytes = new Uint8Array(await modelRes.arrayBuffer());
  // A prior-input model's look prior lies beside it (build_assets.py copies the file the card names).
  let lookPrior = null;
  const file = card.io?.prior_input?.file;
  if (typeof file === 'string' && /^[\w.-]+\.json$/.test(file)) {
    const res = await fetch(new URL(file, ASSETS));
    if (res.ok) {
      lookPrior = {prior: lookPriorFromJson(await res.json(), `assets/${file}`), name: file};
    } else if (splitChannels(tfliteInputShape(bytes)?.[3] ?? 3).prior) {
      throw new Error(`tinybeauty.tflite: takes the look prior as input and ${file} is missing from the assets: ` +
                      'run `make web-assets` again (it copies the file the card names beside the model)');
    }
  }
  await setModel(bytes, 'tinybeauty.tflite', card, 'assets/model_card.json', lookPrior);
}

// ---- photo in, made-up photo out ----

async function imageDataFromBlob(blob) {
  const bitmap = await createImageBitmap(blob, {colorSpaceConversion: 'none', premultiplyAlpha: 'none'});
  const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
  const ctx = canvas.getContext('2d', {willReadFrequently: true});
  ctx.drawImage(bitmap, 0, 0);
  bitmap.close();
  return ctx.getImageData(0, 0, canvas.width, canvas.height, {colorSpace: 'srgb'});
}

/**
 * Landmarks -> align -> the crop's regions -> model -> look gate -> paste back; returns the frame with its
 * timings (ms). student/apply.py gated_crop: one label map from the crop's landmarks, its soft masks fed to a
 * region-input model and faded into the gate's limits.
 */
async function processFrame(photo, {video = false, timestamp = 0} = {}) {
  const model = state.model;
  if (!model) throw new Error('no model loaded');
  const t0 = performance.now();
  let landmarks = null;
  if (state.landmarker) {
    const img = new ImageData(new Uint8ClampedArray(photo.data), photo.width, photo.height);
    const result = video ? state.landmarker.detectForVideo(img, timestamp) : state.landmarker.detect(img);
    landmarks = largestFace(result, photo.width, photo.height);
  }
  const t1 = performance.now();
  const alignment = state.card.alignment;
  const aligned = landmarks ? alignFace(photo, landmarks, alignment, model.size) : centredSquare(photo, model.size);
  const mask = faceMask(aligned, alignment.feather);
  const t2 = performance.now();
  const n = aligned.size;
  const ri = model.regionInput ? state.regionInput : null;
  const pi = model.priorInput ? state.priorInput : null;
  const gate = state.gate && state.gateOn ? state.gate : null;
  // The regions need the crop's landmarks (none for the centred square).
  let labels = null, inputMasks = null, gateMasks = null, prior = null, priorMs = 0;
  if (aligned.landmarks && (ri || gate)) {
    labels = landmarksToLabels(aligned.landmarks, (ri || gate).regions, n);
    if (ri) inputMasks = softRegionMasks(labels, ri.regions, n, ri.feather, ri.cheeks);
    if (ri && pi) {
      const tp = performance.now();
      prior = paintPrior(pi.prior, aligned.crop, labels, n);
      priorMs = performance.now() - tp;
    }
    if (gate) {
      gateMasks = inputMasks && inputMasks.feather === gate.feather && ri.regions === gate.regions ? inputMasks :
        softRegionMasks(labels, gate.regions, n, gate.feather);
    }
  }
  const t3 = performance.now();
  if (ri && !inputMasks) {
    // A region-input model on a crop without a face mesh would paint a face it cannot place: it does not
    // run, the photo stays as it is and the page says why (student/apply.py gated_crop refuses the same).
    const t4 = performance.now();
    return {photo, landmarks, aligned, processed: aligned.crop, gated: null, labels: null, masks: null, prior: null,
            result: {data: new Uint8ClampedArray(photo.data), width: photo.width, height: photo.height}, face: false,
            skipped: `${model.label} needs the face's regions and no face was found: the model did not run, the photo is as it was`,
            timings: {landmarks_ms: t1 - t0, align_ms: t2 - t1, regions_ms: t3 - t2, prior_ms: 0, model_ms: 0,
                      model_call_ms: 0, gate_ms: t3 - t2, paste_ms: 0, frame_ms: t4 - t0}};
  }
  const masks = inputMasks ? ri.channels.map((name) => inputMasks.masks[name]) : null;
  const {out: processed, ms: modelMs} = await model.run(aligned.crop, masks, prior);
  const t4 = performance.now();
  const gated = gate && gateMasks ? gateCrop(gate, aligned.crop, processed, gateMasks, n) : null;
  const t5 = performance.now();
  const result = pasteBack(photo, gated || processed, aligned, mask);
  const t6 = performance.now();
  return {photo, landmarks, aligned, processed, gated, labels, masks, prior, result, face: Boolean(landmarks), skipped: null,
          // gate_ms: the crop's regions (label map, soft masks, look prior: before the model) and the clip (after it).
          timings: {landmarks_ms: t1 - t0, align_ms: t2 - t1, regions_ms: t3 - t2, prior_ms: priorMs, model_ms: modelMs,
                    model_call_ms: t4 - t3, gate_ms: (t3 - t2) + (t5 - t4), paste_ms: t6 - t5, frame_ms: t6 - t0}};
}

function putImage(canvas, img) {
  canvas.width = img.width;
  canvas.height = img.height;
  canvas.getContext('2d').putImageData(new ImageData(new Uint8ClampedArray(img.data), img.width, img.height), 0, 0);
}

function draw(frame) {
  putImage($('after'), frame.result);
  putImage($('before'), frame.photo);
  const n = frame.aligned.size;
  putImage($('crop-before'), {data: frame.aligned.crop, width: n, height: n});
  putImage($('crop-after'), {data: frame.gated || frame.processed, width: n, height: n});
  $('crop-after-caption').textContent = frame.skipped ? 'model not run (no face)' :
    (frame.gated ? 'model output, gated' : 'model output');
  const t = frame.timings;
  const framing = frame.face ? 'face aligned' :
    (state.landmarker ? 'no face found: centred square crop' : `${state.landmarkerProblem}: centred square crop`);
  $('timings').textContent = `frame ${t.frame_ms.toFixed(1)} ms · landmarks ${t.landmarks_ms.toFixed(1)} · ` +
    `align ${t.align_ms.toFixed(1)} · model ${t.model_ms.toFixed(1)} · gate ${t.gate_ms.toFixed(1)} ` +
    `(regions ${t.regions_ms.toFixed(1)}${t.prior_ms ? `, look prior ${t.prior_ms.toFixed(1)}` : ''}) · paste ${t.paste_ms.toFixed(1)} · ${framing}`;
  // One line in the message box while a region-input model has no face to read; the next face clears it.
  if (frame.skipped) {
    const why = state.landmarker ? frame.skipped : `${state.landmarkerProblem}: ${frame.skipped}`;
    if ($('message').textContent !== why || $('message').hidden) showMessage(why);
    state.noFaceMessage = true;
  } else if (state.noFaceMessage) {
    showMessage('');
  }
}

function serialise(fn) {
  const run = state.busy.then(fn, fn);
  state.busy = run.catch(() => {});
  return run;
}

async function showPhoto(photo, name) {
  return serialise(async () => {
    state.photo = photo;
    state.photoName = name;
    const t0 = performance.now();
    const frame = await processFrame(photo);
    draw(frame);
    frame.timings.draw_ms = performance.now() - t0 - frame.timings.frame_ms;
    frame.timings.end_to_end_ms = performance.now() - t0;
    state.last = frame;
    return frame;
  });
}

// ---- dropped or chosen files ----

async function handleFiles(files) {
  const list = Array.from(files || []);
  if (!list.length) return;
  try {
    let tflite = null, card = null, cardName = null, photo = null, lookPrior = null;
    for (const file of list) {
      const bytes = new Uint8Array(await file.arrayBuffer());
      const lower = file.name.toLowerCase();
      if (looksLikeTflite(bytes)) {
        tflite = {bytes, name: file.name};
      } else if (lower.endsWith('.json')) {
        let parsed;
        try { parsed = JSON.parse(new TextDecoder().decode(bytes)); } catch {
          throw new Error(`${file.name}: not valid JSON (expected the export's model_card.json)`);
        }
        if (parsed && typeof parsed === 'object' && 'region_prior' in parsed) {
          lookPrior = {prior: lookPriorFromJson(parsed, file.name), name: file.name}; // look_prior.json
        } else {
          card = validateCard(parsed, file.name);
          cardName = file.name;
        }
      } else if (file.type.startsWith('image/') && !lower.endsWith('.tflite')) {
        photo = file;
      } else {
        throw new Error(`${file.name}: not a .tflite model — drop tinybeauty.tflite (and its model_card.json, and ` +
                        'look_prior.json where the export has one) from an export folder, or a photo');
      }
    }
    if (tflite) {
      try {
        await setModel(tflite.bytes, tflite.name, card, cardName, lookPrior);
      } catch (err) {
        if (err instanceof CardError) throw err;
        throw new Error(`${tflite.name}: LiteRT.js cannot run it as a TinyBeauty model: ${err.message || err}`);
      }
    } else if (card) {
      const regionInput = state.model ? regionInputFor(state.modelName, state.model.channels, card, cardName) : null;
      const prior = lookPrior || state.lookPrior;
      const priorInput = state.model ? priorInputFor(state.modelName, state.model.channels, card, cardName, prior) : null;
      Object.assign(state, {card, regionInput, priorInput, lookPrior: prior});
      setGate(card, cardName);
      setStatus(`model card ${cardName} loaded: ${describe()}`);
    } else if (lookPrior) {
      // a look prior alone: the current model reads it from the next frame on (its card must name one)
      const priorInput = state.model ? priorInputFor(state.modelName, state.model.channels, state.card,
                                                     'the current model_card.json', lookPrior) : null;
      Object.assign(state, {priorInput, lookPrior});
      setStatus(`look prior ${lookPrior.name} loaded: ${describe()}${priorInput ? '' : ' (the model reads no look prior)'}`);
    }
    showMessage('');
    if (photo) {
      await showPhoto(await imageDataFromBlob(photo), photo.name);
    } else if (state.photo) {
      await showPhoto(state.photo, state.photoName);
    }
  } catch (err) {
    showMessage(err.message || String(err));
  }
}

function setupDrop() {
  const zone = document.body;
  zone.addEventListener('dragover', (e) => { e.preventDefault(); zone.classList.add('dragging'); });
  zone.addEventListener('dragleave', () => zone.classList.remove('dragging'));
  zone.addEventListener('drop', (e) => {
    e.preventDefault();
    zone.classList.remove('dragging');
    handleFiles(e.dataTransfer.files);
  });
  $('model-file').addEventListener('change', (e) => handleFiles(e.target.files));
  $('photo-file').addEventListener('change', (e) => handleFiles(e.target.files));
}

// ---- webcam ----

async function startWebcam() {
  if (!navigator.mediaDevices?.getUserMedia) {
    showMessage('no camera here: the camera needs https or localhost (see the README: a phone on the same network)');
    return;
  }
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({video: {facingMode: 'user', width: 640, height: 480}});
  } catch (err) {
    showMessage(`camera not available: ${err.message || err.name}`);
    return;
  }
  const video = document.createElement('video');
  video.muted = true;
  video.playsInline = true;
  video.srcObject = stream;
  await video.play();
  if (state.landmarker) await state.landmarker.setOptions({runningMode: 'VIDEO'});
  const canvas = new OffscreenCanvas(video.videoWidth, video.videoHeight);
  const ctx = canvas.getContext('2d', {willReadFrequently: true});
  state.webcam = {stream, video};
  $('webcam').textContent = 'Stop camera';
  const tick = async () => {
    if (!state.webcam) return;
    ctx.drawImage(video, 0, 0);
    const photo = ctx.getImageData(0, 0, canvas.width, canvas.height);
    await serialise(async () => {
      const frame = await processFrame(photo, {video: true, timestamp: performance.now()});
      draw(frame);
      state.last = frame;
    }).catch((err) => showMessage(err.message || String(err)));
    if (state.webcam) video.requestVideoFrameCallback(tick);
  };
  video.requestVideoFrameCallback(tick);
}

async function stopWebcam() {
  if (!state.webcam) return;
  for (const track of state.webcam.stream.getTracks()) track.stop();
  state.webcam = null;
  $('webcam').textContent = 'Camera';
  if (state.landmarker) await state.landmarker.setOptions({runningMode: 'IMAGE'});
}

// ---- benchmark panel ----

async function benchModel(backend, threads) {
  const key = `${backend}:${threads}`;
  if (!state.benchModels.has(key)) {
    const m = await MakeupModel.load(state.modelBytes, {accelerator: backend, numThreads: threads});
    m.label = state.modelName;
    state.benchModels.set(key, m);
  }
  return state.benchModels.get(key);
}

async function benchmark({warmup = 10, runs = 50, threads = 1, backend = 'wasm'} = {}) {
  if (!state.modelBytes) throw new Error('no model loaded');
  const model = await benchModel(backend, threads);
  return serialise(() => runBenchmark(model, {
    warmup, runs, onProgress: (done, total) => { $('bench-progress').textContent = `${done}/${total}`; },
  }));
}

async function setupBenchPanel() {
  const threadSelect = $('bench-threads');
  const most = await maxThreads();
  threadSelect.replaceChildren(...Array.from({length: most}, (_, i) => new Option(String(i + 1), String(i + 1))));
  threadSelect.value = String(Math.min(2, most));
  if (await webGpuAvailable()) $('bench-backend').append(new Option('WebGPU', 'webgpu'));
  if (!globalThis.crossOriginIsolated) {
    $('bench-note').textContent = 'not cross-origin isolated: 1 thread only (serve with web_demo/serve.py)';
  }
  $('bench-run').addEventListener('click', async () => {
    const button = $('bench-run');
    button.disabled = true;
    try {
      const result = await benchmark({
        warmup: Number($('bench-warmup').value), runs: Number($('bench-runs').value),
        threads: Number(threadSelect.value), backend: $('bench-backend').value,
      });
      showBenchResult(result);
      showMessage('');
    } catch (err) {
      showMessage(`benchmark failed: ${err.message || err}`);
    } finally {
      button.disabled = false;
    }
  });
}

function showBenchResult(result) {
  $('bench-result').textContent =
    `median ${result.median_ms.toFixed(2)} ms · p90 ${result.p90_ms.toFixed(2)} ms · ${result.backend}` +
    `${result.threads ? ` x${result.threads}` : ''} · ${result.runs} runs after ${result.warmup} warm-up`;
  const link = $('bench-download');
  if (link.href.startsWith('blob:')) URL.revokeObjectURL(link.href);
  link.href = URL.createObjectURL(new Blob([JSON.stringify(result, null, 2)], {type: 'application/json'}));
  link.hidden = false;
  $('user-agent').textContent = result.user_agent;
}

// ---- start ----

function setupSlider() {
  const slider = $('split');
  const apply = () => {
    $('before').style.clipPath = `inset(0 ${100 - Number(slider.value)}% 0 0)`;
    $('divider').style.left = `${slider.value}%`;
  };
  slider.addEventListener('input', apply);
  apply();
}

function setupGateToggle() {
  $('gate-toggle').addEventListener('change', (e) => {
    state.gateOn = e.target.checked;
    showGate();
    // The camera picks the change up on its next frame; a photo is made up again.
    if (!state.webcam && state.photo) {
      showPhoto(state.photo, state.photoName).catch((err) => showMessage(err.message || String(err)));
    }
  });
}

async function start() {
  setupSlider();
  setupGateToggle();
  setupDrop();
  $('sample').addEventListener('click', () => loadSample().catch((err) => showMessage(err.message || String(err))));
  $('webcam').addEventListener('click', () => (state.webcam ? stopWebcam() : startWebcam()));
  await initLiteRt();
  await setupBenchPanel();
  const landmarker = createLandmarker(new URL('face_landmarker.task', ASSETS).href).then(
    (lm) => { state.landmarker = lm; },
    () => { state.landmarkerProblem = 'no face landmarker (run `make web-assets`)'; });
  await loadBundled().catch((err) => showMessage(err.message || String(err)));
  await landmarker;
  if (state.model) await loadSample();
}

async function loadSample() {
  const res = await fetch(new URL('sample.png', ASSETS));
  if (!res.ok) throw new Error('no sample photo: run `make web-assets` (or choose a photo)');
  return showPhoto(await imageDataFromBlob(await res.blob()), 'sample.png');
}

// ---- a handle for scripts and the browser tests (the same code paths the buttons use) ----

function toBase64(bytes) {
  let s = '';
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(s);
}

function fromBase64(b64) {
  return Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
}

function concatPlanes(planes) {
  const all = new Float32Array(planes.reduce((k, p) => k + p.length, 0));
  let at = 0;
  for (const p of planes) { all.set(p, at); at += p.length; }
  return all;
}

window.tinybeauty = {
  ready: start().then(() => true, (err) => { showMessage(`the page failed to start: ${err.message || err}`); return false; }),
  info: () => ({
    model: state.modelName, size: state.model?.size ?? null, threads: state.model?.options.numThreads ?? null,
    landmarker: Boolean(state.landmarker), landmarkerProblem: state.landmarkerProblem, style: state.card?.style ?? null,
    alignment: state.card?.alignment ?? null, message: $('message').hidden ? '' : $('message').textContent,
    crossOriginIsolated: globalThis.crossOriginIsolated === true, photo: state.photoName,
    gate: Boolean(state.gate), gateOn: state.gateOn, gateRegions: state.gate?.active ?? null,
    gateNote: $('gate-note').textContent, channels: state.model?.channels ?? null,
    regionInput: state.regionInput ? {channels: state.regionInput.channels, feather: state.regionInput.feather} : null,
    priorInput: state.priorInput ? {file: state.priorInput.file, firstChannel: state.priorInput.firstChannel,
                                    name: state.priorInput.name} : null,
  }),
  /**
   * Raw model output (float32 bytes, base64) for an RGB uint8 crop (base64) and, for a region-input model,
   * its region masks (float32 bytes, base64, planes in the card's channel order), packed by
   * MakeupModel.pack, on backend/threads.
   */
  runCrop: async (rgbB64, {masks = null, prior = null, backend = 'wasm', threads = 1} = {}) => {
    const model = await benchModel(backend, threads);
    const rgb = fromBase64(rgbB64), n = model.size;
    const rgba = new Uint8ClampedArray(n * n * 4);
    for (let i = 0; i < n * n; i++) for (let c = 0; c < 3; c++) rgba[i * 4 + c] = rgb[i * 3 + c];
    let planes = null;
    if (masks) {
      const all = new Float32Array(fromBase64(masks).buffer);
      planes = Array.from({length: all.length / (n * n)}, (_, k) => all.subarray(k * n * n, (k + 1) * n * n));
    }
    const out = await model.runFloat(model.pack(rgba, planes, prior ? new Float32Array(fromBase64(prior).buffer) : null));
    return toBase64(new Uint8Array(out.buffer));
  },
  /**
   * prior.js paintPrior: the look prior (`priorJson`: a look_prior.json's contents; default the current
   * model's) painted on an RGB uint8 crop (base64) with its label map (uint8, base64): float32 RGB per pixel,
   * base64.
   */
  paintPrior: (rgbB64, labelsB64, priorJson = null) => {
    const rgb = fromBase64(rgbB64), labels = fromBase64(labelsB64), n = Math.round(Math.sqrt(labels.length));
    const prior = priorJson ? lookPriorFromJson(priorJson) : state.priorInput?.prior;
    if (!prior) throw new Error('no look prior');
    const rgba = new Uint8ClampedArray(n * n * 4);
    for (let i = 0; i < n * n; i++) for (let c = 0; c < 3; c++) rgba[i * 4 + c] = rgb[i * 3 + c];
    const t0 = performance.now();
    const out = paintPrior(prior, rgba, labels, n);
    return {prior: toBase64(new Uint8Array(out.buffer)), ms: performance.now() - t0};
  },
  /**
   * gate.js softRegionMasks of a label map (uint8, base64) with the card's regions at `feather` (default the
   * card's io.region_input feather): float32 bytes, base64, planes eyes, lips, skin, brows, and cheeks when the
   * card's io.region_input has them.
   */
  regionMasks: (labelsB64, {feather = null} = {}) => {
    const labels = fromBase64(labelsB64), n = Math.round(Math.sqrt(labels.length));
    const f = feather ?? state.regionInput?.feather ?? state.card.io?.region_input?.feather;
    const cheeks = state.regionInput?.cheeks ?? null;
    const soft = softRegionMasks(labels, state.card.regions, n, f, cheeks);
    const names = cheeks ? INPUT_MASKS : GATE_REGIONS;
    return toBase64(new Uint8Array(concatPlanes(names.map((r) => soft.masks[r])).buffer));
  },
  /** The last processed frame: landmarks, matrix, crop, model output and result (RGBA base64), timings. */
  lastFrame: () => {
    const f = state.last;
    if (!f) return null;
    return {width: f.photo.width, height: f.photo.height, face: f.face, landmarks: f.landmarks,
            matrix: f.aligned.matrix, size: f.aligned.size, crop: toBase64(f.aligned.crop),
            processed: toBase64(f.processed), result: toBase64(f.result.data), timings: f.timings,
            gated: f.gated ? toBase64(f.gated) : null, labels: f.labels ? toBase64(f.labels) : null,
            masks: f.masks ? toBase64(new Uint8Array(concatPlanes(f.masks).buffer)) : null, skipped: f.skipped,
            prior: f.prior ? toBase64(new Uint8Array(f.prior.buffer)) : null,
            cropLandmarks: f.aligned.landmarks};
  },
  /** Process the current photo again `repeat` times; the per-frame timings. */
  reprocess: async (repeat = 1) => {
    const out = [];
    for (let i = 0; i < repeat; i++) out.push((await showPhoto(state.photo, state.photoName)).timings);
    return out;
  },
  loadSample,
  benchmark: async (opts) => { const r = await benchmark(opts); showBenchResult(r); return r; },
  /** Close the landmarker (tasks-vision flushes its usage log on close: the CSP must block it). */
  shutdown: () => { state.landmarker?.close(); state.landmarker = null; },
};
