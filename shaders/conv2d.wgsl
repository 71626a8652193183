// Regular 2-D convolution, NHWC, with a folded-batchnorm bias and optional ReLU.
// Used for the two 3x3 stem convolutions and the four 1x1 stride-2 shortcut convolutions.
//
// Weights are [kernel * kernel * in_channels][out_vec4s] vec4s: HWIO with the output
// channels padded with zeros to a multiple of 8. One invocation computes 8 output channels
// of one output pixel.

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
@group(0) @binding(1) var<storage, read> input: array<f32>;
@group(0) @binding(2) var<storage, read> weights: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> bias: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> output: array<f32>;

fn store(base: u32, c0: u32, value: vec4<f32>) {
    var v = value;
    if (params.relu != 0u) {
        v = max(v, vec4<f32>(0.0));
    }
    for (var j = 0u; j < 4u; j++) {
        if (c0 + j < params.out_channels) {
            output[base + c0 + j] = v[j];
        }
    }
}

@compute @workgroup_size(8, 8, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let group = gid.x; // 8 output channels
    let pixel = gid.y + gid.z * groups.y * 8u;
    let pixels = params.batch * params.out_height * params.out_width;
    if (group * 8u >= params.out_channels || pixel >= pixels) {
        return;
    }
    let ox = pixel % params.out_width;
    let oy = (pixel / params.out_width) % params.out_height;
    let n = pixel / (params.out_width * params.out_height);
    let v0 = group * 2u;

    var acc0 = bias[v0];
    var acc1 = bias[v0 + 1u];
    for (var ky = 0u; ky < params.kernel; ky++) {
        let iy = i32(oy * params.stride + ky) - i32(params.pad_top);
        if (iy < 0 || iy >= i32(params.in_height)) {
            continue;
        }
        for (var kx = 0u; kx < params.kernel; kx++) {
            let ix = i32(ox * params.stride + kx) - i32(params.pad_left);
            if (ix < 0 || ix >= i32(params.in_width)) {
                continue;
            }
            let src = ((n * params.in_height + u32(iy)) * params.in_width + u32(ix)) * params.in_channels;
            let row = (ky * params.kernel + kx) * params.in_channels;
            for (var ci = 0u; ci < params.in_channels; ci++) {
                let a = input[src + ci];
                let w = (row + ci) * params.out_vec4s + v0;
                acc0 += a * weights[w];
                acc1 += a * weights[w + 1u];
            }
        }
    }
    let base = pixel * params.out_channels;
    store(base, v0 * 4u, acc0);
    store(base, v0 * 4u + 4u, acc1);
}
