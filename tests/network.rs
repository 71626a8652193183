//! The whole network against Keras' own outputs (golden files made by
//! `tests/golden/make_golden.py`, which runs Keras on the same float16-rounded weights), and
//! the GPU and fast CPU backends against the reference.
//!
//! Tolerance: 1e-4 absolute on logits and on the 2048-d embedding. The float32 noise floor
//! between two correct implementations that sum in different orders is about 1e-5.

mod common;

use std::path::PathBuf;
use std::sync::OnceLock;

use common::max_abs_diff;
use safetensors::SafeTensors;
use xception_wgpu::gpu::{ConvKernel, DepthwiseKernel, GpuModel, GpuOps, KernelChoice, Precision};
use xception_wgpu::graph::Architecture;
use xception_wgpu::{preprocess, BackendKind, Fallback, Size, Tensor, Weights, Xception};

const TOL: f32 = 1e-4;

struct Golden {
    name: String,
    input: Tensor,
    embedding: Vec<f32>,
    logits: Vec<f32>,
}

fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

fn goldens() -> &'static [Golden] {
    static GOLDENS: OnceLock<Vec<Golden>> = OnceLock::new();
    GOLDENS.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
        let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
            .collect();
        paths.sort();
        let goldens: Vec<Golden> = paths
            .iter()
            .map(|path| {
                let bytes = std::fs::read(path).unwrap();
                let file = SafeTensors::deserialize(&bytes).unwrap();
                let pixels = file.tensor("pixels").unwrap();
                let (h, w) = (pixels.shape()[0], pixels.shape()[1]);
                Golden {
                    name: path.file_stem().unwrap().to_string_lossy().into_owned(),
                    input: preprocess::normalize(pixels.data(), h, w).unwrap(),
                    embedding: f32s(file.tensor("embedding").unwrap().data()),
                    logits: f32s(file.tensor("logits").unwrap().data()),
                }
            })
            .collect();
        let sizes: std::collections::HashSet<_> = goldens
            .iter()
            .map(|g| (g.input.shape.height, g.input.shape.width))
            .collect();
        assert!(
            goldens.len() >= 5,
            "expected the golden files in {}",
            dir.display()
        );
        assert!(
            sizes.len() >= 2 && sizes.iter().any(|(h, w)| h != w),
            "goldens cover too few sizes"
        );
        goldens
    })
}

fn weights() -> Weights {
    static WEIGHTS: OnceLock<Weights> = OnceLock::new();
    WEIGHTS
        .get_or_init(|| {
            Weights::load(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/weights/xception_kitchenware.safetensors"
            ))
            .unwrap()
        })
        .clone()
}

/// The plain reference backend, the oracle.
fn reference() -> &'static Xception {
    static MODEL: OnceLock<Xception> = OnceLock::new();
    MODEL.get_or_init(|| Xception::new(weights(), BackendKind::Reference).unwrap())
}

/// The fast CPU backend.
fn cpu() -> &'static Xception {
    static MODEL: OnceLock<Xception> = OnceLock::new();
    MODEL.get_or_init(|| Xception::new(weights(), BackendKind::Cpu).unwrap())
}

/// How far the fast CPU backend may stray from the reference: it differs only in summation
/// order, fused multiply-adds and folded batchnorm.
const CPU_TOL: f32 = 1e-5;

fn gpu() -> &'static Xception {
    static MODEL: OnceLock<Xception> = OnceLock::new();
    MODEL.get_or_init(|| {
        let context = common::gpu();
        Xception::with_device(weights(), context.device, context.queue).unwrap()
    })
}

fn check_against_keras(model: &Xception, backend: &str) {
    check_against_keras_within(model, backend, TOL);
}

