//! The Xception graph as data: the node sequence both backends walk, with shape inference.
//!
//! Batchnorm is attached to the convolution it follows, ReLUs are flags on the nodes that
//! read or write them, and residual adds are attached to the node whose output they join,
//! so the list is what the GPU dispatcher runs while the CPU reference expands every node
//! back into its plain Keras ops.

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

/// Spatial padding of a convolution, in TensorFlow's terms.
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
    /// Output length and leading (top or left) pad for an input of length `input`.
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
}

/// A regular convolution followed by batchnorm: the stem 3x3 convs and the 1x1/2 shortcuts.
#[derive(Debug, Clone, PartialEq)]
pub struct ConvNode {
    /// Keras name of the convolution (`block1_conv1`, `conv2d_2`, ...).
    pub conv: String,
    /// Keras name of the batchnorm that follows it.
    pub bn: String,
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

/// A separable convolution (depthwise 3x3 'same', then pointwise 1x1) followed by batchnorm.
#[derive(Debug, Clone, PartialEq)]
pub struct SeparableNode {
    /// Keras name of the separable convolution (`block4_sepconv2`, ...).
    pub conv: String,
    /// Keras name of the batchnorm that follows it.
    pub bn: String,
    /// Input channels.
    pub in_channels: usize,
    /// Output channels.
    pub out_channels: usize,
    /// ReLU applied to the input as it is read (the input itself stays un-rectified).
    pub relu_in: bool,
    /// ReLU applied after the batchnorm (block 14).
    pub relu_out: bool,
    /// Identity shortcut added after the batchnorm (last conv of a middle-flow block).
    pub residual: Option<ValueId>,
}

/// One step of the forward pass.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// Convolution + batchnorm (+ ReLU).
    Conv(ConvNode),
    /// Separable convolution + batchnorm (+ ReLU, + residual).
    Separable(SeparableNode),
    /// Max-pool 3x3, stride 2, 'same', plus the block's shortcut.
    MaxPoolAdd {
        /// The shortcut tensor added to the pooled output.
        residual: ValueId,
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
    /// Value defined by this node (its Keras layer name is in [`Graph::value_names`]).
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
            | Op::MaxPoolAdd { residual: r } => inputs.push(*r),
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

/// The Xception backbone (input to 2048-d embedding).
#[derive(Debug, Clone, PartialEq)]
pub struct Graph {
    /// Nodes in execution order.
    pub nodes: Vec<Node>,
    /// Keras name of the layer that produces each value, indexed by [`ValueId`].
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

    #[allow(clippy::too_many_arguments)]
    fn separable(
        &mut self,
        input: ValueId,
        conv: &str,
        in_channels: usize,
        out_channels: usize,
        relu_in: bool,
        relu_out: bool,
        residual: Option<ValueId>,
        name: &str,
    ) -> ValueId {
        let node = SeparableNode {
            conv: conv.to_string(),
            bn: format!("{conv}_bn"),
            in_channels,
            out_channels,
            relu_in,
            relu_out,
            residual,
        };
        self.push(Op::Separable(node), input, name)
    }

    /// An entry/exit-flow module: two separable convs, max-pool, 1x1/2 conv shortcut, add.
    #[allow(clippy::too_many_arguments)]
    fn downsampling_block(
        &mut self,
        input: ValueId,
        block: usize,
        in_channels: usize,
        mid_channels: usize,
        out_channels: usize,
        leading_relu: bool,
        shortcut: (&str, &str),
        add_name: &str,
    ) -> ValueId {
        let shortcut = self.conv(
            input,
            ConvNode {
                conv: shortcut.0.to_string(),
                bn: shortcut.1.to_string(),
                kernel: 1,
                stride: 2,
                padding: Padding::Same,
                in_channels,
                out_channels,
                relu: false,
            },
            shortcut.1,
        );
        let sep1 = format!("block{block}_sepconv1");
        let sep2 = format!("block{block}_sepconv2");
        let x = self.separable(
            input,
            &sep1,
            in_channels,
            mid_channels,
            leading_relu,
            false,
            None,
            &format!("{sep1}_bn"),
        );
        let x = self.separable(
            x,
            &sep2,
            mid_channels,
            out_channels,
            true,
            false,
            None,
            &format!("{sep2}_bn"),
        );
        self.push(Op::MaxPoolAdd { residual: shortcut }, x, add_name)
    }
}

fn add_name(index: usize) -> String {
    if index == 0 {
        "add".to_string()
    } else {
        format!("add_{index}")
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
    /// Builds the stock Keras Xception backbone with its Keras layer names.
    pub fn xception() -> Self {
        let mut b = Builder {
            graph: Graph {
                nodes: Vec::new(),
                value_names: vec!["input_layer".to_string()],
            },
        };
        let stem = |conv: &str, cin, cout, stride| ConvNode {
            conv: conv.to_string(),
            bn: format!("{conv}_bn"),
            kernel: 3,
            stride,
            padding: Padding::Valid,
            in_channels: cin,
            out_channels: cout,
            relu: true,
        };
        let x = b.conv(
            ValueId(0),
            stem("block1_conv1", 3, 32, 2),
            "block1_conv1_act",
        );
        let x = b.conv(x, stem("block1_conv2", 32, 64, 1), "block1_conv2_act");

        // Entry flow: the block-2 input is already rectified, later blocks start with a ReLU.
        let mut x = x;
        let entry = [(2, 64, 128), (3, 128, 256), (4, 256, 728)];
        for (i, &(block, cin, cout)) in entry.iter().enumerate() {
            let conv = suffixed("conv2d", i);
            let bn = suffixed("batch_normalization", i);
            x = b.downsampling_block(
                x,
                block,
                cin,
                cout,
                cout,
                block != 2,
                (&conv, &bn),
                &add_name(i),
            );
        }

        // Middle flow: 8 modules of 3 x [ReLU, sepconv 728, BN] plus the identity shortcut.
        for block in 5..=12 {
            let shortcut = x;
            let mut y = x;
            for i in 1..=3 {
                let conv = format!("block{block}_sepconv{i}");
                let last = i == 3;
                let name = if last {
                    add_name(block - 2)
                } else {
                    format!("{conv}_bn")
                };
                y = b.separable(
                    y,
                    &conv,
                    728,
                    728,
                    true,
                    false,
                    last.then_some(shortcut),
                    &name,
                );
            }
            x = y;
        }

        // Exit flow.
        x = b.downsampling_block(
            x,
            13,
            728,
            728,
            1024,
            true,
            ("conv2d_3", "batch_normalization_3"),
            "add_11",
        );
        let x = b.separable(
            x,
            "block14_sepconv1",
            1024,
            1536,
            false,
            true,
            None,
            "block14_sepconv1_act",
        );
        let x = b.separable(
            x,
            "block14_sepconv2",
            1536,
            2048,
            false,
            true,
            None,
            "block14_sepconv2_act",
        );
        b.push(Op::GlobalAvgPool, x, "global_average_pooling2d");
        b.graph
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
                Op::Separable(s) => input.with_channels(s.out_channels),
                Op::MaxPoolAdd { .. } => {
                    let (h, _) = Padding::Same.resolve(input.height, 3, 2);
                    let (w, _) = Padding::Same.resolve(input.width, 3, 2);
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
    /// Parameters of the node: kernels plus the four vectors of its batchnorm.
    pub fn params(&self) -> u64 {
        (match &self.op {
            Op::Conv(c) => (c.kernel * c.kernel * c.in_channels + 4) * c.out_channels,
            Op::Separable(s) => 9 * s.in_channels + (s.in_channels + 4) * s.out_channels,
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
            Op::MaxPoolAdd { .. } | Op::GlobalAvgPool => (0, 0),
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
                let relu = if c.relu { " + ReLU" } else { "" };
                let k = c.kernel;
                format!("Conv {k}x{k}/{} {:?} + BN{relu}", c.stride, c.padding)
            }
            Op::Separable(s) => {
                let mut text = String::from("SeparableConv 3x3 + BN");
                if s.relu_in {
                    text = format!("ReLU + {text}");
                }
                if s.relu_out {
                    text.push_str(" + ReLU");
                }
                if s.residual.is_some() {
                    text.push_str(" + Add");
                }
                text
            }
            Op::MaxPoolAdd { .. } => "MaxPool 3x3/2 Same + Add".to_string(),
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
