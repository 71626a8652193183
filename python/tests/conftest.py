"""Shared fixtures: the repository, the `xception` binary, PNG copies of the bundled photos."""

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
LABELS = ["cup", "fork", "glass", "knife", "plate", "spoon"]


def xception_binary() -> Path:
    """The CLI the results are compared with (built by `cargo test --release` or `cargo build
    --release`; XCEPTION_BIN overrides)."""
    path = Path(os.environ.get("XCEPTION_BIN", ROOT / "target" / "release" / "xception"))
    if not path.exists():
        pytest.fail(f"{path} is missing: run `cargo build --release` first (or set XCEPTION_BIN)")
    return path


def cli_json(*args: str) -> dict:
    """Runs `xception ARGS --json` and returns its lines by image path."""
    out = subprocess.run(
        [str(xception_binary()), *args, "--json"], cwd=ROOT, capture_output=True, text=True, check=True
    )
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    return {line["image"]: line for line in lines}


@pytest.fixture(scope="session")
def model():
    import xception_wgpu

    return xception_wgpu.Model()


@pytest.fixture(scope="session")
def pngs(tmp_path_factory) -> list:
    """The bundled photos at three sizes, as PNG (decoded alike by Pillow and the runtime)."""
    folder = tmp_path_factory.mktemp("pngs")
    paths = []
    for i, label in enumerate(LABELS):
        photo = Image.open(ROOT / "samples" / f"{label}.jpg").convert("RGB")
        size = [(150, 150), (203, 171), (97, 131)][i % 3]
        path = folder / f"{label}.png"
        photo.resize(size).save(path)
        paths.append(str(path))
    return paths


def pixels(path: str) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.uint8)
