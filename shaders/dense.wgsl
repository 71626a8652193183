// Dense layer: output[n][u] = sum_i input[n][i] * kernel[i][u] + bias[u], optional ReLU.
// Kernel layout [inputs][units] (Keras).

struct Params {
    batch: u32,
    inputs: u32,
    units: u32,
    relu: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> input: array<f32>;
@group(0) @binding(2) var<storage, read> kernel: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> output: array<f32>;

@compute @workgroup_size(64, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let index = gid.x;
    if (index >= params.batch * params.units) {
        return;
    }
    let u = index % params.units;
    let n = index / params.units;
    var acc = bias[u];
    for (var i = 0u; i < params.inputs; i++) {
        acc += input[n * params.inputs + i] * kernel[i * params.units + u];
    }
    if (params.relu != 0u) {
        acc = max(acc, 0.0);
    }
    output[index] = acc;
}
