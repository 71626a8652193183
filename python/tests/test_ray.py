"""Ray Data: `XceptionPredictor` in `map_batches` on a local Ray, against the CLI."""

import numpy as np
import pytest
from conftest import LABELS, ROOT, cli_json
import ray
from PIL import Image, ImageOps

from xception_wgpu.ray import XceptionPredictor

IMAGES = 48


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """48 PNGs: the bundled photos mirrored, cropped and resized (several sizes)."""
    folder = tmp_path_factory.mktemp("ray-images")
    for i in range(IMAGES):
        label = LABELS[i % len(LABELS)]
        photo = Image.open(ROOT / "samples" / f"{label}.jpg").convert("RGB")
        if i % 2:
            photo = ImageOps.mirror(photo)
        w, h = photo.size
        cut = (i % 5) * 0.03
        photo = photo.crop((int(w * cut), int(h * cut), w - int(w * cut), h - int(h * cut)))
        photo.resize((120 + 16 * (i % 4), 140)).save(folder / f"{i:02d}_{label}.png")
    return folder


def test_map_batches_embeds_every_image_like_the_cli(folder):
    ray.init(num_cpus=2, include_dashboard=False, ignore_reinit_error=True)
    try:
        ds = ray.data.read_images(str(folder), mode="RGB", include_paths=True)
        ds = ds.map_batches(
            XceptionPredictor,
            fn_constructor_kwargs={"outputs": ("embedding", "label")},
            batch_size=8,
            concurrency=1,
        )
        rows = ds.take_all()
    finally:
        ray.shutdown()
    assert len(rows) == IMAGES
    name = lambda path: path.split("/")[-1]  # noqa: E731
    embedded = {name(p): line for p, line in cli_json("embed", str(folder)).items()}
    classified = {name(p): line for p, line in cli_json("classify", "--top", "1", str(folder)).items()}
    for row in rows:
        image = name(row["path"])
        np.testing.assert_allclose(row["embedding"], embedded[image]["embedding"], atol=1e-6, rtol=0)
        assert row["label"] == classified[image]["top"][0]["label"]


def test_unknown_outputs_are_refused():
    with pytest.raises(ValueError, match="choose from"):
        XceptionPredictor(outputs=("boxes",))
