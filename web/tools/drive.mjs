#!/usr/bin/env node
/**
 * Classifies images with the in-browser page (web/index.html) in headless Chromium and
 * prints one JSON line per image on stdout, as `xception classify --json` does.
 *
 *   node --experimental-websocket web/tools/drive.mjs [--screenshot OUT.png] [--warm N]
 *        [--visits N] [--top K] [--timeout S] [--backend B] [--no-webgpu] [--kernel K]
 *        [--precision P] IMAGE|DIR...
 *
 * Serves web/ on 127.0.0.1, opens the page over the DevTools protocol, hands each image to
 * the page's file input (as a user's file choice would be) and reads the outcome from the
 * page's `window.xceptionPage` hooks. Failed images are reported on stderr and make the
 * exit code 1; a driver or browser failure exits 1, a usage or setup error 2. The page's
 * console goes to stderr prefixed with "[page]"; a last stderr line holds the timings.
 * Environment: CHROMIUM, the browser binary to run.
 */

import { spawn } from "node:child_process";
import fs from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const WEB_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const IMAGE_EXTENSIONS = [".png", ".jpg", ".jpeg"];
const MIME_TYPES = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".mjs": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".json": "application/json",
  ".wasm": "application/wasm",
  ".jpg": "image/jpeg",
  ".jpeg": "image/jpeg",
  ".png": "image/png",
  ".svg": "image/svg+xml",
  ".ico": "image/x-icon",
  ".safetensors": "application/octet-stream",
};
const USAGE = `usage: node --experimental-websocket web/tools/drive.mjs [--screenshot OUT.png] [--warm N]
       [--visits N] [--top K] [--timeout S] [--backend B] [--no-webgpu] [--kernel K]
       [--precision P] IMAGE|DIR...
  --screenshot OUT.png  save a PNG of the page at the end
  --warm N              classify the last successful image N more times (default 0)
  --visits N            load the page N times in one profile, the later ones from the
                        weights cache; each later visit classifies that image once (default 1)
  --top K               classes per image in the JSON lines (default 5)
  --timeout S           give up after S seconds in all (default 600)
  --backend B           auto, gpu or cpu, as xception's --backend (default auto: a hardware
                        WebGPU adapter, else the CPU backend compiled to WebAssembly)
  --no-webgpu           start Chromium without WebGPU (no adapter is offered)
  --kernel K            the convolution kernels, as xception's --kernel (default auto)
  --precision P         f32 or f16, as xception's --precision (default f32)`;

/** A failure to report as `message` with exit code `code`. */
class Failure extends Error {
  constructor(message, code = 1) {
    super(message);
    this.code = code;
  }
}

/** Clean-ups, run last one first when the driver ends (see `finish`). */
const cleanups = [];
let finishing = false;

main().then(
  (code) => finish(code),
  (err) => {
    if (finishing) return; // a time-out or signal is already stopping everything
    console.error(`error: ${err instanceof Failure ? err.message : err?.stack ?? err}`);
    finish(err instanceof Failure ? err.code : 1);
  },
);

