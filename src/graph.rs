//! An Xception as data: the node sequence every backend walks, built from a family member's
//! description ([`Architecture`]), with its geometry and shape inference.
//!
//! Batchnorms are attached to the convolution they follow, ReLUs are flags on the nodes that
//! read or write them, and residual adds are attached to the node whose output they join,
//! so the list is what the GPU dispatcher and the fast CPU backend run while the reference
//! expands every node back into its plain ops.

pub use crate::architecture::{Architecture, BlockSpec, Layout};
use crate::error::{Error, Result};
use crate::tensor::{Shape, Size};

/// Smallest height and width the network accepts (the Keras check for Xception).
pub const MIN_INPUT_SIZE: usize = 71;
/// Channels of the image input.
pub const INPUT_CHANNELS: usize = 3;
/// Width of the global-average-pooled embedding.
pub const EMBEDDING_DIM: usize = 2048;

/// The most bytes the largest activation of one image may take (float32): 1 GiB, an input of
/// about 2900x2900 pixels (299x299 needs 10.6 MiB). Larger inputs are refused from their size
/// alone, before anything is allocated, on every backend and every way in.
pub const MAX_ACTIVATION_BYTES: u64 = 1 << 30;

/// The most bytes the largest activation of one forward pass may take, all its images
/// together: 4 GiB. A larger batch is refused; split it.
pub const MAX_PASS_ACTIVATION_BYTES: u64 = 4 << 30;
/// Epsilon of every batchnorm layer in Xception.
pub const BN_EPSILON: f32 = 1e-3;

/// Identifies a value (an activation tensor) in the graph; value 0 is the input image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ValueId(pub usize);

/// Spatial padding of a convolution or pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Padding {
    /// No padding.
    Valid,
    /// Output size `ceil(input / stride)`; an odd total pad puts the extra pixel bottom/right.
    Same,
    /// `p` pixels on every side (PyTorch's `padding=p`).
    Symmetric(usize),
}

impl Padding {
    /// Output length and leading (top or left) pad for an input of length `input` and a
    /// window of `kernel` pixels (a dilated window's whole span).
    pub fn resolve(self, input: usize, kernel: usize, stride: usize) -> (usize, usize) {
        match self {
            Padding::Valid => ((input - kernel) / stride + 1, 0),
            Padding::Same => {
                let out = input.div_ceil(stride);
                let total = ((out - 1) * stride + kernel).saturating_sub(input);
                (out, total / 2)
            }
            Padding::Symmetric(p) => ((input + 2 * p - kernel) / stride + 1, p),
        }
    }

    /// timm's padding of a `kernel` window at `stride` and `dilation` (`get_padding`):
    /// symmetric, `((stride - 1) + dilation * (kernel - 1)) / 2` on every side.
    pub const fn timm(kernel: usize, stride: usize, dilation: usize) -> Self {
        Padding::Symmetric((stride - 1 + dilation * (kernel - 1)) / 2)
    }
}

/// The window of a separable convolution's depthwise half: 3x3, with a stride, a dilation and
/// a padding. Where every output pixel lies, and which inputs it reads, is decided here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DepthwiseGeometry {
    /// Stride in both directions (1 or 2).
    pub stride: usize,
    /// Spacing of the window's taps (1, or 2 and 4 in segmentation backbones).
    pub dilation: usize,
    /// Padding rule.
    pub padding: Padding,
}

impl DepthwiseGeometry {
    /// Stride 1, no dilation, one pixel of padding on every side: Keras' depthwise
    /// convolutions and the ones every depthwise kernel runs.
    pub const PLAIN: Self = Self {
        stride: 1,
        dilation: 1,
        padding: Padding::Same,
    };

    /// Whether it is [`DepthwiseGeometry::PLAIN`] in effect (at stride 1, 'same' and a
    /// symmetric pad of 1 place the window alike).
    pub fn is_plain(&self) -> bool {
        self.stride == 1
            && self.dilation == 1
            && matches!(self.padding, Padding::Same | Padding::Symmetric(1))
    }

