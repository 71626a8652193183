//! Loading pretrained weights from safetensors (float16 or float32, computed in f32).
//!
//! Tensor names are Keras layer and variable names (`block1_conv1.kernel`,
//! `block4_sepconv2_bn.moving_variance`, `dense_1.bias`) in Keras layouts; the file's
//! `__metadata__` describes the input size, labels, preprocessing and head. See
//! `weights/README.md` for the format and `weights/convert.py` for producing it.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use safetensors::{Dtype, SafeTensors};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::files::read_bounded;
use crate::graph::{Architecture, Graph, Op, SeparableNode, BN_EPSILON};
use crate::preprocess::{Interpolation, Resize};
use crate::tensor::Size;

/// The `format` metadata value this loader understands.
pub const FORMAT: &str = "xception-keras/1";

/// The `format` metadata value of a head-only file (what `xception fit` writes): the dense
/// head's tensors, its `head` and `labels`, and the `backbone` fingerprint it was fitted on.
pub const HEAD_FORMAT: &str = "xception-head/1";

/// Activation of a dense head layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// Identity.
    Linear,
    /// `max(x, 0)`.
    Relu,
    /// Softmax over the layer's outputs (only as the last layer; its inputs are the logits).
    Softmax,
}

/// One dense layer of the classification head.
#[derive(Debug, Clone, PartialEq)]
pub struct DenseLayer {
    /// Keras layer name (`dense`, `dense_1`, `predictions`).
    pub name: String,
    /// Input features.
    pub inputs: usize,
    /// Output features.
    pub units: usize,
    /// Activation after the affine map.
    pub activation: Activation,
}

/// What the weights file says about the model.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelInfo {
    /// Input size the model was trained at (the metadata's `input_size` is `[height, width]`).
    pub input_size: Size,
    /// Class labels, one per output of the head (empty without a head).
    pub labels: Vec<String>,
    /// Dense layers after the global average pool, in order (empty for a bare backbone).
    pub head: Vec<DenseLayer>,
    /// Epsilon of every batchnorm layer (Keras uses 1e-3, PyTorch ports often 1e-5).
    pub bn_epsilon: f32,
    /// Free-form description of where the weights came from.
    pub source: Option<String>,
    /// Which member of the Xception family the weights are for (the metadata's
    /// `architecture`; Keras' Xception where it has none).
    pub architecture: Architecture,
    /// How images of another size are brought to `input_size`: the metadata's `crop_fraction`
    /// and `interpolation` (timm's evaluation transform), else a stretch (Keras).
    pub resize: Resize,
}

impl ModelInfo {
    /// Number of classes, or 0 for a backbone without head.
    pub fn num_classes(&self) -> usize {
        self.head.last().map_or(0, |l| l.units)
    }
}

/// Validated Xception weights in float32, keyed by tensor name.
#[derive(Debug, Clone)]
pub struct Weights {
    /// The model description from the file's metadata.
    pub info: ModelInfo,
    /// The backbone the weights are for, built from [`ModelInfo::architecture`].
    graph: Graph,
    tensors: HashMap<String, Vec<f32>>,
    /// Ones, as many as the widest layer's channels: the identity batchnorm's scale and
    /// variance.
    ones: Vec<f32>,
    /// Zeros, as long: its shift and mean.
    zeros: Vec<f32>,
}

/// Batchnorm parameters of one layer.
#[derive(Debug, Clone, Copy)]
pub struct BatchNorm<'a> {
    /// Scale.
    pub gamma: &'a [f32],
    /// Shift.
    pub beta: &'a [f32],
    /// Running mean.
    pub mean: &'a [f32],
    /// Running variance.
    pub variance: &'a [f32],
    /// Added to the variance before the square root.
    pub epsilon: f32,
}

impl BatchNorm<'_> {
    /// Folds the batchnorm into the bias-free convolution before it: the scaled kernel (any
    /// layout whose innermost axis is the `cout` output channels) and the bias to add.
    pub fn fold(&self, kernel: &[f32], cout: usize) -> (Vec<f32>, Vec<f32>) {
        let scale: Vec<f32> = (0..cout)
            .map(|c| self.gamma[c] / (self.variance[c] + self.epsilon).sqrt())
            .collect();
        let folded = kernel
            .iter()
            .enumerate()
            .map(|(i, &w)| w * scale[i % cout])
            .collect();
        let bias = (0..cout)
            .map(|c| self.beta[c] - self.mean[c] * scale[c])
            .collect();
        (folded, bias)
    }
}

