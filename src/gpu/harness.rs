//! [`GpuOps`]: any single op run on CPU tensors (upload, one launch, read back), which is what
//! the parity tests and curious embedders use.

use std::sync::Mutex;
use std::time::Instant;

use super::context::GpuContext;
use super::kernels::{Dispatch, Element, Kernels};
use super::ops::{
    activation_buffer, fold_batchnorm, read_activations, storage, upload, upload_activations, Conv,
    ConvGeometry, DenseShape, DepthwiseKernel, DepthwiseWork, WeightPrep,
};
use super::options::Precision;
use super::select::ConvKernel;
use crate::bench::ms_since;
use crate::error::{Error, Result};
use crate::graph::{DepthwiseGeometry, Padding};
use crate::tensor::{Shape, Tensor};
use crate::weights::BatchNorm;

/// What one depthwise convolution computes besides its kernel: the window, the ReLU on its
/// input, and the bias (a folded batchnorm) and ReLU on its output.
#[derive(Debug, Clone, Copy)]
pub struct DepthwiseSpec<'a> {
    /// Stride, dilation, padding.
    pub geometry: DepthwiseGeometry,
    /// ReLU on the input as it is read.
    pub relu_input: bool,
    /// `[channels]`, added to the output.
    pub bias: Option<&'a [f32]>,
    /// ReLU on the output, after the bias.
    pub relu_output: bool,
}

impl DepthwiseSpec<'_> {
    /// Stride 1, 'same', nothing after: Keras' depthwise convolutions.
    pub fn plain(relu_input: bool) -> Self {
        Self {
            geometry: DepthwiseGeometry::PLAIN,
            relu_input,
            bias: None,
            relu_output: false,
        }
    }
}

/// Runs single ops on CPU tensors, with the activations stored on the device as float32 or
/// float16 (see [`GpuOps::with_element`]).
#[derive(Debug)]
pub struct GpuOps {
    context: GpuContext,
    kernels: Kernels,
    /// Milliseconds the last launch took, from submit to completion.
    last_launch_ms: Mutex<f64>,
}

impl GpuOps {
    /// Prepares `context`'s device with float32 activations (pipelines are created as ops
    /// first need them).
    pub fn new(context: GpuContext) -> Self {
        let kernels = Kernels::new(&context.device, Element::F32);
        Self::with_kernels(context, kernels)
    }

    /// Runs ops through `kernels` (sharing the pipelines they have compiled), with their
    /// activations' element type.
    pub fn with_kernels(context: GpuContext, kernels: Kernels) -> Self {
        Self {
            context,
            kernels,
            last_launch_ms: Mutex::new(0.0),
        }
    }

    /// Prepares `context`'s device with activations of `element`: inputs are rounded to it
    /// on upload, and outputs come back from it. Fails where the device cannot store float16.
    pub fn with_element(context: GpuContext, element: Element) -> Result<Self> {
        let features = context.device.features();
        if element == Element::F16 && !features.contains(wgpu::Features::SHADER_F16) {
            return Err(Error::Gpu(format!(
                "{} has no SHADER_F16 for float16 activations",
                context.description()
            )));
        }
        let kernels = Kernels::new(&context.device, element);
        Ok(Self::with_kernels(context, kernels))
    }

    /// The element type of the activations.
    pub fn element(&self) -> Element {
        self.kernels.element()
    }

    /// The device in use.
    pub fn context(&self) -> &GpuContext {
        &self.context
    }

