// The reference the pointwise kernel is measured against: a plain register-tiled matmul,
// C[M][N] = A[M][K] * B[K][N] with N a multiple of 4. Each invocation keeps a 4x4 tile of C in
// four vec4 registers (fully unrolled, no arrays), reads B as vec4 rows and A as scalars, and
// uses no workgroup memory.

struct Params {
    m: u32,
    k: u32,
    n: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> c: array<vec4<f32>>;

@compute @workgroup_size(8, 8, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let n4 = params.n / 4u;
    let col = gid.x;
    let row0 = gid.y * 4u;
    if (col >= n4 || row0 >= params.m) {
        return;
    }
    let last = params.m - 1u;
    let a0 = row0 * params.k;
    let a1 = min(row0 + 1u, last) * params.k;
    let a2 = min(row0 + 2u, last) * params.k;
    let a3 = min(row0 + 3u, last) * params.k;
    var c0 = vec4<f32>(0.0);
    var c1 = vec4<f32>(0.0);
    var c2 = vec4<f32>(0.0);
    var c3 = vec4<f32>(0.0);
    for (var kk = 0u; kk < params.k; kk++) {
        let bv = b[kk * n4 + col];
        c0 += a[a0 + kk] * bv;
        c1 += a[a1 + kk] * bv;
        c2 += a[a2 + kk] * bv;
        c3 += a[a3 + kk] * bv;
    }
    c[row0 * n4 + col] = c0;
    if (row0 + 1u < params.m) {
        c[(row0 + 1u) * n4 + col] = c1;
    }
    if (row0 + 2u < params.m) {
        c[(row0 + 2u) * n4 + col] = c2;
    }
    if (row0 + 3u < params.m) {
        c[(row0 + 3u) * n4 + col] = c3;
    }
}
