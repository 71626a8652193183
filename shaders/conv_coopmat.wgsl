// A convolution as an implicit GEMM over NHWC pixels on tensor cores, through wgpu's experimental
// cooperative matrices (16x16 float16 A and B, float32 accumulators):
//   output[m][c] = sum over taps (ky, kx) and k of input[pixel(m, ky, kx)][k] *
//                  weights[(ky * kernel + kx) * in_channels + k][c] + bias[c]
// (taps falling in the padding read zero), then an optional residual add and ReLU.
//
// A workgroup of 128 invocations (4 subgroups of 32) computes 64 pixels x 64 output channels;
// each subgroup owns a 32x32 quarter as 2x2 accumulator matrices. Per 32-deep slice of the GEMM's
// K = kernel * kernel * in_channels, all 128 invocations stage the 64x32 slice of pixels and the
// 32x64 slice of weights into workgroup memory as float16 (zero for padding taps, for k >= K and
// for pixels past the end; values clamped to the float16 range), and each subgroup multiplies
// its 16x16 pieces out of it. The epilogue passes each accumulator through a per-subgroup 16x16
// float32 scratch and writes it with bias, residual and ReLU. Workgroup memory (15872 bytes,
// under the 16384-byte default limit):
//   tile_a   64 rows x 40 float16 (32 + 8 padding)  5120
//   tile_b   32 rows x 72 float16 (64 + 8 padding)  4608
//   tile_c   4 subgroups x 16 rows x 20 float32     5120
//   corners  64 x vec4<i32>                         1024
// The row paddings keep the rows of a 16x16 load on distinct banks and every row start 16-byte
// aligned, as cooperative loads and stores require.
//
// Any channel counts. Needs the adapter's cooperative matrices with a 16x16x16 float16 x float16
// -> float32 configuration, SHADER_F16, and SUBGROUP with subgroups of exactly 32 invocations
// (4 subgroups per workgroup); the dispatcher checks these.

enable f16;
enable wgpu_cooperative_matrix;

// Activation storage: float32 here; the float16-storage variant of the kernel is this source
// with `enable f16;` and `Stored = f16` (see `Element` in src/gpu/kernels.rs).
alias Stored = f32;

alias Activation = Stored;
#include "conv_gemm_interface.wgsl"

// Row strides (in elements) of the workgroup tiles.
const A_STRIDE: u32 = 40u;
const B_STRIDE: u32 = 72u;
const C_STRIDE: u32 = 20u;
const F16_MAX: f32 = 65504.0;

// The pixel slice, row-major: [pixel][k].
var<workgroup> tile_a: array<f16, 2560>;
// The weight slice, row-major: [k][channel].
var<workgroup> tile_b: array<f16, 2304>;
// One 16x16 accumulator at a time per subgroup, row-major.
var<workgroup> tile_c: array<f32, 1280>;
// Per tile pixel: (first input pixel of its image, top input row and left input column of its
// kernel window, 1 if the pixel exists else 0).
var<workgroup> corners: array<vec4<i32>, 64>;

// Adds bias, residual and ReLU to the 16x16 block in the subgroup's scratch at `scratch` and
// stores it at pixels row0.. and channels col0..; `lane` is 0..31 within the subgroup.
fn store_block(scratch: u32, row0: u32, col0: u32, lane: u32) {
    let j = lane % 16u;
    let col = col0 + j;
    if (col >= params.out_channels) {
        return;
    }
    let b = bias[col / 4u][col % 4u];
    for (var r = lane / 16u; r < 16u; r += 2u) {
        let row = row0 + r;
        if (row < params.rows) {
            let o = row * params.out_channels + col;
            var v = tile_c[scratch + r * C_STRIDE + j] + b;
            if (params.has_residual != 0u) {
                v += f32(residual[o]);
            }
            if (params.relu != 0u) {
                v = max(v, 0.0);
            }
            output[o] = Stored(v);
        }
    }
}

