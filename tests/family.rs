//! The Xception family beyond Keras' layout: narrow twins of timm's aligned `xception41`,
//! `xception65`, `xception71` and pre-activation `xception41p`, `xception65p` (the variants'
//! own blocks, strides, skips and batchnorm epsilons at a sixteenth of the channels), converted
//! by `weights/convert.py`, against timm's own outputs (`tests/golden/make_timm_aligned.py`) at
//! 299x299, 331x331 and 171x203, on the reference, every CPU kernel family and every float32
//! GPU kernel choice.
//!
//! Tolerance: 1e-4 absolute on logits and embeddings, as for Keras' layout.

mod common;

use std::path::PathBuf;
use std::sync::Arc;

use common::max_abs_diff;
use safetensors::SafeTensors;
use xception_wgpu::cpu::{gemm::Isa, CpuModel};
use xception_wgpu::gpu::{ConvKernel, GpuOps, KernelChoice, Precision};
use xception_wgpu::graph::{Architecture, Graph, Layout, Op};
use xception_wgpu::{preprocess, BackendKind, Outputs, Tensor, Weights, Xception};

const TOL: f32 = 1e-4;
const VARIANTS: [&str; 5] = [
    "xception41",
    "xception65",
    "xception71",
    "xception41p",
    "xception65p",
];
const CASES: [&str; 3] = ["cup_299", "fork_331", "plate_171x203"];

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/aligned")
}

fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// The twin of `variant`, as converted.
fn weights(variant: &str) -> Weights {
    Weights::load(golden_dir().join(format!("{variant}.safetensors"))).unwrap()
}

/// Each case's input, and timm's embedding and logits for `variant`.
fn cases(variant: &str) -> Vec<(&'static str, Tensor, Vec<f32>, Vec<f32>)> {
    let inputs = std::fs::read(golden_dir().join("inputs.safetensors")).unwrap();
    let inputs = SafeTensors::deserialize(&inputs).unwrap();
    let outputs = std::fs::read(golden_dir().join(format!("{variant}_outputs.safetensors")));
    let outputs = outputs.unwrap();
    let outputs = SafeTensors::deserialize(&outputs).unwrap();
    CASES
        .iter()
        .map(|&case| {
            let pixels = inputs.tensor(case).unwrap();
            let (h, w) = (pixels.shape()[0], pixels.shape()[1]);
            let input = preprocess::normalize(pixels.data(), h, w).unwrap();
            let embedding = f32s(outputs.tensor(&format!("{case}.embedding")).unwrap().data());
            let logits = f32s(outputs.tensor(&format!("{case}.logits")).unwrap().data());
            (case, input, embedding, logits)
        })
        .collect()
}

fn assert_matches_timm(got: &Outputs, embedding: &[f32], logits: &[f32], what: &str) {
    let de = max_abs_diff(got.embedding(0), embedding);
    let dl = max_abs_diff(got.logits(0), logits);
    eprintln!("{what}: embedding {de:.2e}, logits {dl:.2e}");
    assert!(
        de <= TOL && dl <= TOL,
        "{what}: embedding {de:e}, logits {dl:e}"
    );
}

/// The float32 kernel choices this adapter runs (as in `network.rs`), tuning on the first
/// variant only: it measures every shape, which the others add nothing to.
fn choices(variant: &str) -> Vec<KernelChoice> {
    let variants = GpuOps::new(common::gpu()).conv_kernels(Precision::F32);
    let mut choices = vec![
        KernelChoice::Auto,
        KernelChoice::Portable,
        KernelChoice::Tiled,
    ];
    if variants.contains(&ConvKernel::Subgroup) {
        choices.push(KernelChoice::Subgroup);
    }
    if variant == VARIANTS[0] {
        choices.push(KernelChoice::Tuned);
    }
    choices
}

/// Each twin carries its variant's description, with the twin's channels: the same layout,
/// blocks, strides and skips as the named member, which `Architecture::named` gives.
#[test]
fn each_twin_is_its_variant_at_a_sixteenth_of_the_channels() {
    let narrow = |c: usize| match c {
        728 => 48,
        c => c / 16,
    };
    for variant in VARIANTS {
        let twin = weights(variant).info.architecture;
        let mut named = Architecture::named(variant).unwrap();
        for block in &mut named.blocks {
            block.channels.iter_mut().for_each(|c| *c = narrow(*c));
        }
        named.name = format!("{variant}_custom");
        assert_eq!(twin, named);
    }
}

