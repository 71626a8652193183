#!/usr/bin/env node
/**
 * Times the page's CPU backend in WebAssembly and ONNX Runtime Web's WebAssembly backend on
 * the same network, in one headless Chromium session driven by Playwright, in rounds that
 * alternate the two, with the same number of threads (more than one: the page's threaded build
 * and ONNX Runtime Web's, on a cross-origin isolated page). Prints one JSON line per
 * measurement.
 *
 *   cd web/peers && npm ci && node bench.mjs [--rounds N] [--runs N] [--threads N]
 *
 * Needs web/build.sh's build and the peer's models, written by
 *   benches/peers/onnxruntime_xception.py --export web/peers/models --size 150 --size 299
 * Both run at 150x150 and 299x299 (the page classifies its bundled cup photo resized to that
 * size). Environment: CHROMIUM, the browser binary (default
 * /usr/bin/chromium).
 */
import fs from "node:fs";
import path from "node:path";
import { chromium } from "playwright-core";

import { serve, WEB_ROOT as WEB } from "../tools/serve.mjs";

const args = process.argv.slice(2);
const option = (name, fallback) => {
  const i = args.indexOf(name);
  return i >= 0 ? Number(args[i + 1]) : fallback;
};
const rounds = option("--rounds", 2);
const runs = option("--runs", 7);
const threads = option("--threads", 1);

const build = threads > 1 ? "pkg/threads/xception_web.js" : "pkg/xception_web.js";
for (const needed of [build, "peers/models/xception_150.onnx", "peers/models/xception_299.onnx"]) {
  if (!fs.existsSync(path.join(WEB, needed))) {
    console.error(`error: web/${needed} is missing (see the usage at the top of this file)`);
    process.exit(2);
  }
}

const server = await serve();
const origin = `http://127.0.0.1:${server.address().port}`;

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-dev-shm-usage"],
});
const summary = (values) => {
  const sorted = [...values].sort((a, b) => a - b);
  return { min: sorted[0], median: sorted[Math.floor(sorted.length / 2)] };
};

try {
  for (let round = 1; round <= rounds; round++) {
    for (const size of [150, 299]) {
      const page = await browser.newPage();
      await page.goto(`${origin}/?backend=cpu&size=${size}&threads=${threads}`);
      const ready = await page.evaluate(() => window.xceptionPage.ready);
      const button = page.locator("#samples button").first();
      for (let run = 1; run <= runs + 1; run++) {
        await button.click();
        await page.evaluate((n) => window.xceptionPage.whenRun(n), run);
      }
      const ms = await page.evaluate(() => window.xceptionPage.results.map((r) => r.timings.inference_ms));
      console.log(JSON.stringify({
        round, runtime: `xception-wgpu (${ready.adapter})`, size, threads: ready.threads,
        setupMs: ready.timings.setupMs, firstMs: ms[0], ...summary(ms.slice(1)),
      }));
      await page.close();

      const peer = await browser.newPage();
      await peer.goto(`${origin}/peers/onnxruntime-web.html?size=${size}&threads=${threads}&runs=${runs}`);
      const result = await peer.evaluate(() => window.peer);
      const { runsMs, ...rest } = result;
      console.log(JSON.stringify({ round, ...rest, ...summary(runsMs) }));
      await peer.close();
    }
  }
} finally {
  await browser.close();
  server.close();
}