/// Largest weights (or head) file read: the float32 Xception with a 1000-class head is 92 MB.
/// Larger ones, and anything but a regular file, are refused before any byte is read.
pub const MAX_WEIGHTS_BYTES: u64 = 1 << 30;

/// The bytes of a weights or head file, within [`MAX_WEIGHTS_BYTES`].
fn read_weights_file(path: &Path) -> Result<Vec<u8>> {
    read_bounded(path, MAX_WEIGHTS_BYTES, |problem| Error::Weights {
        origin: path.display().to_string(),
        problem,
    })
}

impl Weights {
    /// Reads and validates a safetensors weights file.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = read_weights_file(path)?;
        Self::from_bytes(&bytes, &path.display().to_string())
    }

    /// Parses and validates weights from an in-memory safetensors file; `origin` names it in errors.
    pub fn from_bytes(bytes: &[u8], origin: &str) -> Result<Self> {
        let fail = |problem: String| Error::Weights {
            origin: origin.to_string(),
            problem,
        };
        let file = SafetensorsFile::open(bytes, "model").map_err(fail)?;
        let info = parse_metadata(&file.metadata).map_err(fail)?;
        let graph = Graph::build(&info.architecture);
        let tensors = file
            .read_tensors(expected_tensors(&graph, &info))
            .map_err(fail)?;
        Ok(Self::new(info, graph, tensors))
    }

    fn new(info: ModelInfo, graph: Graph, tensors: HashMap<String, Vec<f32>>) -> Self {
        let widest = graph.widest_channels();
        Self {
            info,
            graph,
            tensors,
            ones: vec![1.0; widest],
            zeros: vec![0.0; widest],
        }
    }

    /// The backbone these weights are for.
    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// Replaces the description (and so the graph) the weights are read by; fails where a
    /// tensor it needs is missing or of another shape. The tensors stay as they are.
    pub fn with_architecture(mut self, architecture: Architecture) -> Result<Self> {
        let graph = Graph::build(&architecture);
        let mut info = self.info.clone();
        info.architecture = architecture;
        for (name, shape) in expected_tensors(&graph, &info) {
            let len: usize = shape.iter().product();
            if self.tensors.get(&name).map(Vec::len) != Some(len) {
                return Err(Error::Weights {
                    origin: info.architecture.name.clone(),
                    problem: format!("tensor `{name}` is missing or not of shape {shape:?}"),
                });
            }
        }
        self.info = info;
        self.graph = graph;
        Ok(self)
    }

    /// Replaces the classification head with the one in a head-only file
    /// ([`HEAD_FORMAT`], written by `xception fit`); `origin` names it in errors. Fails where
    /// the head was fitted on another backbone or takes embeddings of another size.
    pub fn with_head_bytes(mut self, bytes: &[u8], origin: &str) -> Result<Self> {
        let fail = |problem: String| Error::Weights {
            origin: origin.to_string(),
            problem,
        };
        let file = SafetensorsFile::open(bytes, "head").map_err(fail)?;
        let metadata = &file.metadata;
        match metadata.get("format").map(String::as_str) {
            Some(HEAD_FORMAT) => {}
            Some(FORMAT) => {
                return Err(fail(
                    "this is a whole model's weights file, not a head; pass it as the weights"
                        .into(),
                ))
            }
            other => {
                return Err(fail(format!(
                    "metadata format {other:?} is not `{HEAD_FORMAT}`"
                )))
            }
        }
        let fitted_on = metadata
            .get("backbone")
            .ok_or_else(|| fail("metadata key `backbone` is missing".into()))?;
        let backbone = self.backbone_fingerprint();
        if *fitted_on != backbone {
            return Err(fail(format!(
                "the head was fitted on another backbone ({fitted_on}; these weights are \
                 {backbone})"
            )));
        }
        let (labels, head) = parse_head(metadata, self.graph.embedding_dim()).map_err(fail)?;
        let Some(first) = head.first() else {
            return Err(fail("the file holds no head layers".into()));
        };
        let embedding_dim = self.graph.embedding_dim();
        if let Some(shape) = file.shape(&format!("{}.kernel", first.name)) {
            match shape.first() {
                Some(&inputs) if inputs == embedding_dim => {}
                Some(inputs) => {
                    return Err(fail(format!(
                        "the head takes embeddings of {inputs} values; the backbone's ({}) \
                         have {embedding_dim}",
                        self.info.architecture.name
                    )))
                }
                None => return Err(fail(format!("`{}.kernel` has no shape", first.name))),
            }
        }
        let tensors = file.read_tensors(head_tensors(&head)).map_err(fail)?;
        for (name, _) in head_tensors(&self.info.head) {
            self.tensors.remove(&name);
        }
        self.tensors.extend(tensors);
        self.info.head = head;
        self.info.labels = labels;
        Ok(self)
    }

    /// [`Weights::with_head_bytes`] from a head file on disk.
    pub fn with_head(self, path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = read_weights_file(path)?;
        self.with_head_bytes(&bytes, &path.display().to_string())
    }

    /// A fingerprint of the backbone's values (64-bit FNV-1a over every tensor but the head's,
    /// by name), recorded in head files so that a head is only used on the backbone it was
    /// fitted on.
    pub fn backbone_fingerprint(&self) -> String {
        let head: Vec<String> = head_tensors(&self.info.head)
            .into_iter()
            .map(|(name, _)| name)
            .collect();
        let mut names: Vec<&String> = self.tensors.keys().filter(|n| !head.contains(n)).collect();
        names.sort();
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        let mut eat = |bytes: &[u8]| {
            for &byte in bytes {
                hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
            }
        };
        for name in names {
            eat(name.as_bytes());
            for value in &self.tensors[name] {
                eat(&value.to_bits().to_le_bytes());
            }
        }
        format!("fnv1a64:{hash:016x}")
    }

    /// The values of tensor `name`.
    ///
    /// # Panics
    /// If `name` is not one of the tensors checked at load time (a programming error).
    pub fn tensor(&self, name: &str) -> &[f32] {
        self.tensors
            .get(name)
            .unwrap_or_else(|| panic!("tensor `{name}` was not validated at load"))
    }

    /// The four batchnorm vectors of layer `bn`.
    pub fn batchnorm(&self, bn: &str) -> BatchNorm<'_> {
        BatchNorm {
            gamma: self.tensor(&format!("{bn}.gamma")),
            beta: self.tensor(&format!("{bn}.beta")),
            mean: self.tensor(&format!("{bn}.moving_mean")),
            variance: self.tensor(&format!("{bn}.moving_variance")),
            epsilon: self.info.bn_epsilon,
        }
    }

    /// The depthwise kernel of separable node `s` with its depthwise batchnorm (if any) folded
    /// in, and the bias that leaves (what both fast backends run).
    pub fn folded_depthwise(&self, s: &SeparableNode) -> (Vec<f32>, Option<Vec<f32>>) {
        let kernel = self.tensor(&format!("{}.depthwise_kernel", s.conv));
        match &s.depthwise_bn {
            Some(bn) => {
                let (kernel, bias) = self.batchnorm(bn).fold(kernel, s.in_channels);
                (kernel, Some(bias))
            }
            None => (kernel.to_vec(), None),
        }
    }

    /// Layer `bn`'s batchnorm over `channels` channels as a per-channel scale and shift, or
    /// `None` without one: a pre-activation before its ReLU.
    pub fn scale_shift(&self, bn: Option<&str>, channels: usize) -> Option<(Vec<f32>, Vec<f32>)> {
        bn.map(|bn| self.batchnorm(bn).fold(&vec![1.0; channels], channels))
    }

    /// Layer `bn`'s batchnorm over `channels` channels, or where a node has none, the identity
    /// (scale exactly 1, shift exactly 0 once folded), so that every convolution folds alike.
    pub fn batchnorm_or_identity(&self, bn: Option<&str>, channels: usize) -> BatchNorm<'_> {
        match bn {
            Some(bn) => self.batchnorm(bn),
            None => BatchNorm {
                gamma: &self.ones[..channels],
                beta: &self.zeros[..channels],
                mean: &self.zeros[..channels],
                variance: &self.ones[..channels],
                epsilon: 0.0,
            },
        }
    }
}

