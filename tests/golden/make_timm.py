#!/usr/bin/env python3
"""Regenerate tests/golden/timm/: timm's own outputs for the timm conformance test.

timm's ``legacy_xception`` is built with ``num_classes=6`` and given the bundled backbone's
convolutions (``timm_checkpoint.backbone_state_dict``). Its batch norms are then calibrated on
real photos, so that each one normalises what it actually sees there, and perturbed, so that the
test also covers statistics far from Keras' own:

1. every ``BatchNorm2d`` forgets its statistics and averages over the calibration batch
   (``momentum=None``); one forward pass in training mode over the six bundled photos at
   299x299 sets each mean and variance from the activations it sees;
2. each mean moves by 0.25 standard deviations times a normal draw, each variance is scaled by
   ``exp(0.4 * normal)``, each scale by ``exp(0.1 * normal)``;
3. ``fc`` gets normal weights of standard deviation 0.05 and biases of 0.1 (seeded).

A network whose batch norms ignore the data (random statistics over random weights) gives the
same output for every input, and a test against it cannot tell right from wrong. This script
checks that its cases' logits differ from one photo to the next, and that Keras' pooling
(``tf_same``) would move them (the pools see even-sized maps at 299x299, 224x224, 171x203 and
150x150).

Writes ``timm/bn_and_fc.safetensors`` (every batch norm's four tensors and ``fc``, timm names,
float32) and ``timm/<case>.safetensors`` per case: ``pixels`` (uint8 HxWx3, the bundled photo
resized with PIL bilinear), ``embedding`` (timm's pooled features, 2048) and ``logits`` (6),
computed by timm in float32 on ``pixels / 127.5 - 1``.

Usage (from the repository root)::

    pip install -r tests/golden/requirements-timm.txt
    python tests/golden/make_timm.py
"""

from __future__ import annotations

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)

import numpy as np  # noqa: E402
import timm  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from safetensors.numpy import save_file  # noqa: E402

import timm_checkpoint  # noqa: E402

LABELS = ["cup", "fork", "glass", "knife", "plate", "spoon"]
CALIBRATION_SIZE = 299
SEED = 0


def photo(label, height, width):
    image = Image.open(os.path.join(ROOT, "samples", f"{label}.jpg")).convert("RGB")
    return np.asarray(image.resize((width, height), Image.BILINEAR), dtype=np.uint8)


def network_input(pixels):
    x = pixels.astype(np.float32) / np.float32(127.5) - np.float32(1.0)
    return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))


def calibrate_and_perturb(model, generator):
    batch_norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(batch_norms) == 40, len(batch_norms)
    for bn in batch_norms:
        bn.reset_running_stats()
        bn.momentum = None  # a cumulative average: one batch sets the statistics
    batch = torch.stack([network_input(photo(label, CALIBRATION_SIZE, CALIBRATION_SIZE)) for label in LABELS])
    model.train()
    with torch.no_grad():
        model.forward_features(batch)
    model.eval()
    with torch.no_grad():
        for bn in batch_norms:
            c = bn.num_features
            std = bn.running_var.sqrt()
            bn.running_mean += 0.25 * std * torch.randn(c, generator=generator)
            bn.running_var *= torch.exp(0.4 * torch.randn(c, generator=generator))
            bn.weight *= torch.exp(0.1 * torch.randn(c, generator=generator))
        model.fc.weight.copy_(0.05 * torch.randn(model.fc.weight.shape, generator=generator))
        model.fc.bias.copy_(0.1 * torch.randn(model.fc.bias.shape, generator=generator))


def outputs(model, pixels):
    with torch.no_grad():
        features = model.forward_features(network_input(pixels)[None])
        embedding = model.forward_head(features, pre_logits=True)
        logits = model.fc(embedding)
    return embedding[0].numpy(), logits[0].numpy()


def main():
    torch.manual_seed(SEED)
    model = timm.create_model("legacy_xception", pretrained=False, num_classes=6)
    missing, unexpected = model.load_state_dict(
        {k: torch.from_numpy(v) for k, v in timm_checkpoint.backbone_state_dict().items()}, strict=False
    )
    assert not unexpected and sorted(missing) == ["fc.bias", "fc.weight"], (missing, unexpected)
    calibrate_and_perturb(model, torch.Generator().manual_seed(SEED))

    batch_norms = {name for name, m in model.named_modules() if isinstance(m, torch.nn.BatchNorm2d)}
    bn_and_fc = {
        k: v.numpy().astype(np.float32)
        for k, v in model.state_dict().items()
        if k.startswith("fc.") or (k.rsplit(".", 1)[0] in batch_norms and not k.endswith("num_batches_tracked"))
    }
    os.makedirs(os.path.join(HERE, "timm"), exist_ok=True)
    save_file(bn_and_fc, timm_checkpoint.BN_AND_FC, metadata={"made_by": "tests/golden/make_timm.py"})

    # The committed files must rebuild the model that computed the goldens.
    rebuilt = timm.create_model("legacy_xception", pretrained=False, num_classes=6).eval()
    rebuilt.load_state_dict({k: torch.from_numpy(v) for k, v in timm_checkpoint.timm_state_dict().items()}, strict=False)

    # The same model pooling as Keras does, to show that the padding matters at every size.
    tf_same_pools = timm.create_model("legacy_xception", pretrained=False, num_classes=6).eval()
    tf_same_pools.load_state_dict(model.state_dict())
    for module in tf_same_pools.modules():
        if isinstance(module, torch.nn.MaxPool2d):
            module.forward = _tf_same_pool
    all_logits = []
    for case, label, height, width in timm_checkpoint.CASES:
        pixels = photo(label, height, width)
        embedding, logits = outputs(model, pixels)
        again = outputs(rebuilt, pixels)
        assert np.array_equal(embedding, again[0]) and np.array_equal(logits, again[1]), case
        moved = float(np.abs(outputs(tf_same_pools, pixels)[1] - logits).max())
        assert moved > 1e-2, f"{case}: the pool padding does not matter at this size"
        all_logits.append(logits)
        meta = {"image": f"samples/{label}.jpg", "height": str(height), "width": str(width)}
        save_file(
            {"pixels": pixels, "embedding": embedding, "logits": logits},
            os.path.join(HERE, "timm", f"{case}.safetensors"),
            metadata=meta,
        )
        top = int(np.argmax(logits))
        print(
            f"{case}: logits {np.array2string(logits, precision=3)} top {LABELS[top]}; "
            f"|embedding| max {np.abs(embedding).max():.3f}; Keras' pooling moves the logits by {moved:.3g}"
        )
    spread = max(float(np.abs(a - b).max()) for a in all_logits for b in all_logits)
    print(f"largest logit difference between two cases: {spread:.3g}")
    assert spread > 1.0, "the outputs hardly depend on the input"


def _tf_same_pool(x):
    """Keras' 'same' 3x3/2 max-pool: on a map of n pixels it pads 2 in all for odd n (one on
    each side, as timm does) and 1 for even n (after only), with cells that never win."""
    h, w = x.shape[-2:]
    padded = torch.nn.functional.pad(x, (w % 2, 1, h % 2, 1), value=-float("inf"))
    return torch.nn.functional.max_pool2d(padded, 3, 2)


if __name__ == "__main__":
    main()