    /// The span of the dilated 3x3 window.
    pub const fn span(&self) -> usize {
        2 * self.dilation + 1
    }

    /// Output length and leading pad along an input side of `input` pixels.
    pub fn resolve(&self, input: usize) -> (usize, usize) {
        self.padding.resolve(input, self.span(), self.stride)
    }

    /// The output shape over an input of `input` (channels unchanged).
    pub fn output_shape(&self, input: Shape) -> Shape {
        let (h, _) = self.resolve(input.height);
        let (w, _) = self.resolve(input.width);
        Shape::new(input.batch, h, w, input.channels)
    }
}

/// A regular convolution, optionally followed by batchnorm: the stem convolutions and the 1x1
/// shortcuts.
#[derive(Debug, Clone, PartialEq)]
pub struct ConvNode {
    /// Layer name of the convolution (`block1_conv1`, `conv2d_2`, `blocks.0.shortcut.conv`); its
    /// kernel is the tensor `<conv>.kernel`.
    pub conv: String,
    /// Layer name of the batchnorm that follows it, if any (the pre-activation layout's
    /// shortcuts and second stem convolution have none).
    pub bn: Option<String>,
    /// Square kernel size.
    pub kernel: usize,
    /// Stride in both directions.
    pub stride: usize,
    /// Padding rule.
    pub padding: Padding,
    /// Input channels.
    pub in_channels: usize,
    /// Output channels.
    pub out_channels: usize,
    /// Whether a ReLU follows the batchnorm.
    pub relu: bool,
}

/// A separable convolution (depthwise 3x3, then pointwise 1x1), with the batchnorms and ReLUs
/// around its halves.
#[derive(Debug, Clone, PartialEq)]
pub struct SeparableNode {
    /// Layer name of the separable convolution (`block4_sepconv2`, `blocks.3.stack.conv1`);
    /// its kernels are `<conv>.depthwise_kernel` and `<conv>.pointwise_kernel`.
    pub conv: String,
    /// Input channels.
    pub in_channels: usize,
    /// Output channels.
    pub out_channels: usize,
    /// The depthwise half's window.
    pub depthwise: DepthwiseGeometry,
    /// ReLU applied to the input as it is read (the input itself stays un-rectified).
    pub relu_in: bool,
    /// Batchnorm after the depthwise half (the aligned layout), folded into it as a bias.
    pub depthwise_bn: Option<String>,
    /// ReLU after the depthwise half (and its batchnorm).
    pub relu_mid: bool,
    /// Batchnorm after the pointwise half, if any.
    pub bn: Option<String>,
    /// Shortcut added after the pointwise half's batchnorm.
    pub residual: Option<ValueId>,
    /// ReLU after the pointwise half (its batchnorm, and the shortcut if any).
    pub relu_out: bool,
}

/// One step of the forward pass.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// Convolution (+ batchnorm) (+ ReLU).
    Conv(ConvNode),
    /// Separable convolution with its batchnorms, ReLUs and residual.
    Separable(SeparableNode),
    /// Batchnorm (if named) then ReLU, elementwise: a pre-activation block's opening, whose
    /// output feeds both its branches.
    PreActivation {
        /// Layer name of the batchnorm; `None` for a bare ReLU.
        bn: Option<String>,
        /// Channels of its input and output.
        channels: usize,
    },
    /// Max-pool 3x3, stride 2, plus the block's shortcut.
    MaxPoolAdd {
        /// The shortcut tensor added to the pooled output.
        residual: ValueId,
        /// The pool's padding ('same' in Keras, 1 on every side in timm).
        padding: Padding,
    },
    /// Global average pool over height and width: the embedding.
    GlobalAvgPool,
}

/// A node: an op, its main input and the value it defines.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// What the node computes.
    pub op: Op,
    /// Main input.
    pub input: ValueId,
    /// Value defined by this node (its layer name is in [`Graph::value_names`]).
    pub output: ValueId,
}

