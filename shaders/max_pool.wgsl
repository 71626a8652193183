// Max-pool 3x3, stride 2, TensorFlow 'same' padding, NHWC, with the module's residual
// shortcut added to the result (set has_residual to 0 for a plain pool). Padded cells
// never take part in the max; the leading pad (pad_top, pad_left) is 0 or 1, and any extra
// padding falls at the bottom/right.

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
    pad_top: u32,
    pad_left: u32,
    has_residual: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> input: array<Stored>;
@group(0) @binding(2) var<storage, read> residual: array<Stored>;
@group(0) @binding(3) var<storage, read_write> output: array<Stored>;

@compute @workgroup_size(64, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let index = gid.x + gid.y * groups.x * 64u;
    let c_len = params.channels;
    if (index >= params.batch * params.out_height * params.out_width * c_len) {
        return;
    }
    let c = index % c_len;
    let pixel = index / c_len;
    let ox = pixel % params.out_width;
    let oy = (pixel / params.out_width) % params.out_height;
    let n = pixel / (params.out_width * params.out_height);

    var best = 0.0;
    var found = false;
    for (var ky = 0u; ky < 3u; ky++) {
        let iy = i32(oy * 2u + ky) - i32(params.pad_top);
        if (iy < 0 || iy >= i32(params.in_height)) {
            continue;
        }
        for (var kx = 0u; kx < 3u; kx++) {
            let ix = i32(ox * 2u + kx) - i32(params.pad_left);
            if (ix < 0 || ix >= i32(params.in_width)) {
                continue;
            }
            let v = f32(input[((n * params.in_height + u32(iy)) * params.in_width + u32(ix)) * c_len + c]);
            if (!found || v > best) {
                best = v;
                found = true;
            }
        }
    }
    if (params.has_residual != 0u) {
        best += f32(residual[index]);
    }
    output[index] = Stored(best);
}