/// Every golden within `tol` of Keras on embedding and logits, with Keras' top-1 class.
fn check_against_keras_within(model: &Xception, backend: &str, tol: f32) {
    let top = |v: &[f32]| (0..v.len()).max_by(|&a, &b| v[a].total_cmp(&v[b])).unwrap();
    for g in goldens() {
        let out = model.forward(&g.input).unwrap();
        let de = max_abs_diff(out.embedding(0), &g.embedding);
        let dl = max_abs_diff(out.logits(0), &g.logits);
        eprintln!(
            "{backend} vs Keras, {}: max |d| embedding {de:.2e}, logits {dl:.2e}",
            g.name
        );
        assert!(
            de <= tol,
            "{backend} {}: embedding differs from Keras by {de:e}",
            g.name
        );
        assert!(
            dl <= tol,
            "{backend} {}: logits differ from Keras by {dl:e}",
            g.name
        );
        assert_eq!(
            top(out.logits(0)),
            top(&g.logits),
            "{backend} {}: top-1 class changed",
            g.name
        );
    }
}

/// A model on the shared test device with these kernels and precision.
fn gpu_with(choice: KernelChoice, precision: Precision) -> xception_wgpu::Result<Xception> {
    let context = common::gpu();
    Xception::builder()
        .device(context.device, context.queue)
        .precision(precision)
        .conv_kernel(choice)
        .build(weights())
}

/// The kernel choices this adapter can run at `precision` (see `the_adapter_offers_the_
/// expected_conv_kernels` in `gpu_ops.rs`, which pins what each adapter kind must offer),
/// tuning included.
fn choices(precision: Precision) -> Vec<KernelChoice> {
    let variants = GpuOps::new(common::gpu()).conv_kernels(precision);
    let mut choices = vec![
        KernelChoice::Portable,
        KernelChoice::Tiled,
        KernelChoice::Tuned,
    ];
    if variants.contains(&ConvKernel::Subgroup) {
        choices.push(KernelChoice::Subgroup);
    }
    if variants.contains(&ConvKernel::Coopmat) {
        choices.push(KernelChoice::Coopmat);
    }
    choices
}

/// The whole network on every float32 kernel choice the adapter has (the default one is
/// `gpu_matches_keras`).
#[test]
fn every_float32_kernel_choice_matches_keras() {
    for choice in choices(Precision::F32) {
        let model = gpu_with(choice, Precision::F32).unwrap();
        check_against_keras(&model, &format!("gpu {choice:?}"));
    }
}

/// Float16 has its own, documented gate: float16 rounding of the folded weights (and, in the
/// tiled and cooperative-matrix kernels, of activations and products) moves the logits by at
/// most about 1e-2; the gate is 5e-2 and no top-1 change.
#[test]
fn every_float16_kernel_choice_stays_close_to_keras() {
    const F16_TOL: f32 = 5e-2;
    let mut choices = choices(Precision::F16);
    choices.push(KernelChoice::Auto);
    for choice in choices {
        let model = gpu_with(choice, Precision::F16).unwrap();
        let kernels = model.conv_kernel_summary();
        check_against_keras_within(&model, &format!("gpu f16 {kernels}"), F16_TOL);
    }
}

/// `auto` (the default model) gives each adapter kind its kernels: on a CPU adapter with
/// subgroups of 8 or more (lavapipe in CI) the subgroup GEMM, with the direct convolution for
/// the 3-channel first one; on a CPU adapter without, the portable kernels; on GPUs the tiled
/// GEMM. The depthwise halves get the vec4 kernel on CPU adapters and the tiled one on GPUs.
#[test]
fn auto_gives_each_adapter_kind_its_kernels() {
    let context = common::gpu();
    let adapter = &context.adapter;
    let cpu = adapter.device_type == wgpu::DeviceType::Cpu;
    let subgroups = context.device.features().contains(wgpu::Features::SUBGROUP)
        && adapter.subgroup_min_size >= 8;
    let assignments = gpu().conv_kernels();
    assert_eq!(assignments.len(), 40, "36 convolutions and 4 shortcuts");
    for a in &assignments {
        let kernel = match (cpu, subgroups) {
            (true, true) if a.layer == "block1_conv1" => ConvKernel::Direct,
            (true, true) => ConvKernel::Subgroup,
            (true, false) if a.layer.starts_with("block1_conv") => ConvKernel::Direct,
            (true, false) => ConvKernel::Portable,
            (false, _) => ConvKernel::Tiled,
        };
        let depthwise = if cpu {
            DepthwiseKernel::Pack4
        } else {
            DepthwiseKernel::Tiled
        };
        assert_eq!(a.kernel, kernel, "{a:?} on {adapter:?}");
        if let Some(got) = a.depthwise {
            assert_eq!(got, depthwise, "{a:?} on {adapter:?}");
        }
    }
}

