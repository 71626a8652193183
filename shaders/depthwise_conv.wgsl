// Depthwise 3x3 convolution, stride 1, 'same' padding (one zero pixel on every side), NHWC.
// Optionally applies ReLU to the input as it is read, so the un-rectified input stays intact
// for a residual shortcut. Kernel layout [3][3][channels] (Keras [3, 3, C, 1]). No bias: the
// batchnorm after a separable convolution is folded into its pointwise half.

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
@group(0) @binding(1) var<storage, read> input: array<f32>;
@group(0) @binding(2) var<storage, read> kernel: array<f32>;
@group(0) @binding(3) var<storage, read_write> output: array<f32>;

// Grid: x over channels (64 per workgroup), y over columns, z over batch * rows, so no
// invocation divides by a runtime size except once for its row.
@compute @workgroup_size(64, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let c = gid.x;
    let x = gid.y;
    let c_len = params.channels;
    if (c >= c_len) {
        return;
    }
    let y = gid.z % params.height;
    let n = gid.z / params.height;

    var acc = 0.0;
    for (var ky = 0u; ky < 3u; ky++) {
        let iy = i32(y + ky) - 1;
        if (iy < 0 || iy >= i32(params.height)) {
            continue;
        }
        let row = (n * params.height + u32(iy)) * params.width;
        for (var kx = 0u; kx < 3u; kx++) {
            let ix = i32(x + kx) - 1;
            if (ix < 0 || ix >= i32(params.width)) {
                continue;
            }
            var v = input[(row + u32(ix)) * c_len + c];
            if (params.relu_input != 0u) {
                v = max(v, 0.0);
            }
            acc += v * kernel[(ky * 3u + kx) * c_len + c];
        }
    }
    output[((n * params.height + y) * params.width + x) * c_len + c] = acc;
}
