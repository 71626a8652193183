#!/usr/bin/env node
/**
 * Serves web/ on 127.0.0.1, cross-origin isolated (`Cross-Origin-Opener-Policy: same-origin`,
 * `Cross-Origin-Embedder-Policy: require-corp`), so that the page's threaded build may share
 * its memory with workers; any static server runs the page, single-threaded on the CPU.
 *
 *   node web/tools/serve.mjs [--port N]     # default 8000; then open http://127.0.0.1:N/
 *
 * drive.mjs and web/peers/bench.mjs serve the page through `serve`.
 */

import fs from "node:fs";
import http from "node:http";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

/** The page's folder, web/. */
export const WEB_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

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
  ".onnx": "application/octet-stream",
  ".safetensors": "application/octet-stream",
};

/** Serves `root` on 127.0.0.1:`port` (0: any free port); resolves with the listening server. */
export function serve(root = WEB_ROOT, port = 0) {
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
        "Cross-Origin-Opener-Policy": "same-origin",
        "Cross-Origin-Embedder-Policy": "require-corp",
      });
      if (req.method === "HEAD") return res.end();
      fs.createReadStream(file).on("error", () => res.destroy()).pipe(res);
    });
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, "127.0.0.1", () => resolve(server));
  });
}

if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  const args = process.argv.slice(2);
  const port = args[0] === "--port" && args.length === 2 ? Number(args[1]) : args.length ? NaN : 8000;
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    console.error("usage: node web/tools/serve.mjs [--port N]");
    process.exit(2);
  }
  serve(WEB_ROOT, port).then(
    (server) => console.log(`serving ${WEB_ROOT} at http://127.0.0.1:${server.address().port}/`),
    (err) => {
      console.error(`error: cannot serve on port ${port}: ${err.message}`);
      process.exit(1);
    },
  );
}