async function main() {
  const options = parseArgs(process.argv.slice(2));
  if (typeof WebSocket === "undefined") {
    const hint = "run with `node --experimental-websocket` (Node 20) or Node 22+";
    throw new Failure(`no WebSocket in this Node: ${hint}`, 2);
  }
  const { images, ok: expanded } = expandImages(options.images);
  const browserPath = findChromium();

  const timer = setTimeout(() => {
    console.error(`error: timed out after ${options.timeout} s`);
    finish(1);
  }, options.timeout * 1000);
  cleanups.push(() => clearTimeout(timer));
  for (const [signal, code] of [["SIGINT", 130], ["SIGTERM", 143]]) {
    process.on(signal, () => {
      console.error(`error: stopped by ${signal}`);
      finish(code);
    });
  }

  const server = await serve(WEB_ROOT);
  cleanups.push(() => {
    server.closeAllConnections();
    server.close();
  });
  const query = new URLSearchParams(
    Object.entries({ backend: options.backend, kernel: options.kernel, precision: options.precision })
      .filter(([, v]) => v),
  );
  const url = `http://127.0.0.1:${server.address().port}/${query.size ? `?${query}` : ""}`;
  const browser = await launch(browserPath, options.webgpu);
  const cdp = await Cdp.connect(browser.wsUrl);
  cleanups.push(() => cdp.close());

  const { targetId } = await cdp.send("Target.createTarget", { url: "about:blank" });
  const { sessionId } = await cdp.send("Target.attachToTarget", { targetId, flatten: true });
  const page = cdp.session(sessionId);
  forwardConsole(cdp, sessionId);
  await Promise.all(["Runtime", "Page", "Log", "Inspector"].map((domain) => page.send(`${domain}.enable`)));

  const visits = [];
  const ready = await open(page, () => page.send("Page.navigate", { url }));
  visits.push(visitTimings(ready.timings));
  await evaluate(page, `window.xceptionPage.top = ${options.top}`);

  let failed = !expanded;
  let last = null;
  for (const image of images) {
    const outcome = await classify(page, image);
    if (outcome.error) {
      failed = true;
      const message = `${image.shown}: ${outcome.error}`;
      console.error(`error: ${message}`);
      // As `xception classify --json` does, so that a JSON reader sees every input.
      console.log(`{"backend":"${ready.backend}","error":${JSON.stringify(message)},"image":${JSON.stringify(image.shown)}}`);
      continue;
    }
    last = image;
    console.log(cliJson(ready.backend, image.shown, outcome.result, options.top));
  }

  const warm = [];
  for (let i = 0; i < options.warm && last; i++) {
    const outcome = await classify(page, last);
    if (outcome.error) throw new Failure(`${last.shown}: warm run ${i + 1}: ${outcome.error}`);
    warm.push(outcome.result.timings);
  }
  if (warm.length === 0) {
    // Without --warm, every run after the first is a warm one.
    const all = await evaluate(page, "window.xceptionPage.results.map((r) => r.timings)");
    warm.push(...all.slice(1));
  }
  visits[0].firstInferenceMs = round(await evaluate(page, "window.xceptionPage.timings.firstInferenceMs"));

  for (let visit = 2; visit <= options.visits; visit++) {
    const again = await open(page, () => page.send("Page.reload", {}));
    if (last) {
      const outcome = await classify(page, last);
      if (outcome.error) throw new Failure(`${last.shown}: visit ${visit}: ${outcome.error}`);
    }
    const timings = await evaluate(page, "window.xceptionPage.timings");
    visits.push(visitTimings({ ...again.timings, firstInferenceMs: timings.firstInferenceMs }));
  }
  if (options.screenshot) {
    await screenshot(page, options.screenshot);
  }

  console.error(JSON.stringify({
    timings: {
      backend: ready.backend,
      threads: ready.threads,
      fallback: ready.fallback,
      adapter: ready.adapter,
      kernels: ready.kernels,
      visits,
      warm: {
        runs: warm.length,
        wallMs: stats(warm.map((t) => t.wall_ms)),
        inferenceMs: stats(warm.map((t) => t.inference_ms)),
      },
    },
  }));
  return failed ? 1 : 0;
}

/** Parses the command line; prints the usage and exits for --help, throws it on errors. */
function parseArgs(args) {
  const options = {
    screenshot: null, warm: 0, visits: 1, top: 5, timeout: 600, backend: null, webgpu: true,
    kernel: null, precision: null, images: [],
  };
  const count = (name, value, min) => {
    const n = Number(value);
    if (Number.isInteger(n) && n >= min && value.trim() !== "") return n;
    const wanted = `${name} wants a whole number of at least ${min}`;
    throw new Failure(`${wanted}, not ${JSON.stringify(value)}\n${USAGE}`, 2);
  };
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    const value = () => {
      if (i + 1 >= args.length) throw new Failure(`${arg} needs a value\n${USAGE}`, 2);
      return args[++i];
    };
    if (arg === "-h" || arg === "--help") {
      console.log(USAGE);
      process.exit(0);
    } else if (arg === "--screenshot") options.screenshot = value();
    else if (arg === "--warm") options.warm = count(arg, value(), 0);
    else if (arg === "--visits") options.visits = count(arg, value(), 1);
    else if (arg === "--top") options.top = count(arg, value(), 0);
    else if (arg === "--timeout") options.timeout = count(arg, value(), 1);
    else if (arg === "--backend") options.backend = value();
    else if (arg === "--no-webgpu") options.webgpu = false;
    else if (arg === "--kernel") options.kernel = value();
    else if (arg === "--precision") options.precision = value();
    else if (arg === "--") {
      options.images.push(...args.slice(i + 1));
      break;
    } else if (arg.startsWith("-") && arg !== "-") throw new Failure(`unknown option ${arg}\n${USAGE}`, 2);
    else options.images.push(arg);
  }
  if (options.images.length === 0 && options.visits === 1 && !options.screenshot) {
    throw new Failure(`no images\n${USAGE}`, 2);
  }
  return options;
}

