// The interface every GEMM convolution kernel shares (conv_portable, conv_subgroup,
// conv_tiled, conv_coopmat): its parameters, which mirror `GemmParams` in
// src/gpu/ops/conv.rs, and its bindings. Kernels `#include` it.

struct Params {
    // Output pixels (GEMM rows): batch * out_height * out_width.
    rows: u32,
    in_channels: u32,
    out_channels: u32,
    relu: u32,
    has_residual: u32,
    // Window size (1 or 3), stride and top/left padding.
    kernel: u32,
    stride: u32,
    pad_top: u32,
    pad_left: u32,
    in_height: u32,
    in_width: u32,
    out_height: u32,
    out_width: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
// NHWC activations; each kernel declares its `Activation` element: `Stored` (float32 or
// float16), or vec4<Stored> where it reads 4 channels at a time.
@group(0) @binding(1) var<storage, read> input: array<Activation>;
// [kernel * kernel * in_channels] rows (HWI order) of output-channel texels (4 channels each,
// float32 or float16), zero past out_channels, padded to 128 channels: every channel tile a
// kernel launches is inside it.
@group(0) @binding(2) var weights: texture_2d<f32>;
// Folded batchnorm bias, zero-padded like the weight rows.
@group(0) @binding(3) var<storage, read> bias: array<vec4<f32>>;
// Of the output's shape; a 16-byte placeholder when has_residual is 0.
@group(0) @binding(4) var<storage, read> residual: array<Activation>;
@group(0) @binding(5) var<storage, read_write> output: array<Activation>;