/// Asking for a kernel the adapter cannot run fails at load, naming the adapter.
#[test]
fn a_kernel_the_adapter_cannot_run_is_refused_by_name() {
    let err = gpu_with(KernelChoice::Coopmat, Precision::F32).unwrap_err();
    let adapter = &common::gpu().adapter.name;
    assert!(err.to_string().contains("float16"), "{err}");
    assert!(err.to_string().contains(adapter.as_str()), "{err}");
    if !choices(Precision::F16).contains(&KernelChoice::Coopmat) {
        let err = gpu_with(KernelChoice::Coopmat, Precision::F16).unwrap_err();
        assert!(err.to_string().contains("cooperative matrices"), "{err}");
    }
}

#[test]
fn reference_matches_keras() {
    check_against_keras(reference(), "reference");
}

#[test]
fn cpu_matches_keras() {
    check_against_keras(cpu(), "cpu");
}

#[test]
fn gpu_matches_keras() {
    check_against_keras(gpu(), "gpu");
}

/// Both fast backends against the reference on every golden: the GPU within the Keras
/// tolerance, the CPU within [`CPU_TOL`].
#[test]
fn gpu_and_cpu_match_the_reference() {
    for (model, backend, tol) in [(gpu(), "gpu", TOL), (cpu(), "cpu", CPU_TOL)] {
        for g in goldens() {
            let want = reference().forward(&g.input).unwrap();
            let got = model.forward(&g.input).unwrap();
            let de = max_abs_diff(&got.embeddings, &want.embeddings);
            let dl = max_abs_diff(&got.logits, &want.logits);
            let dp = max_abs_diff(&got.probabilities, &want.probabilities);
            eprintln!(
                "{backend} vs reference, {}: max |d| embedding {de:.2e}, logits {dl:.2e}, \
                 probabilities {dp:.2e}",
                g.name
            );
            assert!(
                de <= tol && dl <= tol && dp <= tol,
                "{}: {backend} and the reference disagree",
                g.name
            );
        }
    }
}

#[test]
fn a_batch_gives_each_image_its_own_result() {
    let same_size: Vec<&Golden> = goldens()
        .iter()
        .filter(|g| g.input.shape == goldens()[0].input.shape)
        .collect();
    assert!(
        same_size.len() >= 2,
        "need two goldens of one size for a batch"
    );
    let inputs: Vec<Tensor> = same_size.iter().map(|g| g.input.clone()).collect();
    let batch = Tensor::stack(&inputs).unwrap();
    for (backend, model) in [("gpu", gpu()), ("cpu", cpu()), ("reference", reference())] {
        let out = model.forward(&batch).unwrap();
        assert_eq!(out.batch, same_size.len());
        for (i, g) in same_size.iter().enumerate() {
            let de = max_abs_diff(out.embedding(i), &g.embedding);
            let dl = max_abs_diff(out.logits(i), &g.logits);
            assert!(
                de <= TOL && dl <= TOL,
                "{backend} batch item {i} ({}): {de:e} / {dl:e}",
                g.name
            );
        }
    }
}

