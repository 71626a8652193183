// The `weights` section of pointwise_conv.wgsl for float16 weights (kernel
// `pointwise_conv_f16`): each vec4<u32> packs, as float16 pairs (pack2x16float), the 8 output
// channels of one input channel, halving the weight bytes and loads; the sums stay float32.
@group(0) @binding(2) var<storage, read> weights: array<vec4<u32>>;

// The 8 weights of input channel `k` for the output channels of `group`.
fn load_weights(k: u32, group: u32) -> mat2x4<f32> {
    let w = weights[k * (params.out_vec4s / 2u) + group];
    return mat2x4<f32>(
        vec4<f32>(unpack2x16float(w.x), unpack2x16float(w.y)),
        vec4<f32>(unpack2x16float(w.z), unpack2x16float(w.w)),
    );
}
