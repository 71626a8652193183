"""Embeds a folder of images with Ray Data and xception-wgpu, writes Parquet (path, label,
embedding), then lists each image's nearest neighbours from the Parquet files.

    python python/examples/ray_embed_folder.py samples/ /tmp/embeddings --actors 2

On a cluster, start Ray there and pass --address auto (or ray://HEAD:10001); every node
needs this package installed (pip install ./python) and, for the GPU, a Vulkan driver.
"""

import argparse

import numpy as np
import pyarrow.parquet as pq
import ray

from xception_wgpu.ray import XceptionPredictor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("images", help="folder of images (searched recursively)")
    parser.add_argument("output", help="folder for the Parquet files")
    parser.add_argument("--actors", type=int, default=1, help="model actors (concurrency)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--gpus-per-actor", type=float, default=0.0, help="e.g. 0.5 on GPU nodes")
    parser.add_argument("--address", default=None, help="Ray cluster address (default: local)")
    args = parser.parse_args()

    ray.init(address=args.address)
    ds = ray.data.read_images(args.images, mode="RGB", include_paths=True)
    ds = ds.map_batches(
        XceptionPredictor,
        fn_constructor_kwargs={"outputs": ("embedding", "label")},
        batch_size=args.batch_size,
        concurrency=args.actors,
        num_gpus=args.gpus_per_actor,
    )
    ds.select_columns(["path", "label", "embedding"]).write_parquet(args.output)

    table = pq.read_table(args.output)
    paths = table["path"].to_pylist()
    vectors = np.stack(table["embedding"].to_numpy(zero_copy_only=False)).astype(np.float32)
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    similarity = unit @ unit.T
    for i, path in enumerate(paths):
        order = [j for j in np.argsort(-similarity[i]) if j != i][:3]
        neighbours = ", ".join(f"{paths[j]} ({similarity[i, j]:.3f})" for j in order)
        print(f"{path} [{table['label'][i]}]: {neighbours}")


if __name__ == "__main__":
    main()