#[test]
fn gpu_batches_larger_than_one_pass_are_split_in_order() {
    let model = GpuModel::new(
        common::gpu(),
        std::sync::Arc::new(weights()),
        Precision::F32,
        KernelChoice::Auto,
    )
    .unwrap()
    .with_batch_limit(2);
    let first = &goldens()[0];
    let same: Vec<&Golden> = goldens()
        .iter()
        .filter(|g| g.input.shape == first.input.shape)
        .collect();
    assert!(same.len() >= 3, "need three goldens of one size");
    let (h, w) = (first.input.shape.height, first.input.shape.width);
    assert_eq!(model.max_batch(h, w).unwrap(), 2);
    // Five images in passes of 2, 2 and 1, in an order that repeats and interleaves them.
    let order = [0, 1, 2, 1, 0];
    let inputs: Vec<Tensor> = order.iter().map(|&i| same[i].input.clone()).collect();
    let out = model.forward(&Tensor::stack(&inputs).unwrap()).unwrap();
    assert_eq!(out.batch, order.len());
    for (slot, &i) in order.iter().enumerate() {
        let dl = max_abs_diff(out.logits(slot), &same[i].logits);
        let de = max_abs_diff(out.embedding(slot), &same[i].embedding);
        assert!(
            dl <= TOL && de <= TOL,
            "item {slot} ({}): {dl:e} / {de:e}",
            same[i].name
        );
    }
}

#[test]
fn gpu_and_cpu_match_the_reference_at_the_smallest_and_odd_input_sizes() {
    let mut rng = common::rng();
    // 71x71 is the smallest input (the exit flow sees 3x3 maps); 73x97 is odd in both directions.
    for (batch, h, w) in [(1, 71, 71), (2, 73, 97)] {
        let input = common::random_tensor(&mut rng, xception_wgpu::Shape::new(batch, h, w, 3));
        let want = reference().forward(&input).unwrap();
        for (model, backend, tol) in [(gpu(), "gpu", TOL), (cpu(), "cpu", CPU_TOL)] {
            let got = model.forward(&input).unwrap();
            let de = max_abs_diff(&got.embeddings, &want.embeddings);
            let dl = max_abs_diff(&got.logits, &want.logits);
            assert!(
                de <= tol && dl <= tol,
                "{backend} {batch}x{h}x{w}: embedding {de:e}, logits {dl:e}"
            );
        }
    }
}

/// Every GEMM micro-kernel family this CPU runs (the portable one always), on thread pools of
/// 1, 2 and 3 threads, against the reference on the goldens, the smallest input, an odd size
/// and a batch, within [`CPU_TOL`].
#[test]
fn every_cpu_kernel_family_matches_the_reference_on_every_pool() {
    use xception_wgpu::cpu::{gemm::Isa, CpuModel};
    let mut rng = common::rng();
    let mut inputs: Vec<(String, Tensor)> = goldens()
        .iter()
        .map(|g| (g.name.clone(), g.input.clone()))
        .collect();
    for (batch, h, w) in [(1, 71, 71), (2, 73, 97)] {
        let shape = xception_wgpu::Shape::new(batch, h, w, 3);
        inputs.push((
            format!("{batch}x{h}x{w}"),
            common::random_tensor(&mut rng, shape),
        ));
    }
    let wanted: Vec<_> = inputs
        .iter()
        .map(|(_, input)| reference().forward(input).unwrap())
        .collect();
    let weights = std::sync::Arc::new(weights());
    let families: Vec<Isa> = Isa::ALL.into_iter().filter(|isa| isa.available()).collect();
    assert!(families.contains(&Isa::Portable));
    for isa in families {
        for threads in 1..=3 {
            let model = CpuModel::with_kernels(weights.clone(), isa)
                .and_then(|model| model.with_threads(threads))
                .unwrap();
            for ((name, input), want) in inputs.iter().zip(&wanted) {
                let got = model.forward(input).unwrap();
                let de = max_abs_diff(&got.embeddings, &want.embeddings);
                let dl = max_abs_diff(&got.logits, &want.logits);
                assert!(
                    de <= CPU_TOL && dl <= CPU_TOL,
                    "{} kernels on {threads} threads, {name}: embedding {de:e}, logits {dl:e}",
                    isa.name()
                );
            }
        }
    }
}

#[test]
fn one_model_is_shareable_between_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Xception>();
    let g = &goldens()[0];
    let results: Vec<Vec<f32>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|_| scope.spawn(|| gpu().forward(&g.input).unwrap().logits))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for logits in &results {
        assert!(max_abs_diff(logits, &g.logits) <= TOL);
    }
}

