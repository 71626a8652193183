//! The safetensors loader: float16 and float32 files, heads of any size or none, and a clear
//! error naming the file and the problem for every kind of bad weights.

use std::collections::HashMap;
use std::sync::OnceLock;

use safetensors::{Dtype, SafeTensors};
use xception_wgpu::{BackendKind, Error, Tensor, Weights, Xception};

const PATH: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/weights/xception_kitchenware.safetensors"
);

/// The bundled file's tensors (name, dtype, shape, bytes) and metadata.
struct Source {
    tensors: Vec<(String, Dtype, Vec<usize>, Vec<u8>)>,
    metadata: HashMap<String, String>,
}

fn source() -> &'static Source {
    static SOURCE: OnceLock<Source> = OnceLock::new();
    SOURCE.get_or_init(|| {
        let bytes = std::fs::read(PATH).unwrap();
        let (_, header) = SafeTensors::read_metadata(&bytes).unwrap();
        let file = SafeTensors::deserialize(&bytes).unwrap();
        let mut tensors: Vec<_> = file
            .iter()
            .map(|(name, view)| {
                (
                    name.to_string(),
                    view.dtype(),
                    view.shape().to_vec(),
                    view.data().to_vec(),
                )
            })
            .collect();
        tensors.sort_by(|a, b| a.0.cmp(&b.0));
        Source {
            tensors,
            metadata: header.metadata().clone().unwrap(),
        }
    })
}

/// Serializes a modified copy of the bundled file.
fn write(
    tensors: &[(String, Dtype, Vec<usize>, Vec<u8>)],
    metadata: HashMap<String, String>,
) -> Vec<u8> {
    let views = tensors.iter().map(|(name, dtype, shape, data)| {
        (
            name.clone(),
            safetensors::tensor::TensorView::new(*dtype, shape.clone(), data).unwrap(),
        )
    });
    safetensors::serialize(views, Some(metadata)).unwrap()
}

fn load_modified(
    edit: impl FnOnce(&mut Vec<(String, Dtype, Vec<usize>, Vec<u8>)>, &mut HashMap<String, String>),
) -> Result<Weights, Error> {
    let mut tensors = source().tensors.clone();
    let mut metadata = source().metadata.clone();
    edit(&mut tensors, &mut metadata);
    Weights::from_bytes(&write(&tensors, metadata), "modified.safetensors")
}

fn error_text(result: Result<Weights, Error>) -> String {
    let e = result.expect_err("bad weights must be rejected");
    assert!(
        matches!(e, Error::Weights { .. }),
        "unexpected error kind: {e:?}"
    );
    let text = e.to_string();
    assert!(
        text.starts_with("modified.safetensors: "),
        "error does not name the file: {text}"
    );
    text
}

fn f16_to_f32_bytes(data: &[u8]) -> Vec<u8> {
    data.chunks_exact(2)
        .flat_map(|b| {
            half::f16::from_le_bytes([b[0], b[1]])
                .to_f32()
                .to_le_bytes()
        })
        .collect()
}

fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

#[test]
fn bundled_weights_describe_the_kitchenware_model() {
    let w = Weights::load(PATH).unwrap();
    assert_eq!(w.info.input_size, xception_wgpu::Size::new(150, 150));
    assert_eq!(
        w.info.labels,
        ["cup", "fork", "glass", "knife", "plate", "spoon"]
    );
    assert_eq!(w.info.head.len(), 2);
    assert_eq!((w.info.head[0].inputs, w.info.head[0].units), (2048, 100));
    assert_eq!(w.info.num_classes(), 6);
    assert_eq!(w.tensor("block1_conv1.kernel").len(), 3 * 3 * 3 * 32);
}

#[test]
fn float32_file_loads_the_same_values_as_float16() {
    let f16 = Weights::load(PATH).unwrap();
    let f32 = load_modified(|tensors, _| {
        for (_, dtype, _, data) in tensors.iter_mut() {
            *data = f16_to_f32_bytes(data);
            *dtype = Dtype::F32;
        }
    })
    .unwrap();
    for name in [
        "block1_conv1.kernel",
        "block14_sepconv2.pointwise_kernel",
        "dense_1.bias",
    ] {
        assert_eq!(f16.tensor(name), f32.tensor(name), "{name}");
    }
}

