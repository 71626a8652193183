#!/usr/bin/env python3
"""Peer benchmark: timm's aligned Xceptions (xception41/65/71/41p/65p) on ONNX Runtime's CPU.

The runtime and ONNX Runtime run the same weights: a converted weights file (what
``weights/convert.py`` writes from a timm state dict) is turned back into timm's model
(``timm_aligned.to_timm``), exported with ``torch.onnx.export`` (opset 17, NCHW, float32, one
fixed input shape per batch size) and timed with ``onnxruntime``.

Setup::

    python3 -m venv /tmp/timm-venv
    /tmp/timm-venv/bin/pip install torch timm onnx onnxscript onnxruntime numpy safetensors h5py

Usage (from the repository root)::

    # a full-size checkpoint at timm's random initialisation, its batch norms calibrated on the
    # bundled photos, converted (weights need not be trained to be timed or cross-checked);
    # with --pretrained, timm's ImageNet weights where the hub is reachable
    /tmp/timm-venv/bin/python benches/peers/onnxruntime_timm.py make xception65 -o /tmp/xception65.safetensors
    # the runtime's logits against timm's (float64) on the bundled photos, within 1e-4
    /tmp/timm-venv/bin/python benches/peers/onnxruntime_timm.py check /tmp/xception65.safetensors --backend cpu --backend gpu
    /tmp/timm-venv/bin/python benches/peers/onnxruntime_timm.py bench /tmp/xception65.safetensors \\
        --size 299 --batch 1 --batch 8 --threads 2 --runs 10
    ./target/release/xception bench --weights /tmp/xception65.safetensors --backend cpu --size 299 --batch 1,8

``bench`` prints min and median milliseconds of a forward pass on a fixed random input after
2 warm-up runs, and checks first that ONNX Runtime's logits match timm's within 1e-4.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "weights"))
sys.path.insert(0, os.path.join(ROOT, "tests", "golden"))

import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402
import timm  # noqa: E402
import torch  # noqa: E402
from safetensors import safe_open  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

import convert  # noqa: E402
import timm_aligned  # noqa: E402
from make_timm import LABELS, network_input, photo  # noqa: E402

TOLERANCE = 1e-4


def calibrate(model):
    """Batch-norm statistics from the bundled photos at 299x299 (one pass in training mode),
    so that a randomly initialised network's activations are of the order of one, as a trained
    one's are: a cross-check within 1e-4 then means something."""
    for bn in (m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)):
        bn.reset_running_stats()
        bn.momentum = None
    model.train()
    with torch.no_grad():
        model(torch.stack([network_input(photo(label, 299, 299)) for label in LABELS]))
    model.eval()


def make(arch, output, pretrained):
    model = timm.create_model(arch, pretrained=pretrained)
    if not pretrained:
        calibrate(model)
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = os.path.join(tmp, "model.safetensors")
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, checkpoint)
        labels = convert.IMAGENET_LABELS if model.num_classes == 1000 else None
        convert.convert(checkpoint, output, "float16", labels_path=labels, arch=arch)
    print(f"wrote {output}")


def timm_model(weights):
    """timm's model holding the values of converted ``weights``."""
    with safe_open(weights, framework="numpy") as fh:
        architecture = json.loads(fh.metadata()["architecture"])
        tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    name = architecture["name"].removesuffix("_custom")
    classes = tensors["head.fc.bias"].shape[0] if "head.fc.bias" in tensors else 0
    model = timm.create_model(name, pretrained=False, num_classes=classes)
    sd = {k: torch.from_numpy(v) for k, v in timm_aligned.to_timm(tensors).items()}
    missing, unexpected = model.load_state_dict(sd, strict=False)
    assert not unexpected and all(k.endswith("num_batches_tracked") for k in missing), (missing, unexpected)
    return name, model.eval()


def bench(weights, sizes, batches, threads, runs):
    name, model = timm_model(weights)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    rng = np.random.default_rng(0)
    for size in sizes:
        for batch in batches:
            x = rng.uniform(-1, 1, (batch, 3, size, size)).astype(np.float32)
            with tempfile.TemporaryDirectory() as tmp:
                path = os.path.join(tmp, "model.onnx")
                torch.onnx.export(model, (torch.from_numpy(x),), path, opset_version=17, dynamo=False)
                session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
            feed = {session.get_inputs()[0].name: x}
            got = session.run(None, feed)[0]
            with torch.no_grad():
                want = model(torch.from_numpy(x)).numpy()
            error = float(np.abs(got - want).max())
            assert error <= TOLERANCE, f"ONNX Runtime strays {error:.2e} from timm"
            for _ in range(2):
                session.run(None, feed)
            ms = []
            for _ in range(runs):
                start = time.perf_counter()
                session.run(None, feed)
                ms.append((time.perf_counter() - start) * 1e3)
            ms.sort()
            print(
                f"onnxruntime {ort.__version__} {name} {size}x{size} batch {batch}, {threads} threads: "
                f"min {ms[0]:.1f} ms, median {ms[len(ms) // 2]:.1f} ms ({runs} runs; |timm - ort| {error:.1e})"
            )


def check(weights, backends):
    """The runtime (the `xception` CLI) against timm in float64 on the bundled photos at
    299x299 (already the input size, so neither resizes them)."""
    import subprocess

    name, model = timm_model(weights)
    model = model.double()
    binary = os.path.join(ROOT, "target", "release", "xception")
    with tempfile.TemporaryDirectory() as tmp:
        from PIL import Image

        paths = []
        for label in LABELS:
            paths.append(os.path.join(tmp, f"{label}.png"))
            Image.fromarray(photo(label, 299, 299)).save(paths[-1])
        with torch.no_grad():
            want = model(torch.stack([network_input(photo(label, 299, 299)) for label in LABELS]).double()).numpy()
        for backend in backends:
            args = [binary, "classify", "--json", "--top", "1", "--backend", backend, "--weights", weights]
            out = subprocess.run(args + paths, capture_output=True, text=True, check=True).stdout
            got = np.array([json.loads(line)["logits"] for line in out.splitlines()])
            error = float(np.abs(got - want).max())
            print(f"{name} on {backend}: largest logit difference from timm (float64) {error:.2e}")
            assert error <= TOLERANCE, f"{backend}: {error:.2e} > {TOLERANCE}"


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    m = sub.add_parser("make", help="a converted checkpoint of a timm aligned Xception")
    m.add_argument("arch", choices=sorted(timm_aligned.NAMED))
    m.add_argument("-o", "--output", required=True)
    m.add_argument("--pretrained", action="store_true", help="timm's ImageNet weights (needs the hub)")
    b = sub.add_parser("bench", help="time ONNX Runtime on a converted checkpoint")
    b.add_argument("weights")
    b.add_argument("--size", type=int, action="append", default=None)
    b.add_argument("--batch", type=int, action="append", default=None)
    b.add_argument("--threads", type=int, default=os.cpu_count())
    b.add_argument("--runs", type=int, default=10)
    c = sub.add_parser("check", help="the runtime against timm on a converted checkpoint")
    c.add_argument("weights")
    c.add_argument("--backend", action="append", default=None, help="cpu, reference, gpu (default: cpu)")
    args = p.parse_args()
    if args.command == "make":
        make(args.arch, args.output, args.pretrained)
    elif args.command == "check":
        check(args.weights, args.backend or ["cpu"])
    else:
        bench(args.weights, args.size or [299], args.batch or [1], args.threads, args.runs)


if __name__ == "__main__":
    main()
