/**
 * Browser front end for the Xception classifier: checks for WebGPU, loads the weights
 * (through Cache Storage), creates the wasm model in a worker (web/worker.js: on a hardware
 * WebGPU adapter, else on the CPU backend compiled to WebAssembly, on several threads where
 * the page is cross-origin isolated) and classifies dropped, chosen or bundled photos, one at
 * a time.
 *
 * Automation hooks, on `window.xceptionPage`:
 *   ready       Promise<{backend, threads, fallback, adapter, kernels, inputSize, labels,
 *               timings}>; resolves once the model is created (`backend` "gpu" or "cpu",
 *               `threads` the CPU backend's, `fallback` why `auto` did not take the GPU),
 *               rejects with the reason (GPU asked for without WebGPU, missing build, bad
 *               weights, ...).
 *   results     [{image, top, logits, timings: {decode_ms, inference_ms, wall_ms}}, ...],
 *               one per successful classification, in order.
 *   errors      [{image, error}, ...], one per failed classification.
 *   runs        number of classification attempts finished; incremented after the outcome
 *               is pushed, when `document.body.dataset.state` is also set to "ready" or "error".
 *   timings     {weightsMs, weightsSource: "cache" | "network", setupMs,
 *                firstInferenceMs, warmInferenceMs}; the inference times are JS wall times
 *               of the classify call, the warm one that of the latest run after the first.
 *   top         number of classes each classification asks for (default 5; at least 5
 *               are always requested so the page can show them).
 *   whenRun(n)  Promise resolving with `runs` once `runs >= n`.
 * The page's query string may choose the backend, the input size, the convolution kernels and
 * the precision as the command line's --backend, --size, --kernel and --precision do:
 * `?backend=gpu&size=299&kernel=tiled`.
 * `backend` is `auto` (the default: a hardware WebGPU adapter, else the CPU), `gpu`, `cpu` or
 * `reference` (the plain oracle).
 * `threads` is the CPU backend's thread count (default: the logical cores); more than one
 * runs the threaded build (web/build.sh), which needs a cross-origin isolated page (served
 * with `Cross-Origin-Opener-Policy: same-origin` and `Cross-Origin-Embedder-Policy:
 * require-corp`, as web/tools/serve.mjs does); elsewhere the CPU runs on one.
 * `document.body.dataset.state` is "loading", then "ready", or "unsupported" (the GPU asked
 * for without WebGPU) or "failed" (the model could not be created); "busy" while a photo is
 * being classified.
 */

import { RemoteModel } from "./remote-model.js";

/** The bundled model, or `?weights=URL` (relative to the page): any converted member of the
 * Xception family, e.g. a timm xception65. */
const WEIGHTS_URL = new URLSearchParams(location.search).get("weights")
  ?? "pkg/xception_kitchenware.safetensors";
const WEIGHTS_CACHE = "xception-weights-v1";
/** Header of the cached response that records which server file it is a copy of. */
const VERSION_HEADER = "X-Weights-Version";
const SAMPLES = ["cup", "fork", "glass", "knife", "plate", "spoon"];
const SHOWN = 5;
/** Image types the wasm decoder reads; the browser decodes other image types to pixels. */
const ENCODED_TYPES = new Set(["image/png", "image/jpeg", "image/jpg"]);

const $ = (id) => document.getElementById(id);

let markReady, markFailed;
const runWaiters = [];
const page = {
  ready: new Promise((resolve, reject) => { markReady = resolve; markFailed = reject; }),
  results: [],
  errors: [],
  runs: 0,
  timings: {
    weightsMs: null, weightsSource: null, setupMs: null,
    firstInferenceMs: null, warmInferenceMs: null,
  },
  top: SHOWN,
  whenRun(n) {
    if (page.runs >= n) return Promise.resolve(page.runs);
    return new Promise((resolve) => runWaiters.push({ n, resolve }));
  },
};
window.xceptionPage = page;
// The page reports a failed start itself; keep the rejection from counting as unhandled.
page.ready.catch(() => {});

let model = null;
let queue = Promise.resolve();
let photoUrl = null;