/// What timm's aligned layouts are made of, counted on the full-size descriptions: the
/// convolutions, the stride-2 depthwise halves, the pre-activations and the parameters timm
/// reports (`sum(p.numel())` over the backbone's parameters and batchnorm statistics).
#[test]
fn the_named_graphs_have_timms_layers() {
    for (variant, separables, strided, preactivations, params) in [
        ("xception41", 39, 4, 0, 25_035_872),
        ("xception65", 63, 4, 0, 38_052_512),
        ("xception71", 69, 4, 0, 40_488_712),
        ("xception41p", 39, 4, 13, 24_912_256),
        ("xception65p", 63, 4, 21, 37_859_008),
    ] {
        let graph = Graph::build(&Architecture::named(variant).unwrap());
        let count = |f: &dyn Fn(&Op) -> bool| graph.nodes.iter().filter(|n| f(&n.op)).count();
        assert_eq!(
            count(&|op| matches!(op, Op::Separable(_))),
            separables,
            "{variant}"
        );
        let stride_2 = |op: &Op| matches!(op, Op::Separable(s) if s.depthwise.stride == 2);
        assert_eq!(count(&stride_2), strided, "{variant}");
        let pre = |op: &Op| matches!(op, Op::PreActivation { .. });
        assert_eq!(count(&pre), preactivations, "{variant}");
        assert_eq!(
            count(&|op| matches!(op, Op::MaxPoolAdd { .. })),
            0,
            "{variant}"
        );
        let shapes = graph.infer_shapes(1, 299, 299).unwrap();
        let last = shapes[graph.embedding().0];
        assert_eq!((last.height, last.width, last.channels), (1, 1, 2048));
        let features = shapes[graph.nodes.last().unwrap().input.0];
        assert_eq!((features.height, features.width), (10, 10), "{variant}");
        assert_eq!(
            graph.architecture.layout == Layout::AlignedPreact,
            preactivations > 0
        );
        assert_eq!(graph.params(), params, "{variant}");
    }
}

#[test]
fn reference_matches_timm() {
    for variant in VARIANTS {
        let model = Xception::new(weights(variant), BackendKind::Reference).unwrap();
        for (case, input, embedding, logits) in cases(variant) {
            let got = model.forward(&input).unwrap();
            assert_matches_timm(
                &got,
                &embedding,
                &logits,
                &format!("reference {variant} {case}"),
            );
        }
    }
}

/// Every GEMM micro-kernel family this CPU runs (the portable one always), on one and two
/// threads.
#[test]
fn every_cpu_kernel_family_matches_timm() {
    let families: Vec<Isa> = Isa::ALL.into_iter().filter(|isa| isa.available()).collect();
    assert!(families.contains(&Isa::Portable));
    for variant in VARIANTS {
        let weights = Arc::new(weights(variant));
        let cases = cases(variant);
        for &isa in &families {
            for threads in [1, 2] {
                let model = CpuModel::with_kernels(weights.clone(), isa)
                    .and_then(|model| model.with_threads(threads))
                    .unwrap();
                for (case, input, embedding, logits) in &cases {
                    let got = model.forward(input).unwrap();
                    let what = format!("cpu {variant} {case}, {} on {threads} threads", isa.name());
                    assert_matches_timm(&got, embedding, logits, &what);
                }
            }
        }
    }
}

/// Every float32 kernel choice of this adapter; the depthwise halves the plain kernels do not
/// take (stride 2, a bias) run on the `depthwise_conv_general` kernels.
#[test]
fn every_float32_gpu_kernel_choice_matches_timm() {
    for variant in VARIANTS {
        let cases = cases(variant);
        for choice in choices(variant) {
            let context = common::gpu();
            let model = Xception::builder()
                .device(context.device, context.queue)
                .precision(Precision::F32)
                .conv_kernel(choice)
                .build(weights(variant))
                .unwrap();
            for (case, input, embedding, logits) in &cases {
                let got = model.forward(input).unwrap();
                let what = format!("gpu {variant} {case}, {choice:?}");
                assert_matches_timm(&got, embedding, logits, &what);
            }
        }
    }
}

/// The same twins with dilated blocks (timm's `output_stride` 16 and 8, the segmentation
/// backbones): the GPU and the CPU against the reference, which the stride-2 goldens above
/// vouch for.
#[test]
fn dilated_backbones_match_the_reference() {
    for variant in ["xception65", "xception41p"] {
        for output_stride in [16, 8] {
            let mut architecture = weights(variant).info.architecture;
            architecture.output_stride = output_stride;
            let weights = weights(variant).with_architecture(architecture).unwrap();
            let reference = Xception::new(weights.clone(), BackendKind::Reference).unwrap();
            let cpu = Xception::new(weights.clone(), BackendKind::Cpu).unwrap();
            let context = common::gpu();
            let gpu = Xception::with_device(weights, context.device, context.queue).unwrap();
            for (case, input, ..) in cases(variant).into_iter().take(2) {
                let want = reference.forward(&input).unwrap();
                for (backend, model) in [("cpu", &cpu), ("gpu", &gpu)] {
                    let got = model.forward(&input).unwrap();
                    let what = format!("{backend} {variant} output stride {output_stride} {case}");
                    assert_matches_timm(&got, want.embedding(0), want.logits(0), &what);
                }
            }
        }
    }
}