/**
 * Expands folders into their .png/.jpg/.jpeg files, recursively and sorted, as the CLI does;
 * other paths are kept, so that a missing file is reported when it is classified. Returns
 * the images, each `{shown, absolute}` (`shown` as the CLI prints it), and whether every
 * folder could be read.
 */
function expandImages(args) {
  const found = [];
  let ok = true;
  const isDir = (file) => {
    try {
      return fs.statSync(file).isDirectory();
    } catch {
      return false;
    }
  };
  const walk = (dir) => {
    const names = fs.readdirSync(dir).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    for (const name of names) {
      const child = dir.endsWith("/") ? dir + name : `${dir}/${name}`;
      if (isDir(child)) walk(child);
      else if (IMAGE_EXTENSIONS.includes(path.extname(name).toLowerCase())) found.push(child);
    }
  };
  for (const arg of args) {
    if (!isDir(arg)) {
      found.push(arg);
      continue;
    }
    const before = found.length;
    try {
      walk(arg);
      if (found.length === before) console.error(`warning: ${arg}: no .png, .jpg or .jpeg files`);
    } catch (err) {
      console.error(`error: ${arg}: ${err.message}`);
      ok = false;
    }
  }
  return { images: found.map((shown) => ({ shown, absolute: path.resolve(shown) })), ok };
}

/** The browser binary: $CHROMIUM, the Debian location, or `chromium` on PATH. */
function findChromium() {
  const runnable = (file) => {
    try {
      fs.accessSync(file, fs.constants.X_OK);
      return fs.statSync(file).isFile();
    } catch {
      return false;
    }
  };
  if (process.env.CHROMIUM) {
    if (runnable(process.env.CHROMIUM)) return process.env.CHROMIUM;
    throw new Failure(`CHROMIUM=${process.env.CHROMIUM} is not an executable file`, 2);
  }
  if (runnable("/usr/lib/chromium/chromium")) return "/usr/lib/chromium/chromium";
  for (const dir of (process.env.PATH ?? "").split(path.delimiter).filter(Boolean)) {
    const file = path.join(dir, "chromium");
    if (runnable(file)) return file;
  }
  throw new Failure("no Chromium found: set CHROMIUM to the browser binary, or install chromium", 2);
}

/** Serves `root` on a free port of 127.0.0.1. */
function serve(root) {
  const server = http.createServer((req, res) => {
    const fail = (status, text) => {
      res.writeHead(status, { "Content-Type": "text/plain; charset=utf-8" });
      res.end(`${text}\n`);
    };
    if (req.method !== "GET" && req.method !== "HEAD") return fail(405, "method not allowed");
    let pathname;
    try {
      pathname = decodeURIComponent(new URL(req.url, "http://localhost").pathname);
    } catch {
      return fail(400, "bad request");
    }
    if (pathname.includes("\0")) return fail(400, "bad request");
    if (pathname.endsWith("/")) pathname += "index.html";
    const file = path.join(root, pathname);
    if (!file.startsWith(root + path.sep)) return fail(404, "not found");
    fs.stat(file, (err, stat) => {
      if (err || !stat.isFile()) return fail(404, "not found");
      res.writeHead(200, {
        "Content-Type": MIME_TYPES[path.extname(file).toLowerCase()] ?? "application/octet-stream",
        "Content-Length": stat.size,
        "Last-Modified": stat.mtime.toUTCString(),
        "Cache-Control": "no-cache",
      });
      if (req.method === "HEAD") return res.end();
      fs.createReadStream(file).on("error", () => res.destroy()).pipe(res);
    });
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve(server));
  });
}

