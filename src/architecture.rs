//! Descriptions of the Xception family: a stem and a list of blocks, from which
//! [`Graph::build`](crate::graph::Graph::build) makes the node sequence every backend runs.
//!
//! Keras' Xception, timm's `legacy_xception` and timm's aligned Xceptions (`xception41`,
//! `xception65`, `xception71` and the pre-activation `xception41p`, `xception65p`) are named
//! descriptions ([`Architecture::named`]); a weights file carries its description in its
//! metadata (`architecture`, see [`Architecture::from_json`]), so a narrower or deeper member
//! of the family needs no code.

use serde_json::{json, Value};

use crate::graph::Padding;

/// How a family member lays out its blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Keras' Xception and timm's `legacy_xception`: 'valid' stem convolutions; a downsampling
    /// block ends in a 3x3/2 max-pool; one batchnorm per separable convolution, after it.
    Keras,
    /// timm's aligned Xception (DeepLab's backbone): stem convolutions padded by 1; a
    /// downsampling block's last depthwise convolution has the stride; batchnorm after both
    /// halves of every separable convolution.
    Aligned,
    /// The pre-activation aligned Xception (`xception41p`, `xception65p`): each block starts
    /// with batchnorm + ReLU, whose output feeds both branches; separable convolutions carry
    /// no batchnorm of their own and shortcut convolutions none at all; a ReLU before the head.
    AlignedPreact,
}

impl Layout {
    /// The name the metadata gives it.
    pub const fn name(self) -> &'static str {
        match self {
            Layout::Keras => "keras",
            Layout::Aligned => "aligned",
            Layout::AlignedPreact => "aligned_preact",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        [Layout::Keras, Layout::Aligned, Layout::AlignedPreact]
            .into_iter()
            .find(|layout| layout.name() == name)
    }
}

/// One block (an Xception "module"): its separable convolutions and its shortcut.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockSpec {
    /// Output channels of each separable convolution, in order.
    pub channels: Vec<usize>,
    /// 1, or 2 for a downsampling block.
    pub stride: usize,
    /// Whether a ReLU opens the block (before its first separable convolution; the shortcut
    /// reads the block's input before it). A block that neither starts with a ReLU nor has a
    /// shortcut (the exit flow's last) rectifies after each half of its separable
    /// convolutions instead.
    pub start_with_relu: bool,
    /// Whether the block's output adds a shortcut (the input, or a 1x1 convolution of it where
    /// the channels or the size change).
    pub skip: bool,
}

impl BlockSpec {
    /// Channels of the block's output.
    pub fn out_channels(&self) -> usize {
        *self
            .channels
            .last()
            .expect("a block has separable convolutions")
    }
}

/// A member of the Xception family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Architecture {
    /// Its name (`xception`, `xception65`, ...; a converted checkpoint may name its own).
    pub name: String,
    /// How its blocks are laid out.
    pub layout: Layout,
    /// Output channels of the two stem convolutions.
    pub stem: [usize; 2],
    /// The blocks, in order.
    pub blocks: Vec<BlockSpec>,
    /// How the max-pools of the Keras layout pad: TensorFlow's 'same' (Keras) or 1 on every
    /// side (timm's `legacy_xception`). Unused by the aligned layouts.
    pub pool_padding: Padding,
    /// Ratio of input to final feature map size, 32 (classification), 16 or 8 (segmentation
    /// backbones): strides that would pass it become dilations of the blocks after them, as
    /// timm's `output_stride` does (aligned layouts only).
    pub output_stride: usize,
}

/// The names [`Architecture::named`] knows.
pub const NAMED: [&str; 7] = [
    "xception",
    "legacy_xception",
    "xception41",
    "xception65",
    "xception71",
    "xception41p",
    "xception65p",
];

fn block(channels: &[usize], stride: usize, start_with_relu: bool, skip: bool) -> BlockSpec {
    BlockSpec {
        channels: channels.to_vec(),
        stride,
        start_with_relu,
        skip,
    }
}

impl Architecture {
    /// Keras' Xception (Chollet 2017, `keras.applications.Xception`).
    pub fn xception() -> Self {
        let mut blocks = vec![
            block(&[128, 128], 2, false, true),
            block(&[256, 256], 2, true, true),
            block(&[728, 728], 2, true, true),
        ];
        blocks.extend(std::iter::repeat_n(block(&[728; 3], 1, true, true), 8));
        blocks.push(block(&[728, 1024], 2, true, true));
        blocks.push(block(&[1536, 2048], 1, false, false));
        Self {
            name: "xception".into(),
            layout: Layout::Keras,
            stem: [32, 64],
            blocks,
            pool_padding: Padding::Same,
            output_stride: 32,
        }
    }

