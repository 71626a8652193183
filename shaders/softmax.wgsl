// Softmax over each row of a [rows][cols] matrix, one invocation per row.

struct Params {
    rows: u32,
    cols: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> input: array<f32>;
@group(0) @binding(2) var<storage, read_write> output: array<f32>;

@compute @workgroup_size(64, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let row = gid.x;
    if (row >= params.rows) {
        return;
    }
    let base = row * params.cols;
    var top = input[base];
    for (var i = 1u; i < params.cols; i++) {
        top = max(top, input[base + i]);
    }
    var sum = 0.0;
    for (var i = 0u; i < params.cols; i++) {
        let e = exp(input[base + i] - top);
        output[base + i] = e;
        sum += e;
    }
    for (var i = 0u; i < params.cols; i++) {
        output[base + i] = output[base + i] / sum;
    }
}
