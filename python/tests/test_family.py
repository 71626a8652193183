"""timm's aligned Xceptions through the Python package: the narrow twins of every variant
(``tests/golden/aligned/``, made by ``tests/golden/make_timm_aligned.py``) classify and embed a
299x299 photo as timm does, on every backend (``tests/family.rs`` covers the other sizes)."""

import numpy as np
import pytest
from conftest import ROOT
from safetensors.numpy import load_file

import xception_wgpu

TOLERANCE = 1e-4
GOLDENS = ROOT / "tests" / "golden" / "aligned"
VARIANTS = ["xception41", "xception65", "xception71", "xception41p", "xception65p"]
CASE = "cup_299"


@pytest.mark.parametrize("backend", ["cpu", "reference", "gpu"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_twins_match_timm(variant, backend):
    model = xception_wgpu.Model(weights=GOLDENS / f"{variant}.safetensors", backend=backend)
    assert model.architecture == f"{variant}_custom"
    assert model.embedding_dim == 128 and model.input_size == (299, 299)
    pixels = load_file(str(GOLDENS / "inputs.safetensors"))[CASE]
    want = load_file(str(GOLDENS / f"{variant}_outputs.safetensors"))
    embedding = model.embed([pixels])
    assert embedding.shape == (1, 128)
    result = model.classify([pixels], top=6)[0]
    np.testing.assert_allclose(embedding[0], want[f"{CASE}.embedding"], atol=TOLERANCE, rtol=0)
    np.testing.assert_allclose(result["logits"], want[f"{CASE}.logits"], atol=TOLERANCE, rtol=0)
    assert result["top"][0]["index"] == int(np.argmax(want[f"{CASE}.logits"]))
