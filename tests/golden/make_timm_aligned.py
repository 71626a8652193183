#!/usr/bin/env python3
"""Regenerate tests/golden/aligned/: timm's own outputs for narrow twins of its aligned Xceptions.

A full-size aligned Xception is too large to commit (xception65 has about 40M parameters), so
each variant (``xception41``, ``xception65``, ``xception71``, ``xception41p``, ``xception65p``)
is built as a narrow twin: timm's own ``XceptionAligned`` with the variant's block list, its
strides, skips, pre-activation and batchnorm epsilon, and a sixteenth of the block channels
(728 -> 48, 2048 -> 128; the stem keeps timm's fixed 32 and 64). Each twin is then made a
network whose outputs depend on its input, as ``make_timm.py`` does for ``legacy_xception``:

1. seeded random convolutions (timm's initialisation); every ``BatchNorm2d``, in order, forgets
   its statistics and averages over what reaches it from the six bundled photos at 299x299
   (the batch norms before it already perturbed), then
2. its mean moves by 0.25 standard deviations times a normal draw, each variance is scaled by
   ``exp(0.4 * normal)``, each scale by ``exp(0.1 * normal)``, each shift by ``0.1 * normal``;
   ``head.fc`` gets normal weights (seeded), scaled so that the logits are of the order of one;
3. every parameter and statistic is rounded to float16, which is how the converter stores it,
   so the runtime computes with exactly the values timm computed with.

Writes ``aligned/<variant>.safetensors`` (the twin converted by ``weights/convert.py``, float16)
and ``aligned/<variant>_outputs.safetensors`` (timm's ``embedding`` and ``logits`` per case,
computed in float64 and stored as float32, ``<case>.embedding``/``<case>.logits``), and ``aligned/inputs.safetensors`` (``<case>``:
the uint8 HxWx3 photo resized with PIL bilinear). The cases: 299x299 (timm's input size),
331x331 (larger) and 171x203 (odd, not square), each on a different photo.

Usage (from the repository root)::

    pip install -r tests/golden/requirements-timm.txt
    python tests/golden/make_timm_aligned.py
"""

from __future__ import annotations

import copy
import os
import sys
import tempfile
from functools import partial

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "weights"))
sys.path.insert(0, HERE)

import numpy as np  # noqa: E402
import torch  # noqa: E402
from safetensors.numpy import load_file, save_file  # noqa: E402
from safetensors.torch import save_file as save_torch  # noqa: E402
from timm.models.xception_aligned import XceptionAligned  # noqa: E402

import convert  # noqa: E402
import timm_aligned  # noqa: E402
from make_timm import LABELS, network_input, photo  # noqa: E402

OUT = os.path.join(HERE, "aligned")
CASES = [("cup_299", "cup", 299, 299), ("fork_331", "fork", 331, 331), ("plate_171x203", "plate", 171, 203)]
NARROW = {128: 8, 256: 16, 728: 48, 1024: 64, 1536: 96, 2048: 128}
SEED = 0


def twin(variant):
    """timm's XceptionAligned with ``variant``'s blocks at a sixteenth of the channels."""
    preact, _, _, eps, _ = timm_aligned.NAMED[variant]
    block_cfg, cin = [], 64
    for b in timm_aligned.description(variant)["blocks"]:
        out = tuple(NARROW[c] for c in b["channels"])
        cfg = dict(in_chs=cin, out_chs=out, stride=b["stride"])
        if not b["skip"]:
            cfg["no_skip"] = True
        if not b["start_with_relu"] and not preact:
            cfg["start_with_relu"] = False
        block_cfg.append(cfg)
        cin = out[-1]
    norm = partial(torch.nn.BatchNorm2d, eps=eps)
    return XceptionAligned(block_cfg=block_cfg, num_classes=6, preact=preact, norm_layer=norm)