impl Node {
    /// Every value the node reads.
    pub fn inputs(&self) -> Vec<ValueId> {
        let mut inputs = vec![self.input];
        match &self.op {
            Op::Separable(SeparableNode {
                residual: Some(r), ..
            })
            | Op::MaxPoolAdd { residual: r, .. } => inputs.push(*r),
            _ => {}
        }
        inputs
    }
}

/// Multiply-accumulates of one node, split as the GPU launches them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeMacs {
    /// The depthwise half of a separable convolution (0 for other nodes).
    pub depthwise: u64,
    /// A convolution, or the pointwise half of a separable one.
    pub dense: u64,
}

impl NodeMacs {
    /// Both parts.
    pub const fn total(self) -> u64 {
        self.depthwise + self.dense
    }
}

/// An Xception backbone (input to embedding) as the nodes every backend walks.
#[derive(Debug, Clone, PartialEq)]
pub struct Graph {
    /// The description it was built from.
    pub architecture: Architecture,
    /// Nodes in execution order.
    pub nodes: Vec<Node>,
    /// Layer name of what produces each value, indexed by [`ValueId`].
    pub value_names: Vec<String>,
}

struct Builder {
    graph: Graph,
}

impl Builder {
    fn push(&mut self, op: Op, input: ValueId, name: &str) -> ValueId {
        let output = ValueId(self.graph.value_names.len());
        self.graph.value_names.push(name.to_string());
        self.graph.nodes.push(Node { op, input, output });
        output
    }

    fn conv(&mut self, input: ValueId, spec: ConvNode, name: &str) -> ValueId {
        self.push(Op::Conv(spec), input, name)
    }

    fn separable(&mut self, input: ValueId, spec: SeparableNode, name: &str) -> ValueId {
        self.push(Op::Separable(spec), input, name)
    }

    /// Keras' layer names: `block<N>_sepconv<i>`, shortcuts `conv2d[_k]` with
    /// `batch_normalization[_k]`, adds `add[_k]`, numbered as Keras numbers them.
    fn keras(&mut self, a: &Architecture) {
        let stem = |conv: &str, cin, cout, stride| ConvNode {
            conv: conv.to_string(),
            bn: Some(format!("{conv}_bn")),
            kernel: 3,
            stride,
            padding: Padding::Valid,
            in_channels: cin,
            out_channels: cout,
            relu: true,
        };
        let [c1, c2] = a.stem;
        let x = self.conv(
            ValueId(0),
            stem("block1_conv1", 3, c1, 2),
            "block1_conv1_act",
        );
        let mut x = self.conv(x, stem("block1_conv2", c1, c2, 1), "block1_conv2_act");
        let (mut cin, mut shortcuts, mut adds) = (c2, 0, 0);
        for (i, b) in a.blocks.iter().enumerate() {
            let number = i + 2;
            let cout = b.out_channels();
            let shortcut = if b.skip && (b.stride != 1 || cin != cout) {
                let bn = suffixed("batch_normalization", shortcuts);
                let conv = ConvNode {
                    conv: suffixed("conv2d", shortcuts),
                    bn: Some(bn.clone()),
                    kernel: 1,
                    stride: b.stride,
                    padding: Padding::Same,
                    in_channels: cin,
                    out_channels: cout,
                    relu: false,
                };
                shortcuts += 1;
                self.conv(x, conv, &bn)
            } else {
                x
            };
            let rectify_after = !b.start_with_relu && !b.skip;
            let mut y = x;
            let mut c = cin;
            for (j, &channels) in b.channels.iter().enumerate() {
                let conv = format!("block{number}_sepconv{}", j + 1);
                let last = j + 1 == b.channels.len();
                let residual = (last && b.skip && b.stride == 1).then_some(shortcut);
                let name = if rectify_after {
                    format!("{conv}_act")
                } else if residual.is_some() {
                    adds += 1;
                    suffixed("add", adds - 1)
                } else {
                    format!("{conv}_bn")
                };
                let spec = SeparableNode {
                    bn: Some(format!("{conv}_bn")),
                    conv,
                    in_channels: c,
                    out_channels: channels,
                    depthwise: DepthwiseGeometry::PLAIN,
                    relu_in: !rectify_after && (j > 0 || b.start_with_relu),
                    depthwise_bn: None,
                    relu_mid: false,
                    relu_out: rectify_after,
                    residual,
                };
                y = self.separable(y, spec, &name);
                c = channels;
            }
            if b.stride == 2 {
                let pool = Op::MaxPoolAdd {
                    residual: shortcut,
                    padding: a.pool_padding,
                };
                adds += 1;
                y = self.push(pool, y, &suffixed("add", adds - 1));
            }
            x = y;
            cin = cout;
        }
    }

