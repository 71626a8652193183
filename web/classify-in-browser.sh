#!/usr/bin/env bash
# Classifies images with the in-browser build in headless Chromium; prints one JSON line per
# image, like `xception classify --json`. Options: see web/tools/drive.mjs (--help).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
if [[ ! -f "$here/pkg/xception_web.js" ]]; then
    echo "error: $here/pkg/xception_web.js is missing: build it first with web/build.sh" >&2
    exit 2
fi
if ! command -v node >/dev/null 2>&1; then
    echo "error: node (version 20 or later) is not on PATH" >&2
    exit 2
fi
if [[ ! -d "$here/tools/node_modules/playwright-core" ]]; then
    echo "error: the driver's Playwright is missing: run npm ci --prefix $here/tools" >&2
    exit 2
fi
exec node "$here/tools/drive.mjs" "$@"
