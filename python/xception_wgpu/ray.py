"""Ray Data integration: a callable class for ``Dataset.map_batches``.

Each actor loads the model once; every batch of images (the ``image`` column that
``ray.data.read_images`` gives, at one size or at native sizes) comes back with
``embedding`` and/or ``label`` / ``probability`` columns::

    import ray
    from xception_wgpu.ray import XceptionPredictor

    ds = ray.data.read_images("photos/", mode="RGB", include_paths=True)
    ds = ds.map_batches(
        XceptionPredictor,
        fn_constructor_kwargs={"outputs": ("embedding", "label")},
        batch_size=32,
        concurrency=2,        # actors; on a GPU node add num_gpus=0.5 (two per GPU)
    )
    ds.write_parquet("embeddings/")
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Sequence

import numpy as np

from . import Model

#: What ``XceptionPredictor`` can add to a batch.
OUTPUTS = ("embedding", "label", "probability")


class XceptionPredictor:
    """Runs Xception on batches of images for ``map_batches``.

    ``outputs`` picks the columns added: ``embedding`` (float32 [N, 2048]), ``label`` and
    ``probability`` (the most probable class). The other arguments are ``Model``'s. The
    model resizes every image to its input size; ``read_images(..., size=(h, w))`` resizes
    while reading instead, which makes each batch one array. The batch size, the number of
    actors (``concurrency``) and their GPU share (``num_gpus``) are ``map_batches``' options.
    """

    def __init__(
        self,
        weights: Optional[str] = None,
        backend: str = "auto",
        precision: str = "f32",
        max_batch: Optional[int] = None,
        outputs: Sequence[str] = ("embedding",),
    ) -> None:
        unknown = [o for o in outputs if o not in OUTPUTS]
        if unknown or not outputs:
            raise ValueError(f"outputs {list(outputs)}: choose from {list(OUTPUTS)}")
        self.outputs = tuple(outputs)
        self.model = Model(weights=weights, backend=backend, precision=precision, max_batch=max_batch)

    def __call__(self, batch: Dict[str, Any]) -> Dict[str, Any]:
        images = batch["image"]
        if not (isinstance(images, np.ndarray) and images.dtype == np.uint8 and images.ndim == 4):
            # Images of several sizes come as an object array of [H, W, 3] arrays.
            images = [np.ascontiguousarray(image, dtype=np.uint8) for image in images]
        if "embedding" in self.outputs:
            batch["embedding"] = self.model.embed(images)
        if "label" in self.outputs or "probability" in self.outputs:
            best = [result["top"][0] for result in self.model.classify(images, top=1)]
            if "label" in self.outputs:
                batch["label"] = np.array([b["label"] for b in best])
            if "probability" in self.outputs:
                batch["probability"] = np.array([b["probability"] for b in best], dtype=np.float32)
        return batch