    /// timm's module names (`stem.0.conv`, `blocks.3.stack.conv2`, `blocks.3.shortcut.bn`, ...),
    /// with its strides, dilations and paddings.
    fn aligned(&mut self, a: &Architecture) {
        let preact = a.layout == Layout::AlignedPreact;
        let [c1, c2] = a.stem;
        let stem0 = ConvNode {
            conv: "stem.0.conv".into(),
            bn: Some("stem.0.bn".into()),
            kernel: 3,
            stride: 2,
            padding: Padding::timm(3, 2, 1),
            in_channels: 3,
            out_channels: c1,
            relu: true,
        };
        let x = self.conv(ValueId(0), stem0, "stem.0");
        let stem1 = ConvNode {
            conv: if preact { "stem.1" } else { "stem.1.conv" }.into(),
            bn: (!preact).then(|| "stem.1.bn".into()),
            kernel: 3,
            stride: 1,
            padding: Padding::timm(3, 1, 1),
            in_channels: c1,
            out_channels: c2,
            relu: !preact,
        };
        let mut x = self.conv(x, stem1, "stem.1");
        let (mut cin, mut reduction, mut dilation) = (c2, 2, 1);
        let last_block = a.blocks.len() - 1;
        for (i, b) in a.blocks.iter().enumerate() {
            let p = format!("blocks.{i}");
            // timm's output_stride: a stride that would pass it dilates the blocks after this one.
            let block_dilation = dilation;
            let mut stride = b.stride;
            if stride > 1 {
                if reduction * stride > a.output_stride {
                    dilation *= stride;
                    stride = 1;
                } else {
                    reduction *= stride;
                }
            }
            let cout = b.out_channels();
            let input = if preact {
                let norm = Op::PreActivation {
                    bn: Some(format!("{p}.norm")),
                    channels: cin,
                };
                self.push(norm, x, &format!("{p}.norm"))
            } else {
                x
            };
            let shortcut = if b.skip && (stride != 1 || cin != cout) {
                let conv = ConvNode {
                    conv: if preact {
                        format!("{p}.shortcut")
                    } else {
                        format!("{p}.shortcut.conv")
                    },
                    bn: (!preact).then(|| format!("{p}.shortcut.bn")),
                    kernel: 1,
                    stride,
                    padding: Padding::timm(1, stride, 1),
                    in_channels: cin,
                    out_channels: cout,
                    relu: false,
                };
                self.conv(input, conv, &format!("{p}.shortcut"))
            } else {
                input
            };
            let rectify_after = !preact && !b.start_with_relu && !b.skip;
            let mut y = input;
            let mut c = cin;
            for (j, &channels) in b.channels.iter().enumerate() {
                let conv = format!("{p}.stack.conv{}", j + 1);
                let last = j + 1 == b.channels.len();
                let s = if last { stride } else { 1 };
                // A pre-activation block's next convolution opens with batchnorm + ReLU, which
                // only this one's output feeds: it is this one's batchnorm and ReLU.
                let (bn, relu_out) = if preact {
                    let final_relu = last && i == last_block && !b.skip;
                    (
                        (!last).then(|| format!("{p}.stack.conv{}.norm", j + 2)),
                        !last || final_relu,
                    )
                } else {
                    (Some(format!("{conv}.bn_pw")), rectify_after)
                };
                let spec = SeparableNode {
                    in_channels: c,
                    out_channels: channels,
                    depthwise: DepthwiseGeometry {
                        stride: s,
                        dilation: block_dilation,
                        padding: Padding::timm(3, s, block_dilation),
                    },
                    relu_in: !preact && b.start_with_relu,
                    depthwise_bn: (!preact).then(|| format!("{conv}.bn_dw")),
                    relu_mid: rectify_after,
                    bn,
                    relu_out,
                    residual: (last && b.skip).then_some(shortcut),
                    conv: conv.clone(),
                };
                let name = if last { p.clone() } else { conv };
                y = self.separable(y, spec, &name);
                c = channels;
            }
            x = y;
            cin = cout;
        }
        if preact && a.blocks[last_block].skip {
            let act = Op::PreActivation {
                bn: None,
                channels: cin,
            };
            self.push(act, x, "act");
        }
    }
}