start().catch((err) => {
  const message = messageOf(err);
  setState("failed");
  $("weights-progress").hidden = true;
  status(`Could not start: ${message}`);
  showError(message);
  markFailed(err instanceof Error ? err : new Error(message));
});

/** Checks WebGPU, loads the weights and creates the model. */
async function start() {
  buildSamples();
  wireInput();
  // A file that is not an image leaves no broken picture behind.
  $("photo").addEventListener("error", () => { $("photo").hidden = true; });

  const asked = runOptions().backend ?? "auto";
  const missing = asked === "cpu" ? null : await webGpuMissing();
  if (missing) {
    $("gpu-missing-reason").textContent = missing;
    $("gpu-missing").hidden = false;
    if (asked === "gpu") {
      $("gpu-missing-consequence").textContent = "The page was asked to run on the GPU. To enable WebGPU:";
      setState("unsupported");
      status("WebGPU is not available in this browser.");
      markFailed(new Error(`WebGPU is not available: ${missing}`));
      return;
    }
  }

  // The CPU backend's threads: the threaded build needs memory shared with workers, which
  // browsers allow only on cross-origin isolated pages; a GPU asked for needs none.
  const threadsAsked = threadCount();
  const build = asked !== "gpu" && threadsAsked > 1 && globalThis.crossOriginIsolated
    ? "threads" : "single";
  let singleWhy = threadsAsked > 1 && build === "single" && asked !== "gpu"
    ? "the page is not cross-origin isolated, so WebAssembly cannot share memory with workers"
    : null;
  status("Loading the WebAssembly module…");
  let remote;
  try {
    remote = await RemoteModel.load(build, threadsAsked);
  } catch (err) {
    if (build !== "threads") throw err;
    // E.g. built with --single-threaded: the page still runs, on one thread.
    singleWhy = `the threaded build did not load: ${messageOf(err)}`;
    remote = await RemoteModel.load("single", 1);
  }

  status("Loading the weights…");
  const t0 = performance.now();
  const weights = await loadWeights(showProgress);
  page.timings.weightsMs = performance.now() - t0;
  page.timings.weightsSource = weights.source;
  $("t-weights").textContent = `${ms(page.timings.weightsMs)}, ${
    weights.source === "cache" ? "from cache" : "downloaded"} (${mb(weights.bytes.length)})`;

  status("Setting up the network…");
  const t1 = performance.now();
  // Without WebGPU, `auto` means the CPU; with an adapter the runtime decides (a software
  // one, such as SwiftShader, loses to the CPU backend as it does natively).
  const options = { ...runOptions(), backend: missing ? "cpu" : asked };
  try {
    model = await remote.create(weights.bytes, options);
  } catch (err) {
    await weights.forget();
    throw err;
  }
  page.timings.setupMs = performance.now() - t1;
  $("t-setup").textContent = ms(page.timings.setupMs);
  await weights.keep();

  const [height, width] = Array.from(model.inputSize);
  const adapter = model.adapter;
  const backend = model.backend;
  const threads = model.threads ?? null;
  const fallback = model.fallback ?? (missing ? `no WebGPU: ${missing}` : null);
  $("backend").textContent = (backend === "cpu"
    ? `CPU (WebAssembly), ${threads} thread${threads === 1 ? "" : "s"}${
      singleWhy ? ` (${singleWhy})` : ""}`
    : backend === "gpu" ? "GPU (WebGPU)" : "the reference implementation (WebAssembly)")
    + (fallback ? `: ${fallback}` : "");
  $("adapter").textContent = [adapter, browserAdapter].filter(Boolean).join("; ");
  $("kernels").textContent = model.kernels || "GEMM micro-kernels";
  $("input-size").textContent = `${width} × ${height} pixels`;
  $("weights-progress").hidden = true;
  $("file-input").disabled = false;
  for (const b of document.querySelectorAll("#samples button")) b.disabled = false;
  setState("ready");
  status("Ready: drop a photo, choose a file or pick a sample.");
  markReady({
    backend,
    threads,
    fallback,
    adapter,
    kernels: model.kernels,
    inputSize: [height, width],
    labels: Array.from(model.labels),
    timings: { ...page.timings },
  });
}