    /// A named member of the family (see [`NAMED`]), as timm defines it
    /// (`timm/models/xception.py`, `timm/models/xception_aligned.py`).
    pub fn named(name: &str) -> Option<Self> {
        let aligned = |middle: usize, entry: &[(usize, usize)], layout: Layout| {
            let mut blocks: Vec<BlockSpec> = entry
                .iter()
                .map(|&(c, stride)| block(&[c; 3], stride, true, true))
                .collect();
            blocks.extend(std::iter::repeat_n(block(&[728; 3], 1, true, true), middle));
            blocks.push(block(&[728, 1024, 1024], 2, true, true));
            blocks.push(block(&[1536, 1536, 2048], 1, false, false));
            Self {
                name: name.to_string(),
                layout,
                stem: [32, 64],
                blocks,
                pool_padding: Padding::Same,
                output_stride: 32,
            }
        };
        let entry = [(128, 2), (256, 2), (728, 2)];
        let entry71 = [(128, 2), (256, 1), (256, 2), (728, 1), (728, 2)];
        Some(match name {
            "xception" => Self::xception(),
            "legacy_xception" => Self {
                name: name.into(),
                pool_padding: Padding::Symmetric(1),
                ..Self::xception()
            },
            "xception41" => aligned(8, &entry, Layout::Aligned),
            "xception65" => aligned(16, &entry, Layout::Aligned),
            "xception71" => aligned(16, &entry71, Layout::Aligned),
            "xception41p" => aligned(8, &entry, Layout::AlignedPreact),
            "xception65p" => aligned(16, &entry, Layout::AlignedPreact),
            _ => return None,
        })
    }

    /// Channels of the embedding (the last block's output).
    pub fn embedding_dim(&self) -> usize {
        self.blocks
            .last()
            .map_or(self.stem[1], BlockSpec::out_channels)
    }

    /// The description as the `architecture` metadata of a weights file holds it.
    pub fn to_json(&self) -> Value {
        let blocks: Vec<Value> = self
            .blocks
            .iter()
            .map(|b| {
                json!({
                    "channels": b.channels,
                    "stride": b.stride,
                    "start_with_relu": b.start_with_relu,
                    "skip": b.skip,
                })
            })
            .collect();
        let pool_padding = match self.pool_padding {
            Padding::Symmetric(_) => "symmetric",
            _ => "tf_same",
        };
        json!({
            "name": self.name,
            "layout": self.layout.name(),
            "stem": self.stem,
            "blocks": blocks,
            "pool_padding": pool_padding,
            "output_stride": self.output_stride,
        })
    }

