// Packs float32 values into float16 pairs (pack2x16float): output[i] holds input[2i] in its low
// half and input[2i + 1] in its high half. Used once at load for `--precision f16` weights.

struct Params {
    pairs: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> input: array<f32>;
@group(0) @binding(2) var<storage, read_write> output: array<u32>;

@compute @workgroup_size(64, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = gid.x + gid.y * groups.x * 64u;
    if (i < params.pairs) {
        output[i] = pack2x16float(vec2<f32>(input[2u * i], input[2u * i + 1u]));
    }
}
