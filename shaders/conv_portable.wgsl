// Pointwise (1x1) convolution as a GEMM over NHWC pixels: output[m][c] = sum_k input[m][k] *
// weights[k][c] + bias[c], then an optional residual add and an optional ReLU (in that order).
// With stride 2, output pixel m reads input pixel (n, 2y, 2x): the 1x1/2 shortcut convolutions.
//
// Weights are a texture of [in_channels] rows of output-channel texels (4 channels each,
// float32 or float16), zero past out_channels; the folded batchnorm lives in them and in the
// bias. One invocation computes an 8-pixel x 8-channel tile in registers, with no workgroup
// memory or subgroup operations, so it runs on any adapter; any channel counts.

// Activation storage: float32 here; the float16-storage variant of the kernel is this source
// with `enable f16;` and `Stored = f16` (see `Element` in src/gpu/kernels.rs).
alias Stored = f32;

alias Activation = Stored;
#include "conv_gemm_interface.wgsl"

// The input pixel output pixel `row` reads: (n, y * stride, x * stride).
fn input_pixel(row: u32) -> u32 {
    let per_image = params.out_height * params.out_width;
    let n = row / per_image;
    let y = (row % per_image) / params.out_width;
    let x = row % params.out_width;
    return (n * params.in_height + y * params.stride) * params.in_width + x * params.stride;
}

#include "conv_gemm_store.wgsl"

@compute @workgroup_size(8, 8, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let group = gid.x; // 8 output channels
    let row0 = (gid.y + gid.z * groups.y * 8u) * 8u;
    if (group * 8u >= params.out_channels || row0 >= params.rows) {
        return;
    }
    let k_len = params.in_channels;
    let last = params.rows - 1u;
    // Rows past the end re-read the last row; their results are never stored.
    let a0 = input_pixel(row0) * k_len;
    let a1 = input_pixel(min(row0 + 1u, last)) * k_len;
    let a2 = input_pixel(min(row0 + 2u, last)) * k_len;
    let a3 = input_pixel(min(row0 + 3u, last)) * k_len;
    let a4 = input_pixel(min(row0 + 4u, last)) * k_len;
    let a5 = input_pixel(min(row0 + 5u, last)) * k_len;
    let a6 = input_pixel(min(row0 + 6u, last)) * k_len;
    let a7 = input_pixel(min(row0 + 7u, last)) * k_len;
    let v0 = group * 2u;
    let b0 = bias[v0];
    let b1 = bias[v0 + 1u];
    var acc00 = b0;
    var acc01 = b1;
    var acc10 = b0;
    var acc11 = b1;
    var acc20 = b0;
    var acc21 = b1;
    var acc30 = b0;
    var acc31 = b1;
    var acc40 = b0;
    var acc41 = b1;
    var acc50 = b0;
    var acc51 = b1;
    var acc60 = b0;
    var acc61 = b1;
    var acc70 = b0;
    var acc71 = b1;
    for (var k = 0u; k < k_len; k++) {
        let w0 = textureLoad(weights, vec2<u32>(v0, k), 0);
        let w1 = textureLoad(weights, vec2<u32>(v0 + 1u, k), 0);
        let x0 = f32(input[a0 + k]);
        let x1 = f32(input[a1 + k]);
        let x2 = f32(input[a2 + k]);
        let x3 = f32(input[a3 + k]);
        let x4 = f32(input[a4 + k]);
        let x5 = f32(input[a5 + k]);
        let x6 = f32(input[a6 + k]);
        let x7 = f32(input[a7 + k]);
        acc00 += x0 * w0;
        acc01 += x0 * w1;
        acc10 += x1 * w0;
        acc11 += x1 * w1;
        acc20 += x2 * w0;
        acc21 += x2 * w1;
        acc30 += x3 * w0;
        acc31 += x3 * w1;
        acc40 += x4 * w0;
        acc41 += x4 * w1;
        acc50 += x5 * w0;
        acc51 += x5 * w1;
        acc60 += x6 * w0;
        acc61 += x6 * w1;
        acc70 += x7 * w0;
        acc71 += x7 * w1;
    }
    let c0 = v0 * 4u;
    store(row0, c0, acc00);
    store(row0, c0 + 4u, acc01);
    store(row0 + 1u, c0, acc10);
    store(row0 + 1u, c0 + 4u, acc11);
    store(row0 + 2u, c0, acc20);
    store(row0 + 2u, c0 + 4u, acc21);
    store(row0 + 3u, c0, acc30);
    store(row0 + 3u, c0 + 4u, acc31);
    store(row0 + 4u, c0, acc40);
    store(row0 + 4u, c0 + 4u, acc41);
    store(row0 + 5u, c0, acc50);
    store(row0 + 5u, c0 + 4u, acc51);
    store(row0 + 6u, c0, acc60);
    store(row0 + 6u, c0 + 4u, acc61);
    store(row0 + 7u, c0, acc70);
    store(row0 + 7u, c0 + 4u, acc71);
}
