"""A timm checkpoint, converted by weights/convert.py, against timm's own outputs.

The checkpoint is timm's ``legacy_xception`` with the bundled backbone's convolutions and batch
norms calibrated in timm on real photos, then perturbed (``tests/golden/timm_checkpoint.py``);
the expected embeddings and logits are timm's, computed in float32 by
``tests/golden/make_timm.py`` at 299x299, 224x224, 171x203 and 150x150, sizes at which the
max-pools see even-sized maps, where timm's padding and Keras' differ.
"""

import sys

import numpy as np
import pytest
from conftest import ROOT
from safetensors import safe_open
from safetensors.numpy import load_file, save_file

import xception_wgpu

sys.path.insert(0, str(ROOT / "tests" / "golden"))
sys.path.insert(0, str(ROOT / "weights"))

import convert  # noqa: E402
import timm_checkpoint  # noqa: E402

TOLERANCE = 1e-4
SIZES = timm_checkpoint.cases_by_size()
BACKENDS = ["cpu", "reference", "gpu"]


def goldens(case):
    return load_file(str(ROOT / "tests" / "golden" / "timm" / f"{case}.safetensors"))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("timm") / "model.safetensors"
    save_file(timm_checkpoint.timm_state_dict(), str(path))
    return path


def converted(checkpoint, height, width):
    out = checkpoint.parent / f"xception_timm_{height}x{width}.safetensors"
    if not out.exists():
        args = [str(checkpoint), "-o", str(out), "--dtype", "float32", "--input-size", f"{height}x{width}"]
        assert convert.main(args) == 0
    return out


def test_the_converter_marks_timm_arithmetic(checkpoint):
    with safe_open(str(converted(checkpoint, 299, 299)), framework="numpy") as f:
        meta = f.metadata()
    assert meta["pool_padding"] == "symmetric" and meta["bn_epsilon"] == "1e-05"


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("size", sorted(SIZES), ids=lambda s: f"{s[0]}x{s[1]}")
def test_matches_timm(checkpoint, backend, size):
    cases = SIZES[size]
    model = xception_wgpu.Model(weights=converted(checkpoint, *size), backend=backend)
    assert model.input_size == size
    expected = [goldens(case) for case in cases]
    arrays = [g["pixels"] for g in expected]
    embeddings = model.embed(arrays)
    classified = model.classify(arrays, top=6)
    for case, g, embedding, result in zip(cases, expected, embeddings, classified):
        np.testing.assert_allclose(embedding, g["embedding"], atol=TOLERANCE, rtol=0, err_msg=f"{case} {backend}")
        np.testing.assert_allclose(result["logits"], g["logits"], atol=TOLERANCE, rtol=0, err_msg=f"{case} {backend}")
        assert result["top"][0]["index"] == int(np.argmax(g["logits"])), case


def test_keras_pooling_would_not_match_timm(checkpoint, tmp_path):
    """The goldens can tell the two paddings apart: without `pool_padding` the runtime pools as
    Keras does, and misses timm's logits by far more than the tolerance."""
    path = converted(checkpoint, 299, 299)
    with safe_open(str(path), framework="numpy") as f:
        meta = {k: v for k, v in f.metadata().items() if k != "pool_padding"}
    tf_same = tmp_path / "tf_same.safetensors"
    save_file(load_file(str(path)), str(tf_same), metadata=meta)
    model = xception_wgpu.Model(weights=tf_same, backend="cpu")
    for case in SIZES[(299, 299)]:
        g = goldens(case)
        logits = model.classify([g["pixels"]], top=1)[0]["logits"]
        assert np.abs(logits - g["logits"]).max() > 0.1, case