/// A safetensors file whose header is parsed but whose tensors are not yet read: a tensor
/// missing from the header is named before the data's layout is checked (a file with one
/// entry deleted otherwise fails on the offset of the tensor after it).
struct SafetensorsFile<'a> {
    bytes: &'a [u8],
    /// The tensors' names as the header lists them.
    names: HashSet<String>,
    /// The `__metadata__`, which describes what the file holds.
    metadata: HashMap<String, String>,
}

impl<'a> SafetensorsFile<'a> {
    /// Parses the header and its `__metadata__`, which describes the `what` the file holds.
    fn open(bytes: &'a [u8], what: &str) -> Result<Self, String> {
        // The crate's checks come first, unless the header is readable and has metadata: then
        // the missing tensors are named before the layout's problem.
        let layout_error = SafeTensors::read_metadata(bytes).err();
        let unreadable = |missing: String| match layout_error {
            Some(e) => invalid(bytes, e),
            None => missing,
        };
        let Some(mut header) = header_json(bytes) else {
            return Err(unreadable(
                "not a valid safetensors file: its header is not a JSON object".into(),
            ));
        };
        let Some(metadata) = header.remove("__metadata__") else {
            return Err(unreadable(format!(
                "the file has no __metadata__ describing the {what}"
            )));
        };
        let metadata = serde_json::from_value(metadata).map_err(|_| {
            unreadable("not a valid safetensors file: __metadata__ is not a map of strings".into())
        })?;
        Ok(Self {
            bytes,
            names: header.into_iter().map(|(name, _)| name).collect(),
            metadata,
        })
    }

