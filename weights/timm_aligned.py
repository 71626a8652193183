"""timm's aligned Xceptions (``timm/models/xception_aligned.py``) for ``convert.py``.

``xception41``, ``xception65``, ``xception71`` and the pre-activation ``xception41p`` and
``xception65p``: the variant is found from the state dict's tensor names and shapes (or named
with ``--arch``), its description written to the metadata's ``architecture`` (the block list
the runtime builds its graph from, ``src/architecture.rs``), and its tensors renamed by one
rule: timm's module path stays the layer name, and the variables take Keras' names and
layouts::

    <module>.weight (4-D)        -> <module>.kernel             OIHW -> HWIO
    <sep>.conv_dw.weight         -> <sep>.depthwise_kernel      (C,1,3,3) -> (3,3,C,1)
    <sep>.conv_pw.weight         -> <sep>.pointwise_kernel      (O,I,1,1) -> (1,1,I,O)
    <bn>.weight/bias/running_mean/running_var -> <bn>.gamma/beta/moving_mean/moving_variance
    head.fc.weight/bias          -> head.fc.kernel (in, out) / head.fc.bias

A checkpoint whose blocks have other channel counts than a named variant but its structure
(a narrow twin, a retrained width) converts as that variant with its own channels, named
``<variant>_custom``.
"""

from __future__ import annotations

import re
from collections import OrderedDict

import numpy as np

# timm's default_cfgs: every aligned checkpoint is 299x299, Inception mean/std (0.5, which is
# the runtime's `tf` preprocessing, x / 127.5 - 1), bicubic, centre-cropped: `ra3` weights at
# 0.94, the `tf` ports at 0.903.
INPUT_SIZE = [299, 299]
INTERPOLATION = "bicubic"
# name: (pre-activation, entry blocks (channels, stride), middle blocks, batchnorm epsilon,
# crop fraction of timm's default weights for the name)
NAMED = {
    "xception41": (False, [(128, 2), (256, 2), (728, 2)], 8, 1e-3, 0.903),
    "xception65": (False, [(128, 2), (256, 2), (728, 2)], 16, 1e-3, 0.94),
    "xception71": (False, [(128, 2), (256, 1), (256, 2), (728, 1), (728, 2)], 16, 1e-3, 0.903),
    # xception41p builds plain nn.BatchNorm2d (PyTorch's eps 1e-5); the others pass eps=.001.
    "xception41p": (True, [(128, 2), (256, 2), (728, 2)], 8, 1e-5, 0.94),
    "xception65p": (True, [(128, 2), (256, 2), (728, 2)], 16, 1e-3, 0.94),
}
BN_VARS = {"weight": "gamma", "bias": "beta", "running_mean": "moving_mean", "running_var": "moving_variance"}


class AlignedError(Exception):
    """A state dict that is not an aligned Xception, or not the one asked for."""


def description(name, channels=None):
    """The ``architecture`` metadata of variant ``name``: its blocks, with ``channels`` (one
    list of three per block) in place of timm's where given."""
    preact, entry, middle, _, _ = NAMED[name]
    blocks = [dict(channels=[c] * 3, stride=s, start_with_relu=True, skip=True) for c, s in entry]
    blocks += [dict(channels=[728] * 3, stride=1, start_with_relu=True, skip=True) for _ in range(middle)]
    blocks.append(dict(channels=[728, 1024, 1024], stride=2, start_with_relu=True, skip=True))
    blocks.append(dict(channels=[1536, 1536, 2048], stride=1, start_with_relu=False, skip=False))
    own_name = name
    if channels is not None:
        if [b["channels"] for b in blocks] != channels:
            own_name = f"{name}_custom"
        for b, c in zip(blocks, channels):
            b["channels"] = list(c)
    return {
        "name": own_name,
        "layout": "aligned_preact" if preact else "aligned",
        "stem": [32, 64],
        "blocks": blocks,
        "pool_padding": "tf_same",
        "output_stride": 32,
    }


def is_aligned(sd):
    return "stem.0.conv.weight" in sd


def _structure(sd):
    """(pre-activation, [(channels of the three convolutions, has a shortcut conv)]) of ``sd``."""
    preact = "blocks.0.norm.weight" in sd
    count = 1 + max((int(m.group(1)) for k in sd if (m := re.match(r"blocks\.(\d+)\.", k))), default=-1)
    blocks = []
    for i in range(count):
        channels = []
        for j in (1, 2, 3):
            w = sd.get(f"blocks.{i}.stack.conv{j}.conv_pw.weight")
            if w is None:
                raise AlignedError(f"missing blocks.{i}.stack.conv{j}.conv_pw.weight")
            channels.append(int(np.asarray(w).shape[0]))
        shortcut = f"blocks.{i}.shortcut.weight" in sd or f"blocks.{i}.shortcut.conv.weight" in sd
        blocks.append((channels, shortcut))
    return preact, blocks


