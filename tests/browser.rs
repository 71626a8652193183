//! The page in a real browser: `web/build.sh` builds it, headless Chromium runs it on its own
//! WebGPU adapter (SwiftShader's Vulkan on machines without a GPU) or, without WebGPU or on
//! that software adapter, on the CPU backend compiled to WebAssembly, and
//! `web/classify-in-browser.sh` drives it through its file chooser, as a visitor would.
//!
//! Needs what `.ci/run` installs: Chromium, Node, Playwright (`npm ci --prefix web/tools`),
//! the wasm32 target and wasm-bindgen-cli. A missing piece fails the test, naming it; it never
//! skips.

use std::process::{Command, Output};

mod common;

use common::process::OutputWithinLimit;

use xception_wgpu::{preprocess, BackendKind, Size, Xception};

const LABELS: [&str; 6] = ["cup", "fork", "glass", "knife", "plate", "spoon"];
const WEIGHTS: &str = "weights/xception_kitchenware.safetensors";
/// Bad files (made by `bad_files`) and the error the page must show for each before going on.
const BAD_FILES: [(&str, &str); 4] = [
    (
        "samples/README.md",
        "not a recognised image format (PNG or JPEG)",
    ),
    (
        "half_cup.jpg",
        "truncated image (the data ends before the image does)",
    ),
    (
        "fuzz/regressions/image/partial-palette-entry.png",
        "invalid PNG: its palette (PLTE) is 679 bytes, not whole RGB entries",
    ),
    ("empty.jpg", "the file is empty"),
];

/// The bad files' paths: the ones in the repository as they are, the others written to the
/// tests' temporary folder (a photo cut in half, an empty file).
fn bad_files() -> Vec<String> {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    let cup = std::fs::read("samples/cup.jpg").unwrap();
    std::fs::write(dir.join("half_cup.jpg"), &cup[..cup.len() / 2]).unwrap();
    std::fs::write(dir.join("empty.jpg"), b"").unwrap();
    BAD_FILES
        .iter()
        .map(|(name, _)| match std::path::Path::new(name).exists() {
            true => name.to_string(),
            false => dir.join(name).display().to_string(),
        })
        .collect()
}

fn run(command: &mut Command) -> Output {
    let output = command.output_within_limit();
    eprintln!("{}", String::from_utf8_lossy(&output.stderr));
    output
}

/// The native CPU reference's logits for `path` at the model's input size, or at `size`.
fn reference_logits(model: &Xception, path: &str, size: Option<Size>) -> Vec<f32> {
    let size = size.unwrap_or(model.info().input_size);
    let input = preprocess::load_image(path, Some(size), model.info().resize).unwrap();
    model.forward(&input).unwrap().logits(0).to_vec()
}

/// Builds the page once for all the tests here.
fn build_page() {
    static BUILT: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let built = BUILT.get_or_init(|| run(&mut Command::new("web/build.sh")).status.success());
    assert!(built, "web/build.sh failed");
}

/// The driver's JSON lines (one per input) and its last stderr line's `timings`.
fn classify_in_browser(
    args: &[&str],
    images: &[String],
) -> (Output, Vec<serde_json::Value>, serde_json::Value) {
    build_page();
    let page = run(Command::new("web/classify-in-browser.sh")
        .args(args)
        .args(images));
    let lines = String::from_utf8_lossy(&page.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let stderr = String::from_utf8_lossy(&page.stderr);
    let timings = stderr
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|v| v["timings"].clone())
        .unwrap_or_else(|| panic!("no timings line on stderr:\n{stderr}"));
    (page, lines, timings)
}

/// Runs the six photos with a bad file after each but the last through the page with the
/// driver's `args`: each photo's logits are within 1e-4 of the native reference's, each bad
/// file gets the page's error and the photo after it still classifies, and every line names
/// `backend` as the one that ran. Returns the driver's timings line.
fn classifies_the_samples_and_survives_bad_files(
    args: &[&str],
    backend: &str,
) -> serde_json::Value {
    let photos: Vec<String> = LABELS.iter().map(|l| format!("samples/{l}.jpg")).collect();
    let bad = bad_files();
    let mut images = Vec::new();
    for (i, photo) in photos.iter().enumerate() {
        images.push(photo.clone());
        if let Some(file) = bad.get(i) {
            images.push(file.clone());
        }
    }
    let (page, all, timings) = classify_in_browser(&[&["--top", "6"], args].concat(), &images);
    let stderr = String::from_utf8_lossy(&page.stderr);
    assert_eq!(
        page.status.code(),
        Some(1),
        "some images fail, so the exit status is 1"
    );
    assert_eq!(timings["backend"], backend, "{timings}");

    let reference = Xception::load(WEIGHTS, BackendKind::Reference).unwrap();
    assert_eq!(
        all.len(),
        images.len(),
        "one line per input, as the CLI prints"
    );
    for line in &all {
        assert_eq!(line["backend"], backend, "{line}");
    }
    let (failed, lines): (Vec<_>, Vec<_>) = all
        .into_iter()
        .zip(&images)
        .partition(|(_, image)| bad.contains(image));
    for ((line, image), (_, problem)) in failed.iter().zip(BAD_FILES) {
        let error = format!("{image}: {problem}");
        assert_eq!(line["image"], image.as_str());
        assert_eq!(line["error"], error.as_str(), "{line}");
        assert!(
            stderr.contains(&error),
            "the page's error for {image} is reported"
        );
    }
    let lines: Vec<serde_json::Value> = lines.into_iter().map(|(line, _)| line).collect();
    for (line, label) in lines.iter().zip(LABELS) {
        let path = format!("samples/{label}.jpg");
        assert_eq!(line["image"], path.as_str());
        assert_eq!(line["top"][0]["label"], label, "{line}");
        assert_eq!(line["top"].as_array().unwrap().len(), LABELS.len());
        let logits: Vec<f32> = serde_json::from_value(line["logits"].clone()).unwrap();
        let expected = reference_logits(&reference, &path, None);
        assert_eq!(logits.len(), expected.len());
        for (got, want) in logits.iter().zip(&expected) {
            assert!(
                (got - want).abs() <= 1e-4,
                "{path}: browser logits {logits:?} ({backend}), native reference {expected:?}"
            );
        }
    }
    timings
}