    /// The shape the header gives tensor `name`, if the header is valid and lists it.
    fn shape(&self, name: &str) -> Option<Vec<usize>> {
        let (_, header) = SafeTensors::read_metadata(self.bytes).ok()?;
        header.tensors().get(name).map(|info| info.shape.clone())
    }

    /// Reads every `expected` tensor as float32, checking its presence, shape, dtype and
    /// values; the error lists the first problems found.
    fn read_tensors(
        &self,
        expected: Vec<(String, Vec<usize>)>,
    ) -> Result<HashMap<String, Vec<f32>>, String> {
        let missing: Vec<String> = expected
            .iter()
            .filter(|(name, _)| !self.names.contains(name))
            .map(|(name, _)| format!("tensor `{name}` is missing"))
            .collect();
        if !missing.is_empty() {
            return Err(first_problems(&missing));
        }
        let file = SafeTensors::deserialize(self.bytes).map_err(|e| invalid(self.bytes, e))?;
        let mut tensors = HashMap::new();
        let mut problems = Vec::new();
        for (name, shape) in expected {
            let view = file.tensor(&name).map_err(|e| invalid(self.bytes, e))?;
            if view.shape() != shape.as_slice() {
                problems.push(format!(
                    "tensor `{name}` has shape {:?}, expected {shape:?}",
                    view.shape()
                ));
                continue;
            }
            match to_f32(view.dtype(), view.data()) {
                Err(dtype) => problems.push(format!(
                    "tensor `{name}` has dtype {dtype:?}; expected F16 or F32"
                )),
                Ok(values) if values.iter().any(|v| !v.is_finite()) => {
                    problems.push(format!("tensor `{name}` holds NaN or infinite values"))
                }
                Ok(values) => {
                    tensors.insert(name, values);
                }
            }
        }
        if !problems.is_empty() {
            return Err(first_problems(&problems));
        }
        Ok(tensors)
    }
}

/// A safetensors header as JSON: a little-endian u64 length, then that many bytes of a JSON
/// object. `None` where the bytes are not that.
fn header_json(bytes: &[u8]) -> Option<serde_json::Map<String, Value>> {
    let length = u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?);
    let end = 8usize.checked_add(usize::try_from(length).ok()?)?;
    serde_json::from_slice(bytes.get(8..end)?).ok()
}

/// The first five `problems`, and how many more there are.
fn first_problems(problems: &[String]) -> String {
    let shown = problems.len().min(5);
    let more = if problems.len() > shown {
        format!(" (and {} more problems)", problems.len() - shown)
    } else {
        String::new()
    };
    format!("{}{more}", problems[..shown].join("; "))
}

/// Why `bytes` is not a valid safetensors file, saying how to convert it where it is a known
/// unconverted checkpoint.
fn invalid(bytes: &[u8], error: safetensors::SafeTensorError) -> String {
    match unconverted(bytes) {
        Some(kind) => format!(
            "not a valid safetensors file: this is {kind}; convert it first with \
             `python weights/convert.py FILE -o model.safetensors` (see weights/README.md)"
        ),
        None => format!("not a valid safetensors file: {error}"),
    }
}

/// What an unconverted checkpoint that failed to parse as safetensors is, by its first bytes.
fn unconverted(bytes: &[u8]) -> Option<&'static str> {
    if bytes.starts_with(b"\x89HDF\r\n\x1a\n") {
        Some("an HDF5 file (a Keras .h5 checkpoint)")
    } else if bytes.starts_with(b"PK\x03\x04") {
        Some("a zip archive (a Keras .keras model or a PyTorch checkpoint)")
    } else if matches!(bytes, [0x80, 2..=5, ..]) {
        Some("a Python pickle (a PyTorch checkpoint)")
    } else {
        None
    }
}