#[test]
fn missing_tensor_is_named() {
    let text = error_text(load_modified(|t, _| {
        t.retain(|(n, ..)| n != "block4_sepconv2_bn.moving_variance")
    }));
    assert!(
        text.contains("`block4_sepconv2_bn.moving_variance` is missing"),
        "{text}"
    );
}

/// A header entry deleted by hand leaves its bytes behind: the file's layout is then invalid
/// too, but the error names the missing tensors, not the one whose offset no longer fits.
#[test]
fn a_tensor_deleted_from_the_header_alone_is_named() {
    let bytes = std::fs::read(PATH).unwrap();
    let length = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&bytes[8..8 + length]).unwrap();
    for name in [
        "batch_normalization.beta",
        "block11_sepconv1.depthwise_kernel",
    ] {
        header.remove(name).unwrap();
    }
    let mut json = serde_json::to_vec(&header).unwrap();
    json.resize(json.len().next_multiple_of(8), b' ');
    let mut edited = (json.len() as u64).to_le_bytes().to_vec();
    edited.extend_from_slice(&json);
    edited.extend_from_slice(&bytes[8 + length..]);
    let text = error_text(Weights::from_bytes(&edited, "modified.safetensors"));
    assert!(
        text.contains("tensor `batch_normalization.beta` is missing")
            && text.contains("tensor `block11_sepconv1.depthwise_kernel` is missing")
            && !text.contains("offset"),
        "{text}"
    );
}

#[test]
fn wrong_shape_is_named_with_both_shapes() {
    let text = error_text(load_modified(|t, _| {
        let entry = t
            .iter_mut()
            .find(|(n, ..)| n == "block1_conv1.kernel")
            .unwrap();
        entry.2 = vec![3, 3, 32, 3];
    }));
    assert!(
        text.contains("`block1_conv1.kernel` has shape [3, 3, 32, 3], expected [3, 3, 3, 32]"),
        "{text}"
    );
}

#[test]
fn unsupported_dtype_is_named() {
    let text = error_text(load_modified(|t, _| {
        let entry = t.iter_mut().find(|(n, ..)| n == "conv2d_1.kernel").unwrap();
        entry.1 = Dtype::I16;
    }));
    assert!(text.contains("`conv2d_1.kernel` has dtype I16"), "{text}");
}

#[test]
fn non_finite_values_are_rejected() {
    let text = error_text(load_modified(|t, _| {
        let entry = t.iter_mut().find(|(n, ..)| n == "dense.bias").unwrap();
        entry.3[0..2].copy_from_slice(&half::f16::NAN.to_le_bytes());
    }));
    assert!(
        text.contains("`dense.bias` holds NaN or infinite values"),
        "{text}"
    );
}

#[test]
fn not_a_safetensors_file_is_reported() {
    for bytes in [&b""[..], b"hello, world", &[0xff; 64]] {
        let e = Weights::from_bytes(bytes, "junk.bin")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("junk.bin: not a valid safetensors file"),
            "{e}"
        );
    }
    let e = Weights::load("no/such/file.safetensors")
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("no/such/file.safetensors: "), "{e}");
}

#[test]
fn missing_or_malformed_metadata_is_named() {
    let text = error_text(load_modified(|_, m| {
        m.remove("input_size");
    }));
    assert!(
        text.contains("metadata key `input_size` is missing"),
        "{text}"
    );
    let text = error_text(load_modified(|_, m| {
        m.insert("head".into(), "[{\"name\": \"dense\"".into());
    }));
    assert!(text.contains("metadata `head` is not valid JSON"), "{text}");
    let text = error_text(load_modified(|_, m| {
        m.insert("labels".into(), "[\"cup\", \"fork\"]".into());
    }));
    assert!(
        text.contains("2 labels but the head has 6 outputs"),
        "{text}"
    );
    // An input size whose activations no machine holds is refused at load, not when the
    // first image is resized to it.
    let text = error_text(load_modified(|_, m| {
        m.insert("input_size".into(), "[100000, 100000]".into());
    }));
    assert!(
        text.contains("metadata `input_size` 100000x100000") && text.contains("GiB"),
        "{text}"
    );
    let text = error_text(load_modified(|_, m| {
        m.insert("bn_epsilon".into(), "-1".into());
    }));
    assert!(
        text.contains("metadata `bn_epsilon` `-1` is not a positive number"),
        "{text}"
    );
}