/** The `backend`, `size`, `kernel` and `precision` the query string asks for (the runtime
 * checks them). */
function runOptions() {
  const query = new URLSearchParams(location.search);
  const options = {};
  for (const key of ["backend", "size", "kernel", "precision"]) {
    if (query.has(key)) options[key] = query.get(key);
  }
  return options;
}

/** The `threads` the query string asks for, else one per logical core. */
function threadCount() {
  const asked = new URLSearchParams(location.search).get("threads");
  if (asked === null) return navigator.hardwareConcurrency || 1;
  const n = Number(asked);
  if (!Number.isInteger(n) || n < 1 || asked.trim() === "") {
    throw new Error(`threads wants a whole number of at least 1, not ${JSON.stringify(asked)}`);
  }
  return n;
}

/** What the browser tells of its adapter (vendor, architecture), which wgpu leaves out. */
let browserAdapter = "";

/** Returns why WebGPU cannot be used, or null when an adapter is available. */
async function webGpuMissing() {
  if (!("gpu" in navigator)) return "this browser does not expose navigator.gpu.";
  try {
    const adapter = await navigator.gpu.requestAdapter();
    if (!adapter) {
      return "navigator.gpu is present, but no GPU adapter was offered "
        + "(the GPU may be blocklisted or WebGPU disabled).";
    }
    const info = adapter.info ?? {};
    browserAdapter = [info.vendor, info.architecture, info.description].filter(Boolean).join(" ")
      + (info.isFallbackAdapter ? " (fallback adapter)" : "");
  } catch (err) {
    return `requesting a GPU adapter failed: ${messageOf(err)}`;
  }
  return null;
}

/**
 * Reads the weights from Cache Storage, or downloads them with progress. A cached copy is
 * used unless the server answers that its file changed (a rebuild); offline it is used as is.
 * `keep()` stores downloaded weights in the cache and `forget()` drops cached ones (weights
 * the model rejected); neither rejects.
 */
async function loadWeights(onProgress) {
  let cache = null;
  try {
    if (globalThis.caches) {
      cache = await caches.open(WEIGHTS_CACHE);
      dropOldCaches().catch(() => {});
    }
  } catch {
    cache = null; // e.g. an insecure context or storage disabled
  }
  const quietly = (promise) => promise.then(() => {}, (err) => console.warn(messageOf(err)));
  const hit = cache && (await cache.match(WEIGHTS_URL));
  if (hit && (await stillCurrent(hit))) {
    return {
      bytes: await readBody(hit, onProgress),
      source: "cache",
      keep: async () => {},
      forget: () => quietly(cache.delete(WEIGHTS_URL)),
    };
  }
  const response = await fetch(WEIGHTS_URL, { cache: "no-store" });
  if (!response.ok) {
    throw new Error(`could not download ${WEIGHTS_URL}: HTTP ${response.status} ${response.statusText}`);
  }
  const bytes = await readBody(response, onProgress);
  const headers = {
    "Content-Type": "application/octet-stream",
    "Content-Length": String(bytes.length),
    [VERSION_HEADER]: versionOf(response),
  };
  return {
    bytes,
    source: "network",
    keep: async () => {
      if (cache) await quietly(cache.put(WEIGHTS_URL, new Response(bytes, { headers })));
    },
    forget: async () => {},
  };
}

/** What tells versions of the weights file apart: the server's ETag, Last-Modified and size. */
function versionOf(response) {
  return JSON.stringify(["ETag", "Last-Modified", "Content-Length"]
    .map((name) => response.headers.get(name)));
}

/** Whether the cached weights match the server's file; true when the server cannot say. */
async function stillCurrent(cached) {
  try {
    const head = await fetch(WEIGHTS_URL, { method: "HEAD", cache: "no-store" });
    return !head.ok || versionOf(head) === cached.headers.get(VERSION_HEADER);
  } catch {
    return true; // offline
  }
}

/** Deletes weight caches of other versions. */
async function dropOldCaches() {
  for (const name of await caches.keys()) {
    if (name.startsWith("xception-weights-") && name !== WEIGHTS_CACHE) await caches.delete(name);
  }
}

