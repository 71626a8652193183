// A convolution as an implicit GEMM over NHWC pixels, for GPUs: operand tiles are staged in
// workgroup memory and each invocation accumulates a 4-pixel x 4-channel block in registers.
//   output[m][c] = sum over taps (ky, kx) and k of input[pixel(m, ky, kx)][k] *
//                  weights[(ky * kernel + kx) * in_channels + k][c] + bias[c]
// (taps falling in the padding read zero), then an optional residual add and ReLU. It runs
// every convolution of the network: the pointwise ones, the 1x1/2 shortcuts and both 3x3
// stem convolutions, with any channel counts and batch.
//
// A workgroup is 256 invocations computing 16 * ROWS pixels x 64 output channels. Per step of
// 16 GEMM columns (K), the workgroup stages a 16 * ROWS x 16 tile of the input (transposed,
// so that a step reads one value per pixel) and a 16 x 64 tile of the weights, then every
// invocation does 16 x ROWS x 4 multiply-adds from them. Invocation (tx, ty) owns channels
// 4tx..4tx+3 of pixels ty, ty + 16, ..., ty + 16 (ROWS - 1) of the tile.
//
// `Operand` is the type the tiles and products use. This file is the float32 kernel with
// 64-pixel tiles; the variants are this source with one line changed: `conv_tiled_f16`
// has `enable f16;` and `Operand = f16` (half the workgroup memory and float16 products, with
// float32 sums), `conv_tiled_32` and `conv_tiled_32_f16` have `ROWS = 2u` (32-pixel
// tiles, which waste less on the small maps of the exit flow).

alias Operand = f32;

// Pixel rows of the tile per invocation: the tile is 16 * ROWS pixels.
const ROWS: u32 = 4u;

// Activation storage: float32 here; the float16-storage variant of the kernel is this source
// with `enable f16;` and `Stored = f16` (see `Element` in src/gpu/kernels.rs).
alias Stored = f32;

alias Activation = Stored;
#include "conv_gemm_interface.wgsl"

const TILE_PIXELS: u32 = 16u * ROWS;
const TILE_TEXELS: u32 = 16u; // 64 channels
const STEP: u32 = 16u;
// Invocations staging one pixel's STEP values, ROWS each.
const LANES: u32 = STEP / ROWS;

// Input tile, [k][pixel]: one step reads ROWS pixels' values of one k.
var<workgroup> tile_a: array<Operand, STEP * TILE_PIXELS>;
// Weight tile, [k][texel].
var<workgroup> tile_b: array<vec4<Operand>, 256>; // STEP * TILE_TEXELS

#include "conv_gemm_window.wgsl"

// Input value k (HWI order over the window) of the pixel whose window starts at `corner`:
// zero in the padding and past the last k.
fn input_at(corner: vec3<i32>, k: u32, k_len: u32) -> f32 {
    if (k >= k_len) {
        return 0.0;
    }
    let tap = k / params.in_channels;
    let channel = k % params.in_channels;
    let iy = corner.y + i32(tap / params.kernel);
    let ix = corner.z + i32(tap % params.kernel);
    if (iy < 0 || iy >= i32(params.in_height) || ix < 0 || ix >= i32(params.in_width)) {
        return 0.0;
    }
    let pixel = (u32(corner.x) * params.in_height + u32(iy)) * params.in_width + u32(ix);
    return f32(input[pixel * params.in_channels + channel]);
}

#include "conv_gemm_store.wgsl"

@compute @workgroup_size(256, 1, 1)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let row0 = (wid.y + wid.z * groups.y) * TILE_PIXELS;
    let texel0 = wid.x * TILE_TEXELS;
    let k_len = params.kernel * params.kernel * params.in_channels;
    // Staging: this invocation loads k values ROWS q .. ROWS q + ROWS - 1 of the step for tile
    // pixel `p`, and weight texel `lid % 16` of step row `lid / 16`. Pixels past the end
    // re-read the last pixel; their results are never stored.
    let p = lid / LANES;
    let q = lid % LANES;
    let corner = window(min(row0 + p, params.rows - 1u));
    let b_row = lid / TILE_TEXELS;
    let b_texel = lid % TILE_TEXELS;
    // Compute: this invocation's texel column and first pixel.
    let tx = lid % TILE_TEXELS;
    let ty = lid / TILE_TEXELS;
    let b0 = bias[texel0 + tx];
    var acc: array<vec4<f32>, ROWS>;
    for (var r = 0u; r < ROWS; r++) {
        acc[r] = b0;
    }
    for (var k0 = 0u; k0 < k_len; k0 += STEP) {
        for (var j = 0u; j < ROWS; j++) {
            let k = q * ROWS + j;
            tile_a[k * TILE_PIXELS + p] = Operand(input_at(corner, k0 + k, k_len));
        }
        var w = vec4<f32>(0.0);
        if (k0 + b_row < k_len) {
            w = textureLoad(weights, vec2<i32>(i32(texel0 + b_texel), i32(k0 + b_row)), 0);
        }
        tile_b[b_row * TILE_TEXELS + b_texel] = vec4<Operand>(w);
        workgroupBarrier();
        for (var k = 0u; k < STEP; k++) {
            let b = tile_b[k * TILE_TEXELS + tx];
            let a = k * TILE_PIXELS + ty;
            for (var r = 0u; r < ROWS; r++) {
                acc[r] += vec4<f32>(tile_a[a + 16u * r] * b);
            }
        }
        workgroupBarrier();
    }
    let c0 = (texel0 + tx) * 4u;
    for (var r = 0u; r < ROWS; r++) {
        store(row0 + ty + 16u * r, c0, acc[r]);
    }
}
