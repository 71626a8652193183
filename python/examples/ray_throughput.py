"""Images per second through Ray Data's map_batches with xception-wgpu, against the model
called directly in this process, on the same folder (for BENCHMARKS.md).

    python python/examples/ray_throughput.py FOLDER [--actors 1] [--batch-size 8] [--rounds 3]
"""

import argparse
import time
from pathlib import Path

import numpy as np
import ray
from PIL import Image

import xception_wgpu
from xception_wgpu.ray import XceptionPredictor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder")
    parser.add_argument("--actors", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    paths = sorted(str(p) for p in Path(args.folder).rglob("*.png"))

    ray.init(num_cpus=2, include_dashboard=False)
    model = xception_wgpu.Model()
    for round in range(args.rounds):
        start = time.perf_counter()
        for i in range(0, len(paths), args.batch_size):
            batch = [np.asarray(Image.open(p).convert("RGB")) for p in paths[i : i + args.batch_size]]
            model.embed(batch)
        direct = len(paths) / (time.perf_counter() - start)

        start = time.perf_counter()
        ds = ray.data.read_images(args.folder, mode="RGB").map_batches(
            XceptionPredictor, batch_size=args.batch_size, concurrency=args.actors
        )
        rows = len(ds.take_all())
        through_ray = rows / (time.perf_counter() - start)
        print(
            f"round {round}: {len(paths)} images, direct {direct:.2f} img/s, "
            f"Ray ({args.actors} actor(s), actor start included) {through_ray:.2f} img/s, "
            f"ratio {through_ray / direct:.3f}"
        )
    ray.shutdown()


if __name__ == "__main__":
    main()