fn suffixed(base: &str, index: usize) -> String {
    if index == 0 {
        base.to_string()
    } else {
        format!("{base}_{index}")
    }
}

impl Graph {
    /// Builds the backbone `architecture` describes, with its layer names (Keras' for the
    /// Keras layout, timm's module paths for the aligned ones).
    pub fn build(architecture: &Architecture) -> Self {
        let input = match architecture.layout {
            Layout::Keras => "input_layer",
            Layout::Aligned | Layout::AlignedPreact => "input",
        };
        let mut b = Builder {
            graph: Graph {
                architecture: architecture.clone(),
                nodes: Vec::new(),
                value_names: vec![input.to_string()],
            },
        };
        match architecture.layout {
            Layout::Keras => b.keras(architecture),
            Layout::Aligned | Layout::AlignedPreact => b.aligned(architecture),
        }
        let features = b.graph.nodes.last().expect("a graph has nodes").output;
        let name = match architecture.layout {
            Layout::Keras => "global_average_pooling2d",
            Layout::Aligned | Layout::AlignedPreact => "head.global_pool",
        };
        b.push(Op::GlobalAvgPool, features, name);
        b.graph
    }

    /// The most channels any value of the graph has.
    pub fn widest_channels(&self) -> usize {
        let node = |node: &Node| match &node.op {
            Op::Conv(c) => c.in_channels.max(c.out_channels),
            Op::Separable(s) => s.in_channels.max(s.out_channels),
            Op::PreActivation { channels, .. } => *channels,
            Op::MaxPoolAdd { .. } | Op::GlobalAvgPool => 0,
        };
        self.nodes.iter().map(node).max().unwrap_or(0)
    }

    /// Keras' Xception backbone with its Keras layer names.
    pub fn xception() -> Self {
        Self::build(&Architecture::xception())
    }

    /// Width of the embedding (the last feature map's channels: 2048 in every named member).
    pub fn embedding_dim(&self) -> usize {
        self.architecture.embedding_dim()
    }

    /// Floats of the largest activation among `shapes` (from [`Graph::infer_shapes`]; the
    /// input excluded): what sizes a backend's activation buffers.
    pub fn largest_activation(shapes: &[Shape]) -> usize {
        shapes.iter().skip(1).map(Shape::len).max().unwrap_or(0)
    }

    /// The value holding the embedding (the last node's output).
    pub fn embedding(&self) -> ValueId {
        self.nodes.last().expect("graph has nodes").output
    }

    /// Fails, saying how much it would take, where one image of `size` needs an activation
    /// larger than [`MAX_ACTIVATION_BYTES`] (or is smaller than the network takes): what every
    /// way in checks before it resizes or allocates anything.
    pub fn check_input_size(size: Size) -> Result<()> {
        static XCEPTION: std::sync::OnceLock<Graph> = std::sync::OnceLock::new();
        XCEPTION
            .get_or_init(Graph::xception)
            .infer_shapes(1, size.height, size.width)
            .map(drop)
    }