/** Streams a response body into one Uint8Array, reporting (loaded, total or 0) as it goes. */
async function readBody(response, onProgress) {
  // A compressed body's Content-Length counts the compressed bytes: no total then.
  const encoded = response.headers.get("Content-Encoding");
  const total = encoded ? 0 : Number(response.headers.get("Content-Length")) || 0;
  if (!response.body) return new Uint8Array(await response.arrayBuffer());
  const reader = response.body.getReader();
  const chunks = [];
  let loaded = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    loaded += value.length;
    onProgress(loaded, total);
  }
  if (total && loaded !== total) {
    throw new Error(`${response.url || WEIGHTS_URL}: got ${loaded} of ${total} bytes`);
  }
  if (chunks.length === 1) return chunks[0];
  const bytes = new Uint8Array(loaded);
  let offset = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, offset);
    offset += chunk.length;
  }
  return bytes;
}

function showProgress(loaded, total) {
  const bar = $("weights-progress");
  bar.hidden = false;
  if (total) {
    bar.max = total;
    bar.value = loaded;
    status(`Loading the weights… ${mb(loaded)} of ${mb(total)}`);
  } else {
    bar.removeAttribute("value");
    status(`Loading the weights… ${mb(loaded)}`);
  }
}

/** Adds a thumbnail button per bundled sample photo. */
function buildSamples() {
  const box = $("samples");
  for (const name of SAMPLES) {
    const button = document.createElement("button");
    button.type = "button";
    button.disabled = true;
    button.title = `Classify samples/${name}.jpg`;
    const img = document.createElement("img");
    img.src = `pkg/samples/${name}.jpg`;
    img.alt = "";
    img.loading = "lazy";
    const label = document.createElement("span");
    label.textContent = name;
    button.append(img, label);
    button.addEventListener("click", () => enqueue(`samples/${name}.jpg`, async () => {
      const response = await fetch(`pkg/samples/${name}.jpg`);
      if (!response.ok) throw new Error(`samples/${name}.jpg: HTTP ${response.status}`);
      return new Blob([await response.arrayBuffer()], { type: "image/jpeg" });
    }));
    box.append(button);
  }
}

/** Wires the file chooser and drag-and-drop (anywhere on the page). */
function wireInput() {
  const input = $("file-input");
  input.addEventListener("change", () => {
    const files = Array.from(input.files);
    // Cleared so that choosing the same file again is a change too.
    input.value = "";
    for (const file of files) enqueue(file.name, async () => file);
  });

  const zone = $("drop-zone");
  let depth = 0;
  document.addEventListener("dragenter", (e) => {
    e.preventDefault();
    depth += 1;
    zone.classList.add("dragging");
  });
  document.addEventListener("dragleave", () => {
    depth = Math.max(0, depth - 1);
    if (depth === 0) zone.classList.remove("dragging");
  });
  document.addEventListener("dragover", (e) => {
    e.preventDefault();
    e.dataTransfer.dropEffect = model ? "copy" : "none";
  });
  document.addEventListener("drop", (e) => {
    e.preventDefault();
    depth = 0;
    zone.classList.remove("dragging");
    if (!model) return;
    for (const file of e.dataTransfer.files) enqueue(file.name, async () => file);
  });
}

/** Queues one classification; calls on the model never overlap. */
function enqueue(name, getBlob) {
  queue = queue.then(() => classify(name, getBlob));
  return queue;
}

/** Classifies one photo and records the outcome; never throws. */
async function classify(name, getBlob) {
  setState("busy");
  status(`Classifying ${name}…`);
  try {
    const blob = await getBlob();
    showPhoto(blob, name);
    const top = Math.max(SHOWN, page.top | 0);
    const encoded = !blob.type.startsWith("image/") || ENCODED_TYPES.has(blob.type);
    const bytes = encoded ? new Uint8Array(await blob.arrayBuffer()) : null;
    const pixels = encoded ? null : await browserDecode(blob, name);
    const t0 = performance.now();
    const raw = encoded
      ? await model.classifyEncoded(bytes, name, top)
      : await model.classifyPixels(pixels.rgba, pixels.width, pixels.height, name, top);
    const wallMs = performance.now() - t0;
    const result = normalise(raw, name, wallMs);
    if (page.timings.firstInferenceMs === null) {
      page.timings.firstInferenceMs = wallMs;
      $("t-first").textContent = `${ms(wallMs)} (wasm ${ms(result.timings.inference_ms)})`;
    } else {
      page.timings.warmInferenceMs = wallMs;
      $("t-warm").textContent = `${ms(wallMs)} (wasm ${ms(result.timings.inference_ms)})`;
    }
    showResult(result);
    page.results.push(result);
    finishRun("ready");
    status(`Classified ${name}.`);
  } catch (err) {
    const message = messageOf(err);
    showError(message);
    page.errors.push({ image: name, error: message });
    finishRun("error");
    status(`Could not classify ${name}.`);
  }
}

