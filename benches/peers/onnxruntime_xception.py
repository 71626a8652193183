#!/usr/bin/env python3
"""Peer benchmark: the kitchenware Xception on ONNX Runtime (CPU execution provider).

Builds an ONNX graph (opset 17, NCHW, float32) of the network in
weights/xception_kitchenware.safetensors, the same weights the project loads:
every BatchNorm is folded into its preceding conv / pointwise conv, separable
convs are a depthwise Conv (group=C) followed by a 1x1 Conv, the TF 'same'
max-pools get explicit pads with the extra pixel bottom/right (so each model is
built for one fixed input size), and the head is GlobalAveragePool -> Dense(100,
ReLU) -> Dense(6). Outputs: ``logits`` [N,6] and ``embedding`` [N,2048].

Setup::

    python3 -m venv /tmp/ort-venv
    /tmp/ort-venv/bin/pip install onnx onnxruntime numpy safetensors

Usage (from the repository root)::

    /tmp/ort-venv/bin/python benches/peers/onnxruntime_xception.py --check
    /tmp/ort-venv/bin/python benches/peers/onnxruntime_xception.py --size 150 --size 299 --threads 2 --runs 20

``--export DIR`` writes the graph for each size as ``DIR/xception_SIZE.onnx``, what
``web/peers/`` runs on ONNX Runtime Web. ``--check`` runs every tests/golden/*.safetensors case (input =
pixels/127.5 - 1) and prints max |d| of embedding and logits against the Keras
goldens (tolerance 1e-4, as the Rust tests). Timing reports min and median
milliseconds of a run (batch 1 unless ``--batch``) on a fixed random input after 3 warm-up runs,
and GFLOP/s with GFLOP = 2 * MACs (conv, depthwise, pointwise and dense
multiply-accumulates counted from the graph: 1,924,602,856 at 150x150,
8,355,560,896 at 299x299).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import time

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from safetensors import safe_open

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WEIGHTS = os.path.join(ROOT, "weights", "xception_kitchenware.safetensors")
GOLDEN = os.path.join(ROOT, "tests", "golden")
TOLERANCE = 1e-4


def same_pads(n: int, k: int, s: int) -> tuple[int, int]:
    """TF 'same' padding (before, after) of one spatial axis; the extra pixel goes after."""
    out = -(-n // s)
    total = max((out - 1) * s + k - n, 0)
    return total // 2, total - total // 2


class Builder:
    """Emits the ONNX nodes of the network, tracking each tensor's (C, H, W) and the MACs."""

    def __init__(self, weights: dict[str, np.ndarray], eps: float):
        self.w = weights
        self.eps = np.float32(eps)
        self.shapes: dict[str, tuple[int, int, int]] = {}
        self.macs = 0
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []

    def node(self, op: str, inputs: list[str], prefix: str, shape: tuple[int, int, int] | None = None,
             out: str | None = None, **attrs) -> str:
        out = out or f"{prefix}_{len(self.nodes)}"
        self.nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))
        self.shapes[out] = shape or self.shapes[inputs[0]]
        return out

    def _const(self, name: str, array: np.ndarray) -> str:
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(array, dtype=np.float32), name))
        return name

    def _fold_bn(self, kernel: np.ndarray, bn: str) -> tuple[np.ndarray, np.ndarray]:
        """Fold inference BatchNorm `bn` into an OIHW kernel: returns (kernel, bias)."""
        g, b = self.w[f"{bn}.gamma"], self.w[f"{bn}.beta"]
        mean, var = self.w[f"{bn}.moving_mean"], self.w[f"{bn}.moving_variance"]
        scale = g / np.sqrt(var + self.eps)
        return kernel * scale[:, None, None, None], b - mean * scale

    def _conv(self, x: str, name: str, kernel: np.ndarray, bias: np.ndarray | None,
              stride: int, pads: list[int], group: int = 1) -> str:
        cout, cin_g, kh, kw = kernel.shape
        _, h, w = self.shapes[x]
        ho = (h + pads[0] + pads[2] - kh) // stride + 1
        wo = (w + pads[1] + pads[3] - kw) // stride + 1
        self.macs += ho * wo * cout * kh * kw * cin_g
        inputs = [x, self._const(f"{name}.W", kernel)]
        if bias is not None:
            inputs.append(self._const(f"{name}.B", bias))
        return self.node("Conv", inputs, name, (cout, ho, wo), kernel_shape=[kh, kw],
                         strides=[stride, stride], pads=pads, group=group)

    def conv_bn(self, x: str, conv: str, bn: str, stride: int, same: bool) -> str:
        """Conv2D (HWIO kernel, no bias) followed by BatchNorm, folded."""
        kernel, bias = self._fold_bn(self.w[f"{conv}.kernel"].transpose(3, 2, 0, 1), bn)
        _, h, w = self.shapes[x]
        kh, kw = kernel.shape[2:]
        (t, b), (l, r) = (same_pads(h, kh, stride), same_pads(w, kw, stride)) if same else ((0, 0), (0, 0))
        return self._conv(x, conv, kernel, bias, stride, [t, l, b, r])

    def sepconv_bn(self, x: str, sep: str) -> str:
        """SeparableConv2D 3x3/s1 'same' (depthwise + pointwise, no bias) + folded BatchNorm."""
        dw = self.w[f"{sep}.depthwise_kernel"].transpose(2, 3, 0, 1)  # (C,1,3,3)
        x = self._conv(x, f"{sep}.dw", dw, None, 1, [1, 1, 1, 1], group=dw.shape[0])
        pw, bias = self._fold_bn(self.w[f"{sep}.pointwise_kernel"].transpose(3, 2, 0, 1), f"{sep}_bn")
        return self._conv(x, f"{sep}.pw", pw, bias, 1, [0, 0, 0, 0])

    def relu(self, x: str) -> str:
        return self.node("Relu", [x], "relu")

    def add(self, a: str, b: str) -> str:
        assert self.shapes[a] == self.shapes[b], f"add shape mismatch {self.shapes[a]} vs {self.shapes[b]}"
        return self.node("Add", [a, b], "add")

    def maxpool(self, x: str) -> str:
        """MaxPooling2D 3x3/s2 'same' (padded cells never win: ONNX pads with -inf)."""
        c, h, w = self.shapes[x]
        (t, b), (l, r) = same_pads(h, 3, 2), same_pads(w, 3, 2)
        return self.node("MaxPool", [x], "pool", (c, -(-h // 2), -(-w // 2)),
                         kernel_shape=[3, 3], strides=[2, 2], pads=[t, l, b, r])

    def dense(self, x: str, name: str) -> str:
        kernel, bias = self.w[f"{name}.kernel"], self.w[f"{name}.bias"]
        self.macs += kernel.size
        return self.node("Gemm", [x, self._const(f"{name}.W", kernel), self._const(f"{name}.B", bias)],
                         name, (kernel.shape[1], 1, 1))


def load_weights(path: str) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    with safe_open(path, "np") as f:
        return {k: f.get_tensor(k).astype(np.float32) for k in f.keys()}, f.metadata()


def build_model(weights: dict[str, np.ndarray], meta: dict[str, str],
                height: int, width: int) -> tuple[onnx.ModelProto, int]:
    """The ONNX model for one input size (N,3,height,width), and its MACs per image."""
    head = json.loads(meta["head"])
    bld = Builder(weights, float(meta.get("bn_epsilon", "1e-3")))
    bld.shapes["input"] = (3, height, width)

    def strided_block(x: str, block: int, shortcut: str, leading_relu: bool = True) -> str:
        """[ReLU] sepconv BN ReLU sepconv BN maxpool, plus 1x1/s2 conv+BN shortcut from x."""
        y = bld.sepconv_bn(bld.relu(x) if leading_relu else x, f"block{block}_sepconv1")
        y = bld.maxpool(bld.sepconv_bn(bld.relu(y), f"block{block}_sepconv2"))
        bn = shortcut.replace("conv2d", "batch_normalization")
        return bld.add(y, bld.conv_bn(x, shortcut, bn, 2, same=True))

    # Entry flow. block2's input is already post-ReLU; the other residuals take the
    # pre-ReLU add output (ReLU nodes are never in place).
    x = bld.relu(bld.conv_bn("input", "block1_conv1", "block1_conv1_bn", 2, same=False))
    x = bld.relu(bld.conv_bn(x, "block1_conv2", "block1_conv2_bn", 1, same=False))
    x = strided_block(x, 2, "conv2d", leading_relu=False)
    x = strided_block(x, 3, "conv2d_1")
    x = strided_block(x, 4, "conv2d_2")
    # Middle flow: 8 x (3 x [ReLU, sepconv, BN]) + identity shortcut.
    for block in range(5, 13):
        y = x
        for i in (1, 2, 3):
            y = bld.sepconv_bn(bld.relu(y), f"block{block}_sepconv{i}")
        x = bld.add(y, x)
    # Exit flow: block13 as above; block14 has no leading ReLU and no shortcut, and is
    # sepconv -> BN -> ReLU twice.
    x = strided_block(x, 13, "conv2d_3")
    x = bld.relu(bld.sepconv_bn(x, "block14_sepconv1"))
    x = bld.relu(bld.sepconv_bn(x, "block14_sepconv2"))

    x = bld.node("GlobalAveragePool", [x], "gap", (bld.shapes[x][0], 1, 1))
    x = bld.node("Flatten", [x], "", out="embedding", axis=1)
    for layer in head:
        x = bld.dense(x, layer["name"])
        if layer["activation"] == "relu":
            x = bld.relu(x)
        elif layer["activation"] != "linear":
            raise ValueError(f"unsupported head activation {layer['activation']!r}")
    bld.node("Identity", [x], "", out="logits")

    graph = helper.make_graph(
        bld.nodes, "xception_kitchenware",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, height, width])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", head[-1]["units"]]),
         helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", bld.shapes["embedding"][0]])],
        bld.inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    return model, bld.macs


def session(model: onnx.ModelProto, threads: int) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def check(weights, meta, threads: int) -> bool:
    sessions: dict[tuple[int, int], ort.InferenceSession] = {}
    ok = True
    for path in sorted(glob.glob(os.path.join(GOLDEN, "*.safetensors"))):
        with safe_open(path, "np") as f:
            pixels, emb_ref, logits_ref = (f.get_tensor(k) for k in ("pixels", "embedding", "logits"))
        h, w = pixels.shape[:2]
        if (h, w) not in sessions:
            sessions[(h, w)] = session(build_model(weights, meta, h, w)[0], threads)
        x = (pixels.astype(np.float32) / np.float32(127.5) - np.float32(1.0)).transpose(2, 0, 1)[None]
        logits, emb = sessions[(h, w)].run(["logits", "embedding"], {"input": np.ascontiguousarray(x)})
        d_emb = float(np.abs(emb[0] - emb_ref).max())
        d_logits = float(np.abs(logits[0] - logits_ref).max())
        passed = max(d_emb, d_logits) <= TOLERANCE
        ok &= passed
        print(f"{os.path.basename(path):28s} {h}x{w}  max|d| embedding {d_emb:.2e}  "
              f"logits {d_logits:.2e}  {'ok' if passed else 'FAIL'}")
    return ok


def bench(weights, meta, size: int, batch: int, threads: int, runs: int) -> None:
    model, macs = build_model(weights, meta, size, size)
    macs *= batch
    sess = session(model, threads)
    x = np.random.default_rng(0).uniform(-1, 1, (batch, 3, size, size)).astype(np.float32)
    for _ in range(3):
        sess.run(["logits"], {"input": x})
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        sess.run(["logits"], {"input": x})
        times.append(time.perf_counter() - t0)
    med = float(np.median(times))
    print(f"{size}x{size}  batch {batch}  threads {threads}  runs {runs}  min {min(times) * 1e3:8.2f} ms  "
          f"median {med * 1e3:8.2f} ms  {2 * macs / med / 1e9:6.1f} GFLOP/s  (MACs {macs:,})")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--weights", default=WEIGHTS)
    ap.add_argument("--size", type=int, action="append", help="square input side (repeatable; default 150 and 299)")
    ap.add_argument("--batch", type=int, action="append", help="images per run (repeatable; default 1)")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--check", action="store_true", help="compare against tests/golden/*.safetensors and exit")
    ap.add_argument("--export", metavar="DIR",
                    help="write the graph for each --size to DIR/xception_SIZE.onnx (for ONNX Runtime Web) and exit")
    args = ap.parse_args()

    weights, meta = load_weights(args.weights)
    if args.export:
        os.makedirs(args.export, exist_ok=True)
        for size in args.size or [150, 299]:
            path = os.path.join(args.export, f"xception_{size}.onnx")
            model = build_model(weights, meta, size, size)[0]
            # IR 10 (opset 17 needs 8 or later), which every ONNX Runtime Web release reads.
            model.ir_version = min(model.ir_version, 10)
            onnx.save(model, path)
            print(f"wrote {path}")
        return 0
    print(f"onnxruntime {ort.__version__} (onnx {onnx.__version__}), CPUExecutionProvider")
    if args.check:
        return 0 if check(weights, meta, args.threads) else 1
    for size in args.size or [150, 299]:
        for batch in args.batch or [1]:
            bench(weights, meta, size, batch, args.threads, args.runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
