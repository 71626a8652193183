//! Elementwise ReLU and residual add as separate launches (the network fuses both into the
//! convolutions and the max-pool; these run them alone, for tests and embedders).

use super::u;
use crate::gpu::kernels::{linear_grid, Dispatch, Kernel, KernelParams, Kernels};

/// Uniform parameters of `relu.wgsl` and `residual_add.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct ElementwiseParams {
    len: u32,
    _pad: [u32; 3],
}
impl KernelParams for ElementwiseParams {}

impl Kernels {
    /// Elementwise ReLU over `len` values.
    pub(crate) fn relu(&self, input: &wgpu::Buffer, len: usize, output: &wgpu::Buffer) -> Dispatch {
        let params = ElementwiseParams {
            len: u(len),
            _pad: [0; 3],
        };
        self.dispatch(Kernel::Relu, &params, &[input, output], linear_grid(len))
    }

    /// Elementwise `a + b` over `len` values.
    pub(crate) fn residual_add(
        &self,
        a: &wgpu::Buffer,
        b: &wgpu::Buffer,
        len: usize,
        output: &wgpu::Buffer,
    ) -> Dispatch {
        let params = ElementwiseParams {
            len: u(len),
            _pad: [0; 3],
        };
        self.dispatch(
            Kernel::ResidualAdd,
            &params,
            &[a, b, output],
            linear_grid(len),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu::kernels::assert_params_match;

    #[test]
    fn params_match_their_shaders() {
        assert_params_match::<ElementwiseParams>(Kernel::Relu);
        assert_params_match::<ElementwiseParams>(Kernel::ResidualAdd);
    }
}
