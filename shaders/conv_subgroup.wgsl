// A convolution as an implicit GEMM over NHWC pixels, for adapters whose 8-invocation
// workgroups are one subgroup (CPU Vulkan drivers such as lavapipe, where every per-invocation
// memory load is emulated one lane at a time). It runs the pointwise convolutions, the 1x1/2
// shortcuts and the 3x3 stem convolution whose input has 32 channels:
//   output[m][c] = sum over taps (ky, kx) and k of input[pixel(m, ky, kx)][k] *
//                  weights[(ky * kernel + kx) * in_channels + k][c] + bias[c]
// (taps falling in the padding read zero), then an optional residual add and ReLU.
//
// A workgroup is 8 invocations computing 32 pixels x 64 output channels; each invocation holds
// 32 pixels x 8 channels in registers. Per tap and 4 input channels, each invocation loads one
// vec4 of one pixel for each quarter of the tile and subgroupBroadcast hands every pixel to all
// 8; the weights come from a texture (whose fetches are cheaper than storage loads there).
//
// Needs `in_channels` and `out_channels` to be multiples of 4, and the adapter's SUBGROUP
// feature with subgroups of at least 8 invocations; the dispatcher checks both.

// Activation storage: float32 here; the float16-storage variant of the kernel is this source
// with `enable f16;` and `Stored = f16` (see `Element` in src/gpu/kernels.rs).
alias Stored = f32;

alias Activation = vec4<Stored>;
#include "conv_gemm_interface.wgsl"

