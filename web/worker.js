/**
 * The page's model, in a dedicated worker: a CPU pass never freezes the page, and the threaded
 * build's calling thread may wait for its thread pool (browsers let only workers block).
 *
 * Messages from app.js's `RemoteModel`, `{id, call, args}`, each answered `{id, value}` or
 * `{id, error}` (the message):
 *   load(build, threads)       imports pkg/ ("single") or pkg/threads/ ("threads", then starts
 *                              `threads` worker threads); resolves with nothing
 *   create(weights, options)   `Model.create`; resolves with the model's description:
 *                              {backend, threads, fallback, adapter, kernels, labels, inputSize}
 *   classifyEncoded(...), classifyPixels(...)   the `Model` methods of the same names
 */

const BUILDS = { single: "./pkg/xception_web.js", threads: "./pkg/threads/xception_web.js" };

let wasm = null;
let model = null;

const calls = {
  async load(build, threads) {
    const url = BUILDS[build];
    try {
      wasm = await import(url);
    } catch (err) {
      throw new Error(`could not load ${url.slice(2)} (run web/build.sh): ${messageOf(err)}`);
    }
    await wasm.default();
    if (build === "threads") await wasm.initThreadPool(threads);
  },
  async create(weights, options) {
    model = await wasm.Model.create(weights, options);
    return {
      backend: model.backend,
      threads: model.threads ?? null,
      fallback: model.fallback ?? null,
      adapter: model.adapter,
      kernels: model.kernels,
      labels: Array.from(model.labels),
      inputSize: Array.from(model.inputSize),
    };
  },
  classifyEncoded: (...args) => model.classifyEncoded(...args),
  classifyPixels: (...args) => model.classifyPixels(...args),
};

self.onmessage = async ({ data: { id, call, args } }) => {
  try {
    postMessage({ id, value: await calls[call](...args) });
  } catch (err) {
    postMessage({ id, error: messageOf(err) });
  }
};

function messageOf(err) {
  return err instanceof Error ? err.message : String(err);
}
