#!/usr/bin/env python3
"""Regenerate tests/golden/symmetric_pool/<case>.safetensors: the golden cases with timm's
max-pool padding.

timm's ``legacy_xception`` pools with ``MaxPool2d(3, 2, padding=1)``: one pixel on every
side, padded cells never winning. Keras pads 'same' (the extra pixel bottom/right). The two
differ wherever a pool sees an even-sized map. This script builds the kitchenware model as
``make_golden.py`` does, with every 'same' max-pool replaced by "pad 1 with -inf on every
side, then a valid 3x3/2 max-pool" (exactly timm's arithmetic, computed by TensorFlow), and
writes each golden case's ``embedding`` and ``logits`` (float32).

Usage (from the repository root, with tests/golden/requirements.txt installed)::

    python tests/golden/make_symmetric_pool.py
"""

from __future__ import annotations

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import make_golden  # noqa: E402  (sets the TensorFlow environment before importing it)
import numpy as np  # noqa: E402
from safetensors.numpy import load_file, save_file  # noqa: E402


def patch_max_pooling():
    """Makes Keras' 'same' MaxPooling2D pad symmetrically, as timm does."""
    import keras
    from keras.src import layers

    same_pool = layers.MaxPooling2D

    class SymmetricMaxPool(keras.layers.Layer):
        def call(self, x):
            padded = keras.ops.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]], constant_values=-np.inf)
            return keras.ops.max_pool(padded, 3, 2, padding="valid")

    def max_pooling(pool_size, strides=None, padding="valid", name=None, **kwargs):
        if padding == "same" and tuple(np.atleast_1d(pool_size)) in ((3,), (3, 3)):
            return SymmetricMaxPool(name=name)
        return same_pool(pool_size, strides=strides, padding=padding, name=name, **kwargs)

    layers.MaxPooling2D = max_pooling


def main():
    patch_max_pooling()
    model = make_golden.build_model()
    make_golden.load_weights(model, load_file(make_golden.DEFAULT_WEIGHTS))
    pools = [layer.name for layer in model.layers if "SymmetricMaxPool" in type(layer).__name__]
    assert len(pools) == 4, f"expected 4 patched max-pools, found {pools}"
    for case in make_golden.CASES:
        golden = load_file(os.path.join(HERE, f"{case}.safetensors"))
        x = make_golden.preprocess(golden["pixels"])[None]
        embedding, logits = (np.asarray(t, dtype=np.float32)[0] for t in model([x], training=False))
        path = os.path.join(HERE, "symmetric_pool", f"{case}.safetensors")
        save_file({"embedding": embedding, "logits": logits}, path, metadata={"case": case})
        os.chmod(path, 0o644)
        shift = float(np.abs(logits - golden["logits"]).max())
        print(f"{case:15s} max |logit - 'same' logit| {shift:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