/** Decodes an image the wasm decoder does not read (WebP, GIF, ...) to RGBA with the browser. */
async function browserDecode(blob, name) {
  let bitmap;
  try {
    bitmap = await createImageBitmap(blob);
  } catch {
    throw new Error(`${name}: the browser could not decode this ${blob.type || "file"}`);
  }
  const { width, height } = bitmap;
  const canvas = new OffscreenCanvas(width, height);
  const context = canvas.getContext("2d");
  context.drawImage(bitmap, 0, 0);
  bitmap.close();
  return { rgba: context.getImageData(0, 0, width, height).data, width, height };
}

/** Copies the wasm result into plain arrays and objects (Maps and typed arrays included). */
function normalise(raw, name, wallMs) {
  const get = (o, key) => (o instanceof Map ? o.get(key) : o?.[key]);
  const timings = get(raw, "timings");
  return {
    image: get(raw, "image") ?? name,
    top: Array.from(get(raw, "top") ?? [], (p) => ({
      index: get(p, "index"),
      label: get(p, "label"),
      probability: get(p, "probability"),
    })),
    logits: Array.from(get(raw, "logits") ?? []),
    timings: {
      decode_ms: get(timings, "decode_ms") ?? null,
      inference_ms: get(timings, "inference_ms") ?? null,
      wall_ms: wallMs,
    },
  };
}

function finishRun(state) {
  page.runs += 1;
  setState(state);
  for (let i = runWaiters.length - 1; i >= 0; i--) {
    if (page.runs >= runWaiters[i].n) runWaiters.splice(i, 1)[0].resolve(page.runs);
  }
}

function showPhoto(blob, name) {
  if (photoUrl) URL.revokeObjectURL(photoUrl);
  photoUrl = URL.createObjectURL(blob);
  const img = $("photo");
  img.src = photoUrl;
  img.alt = name;
  img.hidden = false;
  $("photo-name").textContent = name;
}

function showResult(result) {
  $("error").hidden = true;
  const list = $("top");
  list.replaceChildren();
  for (const p of result.top.slice(0, SHOWN)) {
    const pct = 100 * p.probability;
    const item = document.createElement("li");
    const label = document.createElement("span");
    label.className = "label";
    label.textContent = p.label;
    const bar = document.createElement("span");
    bar.className = "bar";
    const fill = document.createElement("span");
    fill.style.width = `${Math.max(0, Math.min(100, pct))}%`;
    bar.append(fill);
    const value = document.createElement("span");
    value.className = "pct";
    value.textContent = `${pct.toFixed(2)}%`;
    item.append(label, bar, value);
    list.append(item);
  }
  const t = result.timings;
  $("run-timing").textContent =
    `${ms(t.wall_ms)} in all: decode ${ms(t.decode_ms)}, inference ${ms(t.inference_ms)} (wasm).`;
}

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = false;
  $("top").replaceChildren();
  $("run-timing").textContent = "";
}

function setState(state) {
  document.body.dataset.state = state;
}

function status(text) {
  $("status-text").textContent = text;
}

function messageOf(err) {
  if (err instanceof Error) return err.message;
  if (typeof err === "string") return err;
  return err?.message ?? String(err);
}

function ms(value) {
  if (value === null || value === undefined) return "—";
  return value >= 100 ? `${Math.round(value)} ms` : `${value.toFixed(1)} ms`;
}

function mb(bytes) {
  return `${(bytes / 1e6).toFixed(1)} MB`;
}