#[test]
fn batchnorm_epsilon_comes_from_the_metadata() {
    assert_eq!(Weights::load(PATH).unwrap().info.bn_epsilon, 1e-3);
    let w = load_modified(|_, m| {
        m.insert("bn_epsilon".into(), "1e-05".into());
    })
    .unwrap();
    assert_eq!(w.info.bn_epsilon, 1e-5);
    assert_eq!(w.batchnorm("block1_conv1_bn").epsilon, 1e-5);
}

#[test]
fn backbone_without_head_embeds_and_refuses_to_classify() {
    let weights = load_modified(|t, m| {
        t.retain(|(n, ..)| !n.starts_with("dense"));
        m.insert("head".into(), "[]".into());
        m.insert("labels".into(), "[]".into());
    })
    .unwrap();
    assert_eq!(weights.info.num_classes(), 0);
    let model = Xception::new(weights, BackendKind::Cpu).unwrap();
    let input = Tensor::zeros(xception_wgpu::Shape::new(1, 71, 71, 3));
    let out = model.forward(&input).unwrap();
    assert_eq!(out.embedding(0).len(), 2048);
    assert!(out.logits.is_empty());
    assert!(matches!(model.top_k(&out, 0, 5), Err(Error::NoHead)));
    assert!(matches!(model.grad_cam(&input, None), Err(Error::NoHead)));
}

#[test]
fn imagenet_style_softmax_head_gives_1000_probabilities() {
    let labels: Vec<String> = (0..1000).map(|i| format!("synset_{i}")).collect();
    let kernel: Vec<f32> = (0..2048 * 1000)
        .map(|i| ((i % 97) as f32 - 48.0) * 1e-3)
        .collect();
    let weights = load_modified(|t, m| {
        t.retain(|(n, ..)| !n.starts_with("dense"));
        let bias: Vec<f32> = (0..1000).map(|i| (i % 13) as f32 * 1e-2).collect();
        t.push((
            "predictions.kernel".into(),
            Dtype::F32,
            vec![2048, 1000],
            f32_bytes(&kernel),
        ));
        t.push((
            "predictions.bias".into(),
            Dtype::F32,
            vec![1000],
            f32_bytes(&bias),
        ));
        m.insert(
            "head".into(),
            r#"[{"name": "predictions", "units": 1000, "activation": "softmax"}]"#.into(),
        );
        m.insert("labels".into(), serde_json::to_string(&labels).unwrap());
        // `[height, width]`, as the converter writes it.
        m.insert("input_size".into(), "[203, 171]".into());
    })
    .unwrap();
    assert_eq!(
        weights.info.input_size,
        xception_wgpu::Size {
            width: 171,
            height: 203
        }
    );
    let model = Xception::new(weights, BackendKind::Cpu).unwrap();
    let photo = xception_wgpu::image::open("samples/cup.jpg").unwrap();
    let prepared = model.prepare(&photo).unwrap();
    assert_eq!((prepared.shape.width, prepared.shape.height), (171, 203));
    let input = Tensor::zeros(xception_wgpu::Shape::new(1, 80, 80, 3));
    let out = model.forward(&input).unwrap();
    assert_eq!(out.num_classes, 1000);
    let sum: f32 = out.probabilities(0).iter().sum();
    assert!((sum - 1.0).abs() < 1e-4, "probabilities sum to {sum}");
    let top = model.top_k(&out, 0, 3).unwrap();
    assert!(top[0].label.starts_with("synset_") && top[0].probability >= top[1].probability);

    // Grad-CAM explains the logit before the softmax: through one linear layer its gradient
    // at the embedding is the class's kernel column.
    let class = 5;
    let input = xception_wgpu::preprocess::load_image(
        "samples/cup.jpg",
        Some(xception_wgpu::Size::new(80, 80)),
        xception_wgpu::preprocess::Resize::Stretch,
    )
    .unwrap();
    let (_, features) = model.forward_features(&input).unwrap();
    let evidence: Vec<f32> = features
        .data
        .chunks(2048)
        .map(|a| {
            (0..2048)
                .map(|k| a[k] * kernel[k * 1000 + class])
                .sum::<f32>()
        })
        .collect();
    let largest = evidence.iter().copied().fold(f32::MIN, f32::max);
    assert!(largest > 0.0, "the test needs some evidence for the class");
    let heatmap = model.grad_cam(&input, Some(class)).unwrap().remove(0);
    assert_eq!(
        (heatmap.height, heatmap.width),
        (features.shape.height, features.shape.width)
    );
    assert_eq!(heatmap.label, "synset_5");
    for (got, e) in heatmap.values.iter().zip(&evidence) {
        assert!(
            (got - e.max(0.0) / largest).abs() < 1e-5,
            "{got} vs {e} / {largest}"
        );
    }
    let e = model.grad_cam(&input, Some(1000)).unwrap_err().to_string();
    assert!(
        e.contains("class 1000 is out of range: the head has 1000 classes"),
        "{e}"
    );
}