#[test]
fn a_lost_device_gives_an_error_not_a_panic() {
    // A device of its own, so destroying it does not disturb the other tests.
    let context = xception_wgpu::gpu::GpuContext::new().unwrap();
    let model = GpuModel::new(
        context.clone(),
        std::sync::Arc::new(weights()),
        Precision::F32,
        KernelChoice::Auto,
    )
    .unwrap();
    let g = &goldens()[0];
    assert!(model.forward(&g.input).is_ok());
    context.device.destroy();
    let _ = context.device.poll(wgpu::PollType::wait_indefinitely());
    let err = model
        .forward(&g.input)
        .expect_err("a destroyed device cannot run");
    assert!(err.to_string().contains("lost"), "{err}");
}

/// One Grad-CAM reference of `tests/golden/gradcam/` (`tests/golden/make_gradcam.py`): the
/// keras.io recipe run by TensorFlow for the top class and for another one, with the feature
/// map it read.
struct GradCamGolden {
    top_class: usize,
    other_class: usize,
    heatmap_top: Vec<f32>,
    heatmap_other: Vec<f32>,
    features: Tensor,
}

fn grad_cam_golden(g: &Golden) -> GradCamGolden {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/gradcam");
    let bytes = std::fs::read(dir.join(format!("{}.safetensors", g.name))).unwrap();
    let file = SafeTensors::deserialize(&bytes).unwrap();
    let (_, header) = SafeTensors::read_metadata(&bytes).unwrap();
    let metadata = header.metadata().clone().unwrap();
    let class = |key: &str| metadata[key].parse::<usize>().unwrap();
    let features = file.tensor("features").unwrap();
    let [h, w, c] = features.shape() else {
        panic!("{}: features of shape {:?}", g.name, features.shape())
    };
    GradCamGolden {
        top_class: class("top_class"),
        other_class: class("other_class"),
        heatmap_top: f32s(file.tensor("heatmap_top").unwrap().data()),
        heatmap_other: f32s(file.tensor("heatmap_other").unwrap().data()),
        features: Tensor::new(
            xception_wgpu::Shape::new(1, *h, *w, *c),
            f32s(features.data()),
        )
        .unwrap(),
    }
}

fn argmax(v: &[f32]) -> usize {
    (0..v.len()).fold(0, |best, i| if v[i] > v[best] { i } else { best })
}

/// The Grad-CAM arithmetic (the head's exact gradient, the weighted sum, the normalisation)
/// on Keras' own feature map and embedding gives Keras' heatmaps, for both classes.
#[test]
fn grad_cam_arithmetic_matches_keras_on_its_features() {
    let weights = weights();
    for g in goldens() {
        let want = grad_cam_golden(g);
        for (which, class, heatmap) in [
            ("top", want.top_class, &want.heatmap_top),
            ("other", want.other_class, &want.heatmap_other),
        ] {
            let got =
                xception_wgpu::explain::grad_cam(&weights, &want.features, &g.embedding, &[class])
                    .unwrap()
                    .remove(0);
            let d = max_abs_diff(&got.values, heatmap);
            eprintln!(
                "Grad-CAM on Keras' features, {} {which}: max |d| {d:.2e}",
                g.name
            );
            assert!(d <= TOL, "{} {which}: differs by {d:e}", g.name);
        }
    }
}