def _named_structure(name):
    d = description(name)
    blocks, cin = [], 64
    for b in d["blocks"]:
        cout = b["channels"][-1]
        blocks.append((b["channels"], b["skip"] and (b["stride"] != 1 or cin != cout)))
        cin = cout
    return d["layout"] == "aligned_preact", blocks


def identify(sd, arch=None):
    """The variant of ``sd`` (``arch`` where given, which must fit): (name, description, eps)."""
    preact, blocks = _structure(sd)
    channels = [c for c, _ in blocks]
    shape = lambda structure: (structure[0], len(structure[1]), [s for _, s in structure[1]])  # noqa: E731
    candidates = [arch] if arch else list(NAMED)
    for name in candidates:
        if name not in NAMED:
            raise AlignedError(f"--arch {name}: not one of {', '.join(NAMED)}")
        if shape(_named_structure(name)) == shape((preact, blocks)):
            return name, description(name, channels), NAMED[name][3]
    found = f"{len(blocks)} blocks{', pre-activation' if preact else ''}"
    if arch:
        raise AlignedError(f"the checkpoint ({found}) is not a {arch}")
    raise AlignedError(f"no aligned Xception has this layout ({found}); name it with --arch")


def _convert_key(key, a, batch_norms):
    """(name, array) of timm tensor ``key`` in the runtime's names and layouts, or None to drop;
    ``batch_norms`` are the modules with running statistics."""
    module, _, var = key.rpartition(".")
    if var == "num_batches_tracked":
        return None
    if a.ndim == 4:
        if var != "weight":
            raise AlignedError(f"{key}: convolution biases are not supported")
        if module.endswith(".conv_dw"):
            return f"{module[: -len('.conv_dw')]}.depthwise_kernel", a.transpose(2, 3, 0, 1)
        if module.endswith(".conv_pw"):
            return f"{module[: -len('.conv_pw')]}.pointwise_kernel", a.transpose(2, 3, 1, 0)
        return f"{module}.kernel", a.transpose(2, 3, 1, 0)
    if module == "head.fc" and var in ("weight", "bias"):
        return (f"{module}.kernel", a.T) if var == "weight" else (f"{module}.bias", a)
    if a.ndim == 1 and var in BN_VARS and module in batch_norms:
        return f"{module}.{BN_VARS[var]}", a
    raise AlignedError(f"{key}: unexpected tensor of shape {tuple(a.shape)}")


def load(sd, arch=None, head_activations=None):
    """Converts timm state dict ``sd``: (tensors, head, description, eps, name)."""
    name, arch_description, eps = identify(sd, arch)
    batch_norms = {k.rpartition(".")[0] for k in sd if k.endswith(".running_var")}
    tensors = OrderedDict()
    for key, a in sd.items():
        converted = _convert_key(key, np.asarray(a, dtype=np.float32), batch_norms)
        if converted is not None:
            tensors[converted[0]] = np.ascontiguousarray(converted[1])
    head = []
    if "head.fc.kernel" in tensors:
        if head_activations is not None and len(head_activations) != 1:
            raise AlignedError(f"--head-activations gives {len(head_activations)} activations; the timm head has 1")
        units = int(tensors["head.fc.kernel"].shape[1])
        act = head_activations[0] if head_activations else "softmax"
        head.append({"name": "head.fc", "units": units, "activation": act})
    return tensors, head, arch_description, eps, name


def to_timm(tensors):
    """The inverse of the renaming in :func:`load`: converted ``tensors`` (numpy arrays, the
    runtime's names and layouts) as a timm state dict."""
    sd = OrderedDict()
    bn_vars = {v: k for k, v in BN_VARS.items()}
    for name, a in tensors.items():
        module, _, var = name.rpartition(".")
        a = np.asarray(a, dtype=np.float32)
        if var == "depthwise_kernel":
            sd[f"{module}.conv_dw.weight"] = a.transpose(2, 3, 0, 1)
        elif var == "pointwise_kernel":
            sd[f"{module}.conv_pw.weight"] = a.transpose(3, 2, 0, 1)
        elif var == "kernel" and a.ndim == 4:
            sd[f"{module}.weight"] = a.transpose(3, 2, 0, 1)
        elif var == "kernel":
            sd[f"{module}.weight"] = a.T
        elif var == "bias" and module == "head.fc":
            sd[f"{module}.bias"] = a
        elif var in bn_vars:
            sd[f"{module}.{bn_vars[var]}"] = a
        else:
            raise AlignedError(f"{name}: not a tensor of a converted aligned Xception")
    return OrderedDict((k, np.ascontiguousarray(v)) for k, v in sd.items())
