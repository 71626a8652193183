// Direct 2-D convolution, NHWC, with a folded-batchnorm bias and optional ReLU, for any kernel
// size, stride and channel count: the convolutions the GEMM kernel in use cannot take (the
// 3-channel first stem convolution where the subgroup GEMM runs, or every 3x3 one where the
// portable kernels run).
//
// Weights are [kernel * kernel * in_channels][out_vec4s] vec4s: HWIO with the output
// channels padded with zeros to a multiple of 8. One invocation computes 8 output channels
// of a strip of 4 output pixels along a row.

// Activation storage: float32 here; the float16-storage variant of the kernel is this source
// with `enable f16;` and `Stored = f16` (see `Element` in src/gpu/kernels.rs).
alias Stored = f32;

struct Params {
    batch: u32,
    in_height: u32,
    in_width: u32,
    in_channels: u32,
    out_height: u32,
    out_width: u32,
    out_channels: u32,
    out_vec4s: u32,
    kernel: u32,
    stride: u32,
    pad_top: u32,
    pad_left: u32,
    relu: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> input: array<Stored>;
@group(0) @binding(2) var<storage, read> weights: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> bias: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> output: array<Stored>;

fn store(pixel: u32, c0: u32, value: vec4<f32>) {
    var v = value;
    if (params.relu != 0u) {
        v = max(v, vec4<f32>(0.0));
    }
    let base = pixel * params.out_channels;
    for (var j = 0u; j < 4u; j++) {
        if (c0 + j < params.out_channels) {
            output[base + c0 + j] = Stored(v[j]);
        }
    }
}

// Grid: x over 8-channel groups, y (folded into z when long) over strips of 4 output columns.
// The strip shares every weight load among its 4 pixels.
@compute @workgroup_size(8, 8, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let group = gid.x; // 8 output channels
    let strip = gid.y + gid.z * groups.y * 8u;
    let strips_per_row = (params.out_width + 3u) / 4u;
    if (group * 8u >= params.out_channels || strip >= params.batch * params.out_height * strips_per_row) {
        return;
    }
    let ox0 = (strip % strips_per_row) * 4u;
    let row = strip / strips_per_row; // n * out_height + oy
    let oy = row % params.out_height;
    let n = row / params.out_height;
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
    let last_x = params.in_width - 1u;
    for (var ky = 0u; ky < params.kernel; ky++) {
        let iy = i32(oy * params.stride + ky) - i32(params.pad_top);
        if (iy < 0 || iy >= i32(params.in_height)) {
            continue;
        }
        let in_row = (n * params.in_height + u32(iy)) * params.in_width;
        for (var kx = 0u; kx < params.kernel; kx++) {
            // Input column of each strip pixel; a column in the padding contributes zero.
            let ix0 = i32(ox0 * params.stride + kx) - i32(params.pad_left);
            let step = i32(params.stride);
            var valid = vec4<f32>(0.0);
            var cols = vec4<u32>(0u);
            for (var j = 0; j < 4; j++) {
                let ix = ix0 + j * step;
                if (ix >= 0 && ix < i32(params.in_width) && ox0 + u32(j) < params.out_width) {
                    valid[j] = 1.0;
                    cols[j] = u32(ix);
                } else {
                    cols[j] = min(u32(max(ix, 0)), last_x);
                }
            }
            let src0 = (in_row + cols.x) * params.in_channels;
            let src1 = (in_row + cols.y) * params.in_channels;
            let src2 = (in_row + cols.z) * params.in_channels;
            let src3 = (in_row + cols.w) * params.in_channels;
            let wrow = (ky * params.kernel + kx) * params.in_channels;
            for (var ci = 0u; ci < params.in_channels; ci++) {
                let w = (wrow + ci) * params.out_vec4s + v0;
                let w0 = weights[w];
                let w1 = weights[w + 1u];
                let a0 = f32(input[src0 + ci]) * valid.x;
                let a1 = f32(input[src1 + ci]) * valid.y;
                let a2 = f32(input[src2 + ci]) * valid.z;
                let a3 = f32(input[src3 + ci]) * valid.w;
                acc00 += a0 * w0;
                acc01 += a0 * w1;
                acc10 += a1 * w0;
                acc11 += a1 * w1;
                acc20 += a2 * w0;
                acc21 += a2 * w1;
                acc30 += a3 * w0;
                acc31 += a3 * w1;
            }
        }
    }
    let pixel0 = row * params.out_width + ox0;
    let c0 = v0 * 4u;
    store(pixel0, c0, acc00);
    store(pixel0, c0 + 4u, acc01);
    if (ox0 + 1u < params.out_width) {
        store(pixel0 + 1u, c0, acc10);
        store(pixel0 + 1u, c0 + 4u, acc11);
    }
    if (ox0 + 2u < params.out_width) {
        store(pixel0 + 2u, c0, acc20);
        store(pixel0 + 2u, c0 + 4u, acc21);
    }
    if (ox0 + 3u < params.out_width) {
        store(pixel0 + 3u, c0, acc30);
        store(pixel0 + 3u, c0 + 4u, acc31);
    }
}