#include "conv_gemm_window.wgsl"

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
            v += vec4<f32>(residual[i]);
        }
        if (params.relu != 0u) {
            v = max(v, vec4<f32>(0.0));
        }
        output[i] = vec4<Stored>(v);
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
    let row0 = (wid.y + wid.z * groups.y) * 32u;
    let k4 = params.in_channels / 4u;
    // This invocation loads pixels row0 + lane + 8q for q = 0..3; rows past the end re-read
    // the last row, and their results are never stored.
    let last = params.rows - 1u;
    let corner0 = window(min(row0 + 0u + lane, last));
    let corner1 = window(min(row0 + 8u + lane, last));
    let corner2 = window(min(row0 + 16u + lane, last));
    let corner3 = window(min(row0 + 24u + lane, last));
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
    var acc16_0 = b0;
    var acc16_1 = b1;
    var acc17_0 = b0;
    var acc17_1 = b1;
    var acc18_0 = b0;
    var acc18_1 = b1;
    var acc19_0 = b0;
    var acc19_1 = b1;
    var acc20_0 = b0;
    var acc20_1 = b1;
    var acc21_0 = b0;
    var acc21_1 = b1;
    var acc22_0 = b0;
    var acc22_1 = b1;
    var acc23_0 = b0;
    var acc23_1 = b1;
    var acc24_0 = b0;
    var acc24_1 = b1;
    var acc25_0 = b0;
    var acc25_1 = b1;
    var acc26_0 = b0;
    var acc26_1 = b1;
    var acc27_0 = b0;
    var acc27_1 = b1;
    var acc28_0 = b0;
    var acc28_1 = b1;
    var acc29_0 = b0;
    var acc29_1 = b1;
    var acc30_0 = b0;
    var acc30_1 = b1;
    var acc31_0 = b0;
    var acc31_1 = b1;
    for (var t = 0u; t < params.kernel * params.kernel; t++) {
        let ky = t / params.kernel;
        let kx = t % params.kernel;
        let tap0 = tap(corner0, ky, kx);
        let keep0 = f32(tap0.y);
        let tap1 = tap(corner1, ky, kx);
        let keep1 = f32(tap1.y);
        let tap2 = tap(corner2, ky, kx);
        let keep2 = f32(tap2.y);
        let tap3 = tap(corner3, ky, kx);
        let keep3 = f32(tap3.y);
        let first_row = t * params.in_channels;
        for (var kq = 0u; kq < k4; kq++) {
            let own0 = vec4<f32>(input[tap0.x + kq]) * keep0;
            let own1 = vec4<f32>(input[tap1.x + kq]) * keep1;
            let own2 = vec4<f32>(input[tap2.x + kq]) * keep2;
            let own3 = vec4<f32>(input[tap3.x + kq]) * keep3;
            let x0 = subgroupBroadcast(own0, 0u);
            let x1 = subgroupBroadcast(own0, 1u);
            let x2 = subgroupBroadcast(own0, 2u);
            let x3 = subgroupBroadcast(own0, 3u);
            let x4 = subgroupBroadcast(own0, 4u);
            let x5 = subgroupBroadcast(own0, 5u);
            let x6 = subgroupBroadcast(own0, 6u);
            let x7 = subgroupBroadcast(own0, 7u);
            let x8 = subgroupBroadcast(own1, 0u);
            let x9 = subgroupBroadcast(own1, 1u);
            let x10 = subgroupBroadcast(own1, 2u);
            let x11 = subgroupBroadcast(own1, 3u);
            let x12 = subgroupBroadcast(own1, 4u);
            let x13 = subgroupBroadcast(own1, 5u);
            let x14 = subgroupBroadcast(own1, 6u);
            let x15 = subgroupBroadcast(own1, 7u);
            let x16 = subgroupBroadcast(own2, 0u);
            let x17 = subgroupBroadcast(own2, 1u);
            let x18 = subgroupBroadcast(own2, 2u);
            let x19 = subgroupBroadcast(own2, 3u);
            let x20 = subgroupBroadcast(own2, 4u);
            let x21 = subgroupBroadcast(own2, 5u);
            let x22 = subgroupBroadcast(own2, 6u);
            let x23 = subgroupBroadcast(own2, 7u);
            let x24 = subgroupBroadcast(own3, 0u);
            let x25 = subgroupBroadcast(own3, 1u);
            let x26 = subgroupBroadcast(own3, 2u);
            let x27 = subgroupBroadcast(own3, 3u);
            let x28 = subgroupBroadcast(own3, 4u);
            let x29 = subgroupBroadcast(own3, 5u);
            let x30 = subgroupBroadcast(own3, 6u);
            let x31 = subgroupBroadcast(own3, 7u);
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
                acc16_0 += x16[j] * w0;
                acc16_1 += x16[j] * w1;
                acc17_0 += x17[j] * w0;
                acc17_1 += x17[j] * w1;
                acc18_0 += x18[j] * w0;
                acc18_1 += x18[j] * w1;
                acc19_0 += x19[j] * w0;
                acc19_1 += x19[j] * w1;
                acc20_0 += x20[j] * w0;
                acc20_1 += x20[j] * w1;
                acc21_0 += x21[j] * w0;
                acc21_1 += x21[j] * w1;
                acc22_0 += x22[j] * w0;
                acc22_1 += x22[j] * w1;
                acc23_0 += x23[j] * w0;
                acc23_1 += x23[j] * w1;
                acc24_0 += x24[j] * w0;
                acc24_1 += x24[j] * w1;
                acc25_0 += x25[j] * w0;
                acc25_1 += x25[j] * w1;
                acc26_0 += x26[j] * w0;
                acc26_1 += x26[j] * w1;
                acc27_0 += x27[j] * w0;
                acc27_1 += x27[j] * w1;
                acc28_0 += x28[j] * w0;
                acc28_1 += x28[j] * w1;
                acc29_0 += x29[j] * w0;
                acc29_1 += x29[j] * w1;
                acc30_0 += x30[j] * w0;
                acc30_1 += x30[j] * w1;
                acc31_0 += x31[j] * w0;
                acc31_1 += x31[j] * w1;
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
    store(row0 + 16u, c0, acc16_0);
    store(row0 + 16u, c0 + 4u, acc16_1);
    store(row0 + 17u, c0, acc17_0);
    store(row0 + 17u, c0 + 4u, acc17_1);
    store(row0 + 18u, c0, acc18_0);
    store(row0 + 18u, c0 + 4u, acc18_1);
    store(row0 + 19u, c0, acc19_0);
    store(row0 + 19u, c0 + 4u, acc19_1);
    store(row0 + 20u, c0, acc20_0);
    store(row0 + 20u, c0 + 4u, acc20_1);
    store(row0 + 21u, c0, acc21_0);
    store(row0 + 21u, c0 + 4u, acc21_1);
    store(row0 + 22u, c0, acc22_0);
    store(row0 + 22u, c0 + 4u, acc22_1);
    store(row0 + 23u, c0, acc23_0);
    store(row0 + 23u, c0 + 4u, acc23_1);
    store(row0 + 24u, c0, acc24_0);
    store(row0 + 24u, c0 + 4u, acc24_1);
    store(row0 + 25u, c0, acc25_0);
    store(row0 + 25u, c0 + 4u, acc25_1);
    store(row0 + 26u, c0, acc26_0);
    store(row0 + 26u, c0 + 4u, acc26_1);
    store(row0 + 27u, c0, acc27_0);
    store(row0 + 27u, c0 + 4u, acc27_1);
    store(row0 + 28u, c0, acc28_0);
    store(row0 + 28u, c0 + 4u, acc28_1);
    store(row0 + 29u, c0, acc29_0);
    store(row0 + 29u, c0 + 4u, acc29_1);
    store(row0 + 30u, c0, acc30_0);
    store(row0 + 30u, c0 + 4u, acc30_1);
    store(row0 + 31u, c0, acc31_0);
    store(row0 + 31u, c0 + 4u, acc31_1);
}