    /// Shapes of every value for an input of `batch` images of `height` x `width` pixels.
    /// Fails where the input is too small, or its activations too large (see
    /// [`MAX_ACTIVATION_BYTES`] and [`MAX_PASS_ACTIVATION_BYTES`]).
    pub fn infer_shapes(&self, batch: usize, height: usize, width: usize) -> Result<Vec<Shape>> {
        // Sides this large would overflow the shape arithmetic; their activations are far
        // past the limit anyway.
        const LARGEST_SIDE: usize = 1 << 20;
        if height > LARGEST_SIDE || width > LARGEST_SIDE {
            return Err(Error::Input(format!(
                "a {width}x{height} input is far larger than any this network can run (at most \
                 about 2900x2900 pixels)"
            )));
        }
        let shapes = self.infer_shapes_unchecked(batch, height, width)?;
        // In u64: 4 GiB and large shapes do not fit a 32-bit usize (WebAssembly).
        let per_image = 4 * shapes
            .iter()
            .skip(1)
            .map(|s| s.height as u64 * s.width as u64 * s.channels as u64)
            .max()
            .unwrap_or(0);
        if per_image > MAX_ACTIVATION_BYTES {
            return Err(Error::Input(format!(
                "a {width}x{height} input needs {:.1} GiB for its largest activation, more than \
                 the {} GiB allowed; resize it (at most about 2900x2900 pixels)",
                per_image as f64 / f64::from(1 << 30),
                MAX_ACTIVATION_BYTES >> 30
            )));
        }
        if per_image.saturating_mul(batch as u64) > MAX_PASS_ACTIVATION_BYTES {
            return Err(Error::Input(format!(
                "a batch of {batch} {width}x{height} images needs {:.1} GiB for its largest \
                 activation, more than the {} GiB one pass may take; split the batch",
                (per_image * batch as u64) as f64 / f64::from(1 << 30),
                MAX_PASS_ACTIVATION_BYTES >> 30
            )));
        }
        Ok(shapes)
    }

    fn infer_shapes_unchecked(
        &self,
        batch: usize,
        height: usize,
        width: usize,
    ) -> Result<Vec<Shape>> {
        if height < MIN_INPUT_SIZE || width < MIN_INPUT_SIZE {
            return Err(Error::Input(format!(
                "input is {width}x{height} pixels; Xception needs at least {MIN_INPUT_SIZE}x{MIN_INPUT_SIZE}"
            )));
        }
        if batch == 0 {
            return Err(Error::Input("batch of zero images".into()));
        }
        let mut shapes = vec![Shape::new(batch, height, width, INPUT_CHANNELS)];
        for node in &self.nodes {
            let input = shapes[node.input.0];
            let shape = match &node.op {
                Op::Conv(c) => {
                    let (h, _) = c.padding.resolve(input.height, c.kernel, c.stride);
                    let (w, _) = c.padding.resolve(input.width, c.kernel, c.stride);
                    Shape::new(batch, h, w, c.out_channels)
                }
                Op::Separable(s) => s
                    .depthwise
                    .output_shape(input)
                    .with_channels(s.out_channels),
                Op::PreActivation { .. } => input,
                Op::MaxPoolAdd { padding, .. } => {
                    let (h, _) = padding.resolve(input.height, 3, 2);
                    let (w, _) = padding.resolve(input.width, 3, 2);
                    Shape::new(batch, h, w, input.channels)
                }
                Op::GlobalAvgPool => Shape::new(batch, 1, 1, input.channels),
            };
            shapes.push(shape);
        }
        Ok(shapes)
    }

    /// Multiply-accumulates of one forward pass of the backbone per image.
    pub fn macs(&self, height: usize, width: usize) -> Result<u64> {
        let shapes = self.infer_shapes(1, height, width)?;
        Ok(self.nodes.iter().map(|n| n.macs(&shapes).total()).sum())
    }

