// A convolution as an implicit GEMM over NHWC pixels, for adapters whose 8-invocation
// workgroups are one subgroup (CPU Vulkan drivers such as lavapipe, where every per-invocation
// memory load is emulated one lane at a time). It runs the pointwise convolutions, the 1x1/2
// shortcuts and the 3x3 stem convolution whose input has 32 channels:
//   output[m][c] = sum over taps (ky, kx) and k of input[pixel(m, ky, kx)][k] *
//                  weights[(ky * kernel + kx) * in_channels + k][c] + bias[c]
// (taps falling in the padding read zero), then an optional residual add and ReLU.
//
// A workgroup is 8 invocations computing 16 pixels x 64 output channels; each invocation holds
// 16 pixels x 8 channels in registers. Per tap and 4 input channels, each invocation loads one
// vec4 of one pixel for each half of the tile and subgroupBroadcast hands every pixel to all 8;
// the weights come from a texture (whose fetches are cheaper than storage loads there).
//
// Needs `in_channels` and `out_channels` to be multiples of 4, and the adapter's SUBGROUP
// feature with subgroups of at least 8 invocations; the dispatcher checks both.

struct Params {
    // Output pixels (GEMM rows): batch * out_height * out_width.
    rows: u32,
    in_channels: u32,
    out_channels: u32,
    relu: u32,
    has_residual: u32,
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
@group(0) @binding(1) var<storage, read> input: array<vec4<f32>>;
// [in_channels] rows of output-channel texels (4 channels each), zero past out_channels.
@group(0) @binding(2) var weights: texture_2d<f32>;
@group(0) @binding(3) var<storage, read> bias: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> residual: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> output: array<vec4<f32>>;

// Where output pixel `row` reads its taps: (image, top input row, left input column), the
// corner of its kernel window, which may lie in the padding.
fn window(row: u32) -> vec3<i32> {
    let per_image = params.out_height * params.out_width;
    let n = row / per_image;
    let y = (row % per_image) / params.out_width;
    let x = row % params.out_width;
    return vec3<i32>(
        i32(n),
        i32(y * params.stride) - i32(params.pad_top),
        i32(x * params.stride) - i32(params.pad_left),
    );
}

// The first vec4 of the input pixel that tap (ky, kx) of `corner` reads, and 1 if it lies in
// the image or 0 if in the padding (the clamped pixel's values are then multiplied away).
fn tap(corner: vec3<i32>, ky: u32, kx: u32) -> vec2<u32> {
    let iy = corner.y + i32(ky);
    let ix = corner.z + i32(kx);
    let inside = iy >= 0 && iy < i32(params.in_height) && ix >= 0 && ix < i32(params.in_width);
    let y = u32(clamp(iy, 0, i32(params.in_height) - 1));
    let x = u32(clamp(ix, 0, i32(params.in_width) - 1));
    let pixel = (u32(corner.x) * params.in_height + y) * params.in_width + x;
    return vec2<u32>(pixel * (params.in_channels / 4u), select(0u, 1u, inside));
}

// Adds the residual, rectifies and stores the 4 channels from `c0` of pixel `row`.
fn store(row: u32, c0: u32, value: vec4<f32>) {
    if (row < params.rows && c0 < params.out_channels) {
        let i = (row * params.out_channels + c0) / 4u;
        var v = value;
        if (params.has_residual != 0u) {
            v += residual[i];
        }
        if (params.relu != 0u) {
            v = max(v, vec4<f32>(0.0));
        }
        output[i] = v;
    }
}

@compute @workgroup_size(8, 1, 1)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    // Texel (4-channel) column of this invocation's first 4 channels.
    let t0 = (wid.x * 8u + lane) * 2u;
    let row0 = (wid.y + wid.z * groups.y) * 16u;
    let k4 = params.in_channels / 4u;
    // Rows past the end re-read the last row; their results are never stored.
    let last = params.rows - 1u;
    let corner_low = window(min(row0 + lane, last));
    let corner_high = window(min(row0 + 8u + lane, last));
    let b0 = bias[t0];
    let b1 = bias[t0 + 1u];
    var acc0_0 = b0;
    var acc0_1 = b1;
    var acc1_0 = b0;
    var acc1_1 = b1;
    var acc2_0 = b0;
    var acc2_1 = b1;
    var acc3_0 = b0;
    var acc3_1 = b1;
    var acc4_0 = b0;
    var acc4_1 = b1;
    var acc5_0 = b0;
    var acc5_1 = b1;
    var acc6_0 = b0;
    var acc6_1 = b1;
    var acc7_0 = b0;
    var acc7_1 = b1;
    var acc8_0 = b0;
    var acc8_1 = b1;
    var acc9_0 = b0;
    var acc9_1 = b1;
    var acc10_0 = b0;
    var acc10_1 = b1;
    var acc11_0 = b0;
    var acc11_1 = b1;
    var acc12_0 = b0;
    var acc12_1 = b1;
    var acc13_0 = b0;
    var acc13_1 = b1;
    var acc14_0 = b0;
    var acc14_1 = b1;
    var acc15_0 = b0;
    var acc15_1 = b1;
    for (var t = 0u; t < params.kernel * params.kernel; t++) {
        let ky = t / params.kernel;
        let kx = t % params.kernel;
        let tap_low = tap(corner_low, ky, kx);
        let tap_high = tap(corner_high, ky, kx);
        let keep_low = f32(tap_low.y);
        let keep_high = f32(tap_high.y);
        let first_row = t * params.in_channels;
        for (var kq = 0u; kq < k4; kq++) {
            let low = input[tap_low.x + kq] * keep_low;
            let high = input[tap_high.x + kq] * keep_high;
            let x0 = subgroupBroadcast(low, 0u);
            let x1 = subgroupBroadcast(low, 1u);
            let x2 = subgroupBroadcast(low, 2u);
            let x3 = subgroupBroadcast(low, 3u);
            let x4 = subgroupBroadcast(low, 4u);
            let x5 = subgroupBroadcast(low, 5u);
            let x6 = subgroupBroadcast(low, 6u);
            let x7 = subgroupBroadcast(low, 7u);
            let x8 = subgroupBroadcast(high, 0u);
            let x9 = subgroupBroadcast(high, 1u);
            let x10 = subgroupBroadcast(high, 2u);
            let x11 = subgroupBroadcast(high, 3u);
            let x12 = subgroupBroadcast(high, 4u);
            let x13 = subgroupBroadcast(high, 5u);
            let x14 = subgroupBroadcast(high, 6u);
            let x15 = subgroupBroadcast(high, 7u);
            for (var j = 0u; j < 4u; j++) {
                let k = first_row + kq * 4u + j;
                let w0 = textureLoad(weights, vec2<u32>(t0, k), 0);
                let w1 = textureLoad(weights, vec2<u32>(t0 + 1u, k), 0);
                acc0_0 += x0[j] * w0;
                acc0_1 += x0[j] * w1;
                acc1_0 += x1[j] * w0;
                acc1_1 += x1[j] * w1;
                acc2_0 += x2[j] * w0;
                acc2_1 += x2[j] * w1;
                acc3_0 += x3[j] * w0;
                acc3_1 += x3[j] * w1;
                acc4_0 += x4[j] * w0;
                acc4_1 += x4[j] * w1;
                acc5_0 += x5[j] * w0;
                acc5_1 += x5[j] * w1;
                acc6_0 += x6[j] * w0;
                acc6_1 += x6[j] * w1;
                acc7_0 += x7[j] * w0;
                acc7_1 += x7[j] * w1;
                acc8_0 += x8[j] * w0;
                acc8_1 += x8[j] * w1;
                acc9_0 += x9[j] * w0;
                acc9_1 += x9[j] * w1;
                acc10_0 += x10[j] * w0;
                acc10_1 += x10[j] * w1;
                acc11_0 += x11[j] * w0;
                acc11_1 += x11[j] * w1;
                acc12_0 += x12[j] * w0;
                acc12_1 += x12[j] * w1;
                acc13_0 += x13[j] * w0;
                acc13_1 += x13[j] * w1;
                acc14_0 += x14[j] * w0;
                acc14_1 += x14[j] * w1;
                acc15_0 += x15[j] * w0;
                acc15_1 += x15[j] * w1;
            }
        }
    }
    let c0 = t0 * 4u;
    store(row0, c0, acc0_0);
    store(row0, c0 + 4u, acc0_1);
    store(row0 + 1u, c0, acc1_0);
    store(row0 + 1u, c0 + 4u, acc1_1);
    store(row0 + 2u, c0, acc2_0);
    store(row0 + 2u, c0 + 4u, acc2_1);
    store(row0 + 3u, c0, acc3_0);
    store(row0 + 3u, c0 + 4u, acc3_1);
    store(row0 + 4u, c0, acc4_0);
    store(row0 + 4u, c0 + 4u, acc4_1);
    store(row0 + 5u, c0, acc5_0);
    store(row0 + 5u, c0 + 4u, acc5_1);
    store(row0 + 6u, c0, acc6_0);
    store(row0 + 6u, c0 + 4u, acc6_1);
    store(row0 + 7u, c0, acc7_0);
    store(row0 + 7u, c0 + 4u, acc7_1);
    store(row0 + 8u, c0, acc8_0);
    store(row0 + 8u, c0 + 4u, acc8_1);
    store(row0 + 9u, c0, acc9_0);
    store(row0 + 9u, c0 + 4u, acc9_1);
    store(row0 + 10u, c0, acc10_0);
    store(row0 + 10u, c0 + 4u, acc10_1);
    store(row0 + 11u, c0, acc11_0);
    store(row0 + 11u, c0 + 4u, acc11_1);
    store(row0 + 12u, c0, acc12_0);
    store(row0 + 12u, c0 + 4u, acc12_1);
    store(row0 + 13u, c0, acc13_0);
    store(row0 + 13u, c0 + 4u, acc13_1);
    store(row0 + 14u, c0, acc14_0);
    store(row0 + 14u, c0 + 4u, acc14_1);
    store(row0 + 15u, c0, acc15_0);
    store(row0 + 15u, c0 + 4u, acc15_1);
}