#[test]
fn truncated_and_lying_files_are_rejected_without_huge_allocations() {
    let bytes = std::fs::read(PATH).unwrap();
    for cut in [7, 100, bytes.len() / 2, bytes.len() - 1] {
        let e = Weights::from_bytes(&bytes[..cut], "cut.safetensors")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("cut.safetensors: not a valid safetensors file"),
            "{e}"
        );
    }
    // A header length of 2^60 bytes: refused from the 8-byte prefix alone.
    let mut huge = (1u64 << 60).to_le_bytes().to_vec();
    huge.extend_from_slice(b"{}");
    let e = Weights::from_bytes(&huge, "huge.safetensors")
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("huge.safetensors: not a valid safetensors file"),
        "{e}"
    );
    // A header whose tensor claims 4 GB of data that the file does not have.
    let header = br#"{"x":{"dtype":"F32","shape":[1073741824],"data_offsets":[0,4294967296]}}"#;
    let mut lying = (header.len() as u64).to_le_bytes().to_vec();
    lying.extend_from_slice(header);
    lying.extend_from_slice(&[0; 16]);
    let e = Weights::from_bytes(&lying, "lying.safetensors")
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("lying.safetensors: not a valid safetensors file"),
        "{e}"
    );
}

/// Keras and PyTorch checkpoints given unconverted are named, with the command that converts
/// them, instead of a safetensors parse error.
#[test]
fn unconverted_checkpoints_are_recognised() {
    for (name, start, kind) in [
        ("model.h5", &b"\x89HDF\r\n\x1a\n"[..], "an HDF5 file"),
        ("model.keras", &b"PK\x03\x04"[..], "a zip archive"),
        ("model.pth", &b"\x80\x02"[..], "a Python pickle"),
    ] {
        let mut bytes = start.to_vec();
        bytes.extend([0u8; 64]);
        let e = Weights::from_bytes(&bytes, name).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!(
                "{name}: not a valid safetensors file: this is {kind}"
            )),
            "{e}"
        );
        assert!(e.contains("python weights/convert.py"), "{e}");
    }
}

#[test]
fn pool_padding_comes_from_the_metadata() {
    use xception_wgpu::graph::Padding;
    assert_eq!(
        Weights::load(PATH).unwrap().info.architecture.pool_padding,
        Padding::Same
    );
    let timm = load_modified(|_, m| {
        m.insert("pool_padding".into(), "symmetric".into());
    })
    .unwrap();
    assert_eq!(timm.info.architecture.pool_padding, Padding::Symmetric(1));
    let e = load_modified(|_, m| {
        m.insert("pool_padding".into(), "reflect".into());
    })
    .unwrap_err()
    .to_string();
    assert!(e.contains("`pool_padding` `reflect` is neither"), "{e}");
}
