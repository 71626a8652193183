// Shared by the implicit-GEMM kernels that read a pixel's taps from its window's corner
// (conv_subgroup, conv_tiled); needs conv_gemm_interface.wgsl's `params`.

// Where output pixel `row` reads its taps: (image, top input row, left input column), the
// corner of its kernel window, which may lie in the padding.
fn window(row: u32) -> vec3<i32> {
    let per_image = params.out_height * params.out_width;
    let n = row / per_image;
    let y = (row % per_image) / params.out_width;
    let x = row % params.out_width;
    return vec3<i32>(
        i32(n),
        i32(y * params.stride) - i32(params.pad_top),
        i32(x * params.stride) - i32(params.pad_left),
    );
}