    /// For every value, the index of the last node that reads it (0 for values nothing
    /// reads): after that node runs, the value's buffer can be reused.
    pub fn last_uses(&self) -> Vec<usize> {
        let mut last_use = vec![0; self.value_names.len()];
        for (i, node) in self.nodes.iter().enumerate() {
            for v in node.inputs() {
                last_use[v.0] = i;
            }
        }
        last_use
    }

    /// Parameters of the backbone, batchnorm statistics included (20,861,480 for Xception).
    pub fn params(&self) -> u64 {
        self.nodes.iter().map(Node::params).sum()
    }
}

impl Node {
    /// Parameters of the node: kernels plus the four vectors of each batchnorm.
    pub fn params(&self) -> u64 {
        let bn =
            |name: &Option<String>, channels: usize| 4 * channels * usize::from(name.is_some());
        (match &self.op {
            Op::Conv(c) => {
                c.kernel * c.kernel * c.in_channels * c.out_channels + bn(&c.bn, c.out_channels)
            }
            Op::Separable(s) => {
                9 * s.in_channels
                    + bn(&s.depthwise_bn, s.in_channels)
                    + s.in_channels * s.out_channels
                    + bn(&s.bn, s.out_channels)
            }
            Op::PreActivation { bn: norm, channels } => bn(norm, *channels),
            Op::MaxPoolAdd { .. } | Op::GlobalAvgPool => 0,
        }) as u64
    }

    /// Multiply-accumulates of the node over the whole batch of `shapes` (from
    /// [`Graph::infer_shapes`]).
    pub fn macs(&self, shapes: &[Shape]) -> NodeMacs {
        let out = shapes[self.output.0];
        let pixels = out.pixels() as u64;
        let (depthwise, dense) = match &self.op {
            Op::Conv(c) => (0, c.kernel * c.kernel * c.in_channels * c.out_channels),
            Op::Separable(s) => (9 * s.in_channels, s.in_channels * s.out_channels),
            Op::PreActivation { .. } | Op::MaxPoolAdd { .. } | Op::GlobalAvgPool => (0, 0),
        };
        NodeMacs {
            depthwise: pixels * depthwise as u64,
            dense: pixels * dense as u64,
        }
    }

