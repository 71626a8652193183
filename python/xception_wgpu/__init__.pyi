import os
from typing import Any, Literal, Optional, Sequence, TypedDict, Union

import numpy as np
import numpy.typing as npt

EMBEDDING_DIM: int

class XceptionError(Exception):
    """An error of the runtime: bad weights, an unreadable image, a GPU failure."""

Image = Union[npt.NDArray[np.uint8], str, os.PathLike[str]]
Images = Union[npt.NDArray[np.uint8], Sequence[Image], str, os.PathLike[str]]

class Class(TypedDict):
    index: int
    label: str
    probability: float

class Classified(TypedDict, total=False):
    image: str
    top: list[Class]
    logits: npt.NDArray[np.float32]
    error: str

class Model:
    """Xception with its weights loaded on a GPU (or the CPU)."""

    def __init__(
        self,
        weights: Optional[Union[str, os.PathLike[str]]] = None,
        backend: Literal["auto", "gpu", "cpu", "reference"] = "auto",
        precision: Literal["f32", "f16"] = "f32",
        max_batch: Optional[int] = None,
        kernel: Literal["auto", "tuned", "portable", "subgroup", "tiled", "coopmat"] = "auto",
    ) -> None: ...
    @property
    def labels(self) -> list[str]:
        """The class labels, by index."""
    @property
    def input_size(self) -> tuple[int, int]:
        """(height, width) images are resized to."""
    @property
    def architecture(self) -> str:
        """Which member of the Xception family the weights are (`xception`, `xception65`, ...)."""
    @property
    def embedding_dim(self) -> int:
        """Values of one image's embedding (2048 for every named member of the family)."""
    @property
    def adapter(self) -> str:
        """The backend and adapter the model runs on."""
    def classify(
        self, images: Images, top: int = 5, errors: Literal["raise", "skip"] = "raise"
    ) -> list[Classified]:
        """The `top` most probable classes of each image, and its logits."""
    def embed(
        self, images: Images, errors: Literal["raise", "skip"] = "raise"
    ) -> npt.NDArray[np.float32]:
        """The float32 [N, embedding_dim] embeddings (NaN rows for images skipped)."""

__all__: list[str]
