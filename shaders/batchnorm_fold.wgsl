// Folds inference batchnorm into the bias-free convolution before it, once at load:
//   scale = gamma / sqrt(variance + epsilon)
//   folded[r][c] = kernel[r][c] * scale[c]    (c < channels; padding columns are zero)
//   bias[c] = beta[c] - mean[c] * scale[c]
// The kernel is any layout whose innermost axis is the output channel (HWIO, [cin][cout]);
// the folded rows are padded to `padded_channels` for the vec4 kernels that read them.

struct Params {
    rows: u32,
    channels: u32,
    padded_channels: u32,
    epsilon: f32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> kernel: array<f32>;
@group(0) @binding(2) var<storage, read> gamma: array<f32>;
@group(0) @binding(3) var<storage, read> beta: array<f32>;
@group(0) @binding(4) var<storage, read> mean: array<f32>;
@group(0) @binding(5) var<storage, read> variance: array<f32>;
@group(0) @binding(6) var<storage, read_write> folded: array<f32>;
@group(0) @binding(7) var<storage, read_write> bias: array<f32>;

@compute @workgroup_size(64, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let index = gid.x + gid.y * groups.x * 64u;
    if (index >= params.rows * params.padded_channels) {
        return;
    }
    let c = index % params.padded_channels;
    let r = index / params.padded_channels;
    var scale = 0.0;
    if (c < params.channels) {
        scale = gamma[c] / sqrt(variance[c] + params.epsilon);
        folded[index] = kernel[r * params.channels + c] * scale;
    } else {
        folded[index] = 0.0;
    }
    if (r == 0u) {
        if (c < params.channels) {
            bias[c] = beta[c] - mean[c] * scale;
        } else {
            bias[c] = 0.0;
        }
    }
}
