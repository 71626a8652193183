// The interface the depthwise kernels share (depthwise_conv_scalar, depthwise_conv_pack4,
// depthwise_conv_tiled): their parameters, which mirror `DepthwiseParams` in
// src/gpu/ops/depthwise.rs, their bindings, and the bias (a folded batchnorm) and ReLU on
// their output. Each kernel declares `Lanes`, the channels one
// element holds (f32, or vec4<f32> for 4 at a time), and `StoredLanes`, the same in the
// activations' storage type.

// Activation storage: float32 here; the float16-storage variant of a kernel is its source with
// `enable f16;` and `Stored = f16` (see `Element` in src/gpu/kernels.rs).
alias Stored = f32;

struct Params {
    batch: u32,
    height: u32,
    width: u32,
    channels: u32,
    relu_input: u32,
    relu_output: u32,
    has_bias: u32,
    _pad0: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
// NHWC activations.
@group(0) @binding(1) var<storage, read> input: array<StoredLanes>;
// [3][3][channels] (Keras [3, 3, C, 1]).
@group(0) @binding(2) var<storage, read> kernel: array<Lanes>;
@group(0) @binding(3) var<storage, read_write> output: array<StoredLanes>;
// [channels], the folded batchnorm after the convolution, read where has_bias is 1.
@group(0) @binding(4) var<storage, read> bias: array<Lanes>;

// `value`, an output element of channel element `c`, plus the bias and rectified if asked.
fn finish(value: Lanes, c: u32) -> Lanes {
    var v = value;
    if (params.has_bias != 0u) {
        v += bias[c];
    }
    if (params.relu_output != 0u) {
        v = max(v, Lanes(0.0));
    }
    return v;
}
