#!/usr/bin/env python3
"""Regenerate the Grad-CAM references in tests/golden/gradcam/<case>.safetensors.

The keras.io recipe "Grad-CAM class activation visualization" on the kitchenware
classifier that ``make_golden.py`` builds (same float16-rounded weights, float32
compute, CPU), for each golden case's ``pixels``:

    grad_model = keras.Model(model.inputs, [block14_sepconv2_act, logits])
    with tf.GradientTape() as tape:
        conv_output, logits = grad_model(x)
        class_channel = logits[:, class_index]
    grads = tape.gradient(class_channel, conv_output)
    pooled_grads = reduce_mean(grads, axis=(0, 1, 2))
    heatmap = maximum(conv_output[0] @ pooled_grads, 0) / reduce_max(...)

Each file holds, for the top class and for the class after it (``(top + 1) % 6``):

* ``heatmap_top``, ``heatmap_other``  float32 (h, w): the normalised heatmaps at
  the feature map's resolution
* ``features``  float32 (h, w, 2048): the feature map they were computed from
  (``block14_sepconv2_act``), so a test can check the Grad-CAM arithmetic on
  Keras' own features and a backend's feature map on its own

Metadata: ``top_class``, ``other_class`` (indices), ``case``.

Usage (from the repository root, with tests/golden/requirements.txt installed)::

    python tests/golden/make_gradcam.py
"""

from __future__ import annotations

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import make_golden  # noqa: E402  (sets the TensorFlow environment before importing it)
import numpy as np  # noqa: E402
from safetensors.numpy import load_file, save_file  # noqa: E402


def grad_cam(grad_model, x, class_index):
    import tensorflow as tf

    with tf.GradientTape() as tape:
        conv_output, logits = grad_model([x], training=False)
        class_channel = logits[:, class_index]
    grads = tape.gradient(class_channel, conv_output)
    pooled_grads = tf.reduce_mean(grads, axis=(0, 1, 2))
    heatmap = conv_output[0] @ pooled_grads[..., tf.newaxis]
    heatmap = tf.squeeze(heatmap)
    heatmap = tf.maximum(heatmap, 0) / tf.math.reduce_max(heatmap)
    return np.asarray(heatmap, dtype=np.float32)


def main():
    import keras

    model = make_golden.build_model()
    make_golden.load_weights(model, load_file(make_golden.DEFAULT_WEIGHTS))
    conv = model.get_layer("block14_sepconv2_act").output
    grad_model = keras.Model(model.inputs, [conv, model.outputs[1]])
    for case in make_golden.CASES:
        golden = load_file(os.path.join(HERE, f"{case}.safetensors"))
        x = make_golden.preprocess(golden["pixels"])[None]
        features, logits = grad_model([x], training=False)
        top = int(np.argmax(np.asarray(logits)[0]))
        other = (top + 1) % logits.shape[-1]
        heatmaps = {name: grad_cam(grad_model, x, c) for name, c in (("top", top), ("other", other))}
        path = os.path.join(HERE, "gradcam", f"{case}.safetensors")
        save_file(
            {
                **{f"heatmap_{name}": h for name, h in heatmaps.items()},
                "features": np.asarray(features[0], dtype=np.float32),
            },
            path,
            metadata={"case": case, "top_class": str(top), "other_class": str(other)},
        )
        os.chmod(path, 0o644)
        h = heatmaps["top"]
        print(f"{case:15s} top {top} other {other} heatmap {h.shape} argmax {np.unravel_index(h.argmax(), h.shape)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
