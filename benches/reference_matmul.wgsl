// The reference the pointwise kernel is measured against: a plain register-tiled matmul,
// C[M][N] = A[M][K] * B[K][N], 4x4 outputs per invocation in registers, scalar loads, no
// workgroup memory.

struct Params {
    m: u32,
    k: u32,
    n: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;

@compute @workgroup_size(8, 8, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let col0 = gid.x * 4u;
    let row0 = gid.y * 4u;
    if (col0 >= params.n || row0 >= params.m) {
        return;
    }
    var acc: array<array<f32, 4>, 4>;
    for (var kk = 0u; kk < params.k; kk++) {
        var av: array<f32, 4>;
        var bv: array<f32, 4>;
        for (var i = 0u; i < 4u; i++) {
            av[i] = a[min(row0 + i, params.m - 1u) * params.k + kk];
            bv[i] = b[kk * params.n + min(col0 + i, params.n - 1u)];
        }
        for (var i = 0u; i < 4u; i++) {
            for (var j = 0u; j < 4u; j++) {
                acc[i][j] += av[i] * bv[j];
            }
        }
    }
    for (var i = 0u; i < 4u; i++) {
        for (var j = 0u; j < 4u; j++) {
            if (row0 + i < params.m && col0 + j < params.n) {
                c[(row0 + i) * params.n + col0 + j] = acc[i][j];
            }
        }
    }
}