/**
 * Starts Chromium on a fresh profile, with WebGPU unless `webgpu` is false (on Linux it offers
 * no adapter without --enable-unsafe-webgpu), and returns its DevTools websocket URL.
 */
async function launch(binary, webgpu) {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), "xception-chromium-"));
  cleanups.push(() => fs.rmSync(profile, { recursive: true, force: true, maxRetries: 5 }));
  const args = [
    "--headless=new",
    "--no-sandbox",
    "--disable-dev-shm-usage",
    ...(webgpu ? ["--enable-unsafe-webgpu"] : []),
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--remote-debugging-port=0",
    `--user-data-dir=${profile}`,
    "--window-size=1200,900",
    "about:blank",
  ];
  // Its own process group, so that stopping it also stops its helper processes.
  const child = spawn(binary, args, { stdio: ["ignore", "ignore", "pipe"], detached: true });
  let exited = child.exitCode !== null;
  const gone = new Promise((resolve) => child.once("exit", () => { exited = true; resolve(); }));
  let spawnError = null;
  child.once("error", (err) => { spawnError = err; exited = true; });
  cleanups.push(async () => {
    // Browser.close has usually ended it; then whatever is left of its group goes.
    const group = (sig) => {
      try {
        process.kill(-child.pid, sig);
        return true;
      } catch {
        return false; // no process left in the group
      }
    };
    if (!exited && !(await Promise.race([gone.then(() => true), sleep(3000)]))) group("SIGTERM");
    for (let i = 0; i < 40 && group(0); i++) {
      if (i === 20) group("SIGKILL");
      await sleep(100);
    }
  });

  let stderr = "";
  let wsUrl = null;
  child.stderr.setEncoding("utf8");
  child.stderr.on("data", (text) => {
    stderr = (stderr + text).slice(-8000);
    wsUrl ??= /DevTools listening on (ws:\/\/\S+)/.exec(stderr)?.[1] ?? null;
  });
  const portFile = path.join(profile, "DevToolsActivePort");
  const deadline = Date.now() + 30_000;
  while (!wsUrl) {
    if (spawnError) throw new Failure(`could not start ${binary}: ${spawnError.message}`, 2);
    if (exited) throw new Failure(`${binary} exited during start-up:\n${stderr.trim()}`);
    if (Date.now() > deadline) {
      throw new Failure(`${binary} did not open DevTools within 30 s:\n${stderr.trim()}`);
    }
    try {
      const [port, target] = fs.readFileSync(portFile, "utf8").split("\n");
      if (port && target) wsUrl = `ws://127.0.0.1:${port.trim()}${target.trim()}`;
    } catch {
      // not written yet
    }
    if (!wsUrl) await sleep(50);
  }
  return { wsUrl, process: child };
}

/** A DevTools protocol connection; sessions route by `sessionId` (flattened targets). */
class Cdp {
  static connect(url) {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url);
      ws.addEventListener("open", () => resolve(new Cdp(ws)), { once: true });
      ws.addEventListener("error", () => reject(new Failure(`could not connect to ${url}`)), { once: true });
    });
  }

  constructor(ws) {
    this.ws = ws;
    this.nextId = 1;
    this.pending = new Map();
    this.listeners = new Set();
    ws.addEventListener("message", (event) => this.receive(JSON.parse(event.data)));
    ws.addEventListener("close", () => {
      for (const { reject, method } of this.pending.values()) {
        reject(new Failure(`${method}: the browser closed the DevTools connection`));
      }
      this.pending.clear();
    });
  }

  send(method, params = {}, sessionId = undefined) {
    const id = this.nextId++;
    const message = { id, method, params };
    if (sessionId) message.sessionId = sessionId;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject, method });
      this.ws.send(JSON.stringify(message));
    });
  }

  receive(message) {
    if (message.id !== undefined) {
      const call = this.pending.get(message.id);
      if (!call) return;
      this.pending.delete(message.id);
      if (message.error) call.reject(new Failure(`${call.method}: ${message.error.message}`));
      else call.resolve(message.result);
      return;
    }
    for (const listener of this.listeners) listener(message);
  }

  /** Calls `listener` with every event. */
  on(listener) {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Resolves with the params of the next `method` event of `sessionId`. */
  once(method, sessionId) {
    return new Promise((resolve) => {
      const off = this.on((message) => {
        if (message.method === method && message.sessionId === sessionId) {
          off();
          resolve(message.params);
        }
      });
    });
  }

  session(sessionId) {
    return {
      send: (method, params) => this.send(method, params, sessionId),
      once: (method) => this.once(method, sessionId),
    };
  }

  async close() {
    if (this.ws.readyState !== WebSocket.OPEN) return;
    try {
      await Promise.race([this.send("Browser.close"), sleep(2000)]);
    } catch {
      // the browser went away first
    }
    this.ws.close();
  }
}