/// `?backend=gpu` runs the WebGPU kernels, even on a software adapter.
#[test]
fn the_page_runs_the_webgpu_kernels_when_asked() {
    classifies_the_samples_and_survives_bad_files(&["--backend", "gpu"], "gpu");
}

/// Without WebGPU the page runs the CPU backend compiled to WebAssembly (SIMD128), here the
/// threaded build on two workers (the driver's server makes the page cross-origin isolated).
#[test]
fn without_webgpu_the_page_runs_the_wasm_cpu_backend_on_threads() {
    let timings =
        classifies_the_samples_and_survives_bad_files(&["--no-webgpu", "--threads", "2"], "cpu");
    assert_eq!(timings["threads"], 2, "{timings}");
}

/// With WebGPU on SwiftShader, `auto` (the page's default) takes the CPU backend, as the
/// native `auto` does on a software adapter, and says why.
#[test]
fn on_a_software_adapter_auto_takes_the_wasm_cpu_backend() {
    let (page, lines, timings) = classify_in_browser(&[], &["samples/cup.jpg".to_string()]);
    assert!(page.status.success());
    assert_eq!(lines[0]["backend"], "cpu", "{}", lines[0]);
    assert_eq!(lines[0]["top"][0]["label"], "cup");
    let fallback = timings["fallback"].as_str().unwrap_or_default();
    assert!(fallback.contains("software"), "{timings}");
}

/// `?size=299` classifies at that size, as `--size 299` does natively (here `?backend=cpu` on
/// the single-threaded build); a size the network cannot take stops the page with the runtime's
/// message.
#[test]
fn the_page_classifies_at_the_size_asked_for() {
    let photo = "samples/fork.jpg".to_string();
    let args = ["--backend", "cpu", "--threads", "1", "--size", "299"];
    let (page, lines, timings) = classify_in_browser(&args, std::slice::from_ref(&photo));
    assert!(page.status.success());
    assert_eq!(timings["threads"], 1, "{timings}");
    let logits: Vec<f32> = serde_json::from_value(lines[0]["logits"].clone()).unwrap();
    let reference = Xception::load(WEIGHTS, BackendKind::Reference).unwrap();
    let expected = reference_logits(&reference, &photo, Some(Size::new(299, 299)));
    for (got, want) in logits.iter().zip(&expected) {
        assert!(
            (got - want).abs() <= 1e-4,
            "browser logits {logits:?} at 299x299, native reference {expected:?}"
        );
    }

    build_page();
    let refused = run(Command::new("web/classify-in-browser.sh")
        .args(["--no-webgpu", "--size", "50"])
        .arg(&photo));
    assert_eq!(refused.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("size 50x50 is too small: Xception needs at least 71x71"),
        "{stderr}"
    );
}

/// `?weights=` runs another member of the family: the narrow twin of timm's `xception41`
/// (stride-2 and biased depthwise halves, timm's centre crop) on the WebGPU kernels, each
/// photo within 1e-4 of the native reference.
#[test]
fn the_page_runs_a_timm_aligned_xception() {
    let weights = "tests/golden/aligned/xception41.safetensors";
    let photos: Vec<String> = LABELS.iter().map(|l| format!("samples/{l}.jpg")).collect();
    let args = ["--top", "6", "--backend", "gpu", "--weights", weights];
    let (page, lines, timings) = classify_in_browser(&args, &photos);
    assert!(
        page.status.success(),
        "{}",
        String::from_utf8_lossy(&page.stderr)
    );
    assert_eq!(timings["backend"], "gpu", "{timings}");
    let reference = Xception::load(weights, BackendKind::Reference).unwrap();
    assert_eq!(reference.info().architecture.name, "xception41_custom");
    assert_eq!(lines.len(), photos.len());
    for (line, path) in lines.iter().zip(&photos) {
        let logits: Vec<f32> = serde_json::from_value(line["logits"].clone()).unwrap();
        let expected = reference_logits(&reference, path, None);
        let worst = logits
            .iter()
            .zip(&expected)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(
            logits.len() == expected.len() && worst <= 1e-4,
            "{path}: browser logits {logits:?}, native reference {expected:?}"
        );
    }
}
