"""The Python model against the CLI, on paths, arrays of several sizes, threads and bad input."""

import os
import subprocess
import sys
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from conftest import LABELS, ROOT, cli_json, pixels

import xception_wgpu

TOLERANCE = 1e-6
SAMPLES = ROOT / "samples"


def test_properties(model):
    assert model.labels == LABELS
    assert model.input_size == (150, 150)
    assert model.adapter.startswith(("gpu (", "cpu ("))


def test_paths_give_the_clis_logits_and_embeddings(model):
    samples = [str(ROOT / "samples" / f"{label}.jpg") for label in LABELS]
    classified = cli_json("classify", "--top", "6", *samples)
    embedded = cli_json("embed", *samples)
    results = model.classify(samples, top=6)
    embeddings = model.embed(samples)
    assert embeddings.shape == (6, 2048) and embeddings.dtype == np.float32
    for path, result, embedding, label in zip(samples, results, embeddings, LABELS):
        assert result["image"] == path
        assert result["top"][0]["label"] == label
        assert [c["label"] for c in result["top"]] == [c["label"] for c in classified[path]["top"]]
        np.testing.assert_allclose(result["logits"], classified[path]["logits"], atol=TOLERANCE, rtol=0)
        np.testing.assert_allclose(embedding, embedded[path]["embedding"], atol=TOLERANCE, rtol=0)


def test_arrays_of_several_sizes_equal_their_files(model, pngs):
    arrays = [pixels(p) for p in pngs]
    assert len({a.shape for a in arrays}) == 3
    from_arrays = model.classify(arrays, top=3)
    cli = cli_json("classify", "--top", "3", *pngs)
    for i, (path, result) in enumerate(zip(pngs, from_arrays)):
        assert result["image"] == f"array {i}"
        np.testing.assert_allclose(result["logits"], cli[path]["logits"], atol=TOLERANCE, rtol=0)
    np.testing.assert_allclose(model.embed(arrays), model.embed(pngs), atol=TOLERANCE, rtol=0)
    # One [N, H, W, 3] array is a batch of same-sized images.
    same = np.stack([arrays[0], arrays[3]])
    np.testing.assert_allclose(model.embed(same), model.embed([arrays[0], arrays[3]]), atol=0, rtol=0)


def test_one_model_shared_by_threads_gives_the_same_results(model, pngs):
    expected = model.embed(pngs)
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda _: model.embed(pngs), range(8)))
    for result in results:
        np.testing.assert_array_equal(result, expected)


def test_bad_inputs_raise_clear_errors(model, tmp_path):
    missing = tmp_path / "missing.jpg"
    with pytest.raises(FileNotFoundError, match="missing.jpg"):
        model.classify([str(missing)])
    not_an_image = tmp_path / "notes.jpg"
    not_an_image.write_text("not a photo")
    with pytest.raises(xception_wgpu.XceptionError, match="notes.jpg: not a recognised image format"):
        model.embed([not_an_image])
    with pytest.raises(ValueError, match=r"uint8 \[height, width, 3\]"):
        model.embed([np.zeros((10, 10), dtype=np.uint8)])
    with pytest.raises(ValueError, match="neither a uint8"):
        model.embed([np.zeros((10, 10, 3), dtype=np.float32)])
    with pytest.raises(ValueError, match="errors="):
        model.embed([missing], errors="ignore")
    with pytest.raises(FileNotFoundError, match="nowhere.safetensors"):
        xception_wgpu.Model(weights=tmp_path / "nowhere.safetensors")
    with pytest.raises(ValueError, match="backend="):
        xception_wgpu.Model(backend="tpu")
    with pytest.raises(ValueError, match='unknown precision "f64"'):
        xception_wgpu.Model(precision="f64")
    with pytest.raises(ValueError, match="max_batch=0"):
        xception_wgpu.Model(max_batch=0)
    for top in (0, -1):
        with pytest.raises(ValueError, match=f"top={top}: must be at least 1"):
            model.classify([SAMPLES / "cup.jpg"], top=top)
    with pytest.raises(ValueError, match="no pixels"):
        model.classify(np.zeros((1, 0, 150, 3), dtype=np.uint8))
    cut = tmp_path / "cut.jpg"
    cut.write_bytes((SAMPLES / "cup.jpg").read_bytes()[:97938])
    with pytest.raises(xception_wgpu.XceptionError, match="cut.jpg: truncated image"):
        model.classify([cut])


def test_one_image_may_be_given_bare(model):
    """A single path (str or Path) or a single [H, W, 3] array is one image."""
    path = SAMPLES / "cup.jpg"
    expected = model.embed([path])
    np.testing.assert_array_equal(model.embed(path), expected)
    np.testing.assert_array_equal(model.embed(str(path)), expected)
    pixels = np.zeros((90, 120, 3), dtype=np.uint8)
    np.testing.assert_array_equal(model.embed(pixels), model.embed([pixels]))


def test_skipped_images_are_reported_and_the_rest_still_run(model, pngs, tmp_path):
    missing = str(tmp_path / "missing.png")
    results = model.classify([pngs[0], missing, pngs[1]], top=1, errors="skip")
    assert results[0]["top"][0]["label"] == "cup"
    assert results[1]["image"] == missing and "missing.png" in results[1]["error"]
    assert results[2]["top"][0]["label"] == "fork"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        embeddings = model.embed([pngs[0], missing], errors="skip")
    assert np.isnan(embeddings[1]).all() and not np.isnan(embeddings[0]).any()
    assert any("missing.png" in str(w.message) for w in caught)


def test_no_wayland_complaint_without_a_session_directory():
    """Without XDG_RUNTIME_DIR, Mesa's device-selection Vulkan layer would have libwayland print
    "XDG_RUNTIME_DIR is invalid" on every adapter enumeration; importing the module turns it off."""
    env = {k: v for k, v in os.environ.items() if k not in ("XDG_RUNTIME_DIR", "NODEVICE_SELECT")}
    env["WGPU_BACKEND"] = "vulkan"
    script = (
        "import xception_wgpu, sys; "
        "m = xception_wgpu.Model(backend='gpu'); "
        f"print(m.classify([{str(SAMPLES / 'cup.jpg')!r}], top=1)[0]['top'][0]['label'])"
    )
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "cup"
    assert "XDG_RUNTIME_DIR" not in out.stderr, out.stderr