/** Prints the page's console messages, exceptions and log entries to stderr; ends on a crash. */
function forwardConsole(cdp, sessionId) {
  const show = (arg) => {
    if (arg.type === "string") return arg.value;
    if ("value" in arg) return JSON.stringify(arg.value);
    return arg.unserializableValue ?? arg.description ?? arg.type;
  };
  cdp.on((message) => {
    if (message.sessionId !== sessionId) return;
    const { method, params } = message;
    if (method === "Runtime.consoleAPICalled") {
      const kind = params.type === "log" ? "" : `${params.type}: `;
      console.error(`[page] ${kind}${params.args.map(show).join(" ")}`);
    } else if (method === "Runtime.exceptionThrown") {
      const details = params.exceptionDetails;
      console.error(`[page] uncaught: ${details.exception?.description ?? details.text}`);
    } else if (method === "Log.entryAdded") {
      const { level, text, url } = params.entry;
      console.error(`[page] ${level}: ${text}${url ? ` (${url})` : ""}`);
    } else if (method === "Inspector.targetCrashed") {
      console.error("error: the page crashed");
      finish(1);
    }
  });
}

/** Evaluates `expression` in the page, awaiting promises; returns its value. */
async function evaluate(page, expression) {
  const reply = await page.send("Runtime.evaluate", {
    expression,
    awaitPromise: true,
    returnByValue: true,
  });
  if (reply.exceptionDetails) {
    const details = reply.exceptionDetails;
    throw new Failure(`in the page: ${details.exception?.description ?? details.text}`);
  }
  return reply.result.value;
}

/** Loads the page with `go` (navigate or reload) and returns what `ready` resolves to. */
async function open(page, go) {
  const loaded = page.once("Page.loadEventFired");
  const { errorText } = await go();
  if (errorText) throw new Failure(`could not open the page: ${errorText}`);
  await loaded;
  const deadline = Date.now() + 30_000;
  while (!(await evaluate(page, "typeof window.xceptionPage?.ready?.then === 'function'"))) {
    if (Date.now() > deadline) {
      throw new Failure("the page did not set window.xceptionPage (did app.js load?)");
    }
    await sleep(100);
  }
  const outcome = await evaluate(page, `window.xceptionPage.ready.then(
    (value) => ({ value }),
    (err) => ({ error: String(err?.message ?? err) }))`);
  if (outcome.error !== undefined) throw new Failure(`the page could not start: ${outcome.error}`);
  return outcome.value;
}

