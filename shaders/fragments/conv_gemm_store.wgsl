// The epilogue of the scalar-output GEMM kernels (conv_portable, conv_tiled): adds the
// residual to channels c0..c0+3 of pixel `row` (whose bias `value` already holds), rectifies,
// and stores those that exist. Needs conv_gemm_interface.wgsl with `Activation = Stored`.

fn store(row: u32, c0: u32, value: vec4<f32>) {
    if (row >= params.rows) {
        return;
    }
    let base = row * params.out_channels;
    for (var j = 0u; j < 4u; j++) {
        let c = c0 + j;
        if (c < params.out_channels) {
            var v = value[j];
            if (params.has_residual != 0u) {
                v += f32(residual[base + c]);
            }
            if (params.relu != 0u) {
                v = max(v, 0.0);
            }
            output[base + c] = Stored(v);
        }
    }
}
