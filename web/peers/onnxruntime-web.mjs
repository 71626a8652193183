/**
 * The peer page: the network as `benches/peers/onnxruntime_xception.py --export` writes it
 * (models/xception_SIZE.onnx), on ONNX Runtime Web's WebAssembly backend (SIMD, `threads`
 * threads), timed on a fixed input as the page times its own runs.
 *
 * Query: `?size=150|299&threads=N&runs=N`. `window.peer` is a Promise of
 * `{ runtime, size, threads, setupMs, firstMs, runsMs: [...] }`, or rejects with the reason.
 */
import * as ort from "./node_modules/onnxruntime-web/dist/ort.wasm.min.mjs";

const query = new URLSearchParams(location.search);
const size = Number(query.get("size") ?? 150);
const threads = Number(query.get("threads") ?? 1);
const runs = Number(query.get("runs") ?? 7);

async function run() {
  ort.env.wasm.numThreads = threads;
  ort.env.wasm.wasmPaths = new URL("./node_modules/onnxruntime-web/dist/", location.href).href;
  let started = performance.now();
  const session = await ort.InferenceSession.create(`models/xception_${size}.onnx`, {
    executionProviders: ["wasm"],
    graphOptimizationLevel: "all",
  });
  const setupMs = performance.now() - started;
  const data = Float32Array.from({ length: 3 * size * size }, (_, i) => ((i * 7919) % 1000) / 500 - 1);
  const input = new ort.Tensor("float32", data, [1, 3, size, size]);
  started = performance.now();
  await session.run({ input });
  const firstMs = performance.now() - started;
  const runsMs = [];
  for (let i = 0; i < runs; i++) {
    started = performance.now();
    await session.run({ input });
    runsMs.push(performance.now() - started);
  }
  return { runtime: `onnxruntime-web ${ort.env.versions?.web ?? "?"}`, size, threads, setupMs, firstMs, runsMs };
}

window.peer = run();
window.peer.then(
  (result) => { document.getElementById("out").textContent = JSON.stringify(result, null, 2); },
  (err) => { document.getElementById("out").textContent = `failed: ${err?.message ?? err}`; },
);