def calibrate_perturb_round(model, generator):
    """Steps 1-3 of the module's doc. Each batch norm is calibrated on what reaches it in
    evaluation mode, after the batch norms before it have been perturbed, so that every one
    normalises what it really sees and the activations stay of the order of one."""
    batch_norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    batch = torch.stack([network_input(photo(label, 299, 299)) for label in LABELS])
    model.eval()
    with torch.no_grad():
        for bn in batch_norms:
            bn.reset_running_stats()
            bn.momentum = None  # a cumulative average: one batch sets the statistics
            bn.train()
            model.forward_features(batch)
            bn.eval()
            c = bn.num_features
            std = bn.running_var.sqrt()
            bn.running_mean += 0.25 * std * torch.randn(c, generator=generator)
            bn.running_var *= torch.exp(0.4 * torch.randn(c, generator=generator))
            bn.weight *= torch.exp(0.1 * torch.randn(c, generator=generator))
            bn.bias += 0.1 * torch.randn(c, generator=generator)
        # Logits of the order of one: weights scaled by the calibration batch's embeddings.
        embeddings = model.forward_head(model.forward_features(batch), pre_logits=True)
        fc = model.head.fc
        scale = embeddings.square().mean().sqrt() * fc.in_features**0.5
        fc.weight.copy_(torch.randn(fc.weight.shape, generator=generator) / scale)
        fc.bias.copy_(0.1 * torch.randn(fc.bias.shape, generator=generator))
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.copy_(tensor.half().float())


def outputs(model, pixels, dtype=torch.float32):
    with torch.no_grad():
        features = model.forward_features(network_input(pixels)[None].to(dtype))
        embedding = model.forward_head(features, pre_logits=True)
        logits = model.head.fc(embedding)
    return embedding[0].numpy(), logits[0].numpy()


def main():
    os.makedirs(OUT, exist_ok=True)
    inputs = {case: photo(label, h, w) for case, label, h, w in CASES}
    save_file(inputs, os.path.join(OUT, "inputs.safetensors"), metadata={"made_by": "tests/golden/make_timm_aligned.py"})
    for variant in timm_aligned.NAMED:
        torch.manual_seed(SEED)
        model = twin(variant)
        calibrate_perturb_round(model, torch.Generator().manual_seed(SEED))
        with tempfile.TemporaryDirectory() as tmp:
            checkpoint = os.path.join(tmp, "model.safetensors")
            save_torch({k: v.contiguous() for k, v in model.state_dict().items()}, checkpoint)
            weights = os.path.join(OUT, f"{variant}.safetensors")
            convert.convert(checkpoint, weights, "float16", labels_path=None, arch=variant)
        # The float16 file holds exactly the values timm computes with.
        stored = load_file(weights)
        assert all(np.all(np.isfinite(v.astype(np.float32))) for v in stored.values())
        golden, all_logits = {}, []
        exact = copy.deepcopy(model).double()
        for case, *_ in CASES:
            # The goldens are timm's outputs in float64, the values these weights define; timm's
            # own float32 lies well within the tests' 1e-4 of them (the twin is well
            # conditioned), so that bound tells a right implementation from a wrong one.
            e32, l32 = outputs(model, inputs[case])
            embedding, logits = (a.astype(np.float32) for a in outputs(exact, inputs[case], torch.float64))
            noise = max(float(np.abs(embedding - e32).max()), float(np.abs(logits - l32).max()))
            assert noise < 5e-5, f"{variant} {case}: timm's float32 strays {noise:.2e}"
            assert float(np.abs(embedding).max()) < 20, f"{variant} {case}: activations too large"
            golden[f"{case}.embedding"] = embedding
            golden[f"{case}.logits"] = logits
            all_logits.append(logits)
            print(
                f"{variant} {case}: logits {np.array2string(logits, precision=3)}, |embedding| max "
                f"{np.abs(embedding).max():.2f}, timm's float32 {noise:.1e} from float64"
            )
        spread = max(float(np.abs(a - b).max()) for a in all_logits for b in all_logits)
        print(f"{variant}: largest logit difference between two cases {spread:.3g}")
        assert spread > 0.1, f"{variant}: the outputs hardly depend on the input"
        save_file(golden, os.path.join(OUT, f"{variant}_outputs.safetensors"), metadata={"variant": variant})


if __name__ == "__main__":
    main()
