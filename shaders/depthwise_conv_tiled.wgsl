// Depthwise 3x3 convolution, stride 1, 'same' padding, NHWC, for GPUs and channel counts that
// are a multiple of 4: a workgroup stages the input of an 8x8-pixel, 32-channel output tile
// (a 10x10 halo, rectified on read if asked) in workgroup memory once, so each input value is
// read from memory about 1.6 times (4.5 in depthwise_conv_pack4), and every invocation
// computes a strip of 8 pixels of 4 channels from it, then adds the bias and rectifies if
// asked. Kernel layout [3][3][channels].

alias Lanes = vec4<f32>;
alias StoredLanes = vec4<Stored>;
#include "depthwise_interface.wgsl"

// Output tile: TILE x TILE pixels and QUADS channel quads; its input is (TILE + 2)^2 pixels.
const TILE: u32 = 8u;
const HALO: u32 = 10u;
const QUADS: u32 = 8u;

// [row][column][quad] of the halo, float32 whatever the storage (12800 bytes).
var<workgroup> halo: array<vec4<f32>, 800>; // HALO * HALO * QUADS

// Grid: x over groups of 8 channel quads, y over 8-column tiles, z over batch * 8-row tiles.
// Invocation (q, r) computes quad q of output row r of the tile, 8 columns.
@compute @workgroup_size(8, 8, 1)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_id) local: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let quads = params.channels / 4u;
    let row_tiles = (params.height + TILE - 1u) / TILE;
    let n = wid.z / row_tiles;
    let y0 = (wid.z % row_tiles) * TILE;
    let x0 = wid.y * TILE;
    let q0 = wid.x * QUADS;

    // Stage the halo: 800 vec4s, 64 invocations, consecutive invocations on consecutive quads.
    for (var i = lid; i < HALO * HALO * QUADS; i += 64u) {
        let q = q0 + i % QUADS;
        let column = (i / QUADS) % HALO;
        let row = i / (QUADS * HALO);
        let iy = i32(y0 + row) - 1;
        let ix = i32(x0 + column) - 1;
        var value = vec4<f32>(0.0);
        if (q < quads && iy >= 0 && iy < i32(params.height) && ix >= 0
            && ix < i32(params.width)) {
            let pixel = (n * params.height + u32(iy)) * params.width + u32(ix);
            value = vec4<f32>(input[pixel * quads + q]);
            if (params.relu_input != 0u) {
                value = max(value, vec4<f32>(0.0));
            }
        }
        halo[i] = value;
    }
    workgroupBarrier();

    let q = local.x;
    let r = local.y;
    let quad = q0 + q;
    let y = y0 + r;
    if (quad >= quads || y >= params.height) {
        return;
    }
    var acc = array<vec4<f32>, 8>();
    for (var ky = 0u; ky < 3u; ky++) {
        let w0 = kernel[(ky * 3u) * quads + quad];
        let w1 = kernel[(ky * 3u + 1u) * quads + quad];
        let w2 = kernel[(ky * 3u + 2u) * quads + quad];
        let base = (r + ky) * HALO * QUADS + q;
        var left = halo[base];
        var middle = halo[base + QUADS];
        for (var j = 0u; j < TILE; j++) {
            let right = halo[base + (j + 2u) * QUADS];
            acc[j] += left * w0 + middle * w1 + right * w2;
            left = middle;
            middle = right;
        }
    }
    let row = (n * params.height + y) * params.width;
    for (var j = 0u; j < TILE; j++) {
        if (x0 + j < params.width) {
            output[(row + x0 + j) * quads + quad] = vec4<Stored>(finish(acc[j], quad));
        }
    }
}
