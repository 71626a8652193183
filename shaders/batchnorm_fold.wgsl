// Folds inference batchnorm into the bias-free convolution before it, once at load:
//   scale = gamma / sqrt(variance + epsilon)
//   folded[r][c] = kernel[r][c] * scale[c]    (c < channels; padding columns are zero)
//   bias[c] = beta[c] - mean[c] * scale[c]
// The kernel is any layout whose innermost axis is the output channel (HWIO, [cin][cout]);
// the folded rows are padded to `padded_channels` (a multiple of 4) for the kernels that read
// them. An invocation folds one 4-channel column over a band of rows, so each scale is computed
// once per band and a layer takes a few dozen workgroups rather than one per 64 weights.

struct Params {
    rows: u32,
    channels: u32,
    padded_channels: u32,
    epsilon: f32,
}

// Rows one invocation folds.
const BAND: u32 = 64u;

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> kernel: array<f32>;
@group(0) @binding(2) var<storage, read> gamma: array<f32>;
@group(0) @binding(3) var<storage, read> beta: array<f32>;
@group(0) @binding(4) var<storage, read> mean: array<f32>;
@group(0) @binding(5) var<storage, read> variance: array<f32>;
@group(0) @binding(6) var<storage, read_write> folded: array<vec4<f32>>;
@group(0) @binding(7) var<storage, read_write> bias: array<vec4<f32>>;

@compute @workgroup_size(64, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let texels = params.padded_channels / 4u;
    let texel = gid.x;
    if (texel >= texels) {
        return;
    }
    let c0 = texel * 4u;
    // Padding columns keep a zero scale, so they fold to zero.
    var scale = vec4<f32>(0.0);
    var shift = vec4<f32>(0.0);
    for (var j = 0u; j < 4u; j++) {
        let c = c0 + j;
        if (c < params.channels) {
            scale[j] = gamma[c] / sqrt(variance[c] + params.epsilon);
            shift[j] = beta[c] - mean[c] * scale[j];
        }
    }
    if (gid.y == 0u) {
        bias[texel] = shift;
    }
    // Columns past the real channels read the row's last weight; the zero scale drops it.
    let last = params.channels - 1u;
    let first_row = gid.y * BAND;
    let end_row = min(first_row + BAND, params.rows);
    for (var r = first_row; r < end_row; r++) {
        let row = r * params.channels;
        let w = vec4<f32>(
            kernel[row + min(c0, last)],
            kernel[row + min(c0 + 1u, last)],
            kernel[row + min(c0 + 2u, last)],
            kernel[row + min(c0 + 3u, last)],
        );
        folded[r * texels + texel] = w * scale;
    }
}