    /// Milliseconds the last op's launch took, from submit to completion (wall time).
    pub fn last_launch_ms(&self) -> f64 {
        *self
            .last_launch_ms
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Every convolution kernel variant this adapter can run at `precision`.
    pub fn conv_kernels(&self, precision: Precision) -> Vec<ConvKernel> {
        ConvKernel::ALL
            .into_iter()
            .filter(|v| v.available(&self.context, &self.kernels, precision))
            .collect()
    }

    fn device(&self) -> &wgpu::Device {
        &self.context.device
    }

    /// Runs `dispatches` and reads `len` values of `element` back from `output`.
    fn run(
        &self,
        dispatches: &[Dispatch],
        output: &wgpu::Buffer,
        len: usize,
        element: Element,
    ) -> Result<Vec<f32>> {
        pollster::block_on(async {
            let start = Instant::now();
            self.context
                .checked("running a kernel", || {
                    let mut encoder = self.device().create_command_encoder(&Default::default());
                    {
                        let mut pass = encoder.begin_compute_pass(&Default::default());
                        self.kernels.record(&mut pass, dispatches);
                    }
                    self.context.queue.submit([encoder.finish()]);
                })
                .await?;
            self.context.wait()?;
            if let Ok(mut ms) = self.last_launch_ms.lock() {
                *ms = ms_since(start);
            }
            read_activations(&self.context, output, len, element).await
        })
    }

    /// Runs `dispatches` and reads the activation tensor of `shape` in `output` back.
    fn tensor(
        &self,
        shape: Shape,
        dispatches: &[Dispatch],
        output: &wgpu::Buffer,
    ) -> Result<Tensor> {
        let values = self.run(dispatches, output, shape.len(), self.element())?;
        Tensor::new(shape, values)
    }

    /// An input activation buffer holding `values`.
    fn input(&self, label: &str, values: &[f32]) -> wgpu::Buffer {
        upload_activations(self.device(), label, values, self.element())
    }

    /// An output activation buffer for `len` values.
    fn output(&self, len: usize) -> wgpu::Buffer {
        activation_buffer(self.device(), "output", len, self.element())
    }

    /// Runs weight-preparation steps.
    fn prepare(&self, prep: &WeightPrep) -> Result<()> {
        pollster::block_on(self.context.checked("folding batchnorm", || {
            let mut encoder = self.device().create_command_encoder(&Default::default());
            prep.record(&self.kernels, &mut encoder);
            self.context.queue.submit([encoder.finish()]);
        }))
    }

    /// Folds batchnorm into `kernel` (output channels innermost): `(kernel, bias)`.
    pub fn fold_batchnorm(
        &self,
        kernel: &[f32],
        out_channels: usize,
        bn: &BatchNorm<'_>,
    ) -> Result<(Vec<f32>, Vec<f32>)> {
        // The fold works on 4-channel columns.
        let padded = out_channels.div_ceil(4) * 4;
        let (folded, dispatch) = fold_batchnorm(
            &self.kernels,
            self.device(),
            kernel,
            out_channels,
            padded,
            bn,
        );
        let weights = self.run(
            &[dispatch],
            &folded.weights,
            folded.rows * padded,
            Element::F32,
        )?;
        let bias = pollster::block_on(self.context.read_f32(&folded.bias, (padded * 4) as u64))?;
        let unpad = |v: &[f32]| -> Vec<f32> {
            v.chunks(padded)
                .flat_map(|row| row[..out_channels].to_vec())
                .collect()
        };
        Ok((unpad(&weights), unpad(&bias)))
    }

    /// Convolution (HWIO kernel) + batchnorm, then `+ residual` (of the output's shape) and
    /// ReLU if asked, on the kernel variant `variant` with its weights stored at `precision`.
    ///
    /// Fails where the adapter cannot run `variant` at `precision` (see
    /// [`conv_kernels`](Self::conv_kernels)) or `variant` cannot run this convolution.
    #[allow(clippy::too_many_arguments)]
    pub fn conv(
        &self,
        variant: ConvKernel,
        x: &Tensor,
        kernel: &[f32],
        bn: &BatchNorm<'_>,
        geometry: ConvGeometry,
        relu: bool,
        residual: Option<&Tensor>,
        precision: Precision,
    ) -> Result<Tensor> {
        let k = geometry.kernel;
        let out_channels = kernel.len() / (k * k * x.shape.channels);
        if !self.conv_kernels(precision).contains(&variant) {
            return Err(Error::Gpu(format!(
                "{} cannot run {} at {precision:?}",
                self.context.description(),
                variant.name()
            )));
        }
        if !variant.runs(geometry, x.shape.channels, out_channels)
            || (residual.is_some() && variant == ConvKernel::Direct)
        {
            return Err(Error::Input(format!(
                "{} does not run {geometry:?} from {} to {out_channels} channels{}",
                variant.name(),
                x.shape.channels,
                if residual.is_some() {
                    " with a residual"
                } else {
                    ""
                }
            )));
        }
        let (conv, prep) = Conv::prepare(
            &self.kernels,
            variant,
            geometry,
            kernel,
            out_channels,
            bn,
            precision,
        )?;
        self.prepare(&prep)?;
        let input = self.input("input", &x.data);
        let residual = residual.map(|r| self.input("residual", &r.data));
        let shape = geometry.output_shape(x.shape, out_channels);
        let output = self.output(shape.len());
        let d = conv.launch(
            &self.kernels,
            &input,
            x.shape,
            shape,
            relu,
            residual.as_ref(),
            &output,
        );
        self.tensor(shape, &[d], &output)
    }

    /// Depthwise 3x3 convolution of `spec` on `variant`. Fails where `variant` cannot run it
    /// (see [`DepthwiseKernel::runs`]).
    pub fn depthwise_conv(
        &self,
        variant: DepthwiseKernel,
        x: &Tensor,
        kernel: &[f32],
        spec: DepthwiseSpec<'_>,
    ) -> Result<Tensor> {
        if !variant.runs(x.shape.channels, spec.geometry) {
            return Err(Error::Input(format!(
                "{} does not run {} channels with {:?}",
                variant.name(),
                x.shape.channels,
                spec.geometry
            )));
        }
        let input = self.input("input", &x.data);
        let kernel = upload(self.device(), "kernel", kernel);
        let bias = spec.bias.map(|b| upload(self.device(), "bias", b));
        let shape = spec.geometry.output_shape(x.shape);
        let output = self.output(shape.len());
        let work = DepthwiseWork {
            geometry: spec.geometry,
            relu_input: spec.relu_input,
            bias: bias.as_ref(),
            relu_output: spec.relu_output,
        };
        let d = self
            .kernels
            .depthwise_conv(variant, &input, x.shape, &kernel, work, &output);
        self.tensor(shape, &[d], &output)
    }

    /// `max(x * scale + shift, 0)` per channel (`affine` `None`: a bare ReLU), on activations
    /// of the device's element type: the pre-activation kernel.
    pub fn scale_shift_relu(&self, x: &Tensor, affine: Option<(&[f32], &[f32])>) -> Result<Tensor> {
        let input = self.input("input", &x.data);
        let affine = affine.map(|(a, b)| {
            (
                upload(self.device(), "scale", a),
                upload(self.device(), "shift", b),
            )
        });
        let output = self.output(x.shape.len());
        let d = self.kernels.scale_shift_relu(
            &input,
            x.shape,
            affine.as_ref().map(|(a, b)| (a, b)),
            &output,
        );
        self.tensor(x.shape, &[d], &output)
    }

    /// Max-pool 3x3/2 with `padding`, plus `residual` (of the pooled shape) if given.
    pub fn max_pool(
        &self,
        x: &Tensor,
        padding: Padding,
        residual: Option<&Tensor>,
    ) -> Result<Tensor> {
        let input = self.input("input", &x.data);
        let residual = residual.map(|r| self.input("residual", &r.data));
        let (oh, _) = padding.resolve(x.shape.height, 3, 2);
        let (ow, _) = padding.resolve(x.shape.width, 3, 2);
        let output = self.output(x.shape.batch * oh * ow * x.shape.channels);
        let (d, shape) =
            self.kernels
                .max_pool(&input, x.shape, padding, residual.as_ref(), &output);
        self.tensor(shape, &[d], &output)
    }

    /// Elementwise ReLU (in float32, whatever the element type).
    pub fn relu(&self, x: &Tensor) -> Result<Tensor> {
        let input = upload(self.device(), "input", &x.data);
        let output = storage(self.device(), "output", x.shape.len());
        let d = self.kernels.relu(&input, x.shape.len(), &output);
        let values = self.run(&[d], &output, x.shape.len(), Element::F32)?;
        Tensor::new(x.shape, values)
    }

    /// Elementwise sum of two tensors of the same shape (in float32, whatever the element
    /// type).
    pub fn residual_add(&self, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        if a.shape != b.shape {
            return Err(Error::Input(format!(
                "cannot add tensors of shapes {} and {}",
                a.shape, b.shape
            )));
        }
        let (ga, gb) = (
            upload(self.device(), "a", &a.data),
            upload(self.device(), "b", &b.data),
        );
        let output = storage(self.device(), "output", a.shape.len());
        let d = self.kernels.residual_add(&ga, &gb, a.shape.len(), &output);
        let values = self.run(&[d], &output, a.shape.len(), Element::F32)?;
        Tensor::new(a.shape, values)
    }

    /// Global average pool into `[batch][channels]` (float32 out, whatever the element type).
    pub fn global_avg_pool(&self, x: &Tensor) -> Result<Vec<f32>> {
        let input = self.input("input", &x.data);
        let len = x.shape.batch * x.shape.channels;
        let output = storage(self.device(), "output", len);
        let d = self.kernels.global_avg_pool(&input, x.shape, &output);
        self.run(&[d], &output, len, Element::F32)
    }

    /// Dense layer over the rows of `x`: kernel `[inputs][units]`, bias `[units]`.
    pub fn dense(&self, x: &[f32], kernel: &[f32], bias: &[f32], relu: bool) -> Result<Vec<f32>> {
        let units = bias.len();
        let inputs = kernel.len() / units;
        let batch = x.len() / inputs;
        let input = upload(self.device(), "input", x);
        let (k, b) = (
            upload(self.device(), "kernel", kernel),
            upload(self.device(), "bias", bias),
        );
        let output = storage(self.device(), "output", batch * units);
        let shape = DenseShape {
            inputs,
            units,
            relu,
        };
        let d = self.kernels.dense(&input, batch, &k, &b, shape, &output);
        self.run(&[d], &output, batch * units, Element::F32)
    }

    /// Softmax over each row of `cols` values.
    pub fn softmax(&self, x: &[f32], cols: usize) -> Result<Vec<f32>> {
        let input = upload(self.device(), "input", x);
        let output = storage(self.device(), "output", x.len());
        let d = self.kernels.softmax(&input, x.len() / cols, cols, &output);
        self.run(&[d], &output, x.len(), Element::F32)
    }
}
