// Depthwise 3x3 convolution, stride 1, 'same' padding (one zero pixel on every side), NHWC.
// Optionally applies ReLU to the input as it is read, so the un-rectified input stays intact
// for a residual shortcut, and a bias (a batchnorm after the depthwise half, as timm's aligned
// Xceptions have) and ReLU to the output. Kernel layout [3][3][channels] (Keras [3, 3, C, 1]).

alias Lanes = f32;
alias StoredLanes = Stored;
#include "depthwise_interface.wgsl"

// Grid: x over channels (64 per workgroup), y over strips of 4 columns, z over batch * rows.
// An invocation computes one channel of a 4-pixel strip, loading each of the 3x6 input pixels
// and 9 weights it needs once (18 + 9 loads for 36 multiply-adds instead of 72).

const STRIP: u32 = 4u;

@compute @workgroup_size(64, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let c = gid.x;
    let c_len = params.channels;
    if (c >= c_len) {
        return;
    }
    let x0 = gid.y * STRIP;
    let y = gid.z % params.height;
    let n = gid.z / params.height;

    var acc = vec4<f32>(0.0);
    for (var ky = 0u; ky < 3u; ky++) {
        let iy = i32(y + ky) - 1;
        if (iy < 0 || iy >= i32(params.height)) {
            continue;
        }
        let row = (n * params.height + u32(iy)) * params.width;
        // Columns x0 - 1 .. x0 + 4; those outside the image are the zero padding.
        var v: array<f32, 6>;
        for (var j = 0u; j < 6u; j++) {
            let ix = i32(x0 + j) - 1;
            var value = 0.0;
            if (ix >= 0 && ix < i32(params.width)) {
                value = f32(input[(row + u32(ix)) * c_len + c]);
            }
            if (params.relu_input != 0u) {
                value = max(value, 0.0);
            }
            v[j] = value;
        }
        let w0 = kernel[(ky * 3u) * c_len + c];
        let w1 = kernel[(ky * 3u + 1u) * c_len + c];
        let w2 = kernel[(ky * 3u + 2u) * c_len + c];
        acc += vec4<f32>(v[0], v[1], v[2], v[3]) * w0;
        acc += vec4<f32>(v[1], v[2], v[3], v[4]) * w1;
        acc += vec4<f32>(v[2], v[3], v[4], v[5]) * w2;
    }
    let base = (n * params.height + y) * params.width;
    for (var j = 0u; j < STRIP; j++) {
        if (x0 + j < params.width) {
            output[(base + x0 + j) * c_len + c] = Stored(finish(acc[j], c));
        }
    }
}
