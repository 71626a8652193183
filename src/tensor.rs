//! A minimal NHWC float32 tensor, the currency of both backends.

use crate::error::{Error, Result};

/// A size in pixels: width and height, named so that neither order is ever guessed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Size {
    /// Columns.
    pub width: usize,
    /// Rows.
    pub height: usize,
}

impl Size {
    /// A size of `width` x `height` pixels.
    pub const fn new(width: usize, height: usize) -> Self {
        Self { width, height }
    }
}

impl std::fmt::Display for Size {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}x{}", self.width, self.height)
    }
}

/// An input size as the command line's `--size` and the page's `size` take it: `N` (N x N)
/// or `WxH`, at least [`MIN_INPUT_SIZE`](crate::graph::MIN_INPUT_SIZE) a side and within the
/// activation limit ([`Graph::check_input_size`](crate::graph::Graph::check_input_size));
/// anything else is an [`Error::Argument`] that says why.
impl std::str::FromStr for Size {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        use crate::graph::{Graph, MIN_INPUT_SIZE};
        let parsed = match text.split_once(['x', 'X']) {
            Some((w, h)) => w.parse().ok().zip(h.parse().ok()),
            None => text.parse().ok().map(|side| (side, side)),
        };
        let Some((width, height)) = parsed else {
            return Err(Error::Argument(format!(
                "size `{text}` is neither N nor WxH (e.g. 299x299)"
            )));
        };
        if width < MIN_INPUT_SIZE || height < MIN_INPUT_SIZE {
            return Err(Error::Argument(format!(
                "size {width}x{height} is too small: Xception needs at least \
                 {MIN_INPUT_SIZE}x{MIN_INPUT_SIZE}"
            )));
        }
        let size = Size::new(width, height);
        Graph::check_input_size(size).map_err(|e| match e {
            Error::Input(problem) => Error::Argument(format!("size {size}: {problem}")),
            other => other,
        })?;
        Ok(size)
    }
}

/// Shape of an NHWC activation tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Shape {
    /// Number of images.
    pub batch: usize,
    /// Rows.
    pub height: usize,
    /// Columns.
    pub width: usize,
    /// Channels (innermost).
    pub channels: usize,
}

impl Shape {
    /// Creates a shape from its four dimensions.
    pub const fn new(batch: usize, height: usize, width: usize, channels: usize) -> Self {
        Self {
            batch,
            height,
            width,
            channels,
        }
    }

    /// Total number of elements.
    pub const fn len(&self) -> usize {
        self.batch * self.height * self.width * self.channels
    }

    /// Whether the shape holds no element.
    pub const fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The same shape with another channel count.
    pub const fn with_channels(&self, channels: usize) -> Self {
        Self { channels, ..*self }
    }

    /// Number of pixels over the whole batch (`batch * height * width`).
    pub const fn pixels(&self) -> usize {
        self.batch * self.height * self.width
    }
}

impl std::fmt::Display for Shape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}x{}x{}x{}",
            self.batch, self.height, self.width, self.channels
        )
    }
}

/// A dense NHWC tensor of `f32`.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    /// The tensor's shape.
    pub shape: Shape,
    /// Elements in NHWC order.
    pub data: Vec<f32>,
}

impl Tensor {
    /// Wraps `data`, checking that its length matches `shape`.
    pub fn new(shape: Shape, data: Vec<f32>) -> Result<Self> {
        if data.len() != shape.len() {
            return Err(Error::Input(format!(
                "tensor of shape {shape} needs {} values, got {}",
                shape.len(),
                data.len()
            )));
        }
        Ok(Self { shape, data })
    }

    /// A tensor of zeros.
    pub fn zeros(shape: Shape) -> Self {
        Self {
            shape,
            data: vec![0.0; shape.len()],
        }
    }

    /// Index of element `(n, y, x, c)` in `data`.
    #[inline]
    pub fn index(&self, n: usize, y: usize, x: usize, c: usize) -> usize {
        let s = &self.shape;
        ((n * s.height + y) * s.width + x) * s.channels + c
    }

    /// Stacks single images (batch 1 each, same height, width and channels) into one batch.
    pub fn stack(images: &[Tensor]) -> Result<Tensor> {
        let first = images
            .first()
            .ok_or_else(|| Error::Input("cannot stack an empty list of images".into()))?;
        let mut shape = first.shape;
        let mut data = Vec::with_capacity(first.data.len() * images.len());
        for image in images {
            let s = image.shape;
            if (s.height, s.width, s.channels) != (shape.height, shape.width, shape.channels) {
                return Err(Error::Input(format!(
                    "cannot stack tensors of shapes {} and {}",
                    first.shape, image.shape
                )));
            }
            data.extend_from_slice(&image.data);
        }
        shape.batch = images.iter().map(|t| t.shape.batch).sum();
        Tensor::new(shape, data)
    }
}