    /// Reads a description: a name of [`NAMED`] (a JSON string), or an object as
    /// [`Architecture::to_json`] writes it; checks that its blocks chain. The error says what
    /// is wrong.
    pub fn from_json(value: &Value) -> Result<Self, String> {
        if let Some(name) = value.as_str() {
            return Self::named(name).ok_or_else(|| {
                format!(
                    "architecture `{name}` is not one of {}",
                    NAMED.map(|n| format!("`{n}`")).join(", ")
                )
            });
        }
        let object = value
            .as_object()
            .ok_or_else(|| format!("architecture {value} is neither a name nor an object"))?;
        let field = |key: &str| {
            object
                .get(key)
                .ok_or_else(|| format!("architecture has no `{key}`"))
        };
        let count = |v: &Value, what: &str| {
            v.as_u64()
                .filter(|&n| n > 0 && n <= 1 << 16)
                .map(|n| n as usize)
                .ok_or_else(|| format!("architecture {what} {v} is not a positive count"))
        };
        let name = field("name")?
            .as_str()
            .ok_or("architecture `name` is not a string")?
            .to_string();
        let layout_name = field("layout")?.as_str().unwrap_or_default();
        let layout = Layout::from_name(layout_name).ok_or_else(|| {
            format!("architecture layout `{layout_name}` is not keras, aligned or aligned_preact")
        })?;
        let stem = match field("stem")?.as_array().map(Vec::as_slice) {
            Some([a, b]) => [count(a, "stem")?, count(b, "stem")?],
            _ => return Err("architecture `stem` is not two channel counts".into()),
        };
        let blocks = field("blocks")?
            .as_array()
            .ok_or("architecture `blocks` is not a list")?
            .iter()
            .enumerate()
            .map(|(i, b)| {
                let flag = |key: &str| {
                    b[key]
                        .as_bool()
                        .ok_or_else(|| format!("architecture block {i} has no boolean `{key}`"))
                };
                let channels = b["channels"]
                    .as_array()
                    .filter(|c| !c.is_empty())
                    .ok_or_else(|| format!("architecture block {i} has no `channels` list"))?
                    .iter()
                    .map(|c| count(c, &format!("block {i} channel count")))
                    .collect::<Result<Vec<_>, _>>()?;
                let stride = match b["stride"].as_u64() {
                    Some(s @ (1 | 2)) => s as usize,
                    _ => return Err(format!("architecture block {i} stride is not 1 or 2")),
                };
                Ok(BlockSpec {
                    channels,
                    stride,
                    start_with_relu: flag("start_with_relu")?,
                    skip: flag("skip")?,
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        let pool_padding = match object.get("pool_padding").and_then(Value::as_str) {
            None | Some("tf_same") => Padding::Same,
            Some("symmetric") => Padding::Symmetric(1),
            Some(other) => {
                return Err(format!(
                    "architecture `pool_padding` `{other}` is neither `tf_same` nor `symmetric`"
                ))
            }
        };
        let output_stride = match object.get("output_stride").map(Value::as_u64) {
            None => 32,
            Some(Some(s @ (8 | 16 | 32))) => s as usize,
            Some(_) => return Err("architecture `output_stride` is not 8, 16 or 32".into()),
        };
        let architecture = Self {
            name,
            layout,
            stem,
            blocks,
            pool_padding,
            output_stride,
        };
        architecture.validate()?;
        Ok(architecture)
    }

    /// Checks what the graph builder relies on.
    fn validate(&self) -> Result<(), String> {
        if self.blocks.is_empty() {
            return Err("architecture has no blocks".into());
        }
        if self.layout != Layout::Keras {
            if let Some(i) = self.blocks.iter().position(|b| b.channels.len() != 3) {
                return Err(format!(
                    "architecture block {i}: an aligned block has three separable convolutions"
                ));
            }
        } else if self.output_stride != 32 {
            return Err("architecture: the Keras layout has no `output_stride` but 32".into());
        } else if let Some(i) = self.blocks.iter().position(|b| b.stride == 2 && !b.skip) {
            return Err(format!(
                "architecture block {i}: a Keras-layout block that pools (stride 2) adds its \
                 shortcut to the pool, so it needs `skip`"
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_named_description_survives_its_json() {
        for name in NAMED {
            let a = Architecture::named(name).unwrap();
            assert_eq!(a.name, name);
            assert_eq!(Architecture::from_json(&a.to_json()).unwrap(), a, "{name}");
            assert_eq!(Architecture::from_json(&json!(name)).unwrap(), a);
            assert_eq!(a.embedding_dim(), 2048);
        }
    }

    #[test]
    fn bad_descriptions_say_what_is_wrong() {
        let e = Architecture::from_json(&json!("xception99")).unwrap_err();
        assert!(e.contains("`xception99` is not one of"), "{e}");
        let mut a = Architecture::named("xception41").unwrap().to_json();
        a["blocks"][3]["stride"] = json!(3);
        let e = Architecture::from_json(&a).unwrap_err();
        assert!(e.contains("block 3 stride"), "{e}");
        let mut a = Architecture::named("xception41").unwrap().to_json();
        a["blocks"][0]["channels"] = json!([128, 128]);
        let e = Architecture::from_json(&a).unwrap_err();
        assert!(e.contains("three separable"), "{e}");
        let mut a = Architecture::named("xception41").unwrap().to_json();
        a["layout"] = json!("resnet");
        assert!(Architecture::from_json(&a)
            .unwrap_err()
            .contains("`resnet`"));
        let mut a = Architecture::xception().to_json();
        a["blocks"][1]["skip"] = json!(false);
        let e = Architecture::from_json(&a).unwrap_err();
        assert!(e.contains("block 1") && e.contains("needs `skip`"), "{e}");
    }
}
