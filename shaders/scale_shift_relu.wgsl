// A batchnorm folded into a per-channel scale and shift, then ReLU, elementwise over NHWC:
// output = max(input * scale[c] + shift[c], 0), or max(input, 0) where has_affine is 0. A
// pre-activation block's opening (timm's xception41p/65p), whose output feeds both branches.

// Activation storage: float32 here; the float16-storage variant of the kernel is this source
// with `enable f16;` and `Stored = f16` (see `Element` in src/gpu/kernels.rs).
alias Stored = f32;

struct Params {
    len: u32,
    channels: u32,
    has_affine: u32,
    _pad0: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> input: array<Stored>;
@group(0) @binding(2) var<storage, read> scale: array<f32>;
@group(0) @binding(3) var<storage, read> shift: array<f32>;
@group(0) @binding(4) var<storage, read_write> output: array<Stored>;

@compute @workgroup_size(64, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let index = gid.x + gid.y * groups.x * 64u;
    if (index >= params.len) {
        return;
    }
    var value = f32(input[index]);
    if (params.has_affine != 0u) {
        let c = index % params.channels;
        value = value * scale[c] + shift[c];
    }
    output[index] = Stored(max(value, 0.0));
}
