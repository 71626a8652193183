// The interface the depthwise kernels share (depthwise_conv_scalar, depthwise_conv_pack4,
// depthwise_conv_tiled): their parameters, which mirror `DepthwiseParams` in
// src/gpu/ops/depthwise.rs, and their bindings. Each kernel declares `Lanes`, the channels one
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
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
// NHWC activations.
@group(0) @binding(1) var<storage, read> input: array<StoredLanes>;
// [3][3][channels] (Keras [3, 3, C, 1]).
@group(0) @binding(2) var<storage, read> kernel: array<Lanes>;
@group(0) @binding(3) var<storage, read_write> output: array<StoredLanes>;