    /// A short description of the op, e.g. `SeparableConv 3x3 + BN + ReLU-in`.
    pub fn describe(&self) -> String {
        match &self.op {
            Op::Conv(c) => {
                let bn = if c.bn.is_some() { " + BN" } else { "" };
                let relu = if c.relu { " + ReLU" } else { "" };
                let k = c.kernel;
                format!("Conv {k}x{k}/{} {:?}{bn}{relu}", c.stride, c.padding)
            }
            Op::Separable(s) => {
                let mut text = String::new();
                if s.relu_in {
                    text.push_str("ReLU + ");
                }
                let d = s.depthwise;
                text.push_str("SeparableConv 3x3");
                if !d.is_plain() {
                    text.push_str(&format!("/{}", d.stride));
                    if d.dilation > 1 {
                        text.push_str(&format!(" dilation {}", d.dilation));
                    }
                }
                if s.depthwise_bn.is_some() {
                    text.push_str(" (BN");
                    text.push_str(if s.relu_mid { " + ReLU)" } else { ")" });
                }
                if s.bn.is_some() {
                    text.push_str(" + BN");
                }
                if s.relu_out {
                    text.push_str(" + ReLU");
                }
                if s.residual.is_some() {
                    text.push_str(" + Add");
                }
                text
            }
            Op::PreActivation { bn: Some(_), .. } => "BN + ReLU".to_string(),
            Op::PreActivation { bn: None, .. } => "ReLU".to_string(),
            Op::MaxPoolAdd { padding, .. } => format!("MaxPool 3x3/2 {padding:?} + Add"),
            Op::GlobalAvgPool => "GlobalAveragePooling".to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_match_keras_at_150_and_299_and_171x203() {
        let g = Graph::xception();
        let names = |n: &str| g.value_names.iter().position(|v| v == n).unwrap();
        for (h, w, expect) in [
            (
                150,
                150,
                [(74, 74), (72, 72), (36, 36), (18, 18), (9, 9), (5, 5)],
            ),
            (
                299,
                299,
                [
                    (149, 149),
                    (147, 147),
                    (74, 74),
                    (37, 37),
                    (19, 19),
                    (10, 10),
                ],
            ),
            (
                171,
                203,
                [(85, 101), (83, 99), (42, 50), (21, 25), (11, 13), (6, 7)],
            ),
        ] {
            let shapes = g.infer_shapes(1, h, w).unwrap();
            let at = |n: &str| {
                let s = shapes[names(n)];
                (s.height, s.width)
            };
            let got = [
                at("block1_conv1_act"),
                at("block1_conv2_act"),
                at("add"),
                at("add_1"),
                at("add_2"),
                at("add_11"),
            ];
            assert_eq!(got, expect, "at {h}x{w}");
        }
        assert_eq!(g.value_names.last().unwrap(), "global_average_pooling2d");
    }

    #[test]
    fn mac_count_matches_the_architecture_notes() {
        let g = Graph::xception();
        assert_eq!(g.macs(150, 150).unwrap(), 1_924_397_456);
        assert_eq!(g.macs(299, 299).unwrap(), 8_355_355_496);
    }

    #[test]
    fn param_count_matches_keras() {
        assert_eq!(Graph::xception().params(), 20_861_480);
    }

    #[test]
    fn node_count_is_36_conv_layers() {
        let g = Graph::xception();
        let convs = g
            .nodes
            .iter()
            .filter(|n| matches!(n.op, Op::Conv(_) | Op::Separable(_)))
            .count();
        // 36 conv layers of the paper + the 4 shortcut convs.
        assert_eq!(convs, 40);
    }

    #[test]
    fn same_padding_puts_the_extra_pixel_bottom_right() {
        assert_eq!(Padding::Same.resolve(72, 3, 2), (36, 0));
        assert_eq!(Padding::Same.resolve(147, 3, 2), (74, 1));
        assert_eq!(Padding::Same.resolve(9, 3, 2), (5, 1));
        assert_eq!(Padding::Same.resolve(72, 1, 2), (36, 0));
        assert_eq!(Padding::Valid.resolve(150, 3, 2), (74, 0));
    }

    #[test]
    fn too_small_input_is_rejected() {
        assert!(Graph::xception().infer_shapes(1, 70, 200).is_err());
    }

    /// One image's largest activation (the stem's second convolution, 64 channels at about
    /// half the input's size) is held to 1 GiB: 2800x2800 runs, 2950x2950 and absurd sizes are
    /// refused with the size and the limit; a batch is held to 4 GiB in all.
    #[test]
    fn inputs_past_the_activation_limits_are_refused_from_their_size() {
        let g = Graph::xception();
        let largest =
            |side| 4 * Graph::largest_activation(&g.infer_shapes(1, side, side).unwrap()) as u64;
        assert_eq!(largest(299), 147 * 147 * 128 * 4);
        assert!(largest(2800) <= MAX_ACTIVATION_BYTES);
        for side in [2950, 100_000, usize::MAX] {
            let error = g.infer_shapes(1, side, side).unwrap_err().to_string();
            assert!(error.contains(&format!("{side}x{side}")), "{error}");
            assert!(Graph::check_input_size(Size::new(side, side)).is_err());
        }
        let error = g.infer_shapes(1, 2950, 2950).unwrap_err().to_string();
        assert!(error.contains("1 GiB"), "{error}");
        assert!(g.infer_shapes(32, 1000, 1000).is_ok());
        let error = g.infer_shapes(128, 1000, 1000).unwrap_err().to_string();
        assert!(error.contains("split the batch"), "{error}");
    }
}