/// Every tensor the model needs, with its Keras shape.
pub fn expected_tensors(graph: &Graph, info: &ModelInfo) -> Vec<(String, Vec<usize>)> {
    let mut out = Vec::new();
    let push_bn = |out: &mut Vec<(String, Vec<usize>)>, bn: &Option<String>, c: usize| {
        for var in ["gamma", "beta", "moving_mean", "moving_variance"]
            .iter()
            .filter(|_| bn.is_some())
        {
            out.push((
                format!("{}.{var}", bn.as_deref().unwrap_or_default()),
                vec![c],
            ));
        }
    };
    for node in &graph.nodes {
        match &node.op {
            Op::Conv(c) => {
                out.push((
                    format!("{}.kernel", c.conv),
                    vec![c.kernel, c.kernel, c.in_channels, c.out_channels],
                ));
                push_bn(&mut out, &c.bn, c.out_channels);
            }
            Op::Separable(s) => {
                out.push((
                    format!("{}.depthwise_kernel", s.conv),
                    vec![3, 3, s.in_channels, 1],
                ));
                push_bn(&mut out, &s.depthwise_bn, s.in_channels);
                out.push((
                    format!("{}.pointwise_kernel", s.conv),
                    vec![1, 1, s.in_channels, s.out_channels],
                ));
                push_bn(&mut out, &s.bn, s.out_channels);
            }
            Op::PreActivation { bn, channels } => push_bn(&mut out, bn, *channels),
            Op::MaxPoolAdd { .. } | Op::GlobalAvgPool => {}
        }
    }
    out.extend(head_tensors(&info.head));
    out
}

/// The kernel and bias of every layer of `head`, with their Keras shapes.
fn head_tensors(head: &[DenseLayer]) -> Vec<(String, Vec<usize>)> {
    head.iter()
        .flat_map(|layer| {
            [
                (
                    format!("{}.kernel", layer.name),
                    vec![layer.inputs, layer.units],
                ),
                (format!("{}.bias", layer.name), vec![layer.units]),
            ]
        })
        .collect()
}