/// Grad-CAM end to end on every backend: the last feature map element by element within the
/// tolerance of Keras' (a stricter check of the backbone than the pooled embedding), the
/// classes, and the top class's heatmap. The other class's heatmap is checked for its class
/// and its peak: its values are a normalised sum of thousands of terms that nearly cancel, so
/// on fork 171x203 float32 summation noise in the features (0.9e-5 to 2.1e-5 of values up to
/// 5.9, depending on the backend's summation order) moves it by 4.6e-5 to 1.6e-4; its
/// arithmetic is checked on Keras' own features above.
#[test]
fn grad_cam_matches_keras() {
    for (model, backend) in [(reference(), "reference"), (cpu(), "cpu"), (gpu(), "gpu")] {
        for g in goldens() {
            let want = grad_cam_golden(g);
            let (_, features) = model.forward_features(&g.input).unwrap();
            assert_eq!(features.shape, want.features.shape, "{backend} {}", g.name);
            let df = max_abs_diff(&features.data, &want.features.data);
            assert!(
                df <= TOL,
                "{backend} {}: feature map differs by {df:e}",
                g.name
            );
            for (which, asked, class, heatmap) in [
                ("top", None, want.top_class, &want.heatmap_top),
                (
                    "other",
                    Some(want.other_class),
                    want.other_class,
                    &want.heatmap_other,
                ),
            ] {
                let got = model.grad_cam(&g.input, asked).unwrap().remove(0);
                assert_eq!(got.class, class, "{backend} {}", g.name);
                assert_eq!(got.height * got.width, heatmap.len());
                let d = max_abs_diff(&got.values, heatmap);
                eprintln!(
                    "{backend} Grad-CAM vs Keras, {} {which}: feature map {df:.2e}, heatmap {d:.2e}",
                    g.name
                );
                assert_eq!(
                    argmax(&got.values),
                    argmax(heatmap),
                    "{backend} {} {which}: peak",
                    g.name
                );
                if which == "top" {
                    assert!(d <= TOL, "{backend} {} {which}: differs by {d:e}", g.name);
                }
            }
        }
    }
}

/// `BackendKind::Auto` takes a hardware GPU where there is one, and the fast CPU backend
/// instead of a software adapter (lavapipe in CI). The fallback without any adapter is tested
/// in tests/cli.rs.
#[test]
fn auto_takes_a_hardware_gpu_and_prefers_the_cpu_to_a_software_one() {
    let model = Xception::builder()
        .backend(BackendKind::Auto)
        .build(weights())
        .unwrap();
    let adapter = common::gpu().adapter;
    if adapter.device_type == wgpu::DeviceType::Cpu {
        assert!(
            matches!(model.fallback(), Some(Fallback::SoftwareAdapter(name)) if name.contains(&adapter.name)),
            "{:?}",
            model.fallback()
        );
        assert!(model.backend_description().starts_with("cpu ("));
    } else {
        assert_eq!(model.fallback(), None);
        assert!(model.backend_description().starts_with("gpu ("));
    }
}

/// A device on the test adapter whose storage buffers hold at most `bytes` (as on a GPU with
/// small limits), with the adapter's features.
fn device_with_buffer_limit(bytes: u64) -> (wgpu::Device, wgpu::Queue) {
    let instance =
        wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    let adapter = pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions {
        power_preference: wgpu::PowerPreference::HighPerformance,
        ..Default::default()
    }))
    .expect("the test adapter");
    let limits = wgpu::Limits {
        max_storage_buffer_binding_size: bytes,
        max_buffer_size: bytes,
        ..adapter.limits()
    };
    let features = adapter.features()
        & (wgpu::Features::SUBGROUP | wgpu::Features::SHADER_F16 | wgpu::Features::TIMESTAMP_QUERY);
    pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
        required_features: features,
        required_limits: limits,
        ..Default::default()
    }))
    .expect("a device with smaller limits")
}

