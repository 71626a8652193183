"""The timm ``legacy_xception`` checkpoint of the timm conformance test, from committed files.

Its convolutions are the bundled kitchenware backbone's (``weights/xception_kitchenware.safetensors``,
float16 values), laid out as timm stores them; its batch norms and its 6-class ``fc`` come from
``tests/golden/timm/bn_and_fc.safetensors``, which ``make_timm.py`` wrote after calibrating the
batch-norm statistics in timm on real photos. So a float32 checkpoint of 91 MB is rebuilt from
0.5 MB of committed data, with numpy alone.

The layout follows timm's ``timm/models/xception.py`` by way of ``convert.timm_xception_spec``
(the converter's own table): if that table were wrong, timm would compute with weights in the
wrong places and the conformance test, which converts this checkpoint back, would disagree
with timm's outputs.
"""

from __future__ import annotations

import os
import sys

import numpy as np
from safetensors.numpy import load_file

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "weights"))

import convert  # noqa: E402

BUNDLED = os.path.join(ROOT, "weights", "xception_kitchenware.safetensors")
BN_AND_FC = os.path.join(HERE, "timm", "bn_and_fc.safetensors")
# The golden cases in tests/golden/timm/: (case, bundled photo, height, width). Every size makes
# some max-pool see an even-sized map, where timm's padding and Keras' differ.
CASES = [
    ("plate_299", "plate", 299, 299),
    ("cup_299", "cup", 299, 299),
    ("glass_224", "glass", 224, 224),
    ("knife_224", "knife", 224, 224),
    ("fork_171x203", "fork", 171, 203),
    ("spoon_171x203", "spoon", 171, 203),
    ("cup_150", "cup", 150, 150),
]


def cases_by_size():
    """{(height, width): [case, ...]} of ``CASES``."""
    sizes = {}
    for case, _, height, width in CASES:
        sizes.setdefault((height, width), []).append(case)
    return sizes


def backbone_state_dict(bundled_path=BUNDLED):
    """timm state dict (float32, timm names and layouts) of the bundled backbone, batch norms
    included (Keras' own statistics)."""
    keras = {k: v.astype(np.float32) for k, v in load_file(bundled_path).items()}
    sd = {}
    for keras_name, kind, prefix, _ in convert.timm_xception_spec():
        if kind == "conv":
            sd[f"{prefix}.weight"] = keras[f"{keras_name}.kernel"].transpose(3, 2, 0, 1)  # HWIO -> OIHW
        elif kind == "sep":
            sd[f"{prefix}.conv1.weight"] = keras[f"{keras_name}.depthwise_kernel"].transpose(2, 3, 0, 1)
            sd[f"{prefix}.pointwise.weight"] = keras[f"{keras_name}.pointwise_kernel"].transpose(3, 2, 0, 1)
        else:
            for timm_var, keras_var in convert.TIMM_BN_VARS:
                sd[f"{prefix}.{timm_var}"] = keras[f"{keras_name}.{keras_var}"]
    return {k: np.ascontiguousarray(v) for k, v in sd.items()}


def timm_state_dict(bundled_path=BUNDLED, bn_and_fc_path=BN_AND_FC):
    """The conformance test's checkpoint: the bundled convolutions with the committed batch norms
    and fc."""
    sd = backbone_state_dict(bundled_path)
    overrides = load_file(bn_and_fc_path)
    unknown = sorted(set(overrides) - set(sd) - {"fc.weight", "fc.bias"})
    assert not unknown, f"{bn_and_fc_path}: tensors that are not batch norms or fc: {unknown[:5]}"
    sd.update(overrides)
    return sd
