// The body the general depthwise kernels share (depthwise_conv_general, one channel per
// invocation; depthwise_conv_general_pack4, four): their parameters, which mirror
// `GeneralParams` in src/gpu/ops/depthwise.rs, their bindings and their entry point. Each
// kernel declares `Lanes` (f32 or vec4<f32>), `StoredLanes` (the same in the activations'
// storage type) and `LANES`, the channels one element holds.

// Activation storage: float32 here; the float16-storage variant of the kernel is this source
// with `enable f16;` and `Stored = f16` (see `Element` in src/gpu/kernels.rs).
alias Stored = f32;

struct Params {
    batch: u32,
    in_height: u32,
    in_width: u32,
    channels: u32,
    out_height: u32,
    out_width: u32,
    stride: u32,
    dilation: u32,
    pad_top: u32,
    pad_left: u32,
    relu_input: u32,
    relu_output: u32,
    has_bias: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> input: array<StoredLanes>;
// [3][3][channels].
@group(0) @binding(2) var<storage, read> kernel: array<Lanes>;
// [channels], read where has_bias is 1.
@group(0) @binding(3) var<storage, read> bias: array<Lanes>;
@group(0) @binding(4) var<storage, read_write> output: array<StoredLanes>;

// Grid: x over channel elements (64 per workgroup), y over output columns, z over batch *
// output rows.
@compute @workgroup_size(64, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let c = gid.x;
    let c_len = params.channels / LANES;
    let ox = gid.y;
    if (c >= c_len || ox >= params.out_width) {
        return;
    }
    let oy = gid.z % params.out_height;
    let n = gid.z / params.out_height;

    var acc = Lanes(0.0);
    for (var ky = 0u; ky < 3u; ky++) {
        let iy = i32(oy * params.stride + ky * params.dilation) - i32(params.pad_top);
        if (iy < 0 || iy >= i32(params.in_height)) {
            continue;
        }
        for (var kx = 0u; kx < 3u; kx++) {
            let ix = i32(ox * params.stride + kx * params.dilation) - i32(params.pad_left);
            if (ix < 0 || ix >= i32(params.in_width)) {
                continue;
            }
            var value = Lanes(input[((n * params.in_height + u32(iy)) * params.in_width + u32(ix)) * c_len + c]);
            if (params.relu_input != 0u) {
                value = max(value, Lanes(0.0));
            }
            acc += value * kernel[(ky * 3u + kx) * c_len + c];
        }
    }
    if (params.has_bias != 0u) {
        acc += bias[c];
    }
    if (params.relu_output != 0u) {
        acc = max(acc, Lanes(0.0));
    }
    output[((n * params.out_height + oy) * params.out_width + ox) * c_len + c] = StoredLanes(acc);
}