/** Sets one image on #file-input and returns `{result}` or `{error}` for that run. */
async function classify(page, image) {
  try {
    fs.accessSync(image.absolute, fs.constants.R_OK);
  } catch (err) {
    return { error: err.code === "ENOENT" ? "no such file" : err.message };
  }
  const before = await evaluate(page, `(({ runs, results, errors }) =>
    ({ runs, results: results.length, errors: errors.length }))(window.xceptionPage)`);
  const { root } = await page.send("DOM.getDocument", { depth: 0 });
  const { nodeId } = await page.send("DOM.querySelector", { nodeId: root.nodeId, selector: "#file-input" });
  if (!nodeId) throw new Failure("the page has no #file-input");
  await page.send("DOM.setFileInputFiles", { nodeId, files: [image.absolute] });
  const outcome = await evaluate(page, `(async () => {
    const page = window.xceptionPage;
    await page.whenRun(${before.runs + 1});
    return page.results.length > ${before.results}
      ? { result: page.results[${before.results}] }
      : { error: page.errors[${before.errors}] };
  })()`);
  if (outcome.result) return outcome;
  const { image: name, error } = outcome.error;
  // The runtime's messages start with the image's name; the path replaces it here.
  const prefix = `${name}: `;
  return { error: error.startsWith(prefix) ? error.slice(prefix.length) : error };
}

/**
 * The CLI's `--json` line, byte for byte (keys image, logits, top: index, label,
 * probability; no spaces; numbers written as serde_json writes them), led by the backend
 * that ran it ("gpu" or "cpu").
 */
function cliJson(backend, shown, result, k) {
  const numbers = (values) => values.map(jsonNumber).join(",");
  const top = result.top.slice(0, k).map(({ index, label, probability }) =>
    `{"index":${index},"label":${JSON.stringify(label)},"probability":${jsonNumber(probability)}}`);
  return `{"backend":"${backend}","image":${JSON.stringify(shown)},"logits":[${numbers(result.logits)}],"top":[${top.join(",")}]}`;
}

/**
 * Writes a float as serde_json does: the shortest digits that read back to it, positional
 * for decimal exponents -5 to 15 (whole numbers end in ".0"), else d.ddde±x; null if not finite.
 */
function jsonNumber(x) {
  if (!Number.isFinite(x)) return "null";
  if (x === 0) return Object.is(x, -0) ? "-0.0" : "0.0";
  const [mantissa, exponent] = Math.abs(x).toExponential().split("e");
  const digits = mantissa.replace(".", "");
  const e = Number(exponent);
  let text;
  if (e < -5 || e > 15) {
    const fraction = digits.length > 1 ? `.${digits.slice(1)}` : "";
    text = `${digits[0]}${fraction}e${e < 0 ? "-" : "+"}${Math.abs(e)}`;
  } else if (digits.length - 1 <= e) {
    text = `${digits}${"0".repeat(e + 1 - digits.length)}.0`;
  } else if (e >= 0) {
    text = `${digits.slice(0, e + 1)}.${digits.slice(e + 1)}`;
  } else {
    text = `0.${"0".repeat(-e - 1)}${digits}`;
  }
  return x < 0 ? `-${text}` : text;
}

function visitTimings(t) {
  return {
    weightsMs: round(t.weightsMs),
    weightsSource: t.weightsSource,
    setupMs: round(t.setupMs),
    firstInferenceMs: round(t.firstInferenceMs),
  };
}

async function screenshot(page, file) {
  const { cssContentSize } = await page.send("Page.getLayoutMetrics");
  const { data } = await page.send("Page.captureScreenshot", {
    format: "png",
    captureBeyondViewport: true,
    clip: {
      x: 0,
      y: 0,
      width: Math.ceil(cssContentSize.width),
      height: Math.ceil(cssContentSize.height),
      scale: 1,
    },
  });
  fs.writeFileSync(file, Buffer.from(data, "base64"));
  console.error(`screenshot: ${file}`);
}

function stats(values) {
  const v = values.filter((x) => typeof x === "number").sort((a, b) => a - b);
  if (v.length === 0) return null;
  const mid = v.length >> 1;
  const median = v.length % 2 ? v[mid] : (v[mid - 1] + v[mid]) / 2;
  return { min: round(v[0]), median: round(median) };
}

function round(x) {
  return typeof x === "number" ? Math.round(x * 100) / 100 : x ?? null;
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Runs the clean-ups (browser, profile, server), last registered first, once; exits. */
async function finish(code) {
  if (finishing) return;
  finishing = true;
  for (const cleanup of cleanups.reverse()) {
    try {
      await cleanup();
    } catch (err) {
      console.error(`warning: clean-up: ${err?.message ?? err}`);
    }
  }
  process.exit(code);
}