fn to_f32(dtype: Dtype, data: &[u8]) -> Result<Vec<f32>, Dtype> {
    match dtype {
        Dtype::F32 => Ok(data
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()),
        Dtype::F16 => Ok(data
            .chunks_exact(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect()),
        other => Err(other),
    }
}

fn json_field(metadata: &HashMap<String, String>, key: &str) -> Result<Value, String> {
    let raw = metadata
        .get(key)
        .ok_or_else(|| format!("metadata key `{key}` is missing"))?;
    serde_json::from_str(raw).map_err(|e| format!("metadata `{key}` is not valid JSON: {e}"))
}

/// Parses the `__metadata__` map written by `weights/convert.py`.
pub fn parse_metadata(metadata: &HashMap<String, String>) -> Result<ModelInfo, String> {
    match metadata.get("format").map(String::as_str) {
        Some(FORMAT) => {}
        Some(other) => return Err(format!("metadata format `{other}` is not `{FORMAT}`")),
        None => return Err("metadata key `format` is missing".into()),
    }
    if let Some(p) = metadata.get("preprocessing") {
        if p != "tf" {
            return Err(format!(
                "preprocessing `{p}` is not supported (only `tf`: RGB, x/127.5 - 1)"
            ));
        }
    }
    let bn_epsilon = match metadata.get("bn_epsilon") {
        None => BN_EPSILON,
        Some(text) => match text.parse::<f32>() {
            Ok(eps) if eps.is_finite() && eps > 0.0 => eps,
            _ => {
                return Err(format!(
                    "metadata `bn_epsilon` `{text}` is not a positive number"
                ))
            }
        },
    };
    let size = json_field(metadata, "input_size")?;
    let input_size = match size.as_array().map(|a| a.as_slice()) {
        Some([h, w]) => match (h.as_u64(), w.as_u64()) {
            (Some(h), Some(w)) if h > 0 && w > 0 => {
                let size = Size::new(w as usize, h as usize);
                Graph::check_input_size(size).map_err(|e| match e {
                    Error::Input(problem) => format!("metadata `input_size` {size}: {problem}"),
                    other => other.to_string(),
                })?;
                size
            }
            _ => {
                return Err(format!(
                    "metadata `input_size` {size} is not [height, width]"
                ))
            }
        },
        _ => {
            return Err(format!(
                "metadata `input_size` {size} is not [height, width]"
            ))
        }
    };
    // Files without a description hold Keras' layout; their `pool_padding` tells Keras'
    // Xception from timm's `legacy_xception`.
    let architecture = match metadata.get("architecture") {
        Some(_) => Architecture::from_json(&json_field(metadata, "architecture")?)?,
        None => match metadata.get("pool_padding").map(String::as_str) {
            None | Some("tf_same") => Architecture::xception(),
            Some("symmetric") => {
                Architecture::named("legacy_xception").expect("a named architecture")
            }
            Some(other) => {
                return Err(format!(
                    "metadata `pool_padding` `{other}` is neither `tf_same` (Keras) nor \
                     `symmetric` (timm)"
                ))
            }
        },
    };
    let resize = match (metadata.get("crop_fraction"), metadata.get("interpolation")) {
        (None, None) => Resize::Stretch,
        (Some(fraction), interpolation) => {
            let crop_fraction = match fraction.parse::<f32>() {
                Ok(f) if f > 0.0 && f <= 1.0 => f,
                _ => {
                    return Err(format!(
                        "metadata `crop_fraction` `{fraction}` is not a number in (0, 1]"
                    ))
                }
            };
            let filter = match interpolation.map(String::as_str) {
                None | Some("bilinear") => Interpolation::Bilinear,
                Some("bicubic") => Interpolation::Bicubic,
                Some(other) => {
                    return Err(format!(
                        "metadata `interpolation` `{other}` is neither `bilinear` nor `bicubic`"
                    ))
                }
            };
            Resize::CenterCrop {
                crop_fraction,
                filter,
            }
        }
        (None, Some(_)) => {
            return Err("metadata `interpolation` is given without `crop_fraction`".into())
        }
    };
    let (labels, head) = parse_head(metadata, architecture.embedding_dim())?;
    Ok(ModelInfo {
        input_size,
        labels,
        head,
        bn_epsilon,
        source: metadata.get("source").cloned(),
        architecture,
        resize,
    })
}

/// The `labels` and `head` of a weights or head file's metadata (default labels `class_<i>`),
/// for a backbone whose embeddings have `embedding_dim` values.
fn parse_head(
    metadata: &HashMap<String, String>,
    embedding_dim: usize,
) -> Result<(Vec<String>, Vec<DenseLayer>), String> {
    let labels = match json_field(metadata, "labels")? {
        Value::Array(items) => items
            .into_iter()
            .map(|v| match v {
                Value::String(s) => Ok(s),
                other => Err(format!("metadata `labels` holds a non-string: {other}")),
            })
            .collect::<Result<Vec<_>, _>>()?,
        other => return Err(format!("metadata `labels` is not a list: {other}")),
    };
    let head_json = json_field(metadata, "head")?;
    let layers = head_json
        .as_array()
        .ok_or_else(|| format!("metadata `head` is not a list: {head_json}"))?;
    let mut head = Vec::new();
    let mut inputs = embedding_dim;
    for (i, layer) in layers.iter().enumerate() {
        let name = layer["name"]
            .as_str()
            .ok_or_else(|| format!("head layer {i} has no `name`"))?;
        let units = layer["units"]
            .as_u64()
            .filter(|&u| u > 0)
            .ok_or_else(|| format!("head layer `{name}` has no positive `units`"))?
            as usize;
        let activation = match layer["activation"].as_str() {
            Some("linear") => Activation::Linear,
            Some("relu") => Activation::Relu,
            Some("softmax") if i + 1 == layers.len() => Activation::Softmax,
            Some("softmax") => {
                return Err(format!(
                    "head layer `{name}`: softmax is only supported on the last layer"
                ))
            }
            other => {
                return Err(format!(
                    "head layer `{name}` has unsupported activation {other:?}"
                ))
            }
        };
        head.push(DenseLayer {
            name: name.to_string(),
            inputs,
            units,
            activation,
        });
        inputs = units;
    }
    let classes = head.last().map_or(0, |l| l.units);
    if !labels.is_empty() && labels.len() != classes {
        return Err(format!(
            "metadata lists {} labels but the head has {classes} outputs",
            labels.len()
        ));
    }
    let labels = if labels.is_empty() {
        (0..classes).map(|i| format!("class_{i}")).collect()
    } else {
        labels
    };
    Ok((labels, head))
}