/// On a GPU whose buffers cannot hold an input, `auto` runs that input on the CPU backend and
/// says so ([`Xception::fallback_for`]), while inputs that fit stay on the GPU; `gpu` fails on
/// it, naming the limit. A device too small for the weights themselves fails to load, cleanly.
#[test]
fn auto_runs_inputs_too_large_for_the_gpu_on_the_cpu() {
    // The largest weight (block14_sepconv2's pointwise kernel) takes 12 MiB in float32, the
    // largest activation at 299x299 (147x147x128) 10.6 MiB, at 400x400 (197x197x128) 18.9 MiB.
    const LIMIT: u64 = 16 << 20;
    let (device, queue) = device_with_buffer_limit(LIMIT);
    let auto = Xception::builder()
        .device(device, queue)
        .backend(BackendKind::Auto)
        .build(weights())
        .unwrap();
    assert!(auto.backend_description().starts_with("gpu ("));
    let fits = goldens()
        .iter()
        .find(|g| g.input.shape.height == 299)
        .unwrap();
    let large = Size {
        width: 400,
        height: 400,
    };
    let cup = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("samples/cup.jpg");
    let too_large = preprocess::load_image(cup, Some(large), preprocess::Resize::Stretch).unwrap();
    assert_eq!(auto.fallback(), None);
    assert_eq!(
        auto.fallback_for(Size {
            width: 299,
            height: 299
        }),
        None
    );
    match auto.fallback_for(large) {
        Some(Fallback::InputTooLarge(why)) => assert!(
            why.contains("400x400") && why.contains(&LIMIT.to_string()),
            "{why}"
        ),
        other => panic!("{other:?}"),
    }

    // The input that fits runs on the GPU: close to, but not bit for bit, the CPU backend.
    let out = auto.forward(&fits.input).unwrap();
    let on_cpu = cpu().forward(&fits.input).unwrap();
    let de = max_abs_diff(out.embedding(0), on_cpu.embedding(0));
    assert!(de > 0.0 && de <= TOL, "{}: {de:e}", fits.name);
    let dl = max_abs_diff(out.logits(0), &fits.logits);
    assert!(dl <= TOL, "{} vs Keras: {dl:e}", fits.name);
    // The one too large runs on the CPU backend: the same arithmetic, bit for bit.
    let out = auto.forward(&too_large).unwrap();
    let on_cpu = cpu().forward(&too_large).unwrap();
    assert_eq!(out.embeddings, on_cpu.embeddings);
    assert_eq!(out.logits, on_cpu.logits);
    assert_eq!(auto.top_k(&out, 0, 1).unwrap()[0].label, "cup");

    let (device, queue) = device_with_buffer_limit(LIMIT);
    let gpu = Xception::builder()
        .device(device, queue)
        .build(weights())
        .unwrap();
    assert_eq!(gpu.fallback_for(large), None);
    let err = gpu.forward(&too_large).unwrap_err().to_string();
    assert!(err.contains("storage buffer limit"), "{err}");

    let (device, queue) = device_with_buffer_limit(8 << 20);
    let err = Xception::builder()
        .device(device, queue)
        .backend(BackendKind::Auto)
        .build(weights())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("block14_sepconv2.pointwise_kernel needs 12582912"),
        "{err}"
    );
}

/// timm's max-pool padding (`pool_padding: symmetric` in the weights' metadata) against
/// TensorFlow running the same arithmetic (`tests/golden/make_symmetric_pool.py`) on every
/// golden, on both backends. Keras' 'same' padding gives other logits on all of these cases,
/// so the test tells the two apart.
#[test]
fn symmetric_pool_padding_matches_its_reference() {
    let legacy = Architecture::named("legacy_xception").unwrap();
    let symmetric = weights().with_architecture(legacy).unwrap();
    let reference = Xception::new(symmetric.clone(), BackendKind::Reference).unwrap();
    let cpu = Xception::new(symmetric.clone(), BackendKind::Cpu).unwrap();
    let context = common::gpu();
    let gpu = Xception::with_device(symmetric, context.device, context.queue).unwrap();
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/symmetric_pool");
    for g in goldens() {
        let bytes = std::fs::read(dir.join(format!("{}.safetensors", g.name))).unwrap();
        let file = SafeTensors::deserialize(&bytes).unwrap();
        let embedding = f32s(file.tensor("embedding").unwrap().data());
        let logits = f32s(file.tensor("logits").unwrap().data());
        assert!(
            max_abs_diff(&logits, &g.logits) > 0.1,
            "{}: the paddings must differ here for the test to mean anything",
            g.name
        );
        for (model, backend) in [(&reference, "reference"), (&cpu, "cpu"), (&gpu, "gpu")] {
            let out = model.forward(&g.input).unwrap();
            let de = max_abs_diff(out.embedding(0), &embedding);
            let dl = max_abs_diff(out.logits(0), &logits);
            eprintln!(
                "{backend} symmetric pools vs reference, {}: embedding {de:.2e}, logits {dl:.2e}",
                g.name
            );
            assert!(
                de <= TOL && dl <= TOL,
                "{backend} {}: {de:e} {dl:e}",
                g.name
            );
        }
    }
}
