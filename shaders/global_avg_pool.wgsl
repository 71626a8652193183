// Global average pool over height and width, NHWC -> [batch][channels].

// Activation storage of the input (the pooled output is always float32): float32 here; the
// float16-storage variant of the kernel is this source with `enable f16;` and `Stored = f16`
// (see `Element` in src/gpu/kernels.rs).
alias Stored = f32;

struct Params {
    batch: u32,
    pixels: u32,
    channels: u32,
    _pad0: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> input: array<Stored>;
@group(0) @binding(2) var<storage, read_write> output: array<f32>;

@compute @workgroup_size(64, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let index = gid.x;
    if (index >= params.batch * params.channels) {
        return;
    }
    let c = index % params.channels;
    let n = index / params.channels;
    var sum = 0.0;
    for (var p = 0u; p < params.pixels; p++) {
        sum += f32(input[(n * params.pixels + p) * params.channels + c]);
    }
    output[index] = sum / f32(params.pixels);
}
