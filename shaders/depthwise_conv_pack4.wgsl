// Depthwise 3x3 convolution, stride 1, 'same' padding, NHWC, for channel counts that are a
// multiple of 4 (every Xception layer): depthwise_conv_scalar.wgsl with each invocation working on 4
// neighbouring channels through vec4 loads and stores, so one load fetches 4 values.
// Optionally applies ReLU to the input as it is read, and a bias and ReLU to the output. Kernel
// layout [3][3][channels].

alias Lanes = vec4<f32>;
alias StoredLanes = vec4<Stored>;
#include "depthwise_interface.wgsl"

// Grid: x over channel quads (64 per workgroup), y over strips of 4 columns, z over
// batch * rows. An invocation computes 4 channels of a 4-pixel strip from 3x6 input and 9
// weight vec4s.

const STRIP: u32 = 4u;

// The input pixel at column `ix` of the row starting at pixel `row`, for channel quad `q`:
// zero outside the image (the padding), rectified if asked.
fn load(row: u32, ix: i32, q: u32, quads: u32) -> vec4<f32> {
    var value = vec4<f32>(0.0);
    if (ix >= 0 && ix < i32(params.width)) {
        value = vec4<f32>(input[(row + u32(ix)) * quads + q]);
    }
    if (params.relu_input != 0u) {
        value = max(value, vec4<f32>(0.0));
    }
    return value;
}

@compute @workgroup_size(64, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let q = gid.x;
    let quads = params.channels / 4u;
    if (q >= quads) {
        return;
    }
    let x0 = gid.y * STRIP;
    let y = gid.z % params.height;
    let n = gid.z / params.height;
    let left = i32(x0) - 1;

    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    for (var ky = 0u; ky < 3u; ky++) {
        let iy = i32(y + ky) - 1;
        if (iy < 0 || iy >= i32(params.height)) {
            continue;
        }
        let row = (n * params.height + u32(iy)) * params.width;
        // Columns x0 - 1 .. x0 + 4.
        let v0 = load(row, left, q, quads);
        let v1 = load(row, left + 1, q, quads);
        let v2 = load(row, left + 2, q, quads);
        let v3 = load(row, left + 3, q, quads);
        let v4 = load(row, left + 4, q, quads);
        let v5 = load(row, left + 5, q, quads);
        let w0 = kernel[(ky * 3u) * quads + q];
        let w1 = kernel[(ky * 3u + 1u) * quads + q];
        let w2 = kernel[(ky * 3u + 2u) * quads + q];
        acc0 += v0 * w0 + v1 * w1 + v2 * w2;
        acc1 += v1 * w0 + v2 * w1 + v3 * w2;
        acc2 += v2 * w0 + v3 * w1 + v4 * w2;
        acc3 += v3 * w0 + v4 * w1 + v5 * w2;
    }
    let base = (n * params.height + y) * params.width + x0;
    output[base * quads + q] = vec4<Stored>(finish(acc0, q));
    if (x0 + 1u < params.width) {
        output[(base + 1u) * quads + q] = vec4<Stored>(finish(acc1, q));
    }
    if (x0 + 2u < params.width) {
        output[(base + 2u) * quads + q] = vec4<Stored>(finish(acc2, q));
    }
    if (x0 + 3u < params.width) {
        output[(base + 3u) * quads + q] = vec4<Stored>(finish(acc3, q));
    }
}
