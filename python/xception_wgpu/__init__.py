"""Xception image classification and embeddings on any GPU through wgpu.

>>> import xception_wgpu
>>> model = xception_wgpu.Model()            # the bundled kitchenware model
>>> model.classify(["samples/cup.jpg"], top=1)[0]["top"][0]["label"]
'cup'
>>> model.embed(["samples/cup.jpg"]).shape
(1, 2048)

``Model(weights=None, backend="auto", precision="f32", max_batch=None, kernel="auto")``
loads a safetensors weights file (``None``: the kitchenware model compiled into this
package). Images are a uint8 ``[N, H, W, 3]`` RGB array, or a list of uint8
``[H, W, 3]`` arrays (of any sizes) and image paths; one ``[H, W, 3]`` array or one path
may also be given bare. The GIL is released while the
model works, and one model may be shared by threads. ``xception_wgpu.ray`` has a
callable class for Ray Data's ``map_batches``.
"""

from ._xception_wgpu import EMBEDDING_DIM, Model, XceptionError

__all__ = ["EMBEDDING_DIM", "Model", "XceptionError"]
