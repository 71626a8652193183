#!/usr/bin/env node
/**
 * Classifies images with the in-browser page (web/index.html) in headless Chromium and
 * prints one JSON line per image on stdout, as `xception classify --json` does.
 *
 *   node web/tools/drive.mjs [--screenshot OUT.png] [--warm N] [--visits N] [--top K]
 *        [--timeout S] [--backend B] [--no-webgpu] [--threads N] [--size S] [--kernel K]
 *        [--precision P] [--weights FILE] IMAGE|DIR...
 *
 * Serves web/ on 127.0.0.1 (cross-origin isolated: serve.mjs), opens the page in Chromium through Playwright (`playwright-core`,
 * pinned in web/tools/package-lock.json: `npm ci --prefix web/tools`), hands each image to
 * the page's file input (as a user's file choice would be) and reads the outcome from the
 * page's `window.xceptionPage` hooks. Failed images are reported on stderr and make the
 * exit code 1; a driver or browser failure exits 1, a usage or setup error 2. The page's
 * console goes to stderr prefixed with "[page]"; a last stderr line holds the timings.
 * Environment: CHROMIUM, the browser binary to run.
 */

import fs from "node:fs";
import path from "node:path";

import { serve, WEB_ROOT } from "./serve.mjs";

const USAGE = `usage: node web/tools/drive.mjs [--screenshot OUT.png] [--warm N] [--visits N] [--top K]
       [--timeout S] [--backend B] [--no-webgpu] [--threads N] [--size S] [--kernel K]
       [--precision P] [--weights FILE] IMAGE|DIR...
  --screenshot OUT.png  save a PNG of the page at the end
  --warm N              classify the last successful image N more times (default 0)
  --visits N            load the page N times in one profile, the later ones from the
                        weights cache; each later visit classifies that image once (default 1)
  --top K               classes per image in the JSON lines (default 5)
  --timeout S           give up after S seconds in all (default 600)
  --backend B           auto, gpu or cpu, as xception's --backend (default auto: a hardware
                        WebGPU adapter, else the CPU backend compiled to WebAssembly)
  --no-webgpu           start Chromium without WebGPU (no adapter is offered)
  --threads N           the CPU backend's threads (default one per logical core; more than
                        one runs the threaded build)
  --size S              N or WxH, as xception's --size (default the model's input size)
  --kernel K            the convolution kernels, as xception's --kernel (default auto)
  --precision P         f32 or f16, as xception's --precision (default f32)
  --weights FILE        a converted weights file, any member of the Xception family (default
                        the bundled model); served as web/pkg/weights/FILE's name`;

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
  let chromium;
  try {
    ({ chromium } = await import("playwright-core"));
  } catch {
    throw new Failure("playwright-core is missing: run `npm ci --prefix web/tools`", 2);
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
    Object.entries({
      backend: options.backend, threads: options.threads, size: options.size, kernel: options.kernel,
      precision: options.precision, weights: options.weights && serveWeights(options.weights),
    }).filter(([, v]) => v),
  );
  const url = `http://127.0.0.1:${server.address().port}/${query.size ? `?${query}` : ""}`;
  const page = await launch(chromium, browserPath, options.webgpu);

  const visits = [];
  const ready = await open(page, () => page.goto(url));
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
    const again = await open(page, () => page.reload());
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

/** Copies a weights file where the page's server serves it; returns its URL on the page. */
function serveWeights(file) {
  if (!fs.existsSync(file)) throw new Failure(`--weights: ${file}: no such file`, 2);
  const dir = path.join(WEB_ROOT, "pkg", "weights");
  fs.mkdirSync(dir, { recursive: true });
  fs.copyFileSync(file, path.join(dir, path.basename(file)));
  return `pkg/weights/${encodeURIComponent(path.basename(file))}`;
}

/** Parses the command line; prints the usage and exits for --help, throws it on errors. */
function parseArgs(args) {
  const options = {
    screenshot: null, warm: 0, visits: 1, top: 5, timeout: 600, backend: null, webgpu: true,
    threads: null, size: null, kernel: null, precision: null, weights: null, images: [],
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
    else if (arg === "--threads") options.threads = count(arg, value(), 1);
    else if (arg === "--size") options.size = value();
    else if (arg === "--kernel") options.kernel = value();
    else if (arg === "--precision") options.precision = value();
    else if (arg === "--weights") options.weights = value();
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

/**
 * Starts Chromium (`binary`) through Playwright, with WebGPU unless `webgpu` is false (on
 * Linux it offers no adapter without --enable-unsafe-webgpu), on a fresh profile, and returns
 * a page whose console goes to stderr.
 */
async function launch(chromium, binary, webgpu) {
  let browser;
  try {
    browser = await chromium.launch({
      executablePath: binary,
      args: ["--no-sandbox", "--disable-dev-shm-usage", ...(webgpu ? ["--enable-unsafe-webgpu"] : [])],
    });
  } catch (err) {
    throw new Failure(`could not start ${binary}: ${err.message}`);
  }
  cleanups.push(() => browser.close());
  const context = await browser.newContext({ viewport: { width: 1200, height: 900 } });
  const page = await context.newPage();
  page.on("console", (message) => {
    const kind = message.type() === "log" ? "" : `${message.type()}: `;
    console.error(`[page] ${kind}${message.text()}`);
  });
  page.on("pageerror", (err) => console.error(`[page] uncaught: ${err.message}`));
  page.on("crash", () => {
    console.error("error: the page crashed");
    finish(1);
  });
  return page;
}

/** Evaluates `expression` in the page, awaiting promises; returns its value. */
async function evaluate(page, expression) {
  try {
    return await page.evaluate(expression);
  } catch (err) {
    throw new Failure(`in the page: ${err.message}`);
  }
}

/** Loads the page with `go` (navigate or reload) and returns what `ready` resolves to. */
async function open(page, go) {
  try {
    await go();
  } catch (err) {
    throw new Failure(`could not open the page: ${err.message}`);
  }
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
  if ((await page.locator("#file-input").count()) !== 1) throw new Failure("the page has no #file-input");
  await page.setInputFiles("#file-input", image.absolute);
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
  await page.screenshot({ path: file, fullPage: true });
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

/** Runs the clean-ups (browser, server), last registered first, once; exits. */
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
