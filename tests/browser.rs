//! The page in a real browser: `web/build.sh` builds it, headless Chromium runs it on its own
//! WebGPU adapter (SwiftShader's Vulkan on machines without a GPU), and
//! `web/classify-in-browser.sh` drives it through its file chooser, as a visitor would.
//!
//! Needs what `.ci/run` installs: Chromium, Node, the wasm32 target and wasm-bindgen-cli. A
//! missing piece fails the test, naming it; it never skips.

use std::process::{Command, Output};

use xception_wgpu::{preprocess, BackendKind, Xception};

const LABELS: [&str; 6] = ["cup", "fork", "glass", "knife", "plate", "spoon"];
const WEIGHTS: &str = "weights/xception_kitchenware.safetensors";
/// Not an image: the page must say so and go on.
const NOT_AN_IMAGE: &str = "samples/README.md";

fn run(command: &mut Command) -> Output {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
    eprintln!("{}", String::from_utf8_lossy(&output.stderr));
    output
}

/// The native CPU reference's logits for `path`.
fn reference_logits(model: &Xception, path: &str) -> Vec<f32> {
    let input = preprocess::load_image(path, Some(model.info().input_size)).unwrap();
    model.forward(&input).unwrap().logits(0).to_vec()
}

#[test]
fn the_page_classifies_the_samples_like_the_native_reference_and_survives_a_bad_file() {
    let build = run(&mut Command::new("web/build.sh"));
    assert!(build.status.success(), "web/build.sh failed");

    // The bad file sits between photos: the photo after it must still classify.
    let mut images: Vec<String> = LABELS.iter().map(|l| format!("samples/{l}.jpg")).collect();
    images.insert(3, NOT_AN_IMAGE.to_string());
    let page = run(Command::new("web/classify-in-browser.sh")
        .args(["--top", "6"])
        .args(&images));
    let stderr = String::from_utf8_lossy(&page.stderr);
    assert_eq!(
        page.status.code(),
        Some(1),
        "one image fails, so the exit status is 1"
    );
    assert!(
        stderr.contains(&format!(
            "{NOT_AN_IMAGE}: not a recognised image format (PNG or JPEG)"
        )),
        "the page's error for {NOT_AN_IMAGE} is reported"
    );

    let reference = Xception::load(WEIGHTS, BackendKind::Reference).unwrap();
    let mut lines: Vec<serde_json::Value> = String::from_utf8_lossy(&page.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert_eq!(
        lines.len(),
        images.len(),
        "one line per input, as the CLI prints"
    );
    let failed = lines.remove(3);
    assert_eq!(failed["image"], NOT_AN_IMAGE);
    assert_eq!(
        failed["error"],
        format!("{NOT_AN_IMAGE}: not a recognised image format (PNG or JPEG)")
    );
    for (line, label) in lines.iter().zip(LABELS) {
        let path = format!("samples/{label}.jpg");
        assert_eq!(line["image"], path.as_str());
        assert_eq!(line["top"][0]["label"], label, "{line}");
        assert_eq!(line["top"].as_array().unwrap().len(), LABELS.len());
        let logits: Vec<f32> = serde_json::from_value(line["logits"].clone()).unwrap();
        let expected = reference_logits(&reference, &path);
        assert_eq!(logits.len(), expected.len());
        for (got, want) in logits.iter().zip(&expected) {
            assert!(
                (got - want).abs() <= 1e-4,
                "{path}: browser logits {logits:?}, native reference {expected:?}"
            );
        }
    }
}
