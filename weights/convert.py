#!/usr/bin/env python3
"""Convert an Xception checkpoint (Keras or timm) to a safetensors file for xception-wgpu.

Supported inputs
----------------
* A Keras 3 ``.keras`` archive (zip holding ``config.json`` and
  ``model.weights.h5``), e.g. a stock ``keras.applications.Xception`` backbone
  (``include_top=False``) followed by ``GlobalAveragePooling2D`` and one or more
  ``Dense`` layers (``Dropout`` layers are ignored). Inside ``model.weights.h5``
  variables are stored under class-counter names
  (``layers/functional/layers/conv2d_1/vars/0`` is ``block1_conv2``), so the
  real Keras layer names are recovered by walking ``config.json`` in order.
  Optimizer state in the archive is ignored.
* A Keras 3 weights-only ``.weights.h5`` file (``model.save_weights``, or
  ``ModelCheckpoint(save_weights_only=True)``; the same layout as the archive's
  ``model.weights.h5``) with the model's config: ``--config`` names a ``.keras``
  archive or a JSON config (``model.to_json()``), or ``NAME.keras`` or
  ``config.json`` lies beside ``NAME.weights.h5``.
* A Keras 2 weights-only ``.h5`` file such as the stock
  ``xception_weights_tf_dim_ordering_tf_kernels.h5`` (1000-class ImageNet head
  in a layer called ``predictions``) or
  ``xception_weights_tf_dim_ordering_tf_kernels_notop.h5`` (no head). Whole-model
  Keras 2 ``.h5`` files (weights under ``model_weights``) work too.
* A timm ``legacy_xception`` state dict: the Hugging Face hub
  ``model.safetensors``, or a PyTorch ``.pth``/``.bin`` (read with torch, which
  is imported only for these; optionally wrapped in ``{'state_dict': ...}`` or
  ``{'model': ...}``, keys optionally prefixed ``module.``). timm's modules are
  mapped to the Keras layer names (``conv1`` -> ``block1_conv1``, ``blockN`` ->
  Keras ``block{N+1}``, ``blockN.skip`` -> ``conv2d_k``, ``conv3``/``conv4`` ->
  ``block14_sepconv1/2``, ``fc`` -> ``predictions``) and transposed from
  OIHW / ``(out, in)`` to the Keras layouts below; ``num_batches_tracked`` is
  dropped. See ``timm_xception_spec``.

Output
------
One tensor per variable, named ``<keras_layer_name>.<variable>`` with variable
in {kernel, bias, depthwise_kernel, pointwise_kernel, gamma, beta, moving_mean,
moving_variance}, in Keras layouts: Conv2D kernels HWIO ``(kh, kw, cin, cout)``,
depthwise ``(3, 3, C, 1)``, pointwise ``(1, 1, Cin, Cout)``, Dense ``(in, out)``.
The four residual shortcut convolutions and their batch norms always get the
canonical names ``conv2d``, ``conv2d_1``..``conv2d_3`` and
``batch_normalization``, ``batch_normalization_1``..``_3`` (assigned by graph
order), whatever auto-generated names the source file used.

``__metadata__`` (all values are strings):

* ``format``        ``xception-keras/1``
* ``input_size``    JSON ``[height, width]``
* ``labels``        JSON list of class names (``[]`` without a head)
* ``preprocessing`` ``tf`` (RGB, ``x / 127.5 - 1``)
* ``head``          JSON list of dense layers in order, each
                    ``{"name": ..., "units": ..., "activation": relu|linear|softmax}``
* ``bn_epsilon``    batch-norm epsilon of the source model (``0.001`` for
                    Keras, ``1e-05`` for timm), ``--bn-epsilon`` overrides
* ``source``        short description of the input file

Examples::

    python weights/convert.py kitchenware_xception_model_val-acc_0.901.keras \\
        -o weights/xception_kitchenware.safetensors
    python weights/convert.py xception_weights_tf_dim_ordering_tf_kernels.h5 \\
        -o xception_imagenet.safetensors
    python weights/convert.py model.safetensors -o legacy_xception.safetensors
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import sys
import zipfile
from collections import OrderedDict

import h5py
import numpy as np
from safetensors.numpy import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import timm_aligned  # noqa: E402

FORMAT = "xception-keras/1"
BN_EPSILON = 1e-3
KITCHENWARE_LABELS = ["cup", "fork", "glass", "knife", "plate", "spoon"]
IMAGENET_LABELS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "imagenet_labels.txt")
ALLOWED_ACTIVATIONS = ("relu", "linear", "softmax")
VARIABLES = (
    "kernel",
    "bias",
    "depthwise_kernel",
    "pointwise_kernel",
    "gamma",
    "beta",
    "moving_mean",
    "moving_variance",
)
BN_VARS = ("gamma", "beta", "moving_mean", "moving_variance")


class ConvertError(Exception):
    """A problem with the input file; reported without a traceback."""


# --------------------------------------------------------------------------
# Reference architecture
# --------------------------------------------------------------------------


def xception_backbone_spec():
    """Ordered list of (tensor_name, shape) of the stock Xception backbone.

    Graph order, as in ``keras.applications.Xception(include_top=False)``.
    """
    spec = []

    def bn(name, c):
        for v in BN_VARS:
            spec.append((f"{name}.{v}", (c,)))

    def conv(name, k, cin, cout):
        spec.append((f"{name}.kernel", (k, k, cin, cout)))

    def sep(name, cin, cout):
        spec.append((f"{name}.depthwise_kernel", (3, 3, cin, 1)))
        spec.append((f"{name}.pointwise_kernel", (1, 1, cin, cout)))
        bn(f"{name}_bn", cout)

    conv("block1_conv1", 3, 3, 32)
    bn("block1_conv1_bn", 32)
    conv("block1_conv2", 3, 32, 64)
    bn("block1_conv2_bn", 64)
    entry = [(2, 64, 128), (3, 128, 256), (4, 256, 728)]
    for i, (block, cin, cout) in enumerate(entry):
        sep(f"block{block}_sepconv1", cin, cout)
        sep(f"block{block}_sepconv2", cout, cout)
        conv(_shortcut_conv(i), 1, cin, cout)
        bn(_shortcut_bn(i), cout)
    for block in range(5, 13):
        for j in (1, 2, 3):
            sep(f"block{block}_sepconv{j}", 728, 728)
    sep("block13_sepconv1", 728, 728)
    sep("block13_sepconv2", 728, 1024)
    conv(_shortcut_conv(3), 1, 728, 1024)
    bn(_shortcut_bn(3), 1024)
    sep("block14_sepconv1", 1024, 1536)
    sep("block14_sepconv2", 1536, 2048)
    return spec


def _shortcut_conv(i):
    return "conv2d" if i == 0 else f"conv2d_{i}"


def _shortcut_bn(i):
    return "batch_normalization" if i == 0 else f"batch_normalization_{i}"


BACKBONE_LAYER_RE = re.compile(r"^block\d+_")


def _canonicalize_shortcuts(layers):
    """Rename the residual 1x1 convs / their BNs by graph order.

    ``layers`` is an ordered list of (layer_name, {var: array}); layers whose
    names start with ``blockN_`` or that are Dense layers are left alone.
    Returns a new list.
    """
    out = []
    n_conv = n_bn = 0
    for name, vars_ in layers:
        if BACKBONE_LAYER_RE.match(name) or _is_dense(vars_):
            out.append((name, vars_))
            continue
        if set(vars_) == {"kernel"} and vars_["kernel"].ndim == 4 and vars_["kernel"].shape[:2] == (1, 1):
            out.append((_shortcut_conv(n_conv), vars_))
            n_conv += 1
        elif set(vars_) >= {"moving_mean", "moving_variance"}:
            out.append((_shortcut_bn(n_bn), vars_))
            n_bn += 1
        else:
            out.append((name, vars_))
    if n_conv != n_bn:
        raise ConvertError(
            f"found {n_conv} residual 1x1 convolutions but {n_bn} unnamed batch norms; "
            "this does not look like an Xception checkpoint"
        )
    return out


def _is_dense(vars_):
    k = vars_.get("kernel")
    return k is not None and k.ndim == 2


def _check_backbone(tensors):
    """Fail unless ``tensors`` holds the full Xception backbone with stock shapes."""
    missing, wrong = [], []
    for name, shape in xception_backbone_spec():
        if name not in tensors:
            missing.append(name)
        elif tuple(tensors[name].shape) != shape:
            wrong.append(f"{name}: {tuple(tensors[name].shape)} (expected {shape})")
    if missing or wrong:
        msg = ["input is not a stock Xception backbone:"]
        if missing:
            msg.append(f"  {len(missing)} missing tensors, e.g. {', '.join(missing[:5])}")
        if wrong:
            msg.append("  wrong shapes: " + "; ".join(wrong[:5]))
        raise ConvertError("\n".join(msg))


# --------------------------------------------------------------------------
# Keras 3 .keras archives
# --------------------------------------------------------------------------


def _snake(class_name):
    """Keras' ``naming.to_snake_case`` (used for the h5 group names)."""
    name = re.sub(r"\W+", "", class_name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    name = re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()
    return name


def _layer_var_names(class_name, cfg):
    """Variable names, in storage order, of a Keras 3 layer; None if unsupported."""
    if class_name == "Conv2D":
        return ["kernel"] + (["bias"] if cfg.get("use_bias", True) else [])
    if class_name == "SeparableConv2D":
        return ["depthwise_kernel", "pointwise_kernel"] + (["bias"] if cfg.get("use_bias", True) else [])
    if class_name == "Dense":
        return ["kernel"] + (["bias"] if cfg.get("use_bias", True) else [])
    if class_name == "BatchNormalization":
        names = []
        if cfg.get("scale", True):
            names.append("gamma")
        if cfg.get("center", True):
            names.append("beta")
        return names + ["moving_mean", "moving_variance"]
    if class_name in (
        "InputLayer",
        "Activation",
        "ReLU",
        "Add",
        "MaxPooling2D",
        "GlobalAveragePooling2D",
        "Dropout",
        "Flatten",
    ):
        return []
    return None


def _check_rescaling(name, cfg):
    """Accepts a Rescaling layer that is exactly the runtime's preprocessing, x / 127.5 - 1 (the
    runtime applies it to every image, so the layer itself is dropped); refuses any other."""
    scale, offset = cfg.get("scale", 1.0), cfg.get("offset", 0.0)
    if not (isinstance(scale, (int, float)) and isinstance(offset, (int, float))):
        raise ConvertError(f"Rescaling layer '{name}': per-channel scale {scale!r} / offset {offset!r} "
                           "is not the runtime's preprocessing (x / 127.5 - 1)")
    if abs(scale - 1 / 127.5) > 1e-9 or abs(offset + 1) > 1e-9:
        raise ConvertError(
            f"Rescaling layer '{name}' computes x * {scale} + {offset}; the runtime's preprocessing is "
            "x / 127.5 - 1 (Rescaling(1/127.5, offset=-1)), the only one it can represent"
        )


def _walk_keras3(container_cfg, group, path, out_layers, bn_eps):
    """Walk a Functional/Sequential config in layer order, reading variables.

    Appends (layer_name, class_name, cfg, {var: array}) to ``out_layers``.
    """
    counters = {}
    layers_group = group.get("layers")
    for layer in container_cfg["layers"]:
        cls = layer["class_name"]
        cfg = layer["config"]
        name = cfg.get("name", layer.get("name"))
        snake = _snake(cls)
        k = counters.get(snake, 0)
        counters[snake] = k + 1
        key = snake if k == 0 else f"{snake}_{k}"
        sub = layers_group.get(key) if layers_group is not None else None
        where = f"{path}/layers/{key}"
        if cls in ("Functional", "Sequential", "Model"):
            if sub is None:
                raise ConvertError(f"nested model '{name}' not found in weights file at {where}")
            _walk_keras3(cfg, sub, where, out_layers, bn_eps)
            continue
        if cls == "Rescaling":
            _check_rescaling(name, cfg)
            continue
        var_names = _layer_var_names(cls, cfg)
        if var_names is None:
            raise ConvertError(f"unsupported layer '{name}' of class {cls}")
        if cls == "BatchNormalization":
            bn_eps.append((name, float(cfg.get("epsilon", 1e-3))))
        vars_ = OrderedDict()
        if var_names:
            if sub is None or "vars" not in sub:
                raise ConvertError(f"layer '{name}' ({cls}): no variables at {where}/vars")
            stored = sub["vars"]
            if len(stored) != len(var_names):
                raise ConvertError(
                    f"layer '{name}' ({cls}): expected {len(var_names)} variables at {where}/vars, "
                    f"found {len(stored)}"
                )
            for i, v in enumerate(var_names):
                vars_[v] = np.asarray(stored[str(i)][()])
        out_layers.append((name, cls, cfg, vars_))


def _input_size_from_config(model_cfg):
    for layer in model_cfg.get("layers", []):
        if layer["class_name"] == "InputLayer":
            c = layer["config"]
            shape = c.get("batch_shape") or c.get("batch_input_shape")
            if shape and len(shape) == 4 and shape[1] and shape[2]:
                return [int(shape[1]), int(shape[2])]
            return None
    return None


# Layers every Xception has, by their Keras Applications names.
XCEPTION_LAYERS = {"block1_conv1", "block14_sepconv2"}


def _layer_names(model_cfg):
    """Every layer name of a Keras model config, nested models included."""
    for layer in model_cfg.get("layers", []):
        cfg = layer.get("config", {})
        yield cfg.get("name", layer.get("name"))
        if layer.get("class_name") in ("Functional", "Sequential", "Model"):
            yield from _layer_names(cfg)


def _read_keras_archive(path):
    """(config, metadata, model.weights.h5 bytes) of a ``.keras`` archive."""
    try:
        zf = zipfile.ZipFile(path)
    except zipfile.BadZipFile as e:
        raise ConvertError(f"{path}: not a .keras zip archive ({e})")
    with zf:
        names = zf.namelist()
        if "config.json" not in names or "model.weights.h5" not in names:
            raise ConvertError(f"{path}: archive lacks config.json or model.weights.h5 (has {names})")
        try:
            config = json.loads(zf.read("config.json"))
            meta = json.loads(zf.read("metadata.json")) if "metadata.json" in names else {}
            h5_bytes = zf.read("model.weights.h5")
        except (zipfile.BadZipFile, OSError, ValueError) as e:
            raise ConvertError(f"{path}: the archive is damaged ({e})")
    return config, meta, h5_bytes


def _read_model_config(path):
    """(config, metadata) from a ``.keras`` archive or a JSON model config.

    The JSON may be what ``model.to_json()`` returns (or an archive's
    ``config.json``), or the bare ``model.get_config()`` dictionary.
    """
    if zipfile.is_zipfile(path):
        config, meta, _ = _read_keras_archive(path)
        return config, meta
    try:
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
    except OSError as e:
        raise ConvertError(f"{path}: cannot read the model config ({e.strerror})")
    except ValueError as e:
        raise ConvertError(f"{path}: not a .keras archive or a JSON model config ({e})")
    if isinstance(config, dict) and "layers" in config and "class_name" not in config:
        config = {"class_name": "Functional", "config": config}
    return config, {}


def is_keras3_weights_only(path):
    """Whether ``path`` is what Keras 3's ``save_weights`` writes: variables, no architecture."""
    try:
        with h5py.File(path, "r") as f:
            root = f["model_weights"] if "model_weights" in f else f
            return "layer_names" not in root.attrs and "layers" in f
    except OSError:
        return False


def find_model_config(weights_path):
    """The model config beside a Keras 3 weights-only file: ``NAME.keras`` for
    ``NAME.weights.h5`` (or ``NAME.h5``), else ``config.json`` in its folder."""
    folder, base = os.path.split(os.path.abspath(weights_path))
    stem = re.sub(r"(\.weights)?\.h5$", "", base)
    for candidate in (os.path.join(folder, stem + ".keras"), os.path.join(folder, "config.json")):
        if os.path.isfile(candidate):
            return candidate
    return None


def load_keras3(path):
    """A Keras 3 ``.keras`` archive."""
    config, meta, h5_bytes = _read_keras_archive(path)
    try:
        weights_file = h5py.File(io.BytesIO(h5_bytes), "r")
    except OSError as e:
        raise ConvertError(f"{path}: model.weights.h5 inside the archive is damaged or truncated ({e})")
    version = meta.get("keras_version")
    source = os.path.basename(path) + (f" (Keras {version} .keras archive)" if version else " (Keras .keras archive)")
    return _load_keras3_model(path, config, weights_file, source)


def load_keras3_weights(path, config_path):
    """A Keras 3 weights-only file (``save_weights``) with the model config in ``config_path``."""
    config, _ = _read_model_config(config_path)
    try:
        weights_file = h5py.File(path, "r")
    except OSError as e:
        raise ConvertError(f"{path}: cannot open as HDF5 ({e})")
    source = f"{os.path.basename(path)} (Keras 3 weights, config from {os.path.basename(config_path)})"
    return _load_keras3_model(config_path, config, weights_file, source)


def _load_keras3_model(config_path, config, weights_file, source):
    """Read an Xception from a Keras 3 model config and its open weights file (closed here)."""
    with weights_file:
        if not isinstance(config, dict) or config.get("class_name") not in ("Functional", "Sequential", "Model"):
            found = config.get("class_name") if isinstance(config, dict) else type(config).__name__
            raise ConvertError(f"{config_path}: top-level object is {found}, expected a Keras model")
        model_cfg = config["config"]
        layer_names = set(_layer_names(model_cfg))
        if not XCEPTION_LAYERS <= layer_names:
            raise ConvertError(
                f"{config_path}: not an Xception model (it has no "
                f"{', '.join(sorted(XCEPTION_LAYERS - layer_names))} layer); this converter reads "
                "Keras Applications' Xception and timm's legacy_xception"
            )
        layers, bn_eps = [], []
        _walk_keras3(model_cfg, weights_file, "", layers, bn_eps)

    # epsilon check: one epsilon for all 40 BNs (keras.applications uses 1e-3)
    if len(bn_eps) != 40:
        raise ConvertError(f"expected 40 BatchNormalization layers, config has {len(bn_eps)}")
    eps = bn_eps[0][1]
    bad = [(n, e) for n, e in bn_eps if e != eps]
    if bad:
        raise ConvertError(
            f"all BatchNormalization layers must share one epsilon; {bn_eps[0][0]} has {eps}, "
            f"but: {bad[:5]}"
        )

    head = []
    for name, cls, cfg, _ in layers:
        if cls == "Dense":
            act = cfg.get("activation", "linear")
            if not isinstance(act, str) or act not in ALLOWED_ACTIVATIONS:
                raise ConvertError(f"Dense layer '{name}' has unsupported activation {act!r}")
            head.append({"name": name, "units": int(cfg["units"]), "activation": act})
    plain = [(name, vars_) for name, _, _, vars_ in layers if vars_]

    # the backbone input may carry the size when the outer input does not
    input_size = _input_size_from_config(model_cfg)
    if input_size is None:
        for layer in model_cfg.get("layers", []):
            if layer["class_name"] in ("Functional", "Sequential", "Model"):
                input_size = _input_size_from_config(layer["config"])
                if input_size:
                    break
    return plain, head, input_size, source, eps


# --------------------------------------------------------------------------
# Keras 2 weights-only h5
# --------------------------------------------------------------------------


def _decode(x):
    return x.decode("utf8") if isinstance(x, bytes) else str(x)


def load_keras2_h5(path, head_activations=None):
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise ConvertError(f"{path}: cannot open as HDF5 ({e})")
    with f:
        root = f["model_weights"] if "model_weights" in f else f
        if "layer_names" not in root.attrs:
            raise ConvertError(
                f"{path}: no 'layer_names' attribute; not a Keras 2 weights file "
                "(Keras 3 files must be given as the .keras archive)"
            )
        layers = OrderedDict()
        for group_name in (_decode(n) for n in root.attrs["layer_names"]):
            g = root[group_name]
            for wn in (_decode(n) for n in g.attrs.get("weight_names", [])):
                parts = wn.split("/")
                var = parts[-1].split(":")[0]
                layer = parts[-2] if len(parts) >= 2 else group_name
                if var not in VARIABLES:
                    raise ConvertError(f"{path}: unknown variable '{wn}' in layer '{group_name}'")
                if wn in g:
                    arr = np.asarray(g[wn][()])
                elif wn.split("/", 1)[-1] in g:  # some writers drop the layer prefix
                    arr = np.asarray(g[wn.split("/", 1)[-1]][()])
                else:
                    raise ConvertError(f"{path}: dataset '{group_name}/{wn}' listed but missing")
                vars_ = layers.setdefault(layer, OrderedDict())
                if var in vars_:
                    raise ConvertError(f"{path}: duplicate variable {layer}/{var}")
                vars_[var] = arr
    plain = list(layers.items())

    dense = [name for name, v in plain if _is_dense(v)]
    if head_activations is not None and len(head_activations) != len(dense):
        raise ConvertError(
            f"--head-activations gives {len(head_activations)} activations but the file has "
            f"{len(dense)} dense layers ({dense})"
        )
    head = []
    for i, name in enumerate(dense):
        if head_activations is not None:
            act = head_activations[i]
        elif name == "predictions":
            act = "softmax"  # keras.applications classifier head
        elif i == len(dense) - 1:
            act = "linear"
        else:
            act = "relu"
        units = int(dict(plain)[name]["kernel"].shape[1])
        head.append({"name": name, "units": units, "activation": act})
    if dense and head_activations is None and dense != ["predictions"]:
        print(
            f"warning: activations of dense layers {dense} are not stored in a Keras 2 weights file; "
            f"assumed {[h['activation'] for h in head]} (override with --head-activations)",
            file=sys.stderr,
        )
    # a weights-only file does not record the epsilon; keras.applications uses 1e-3
    return plain, head, None, os.path.basename(path) + " (Keras 2 weights h5)", BN_EPSILON


# --------------------------------------------------------------------------
# timm / PyTorch legacy_xception state dicts
# --------------------------------------------------------------------------

# timm/models/xception.py builds every batch norm as nn.BatchNorm2d(C) without
# an eps argument, i.e. PyTorch's default eps=1e-5 (Keras uses 1e-3).
TIMM_BN_EPSILON = 1e-5
# timm's evaluation transform for legacy_xception.tf_in1k: bicubic, centre crop 0.8975.
TIMM_LEGACY_CROP = 0.8975
TORCH_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")
TIMM_BN_VARS = (("weight", "gamma"), ("bias", "beta"), ("running_mean", "moving_mean"), ("running_var", "moving_variance"))
# timm Block(in, out, reps, strides, start_with_relu, grow_first) for block1..block12
TIMM_BLOCKS = (
    [(64, 128, 2, 2, False, True), (128, 256, 2, 2, True, True), (256, 728, 2, 2, True, True)]
    + [(728, 728, 3, 1, True, True)] * 8
    + [(728, 1024, 2, 2, True, False)]
)


def timm_xception_spec():
    """Ordered list of (keras_layer, kind, timm_prefix, channels) of the backbone.

    ``kind`` is ``conv`` (channels (cin, cout, k)), ``sep`` (channels (cin, cout))
    or ``bn`` (channels (c,)). Keras graph order, as ``xception_backbone_spec``.

    timm's ``Block`` builds ``rep`` as [ReLU, SeparableConv2d, BatchNorm2d] per
    repetition, drops the leading ReLU when ``start_with_relu=False`` (block1
    only) and appends a MaxPool2d when strided, so the separable conv ``j`` of a
    block sits at ``rep.{o + 3j}`` and its batch norm at ``rep.{o + 3j + 1}``
    with ``o = 0`` for block1 and ``o = 1`` otherwise.
    """
    spec = [
        ("block1_conv1", "conv", "conv1", (3, 32, 3)),
        ("block1_conv1_bn", "bn", "bn1", (32,)),
        ("block1_conv2", "conv", "conv2", (32, 64, 3)),
        ("block1_conv2_bn", "bn", "bn2", (64,)),
    ]
    n_short = 0
    for b, (cin, cout, reps, stride, start_relu, grow_first) in enumerate(TIMM_BLOCKS, start=1):
        o = 1 if start_relu else 0
        for j in range(reps):
            if grow_first:
                c0, c1 = (cin if j == 0 else cout), cout
            else:
                c0, c1 = cin, (cin if j < reps - 1 else cout)
            spec.append((f"block{b + 1}_sepconv{j + 1}", "sep", f"block{b}.rep.{o + 3 * j}", (c0, c1)))
            spec.append((f"block{b + 1}_sepconv{j + 1}_bn", "bn", f"block{b}.rep.{o + 3 * j + 1}", (c1,)))
        if cin != cout or stride != 1:
            spec.append((_shortcut_conv(n_short), "conv", f"block{b}.skip", (cin, cout, 1)))
            spec.append((_shortcut_bn(n_short), "bn", f"block{b}.skipbn", (cout,)))
            n_short += 1
    spec += [
        ("block14_sepconv1", "sep", "conv3", (1024, 1536)),
        ("block14_sepconv1_bn", "bn", "bn3", (1536,)),
        ("block14_sepconv2", "sep", "conv4", (1536, 2048)),
        ("block14_sepconv2_bn", "bn", "bn4", (2048,)),
    ]
    return spec


def _is_safetensors(path):
    try:
        with open(path, "rb") as fh:
            head = fh.read(9)
    except OSError:
        return False
    if len(head) < 9:
        return False
    n = int.from_bytes(head[:8], "little")
    return head[8:9] == b"{" and 0 < n < os.path.getsize(path)


def _is_torch_zip(path):
    try:
        with zipfile.ZipFile(path) as zf:
            return any(n == "data.pkl" or n.endswith("/data.pkl") for n in zf.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def _read_safetensors_state_dict(path):
    from safetensors import safe_open

    try:
        out = OrderedDict()
        with safe_open(path, framework="numpy") as fh:
            for k in fh.keys():
                out[k] = fh.get_tensor(k)
        return out
    except Exception as e:  # e.g. bfloat16 tensors, which numpy cannot hold
        raise ConvertError(f"{path}: cannot read safetensors file ({e})")


def _read_torch_state_dict(path):
    try:
        import torch  # only needed for .pth/.bin inputs
    except ImportError:
        raise ConvertError(
            f"{path}: reading a PyTorch checkpoint needs torch (pip install torch), "
            "or give the model.safetensors file instead"
        )
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ConvertError(f"{path}: torch.load failed ({e})")
    for key in ("state_dict", "model", "state_dict_ema", "model_ema"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict):
        raise ConvertError(f"{path}: expected a state dict, found {type(obj).__name__}")
    out = OrderedDict()
    for k, v in obj.items():
        if isinstance(v, torch.Tensor):
            out[k] = v.detach().cpu().float().numpy() if v.is_floating_point() else v.cpu().numpy()
    return out


def read_timm_state_dict(path):
    """The state dict of a timm checkpoint (safetensors, or PyTorch through torch), without a
    ``module.``/``model.`` prefix, and what kind of file it was."""
    if _is_safetensors(path):
        sd, kind = _read_safetensors_state_dict(path), "safetensors"
    else:
        sd, kind = _read_torch_state_dict(path), "PyTorch"
    prefixes = ("module.", "model.")
    for pfx in prefixes:
        if sd and all(k.startswith(pfx) for k in sd):
            sd = OrderedDict((k[len(pfx):], v) for k, v in sd.items())
    return sd, kind


def load_timm(path, head_activations=None):
    """Map a timm ``legacy_xception`` state dict to Keras layers and layouts."""
    sd, kind = read_timm_state_dict(path)
    if "last_linear.weight" in sd and "fc.weight" not in sd:  # Cadene's pretrainedmodels naming
        sd["fc.weight"] = sd.pop("last_linear.weight")
        if "last_linear.bias" in sd:
            sd["fc.bias"] = sd.pop("last_linear.bias")
    if "block1.rep.0.conv1.weight" not in sd:
        raise ConvertError(
            f"{path}: not a timm legacy_xception state dict (no 'block1.rep.0.conv1.weight'; "
            f"first keys: {list(sd)[:5]})"
        )

    used = set()
    problems = []

    def take(key, shape):
        used.add(key)
        a = sd.get(key)
        if a is None:
            problems.append(f"missing {key}")
            return None
        a = np.asarray(a)
        if key.endswith("pointwise.weight") and a.ndim == 2:  # (Cout, Cin) without the 1x1
            a = a.reshape(a.shape + (1, 1))
        if tuple(a.shape) != tuple(shape):
            problems.append(f"{key}: shape {tuple(a.shape)}, expected {tuple(shape)}")
            return None
        return a.astype(np.float32)

    layers = []
    for keras_name, kind_, prefix, ch in timm_xception_spec():
        vars_ = OrderedDict()
        if kind_ == "conv":
            cin, cout, k = ch
            w = take(f"{prefix}.weight", (cout, cin, k, k))
            if w is not None:
                vars_["kernel"] = w.transpose(2, 3, 1, 0)  # OIHW -> HWIO
        elif kind_ == "sep":
            cin, cout = ch
            dw = take(f"{prefix}.conv1.weight", (cin, 1, 3, 3))
            pw = take(f"{prefix}.pointwise.weight", (cout, cin, 1, 1))
            if dw is not None:
                vars_["depthwise_kernel"] = dw.transpose(2, 3, 0, 1)  # (C,1,3,3) -> (3,3,C,1)
            if pw is not None:
                vars_["pointwise_kernel"] = pw.transpose(2, 3, 1, 0)  # (O,I,1,1) -> (1,1,I,O)
        else:
            (c,) = ch
            for tv, kv in TIMM_BN_VARS:
                a = take(f"{prefix}.{tv}", (c,))
                if a is not None:
                    vars_[kv] = a
            used.add(f"{prefix}.num_batches_tracked")
        for bias in (f"{prefix}.bias", f"{prefix}.conv1.bias", f"{prefix}.pointwise.bias"):
            if kind_ != "bn" and bias in sd:
                problems.append(f"{bias}: convolution biases are not supported")
                used.add(bias)
        layers.append((keras_name, vars_))

    head = []
    if "fc.weight" in sd:
        w = np.asarray(sd["fc.weight"])
        if w.ndim != 2 or w.shape[1] != 2048:
            problems.append(f"fc.weight: shape {tuple(w.shape)}, expected (num_classes, 2048)")
        else:
            n = int(w.shape[0])
            vars_ = OrderedDict(kernel=take("fc.weight", (n, 2048)).T.copy())  # (out, in) -> (in, out)
            if "fc.bias" in sd:
                vars_["bias"] = take("fc.bias", (n,))
            if head_activations is not None and len(head_activations) != 1:
                raise ConvertError(f"--head-activations gives {len(head_activations)} activations; the timm head has 1")
            act = head_activations[0] if head_activations else "softmax"
            layers.append(("predictions", vars_))
            head.append({"name": "predictions", "units": n, "activation": act})
    elif "fc.bias" in sd:
        problems.append("fc.bias without fc.weight")
    elif head_activations is not None:
        raise ConvertError("--head-activations given but the checkpoint has no fc head")

    extra = sorted(set(sd) - used - {"fc.weight", "fc.bias"})
    if extra:
        problems.append(f"unexpected tensors: {', '.join(extra[:10])}" + (" ..." if len(extra) > 10 else ""))
    if problems:
        raise ConvertError(
            f"{path}: not a timm legacy_xception state dict:\n  " + "\n  ".join(problems[:12])
            + (f"\n  ... {len(problems) - 12} more" if len(problems) > 12 else "")
        )
    source = os.path.basename(path) + f" (timm legacy_xception {kind} state dict)"
    return layers, head, None, source, TIMM_BN_EPSILON


# --------------------------------------------------------------------------
# Labels
# --------------------------------------------------------------------------


def read_labels(path):
    try:
        with open(path, encoding="utf8") as fh:
            text = fh.read()
    except OSError as e:
        raise ConvertError(f"cannot read labels file: {e}")
    stripped = text.lstrip()
    if stripped.startswith("[") or stripped.startswith("{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConvertError(f"{path}: invalid JSON ({e})")
        if isinstance(data, list):
            return [str(x) for x in data]
        if isinstance(data, dict):  # imagenet_class_index.json: {"0": ["n01440764", "tench"], ...}
            try:
                items = sorted(((int(k), v) for k, v in data.items()), key=lambda kv: kv[0])
            except ValueError:
                raise ConvertError(f"{path}: JSON object keys must be class indices")
            if [k for k, _ in items] != list(range(len(items))):
                raise ConvertError(f"{path}: class indices are not 0..{len(items) - 1}")
            return [str(v[-1]) if isinstance(v, list) else str(v) for _, v in items]
        raise ConvertError(f"{path}: expected a JSON list or object")
    return [line.strip() for line in text.splitlines() if line.strip()]


def parse_epsilon(s):
    try:
        eps = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {s!r}")
    if not (eps > 0 and np.isfinite(eps)):
        raise argparse.ArgumentTypeError(f"epsilon must be positive and finite, got {s!r}")
    return eps


def parse_size(s):
    m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", s)
    if not m:
        raise argparse.ArgumentTypeError(f"expected HxW, e.g. 150x150, got {s!r}")
    h, w = int(m.group(1)), int(m.group(2))
    if h < 71 or w < 71:
        raise argparse.ArgumentTypeError("Xception needs an input of at least 71x71")
    return [h, w]


# --------------------------------------------------------------------------
# Main conversion
# --------------------------------------------------------------------------


def _is_torch_file(path):
    if path.lower().endswith(TORCH_SUFFIXES):
        return True
    if zipfile.is_zipfile(path):
        return _is_torch_zip(path)
    try:
        with open(path, "rb") as fh:
            return fh.read(1) == b"\x80"  # legacy (non-zip) torch.save pickle
    except OSError:
        return False


def default_labels(n_classes):
    """Labels for a head with ``n_classes`` outputs when --labels is not given."""
    if n_classes == 0:
        return []
    if n_classes == len(KITCHENWARE_LABELS):
        return list(KITCHENWARE_LABELS)
    if n_classes == 1000:
        if os.path.exists(IMAGENET_LABELS):
            labels = read_labels(IMAGENET_LABELS)
            if len(labels) != 1000:
                raise ConvertError(f"{IMAGENET_LABELS}: {len(labels)} labels, expected 1000")
            return labels
        print(f"warning: {IMAGENET_LABELS} not found; using class_0..class_999", file=sys.stderr)
    return [f"class_{i}" for i in range(n_classes)]


def format_epsilon(eps):
    """``bn_epsilon`` metadata value: shortest round-trip decimal (0.001, 1e-05)."""
    return repr(float(eps))


def convert(
    input_path,
    output_path,
    dtype="float16",
    labels_path=None,
    input_size=None,
    head_activations=None,
    bn_epsilon=None,
    config_path=None,
    arch=None,
    crop_pct=None,
):
    """Convert ``input_path`` and write ``output_path``.

    Returns (written_tensors, metadata, source_tensors); source tensors keep the
    checkpoint's own dtype (float32) and the canonical names. ``bn_epsilon``
    overrides the batch-norm epsilon taken from the source. ``config_path`` (a
    ``.keras`` archive or a JSON model config) gives the architecture of a Keras 3
    weights-only file; without it one is looked for beside the file
    (``find_model_config``). ``arch`` names the variant of a timm aligned Xception
    (``xception65``, ...; found from its tensors by default), ``crop_pct`` the centre-crop
    fraction of its evaluation transform (default: that of timm's default weights for it).
    """
    if not os.path.exists(input_path):
        raise ConvertError(f"input file not found: {input_path}")
    if config_path is not None and not os.path.exists(config_path):
        raise ConvertError(f"--config: file not found: {config_path}")
    keras3_weights = h5py.is_hdf5(input_path) and is_keras3_weights_only(input_path)
    if config_path is not None and not keras3_weights:
        raise ConvertError(
            f"--config applies only to a Keras 3 weights-only file (.weights.h5); {input_path} is not one"
        )
    # timm pools with MaxPool2d(3, 2, padding=1); Keras pads 'same' (the runtime's default).
    pool_padding = None
    architecture = None
    crop = {}
    timm_file = _is_safetensors(input_path) or _is_torch_file(input_path)
    if timm_file and timm_aligned.is_aligned(read_timm_state_dict(input_path)[0]):
        sd, kind = read_timm_state_dict(input_path)
        try:
            tensors, head, architecture, eps, name = timm_aligned.load(sd, arch, head_activations)
        except timm_aligned.AlignedError as e:
            raise ConvertError(f"{input_path}: not a timm aligned Xception state dict: {e}")
        source = os.path.basename(input_path) + f" (timm {name} {kind} state dict)"
        cfg_size = timm_aligned.INPUT_SIZE
        crop = {
            "crop_fraction": repr(crop_pct or timm_aligned.NAMED[name][4]),
            "interpolation": timm_aligned.INTERPOLATION,
        }
    elif arch is not None:
        raise ConvertError(f"--arch applies to timm's aligned Xceptions; {input_path} is not one")
    elif timm_file:
        layers, head, cfg_size, source, eps = load_timm(input_path, head_activations)
        pool_padding = "symmetric"
        crop = {"crop_fraction": repr(crop_pct or TIMM_LEGACY_CROP), "interpolation": "bicubic"}
    elif crop_pct is not None:
        raise ConvertError(f"--crop-pct applies to timm checkpoints; {input_path} is not one")
    elif zipfile.is_zipfile(input_path):
        if head_activations is not None:
            raise ConvertError("--head-activations does not apply to .keras archives (they store activations)")
        layers, head, cfg_size, source, eps = load_keras3(input_path)
    elif keras3_weights:
        config_path = config_path or find_model_config(input_path)
        if config_path is None:
            raise ConvertError(
                f"{input_path}: a Keras 3 weights-only file (model.save_weights, or ModelCheckpoint "
                "with save_weights_only=True), which holds no architecture. Give the model's config "
                "with --config MODEL.keras or --config config.json (what model.to_json() returns), or "
                "put NAME.keras or config.json beside the file. Or, in Keras, build the same model, "
                "call model.load_weights(this file) and model.save('model.keras'), then convert "
                "model.keras"
            )
        if head_activations is not None:
            raise ConvertError("--head-activations does not apply to Keras 3 files (their config stores activations)")
        layers, head, cfg_size, source, eps = load_keras3_weights(input_path, config_path)
    elif h5py.is_hdf5(input_path):
        layers, head, cfg_size, source, eps = load_keras2_h5(input_path, head_activations)
    else:
        raise ConvertError(
            f"{input_path}: not a .keras archive, an HDF5 file, a safetensors file or a PyTorch checkpoint"
        )
    if bn_epsilon is not None:
        eps = bn_epsilon

    if architecture is None:
        tensors = _keras_tensors(layers, head)
        prev = 2048
    else:
        prev = architecture["blocks"][-1]["channels"][-1]
    # head consistency: chain of dense layers starting at the embedding
    for h in head:
        k = tensors.get(f"{h['name']}.kernel")
        if k is None or k.shape != (prev, h["units"]):
            raise ConvertError(
                f"dense layer {h['name']}: kernel shape {None if k is None else k.shape}, "
                f"expected {(prev, h['units'])}"
            )
        if f"{h['name']}.bias" in tensors and tensors[f"{h['name']}.bias"].shape != (h["units"],):
            raise ConvertError(f"dense layer {h['name']}: bad bias shape")
        prev = h["units"]

    n_classes = head[-1]["units"] if head else 0
    if labels_path:
        labels = read_labels(labels_path)
        if not head:
            raise ConvertError("--labels given but the checkpoint has no classification head")
        if len(labels) != n_classes:
            raise ConvertError(f"{labels_path}: {len(labels)} labels but the head has {n_classes} classes")
    else:
        labels = default_labels(n_classes)

    size = input_size or cfg_size or [299, 299]

    np_dtype = {"float16": np.float16, "float32": np.float32}[dtype]
    out = OrderedDict()
    for key, arr in tensors.items():
        a32 = arr.astype(np.float32)
        if not np.all(np.isfinite(a32)):
            raise ConvertError(f"tensor {key} contains non-finite values")
        if np_dtype is np.float16 and np.abs(a32).max(initial=0.0) > 65504.0:
            raise ConvertError(f"tensor {key} exceeds the float16 range; use --dtype float32")
        out[key] = np.ascontiguousarray(a32.astype(np_dtype))

    metadata = {
        "format": FORMAT,
        "input_size": json.dumps(size),
        "labels": json.dumps(labels),
        "preprocessing": "tf",
        "head": json.dumps(head),
        "bn_epsilon": format_epsilon(eps),
        "source": source,
    }
    if pool_padding:
        metadata["pool_padding"] = pool_padding
    if architecture is not None:
        metadata["architecture"] = json.dumps(architecture)
    metadata.update(crop)
    out_dir = os.path.dirname(os.path.abspath(output_path))
    os.makedirs(out_dir, exist_ok=True)
    save_file(out, output_path, metadata=metadata)
    # safetensors writes 0600; give the file the permissions any other new file gets.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(output_path, 0o666 & ~umask)
    return out, metadata, tensors


def _keras_tensors(layers, head):
    """The tensors of Keras ``layers`` by ``<layer>.<variable>``, shortcuts under their
    canonical names; fails on anything outside the backbone and the dense ``head``."""
    layers = _canonicalize_shortcuts(layers)
    tensors = OrderedDict()
    for name, vars_ in layers:
        for var, arr in vars_.items():
            key = f"{name}.{var}"
            if key in tensors:
                raise ConvertError(f"duplicate tensor name {key}")
            tensors[key] = arr
    _check_backbone(tensors)
    known = {n for n, _ in xception_backbone_spec()}
    for h in head:
        known |= {f"{h['name']}.kernel", f"{h['name']}.bias"}
    extra = sorted(set(tensors) - known)
    if extra:
        raise ConvertError(f"unexpected tensors outside backbone and dense head: {extra[:10]}")
    return tensors


def _summary(tensors, metadata, output_path, reference):
    params = sum(int(a.size) for a in tensors.values())
    nbytes = sum(int(a.nbytes) for a in tensors.values())
    print(f"wrote {output_path}")
    print(f"  tensors: {len(tensors)}")
    print(f"  params:  {params:,}")
    print(f"  bytes:   {nbytes:,} tensor data, {os.path.getsize(output_path):,} file")
    for k, v in metadata.items():
        shown = v if len(v) <= 120 else v[:117] + "..."
        print(f"  {k}: {shown}")
    dt = next(iter(tensors.values())).dtype
    if dt == np.float16 and reference is not None:
        worst, worst_name, worst_rel, n_sub = 0.0, "", 0.0, 0
        for k, a in tensors.items():
            ref = reference[k].astype(np.float32)
            diff = np.abs(a.astype(np.float32) - ref)
            err = float(diff.max(initial=0.0))
            normal = np.abs(ref) >= 6.103515625e-05
            if normal.any():
                worst_rel = max(worst_rel, float((diff[normal] / np.abs(ref[normal])).max()))
            n_sub += int(np.count_nonzero(~normal & (ref != 0)))
            if err > worst:
                worst, worst_name = err, k
        print(
            f"  float16 rounding: max abs error {worst:.3g} ({worst_name}), max relative error "
            f"{worst_rel:.3g} on normal-range values; {n_sub:,} values in the float16 subnormal range"
        )


def main(argv=None):
    p = argparse.ArgumentParser(
        description="Convert an Xception checkpoint (Keras .keras archive or Keras 3 .weights.h5 with its "
        "config, Keras 2 weights .h5, or timm "
        "legacy_xception model.safetensors / .pth / .bin state dict) to safetensors.",
        epilog="Tensor names: <keras_layer>.<variable>; Keras layouts are kept. See weights/README.md.",
    )
    p.add_argument(
        "input",
        help="Keras 3 .keras archive or .weights.h5 file, Keras 2 weights .h5 file, or timm legacy_xception state dict "
        "(model.safetensors, or .pth/.bin, which needs torch)",
    )
    p.add_argument("-o", "--output", help="output .safetensors path (default: input name with .safetensors)")
    p.add_argument("--dtype", choices=("float16", "float32"), default="float16", help="storage dtype (default float16)")
    p.add_argument(
        "--labels",
        help="class names: text file (one per line), JSON list, or imagenet_class_index.json "
        "(default: weights/imagenet_labels.txt for a 1000-class head, kitchenware labels for a "
        "6-class head, class_0..class_{n-1} otherwise)",
    )
    p.add_argument(
        "--input-size",
        type=parse_size,
        metavar="HxW",
        help="nominal input size (default: from the .keras config, else 299x299)",
    )
    p.add_argument(
        "--head-activations",
        help="comma-separated activations of the dense layers of a Keras 2 h5 or timm checkpoint "
        "(default: softmax for 'predictions' and the timm fc, relu for hidden, linear for the last)",
    )
    p.add_argument(
        "--bn-epsilon",
        type=parse_epsilon,
        metavar="EPS",
        help="batch-norm epsilon written to the metadata (default: from the source; "
        "0.001 for Keras files, 1e-05 for timm/PyTorch)",
    )
    p.add_argument(
        "--config",
        metavar="FILE",
        help="for a Keras 3 weights-only file (.weights.h5): the model's .keras archive or JSON config "
        "(default: NAME.keras or config.json beside it)",
    )
    p.add_argument(
        "--arch",
        choices=sorted(timm_aligned.NAMED),
        help="the variant of a timm aligned Xception state dict (default: found from its tensors)",
    )
    p.add_argument(
        "--crop-pct",
        type=float,
        metavar="F",
        help="timm checkpoints: the centre-crop fraction images are classified with (default: "
        "timm's for the model's default weights: 0.94 for ra3, 0.903 for tf, 0.8975 for legacy_xception)",
    )
    args = p.parse_args(argv)
    if args.crop_pct is not None and not 0 < args.crop_pct <= 1:
        p.error("--crop-pct must be in (0, 1]")

    acts = None
    if args.head_activations:
        acts = [a.strip() for a in args.head_activations.split(",")]
        bad = [a for a in acts if a not in ALLOWED_ACTIVATIONS]
        if bad:
            p.error(f"--head-activations: unsupported {bad}; allowed {ALLOWED_ACTIVATIONS}")
    output = args.output or os.path.splitext(args.input)[0] + ".safetensors"
    if os.path.abspath(output) == os.path.abspath(args.input):
        p.error("output path equals input path")
    try:
        tensors, metadata, source = convert(
            args.input,
            output,
            args.dtype,
            args.labels,
            args.input_size,
            acts,
            args.bn_epsilon,
            args.config,
            args.arch,
            args.crop_pct,
        )
    except ConvertError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except Exception as e:  # a damaged file can fail deep inside h5py or zipfile
        print(f"error: {args.input}: cannot convert ({type(e).__name__}: {e})", file=sys.stderr)
        return 1
    _summary(tensors, metadata, output, source)
    return 0


if __name__ == "__main__":
    sys.exit(main())