@compute @workgroup_size(128, 1, 1)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(subgroup_id) sg: u32,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    let c0 = wid.x * 64u;
    let m0 = (wid.y + wid.z * groups.y) * 64u;

    // The kernel window of each tile pixel. Workgroups past the end get no valid pixels and,
    // like all others, run every barrier and cooperative op; only the final stores are guarded.
    if (lid < 64u) {
        let row = m0 + lid;
        let per_image = params.out_height * params.out_width;
        let n = row / per_image;
        let y = (row % per_image) / params.out_width;
        let x = row % params.out_width;
        corners[lid] = vec4<i32>(
            i32(n * params.in_height * params.in_width),
            i32(y * params.stride) - i32(params.pad_top),
            i32(x * params.stride) - i32(params.pad_left),
            select(0, 1, row < params.rows),
        );
    }
    workgroupBarrier();

    // This subgroup's quarter: pixels sm.. and channels sn.. of the tile (32 each).
    let sm = (sg / 2u) * 32u;
    let sn = (sg % 2u) * 32u;
    var acc00: coop_mat16x16<f32, C>;
    var acc01: coop_mat16x16<f32, C>;
    var acc10: coop_mat16x16<f32, C>;
    var acc11: coop_mat16x16<f32, C>;

    // Staging roles: for the pixels, column a_k of the slice for pixels a_p + 4i; for the
    // weights, texel column b_t (4 channels) for slice rows b_k + 8j.
    let a_k = lid % 32u;
    let a_p = lid / 32u;
    let b_t = lid % 16u;
    let b_k = lid / 16u;
    let cin = params.in_channels;
    let total_k = params.kernel * params.kernel * cin;
    let in_h = i32(params.in_height);
    let in_w = i32(params.in_width);

    for (var k0 = 0u; k0 < total_k; k0 += 32u) {
        // Pixels: each subgroup reads 32 consecutive k of one pixel per step.
        let k = k0 + a_k;
        let tap = k / cin;
        let ch = k % cin;
        let ky = i32(tap / params.kernel);
        let kx = i32(tap % params.kernel);
        let k_ok = k < total_k;
        for (var i = 0u; i < 16u; i++) {
            let p = a_p + 4u * i;
            let corner = corners[p];
            let iy = corner.y + ky;
            let ix = corner.z + kx;
            var v = 0.0;
            if (k_ok && corner.w != 0 && iy >= 0 && iy < in_h && ix >= 0 && ix < in_w) {
                v = f32(input[u32(corner.x + iy * in_w + ix) * cin + ch]);
            }
            tile_a[p * A_STRIDE + a_k] = f16(clamp(v, -F16_MAX, F16_MAX));
        }
        // Weights: 16 texels (64 channels) per slice row.
        for (var j = 0u; j < 4u; j++) {
            let r = b_k + 8u * j;
            var w = vec4<f32>(0.0);
            if (k0 + r < total_k) {
                w = textureLoad(weights, vec2<i32>(i32(c0 / 4u + b_t), i32(k0 + r)), 0);
            }
            let h = vec4<f16>(clamp(w, vec4<f32>(-F16_MAX), vec4<f32>(F16_MAX)));
            let o = r * B_STRIDE + b_t * 4u;
            tile_b[o] = h.x;
            tile_b[o + 1u] = h.y;
            tile_b[o + 2u] = h.z;
            tile_b[o + 3u] = h.w;
        }
        workgroupBarrier();

        // Two 16-deep steps over the slice.
        let a0 = coopLoadT<coop_mat16x16<f16, A>>(&tile_a[sm * A_STRIDE], A_STRIDE);
        let a1 = coopLoadT<coop_mat16x16<f16, A>>(&tile_a[(sm + 16u) * A_STRIDE], A_STRIDE);
        let b0 = coopLoadT<coop_mat16x16<f16, B>>(&tile_b[sn], B_STRIDE);
        let b1 = coopLoadT<coop_mat16x16<f16, B>>(&tile_b[sn + 16u], B_STRIDE);
        acc00 = coopMultiplyAdd(a0, b0, acc00);
        acc01 = coopMultiplyAdd(a0, b1, acc01);
        acc10 = coopMultiplyAdd(a1, b0, acc10);
        acc11 = coopMultiplyAdd(a1, b1, acc11);
        let a2 = coopLoadT<coop_mat16x16<f16, A>>(&tile_a[sm * A_STRIDE + 16u], A_STRIDE);
        let a3 = coopLoadT<coop_mat16x16<f16, A>>(&tile_a[(sm + 16u) * A_STRIDE + 16u], A_STRIDE);
        let b2 = coopLoadT<coop_mat16x16<f16, B>>(&tile_b[16u * B_STRIDE + sn], B_STRIDE);
        let b3 = coopLoadT<coop_mat16x16<f16, B>>(&tile_b[16u * B_STRIDE + sn + 16u], B_STRIDE);
        acc00 = coopMultiplyAdd(a2, b2, acc00);
        acc01 = coopMultiplyAdd(a2, b3, acc01);
        acc10 = coopMultiplyAdd(a3, b2, acc10);
        acc11 = coopMultiplyAdd(a3, b3, acc11);
        workgroupBarrier();
    }

    // Epilogue: each accumulator in turn through the subgroup's scratch to the output.
    let scratch = sg * 16u * C_STRIDE;
    let row0 = m0 + sm;
    let col0 = c0 + sn;
    coopStoreT(acc00, &tile_c[scratch], C_STRIDE);
    workgroupBarrier();
    store_block(scratch, row0, col0, lane);
    workgroupBarrier();
    coopStoreT(acc01, &tile_c[scratch], C_STRIDE);
    workgroupBarrier();
    store_block(scratch, row0, col0 + 16u, lane);
    workgroupBarrier();
    coopStoreT(acc10, &tile_c[scratch], C_STRIDE);
    workgroupBarrier();
    store_block(scratch, row0 + 16u, col0, lane);
    workgroupBarrier();
    coopStoreT(acc11, &tile_c[scratch], C_STRIDE);
    workgroupBarrier();
    store_block(scratch, row0 + 16u, col0 + 16u, lane);
}
