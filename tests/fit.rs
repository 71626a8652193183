//! Teaching the model new classes: `fit_head` on embeddings with a known answer, and the
//! `fit` / `classify --head` / `evaluate` round trip on augmented copies of the bundled photos.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod common;

use common::process::OutputWithinLimit;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use xception_wgpu::fit::{fit_head, FitOptions};
use xception_wgpu::image::{imageops, DynamicImage};
use xception_wgpu::{BackendKind, Weights, Xception};

const LABELS: [&str; 6] = ["cup", "fork", "glass", "knife", "plate", "spoon"];
const WEIGHTS: &str = "weights/xception_kitchenware.safetensors";

fn xception(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xception"))
        .args(args)
        .output_within_limit()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("xception-fit-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `n` points per class around `classes` random centres in `dim` dimensions, with noise well
/// below the centres' distances: a set a linear head separates exactly.
fn blobs(rng: &mut StdRng, dim: usize, classes: usize, n: usize) -> (Vec<f32>, Vec<usize>) {
    let centres: Vec<Vec<f32>> = (0..classes)
        .map(|_| (0..dim).map(|_| rng.random_range(-1.0..1.0)).collect())
        .collect();
    let mut points = Vec::new();
    let mut targets = Vec::new();
    for _ in 0..n {
        for (class, centre) in centres.iter().enumerate() {
            points.extend(centre.iter().map(|c| c + rng.random_range(-0.1..0.1)));
            targets.push(class);
        }
    }
    (points, targets)
}

#[test]
fn fitting_separable_embeddings_reaches_the_separating_solution() {
    let mut rng = StdRng::seed_from_u64(11);
    let (dim, classes) = (64, 4);
    let labels: Vec<String> = (0..classes).map(|c| format!("c{c}")).collect();
    let (train, train_targets) = blobs(&mut rng, dim, classes, 10);
    for hidden in [0, 100] {
        let options = FitOptions {
            hidden,
            seed: 5,
            ..FitOptions::default()
        };
        let head = fit_head(&train, dim, &train_targets, labels.clone(), options).unwrap();
        assert_eq!(head.layers.len(), if hidden == 0 { 1 } else { 2 });
        assert_eq!(head.layers.last().unwrap().units, classes);
        for (point, &target) in train.chunks(dim).zip(&train_targets) {
            assert_eq!(
                head.predict(point),
                target,
                "hidden {hidden}: training point"
            );
        }
        // The same classes, new points: the fitted boundary generalises.
        let mut fresh = StdRng::seed_from_u64(11);
        let (test, test_targets) = blobs(&mut fresh, dim, classes, 10);
        let right = test
            .chunks(dim)
            .zip(&test_targets)
            .filter(|(p, &t)| head.predict(p) == t)
            .count();
        assert_eq!(
            right,
            test_targets.len(),
            "hidden {hidden}: held-out points"
        );
        // Deterministic for a seed.
        let again = fit_head(&train, dim, &train_targets, labels.clone(), options).unwrap();
        assert_eq!(again, head);
    }
    let one_class = fit_head(
        &train[..dim],
        dim,
        &[0],
        vec!["c0".into()],
        FitOptions::default(),
    );
    assert!(one_class
        .unwrap_err()
        .to_string()
        .contains("at least two classes"));
}

/// Writes `copies` augmented versions of each bundled photo (mirrored, cropped, colour
/// shifted) into `dir/<label>/`.
fn augmented_samples(dir: &Path, copies: usize) {
    let mut rng = StdRng::seed_from_u64(3);
    for label in LABELS {
        let class = dir.join(label);
        std::fs::create_dir_all(&class).unwrap();
        let photo = xception_wgpu::preprocess::decode(format!("samples/{label}.jpg")).unwrap();
        for k in 0..copies {
            let mut image = if k % 2 == 1 {
                imageops::flip_horizontal(&photo)
            } else {
                photo.clone()
            };
            let (w, h) = image.dimensions();
            let (dx, dy) = (rng.random_range(0..w / 8), rng.random_range(0..h / 8));
            image = imageops::crop_imm(&image, dx, dy, w - w / 8, h - h / 8).to_image();
            let gain: [f32; 3] = std::array::from_fn(|_| rng.random_range(0.8..1.2));
            for pixel in image.pixels_mut() {
                for (c, g) in pixel.0.iter_mut().zip(gain) {
                    *c = (f32::from(*c) * g).min(255.0) as u8;
                }
            }
            let small = DynamicImage::ImageRgb8(image).thumbnail(240, 240);
            small.save(class.join(format!("{k}.jpg"))).unwrap();
        }
    }
}

#[test]
fn a_head_fitted_on_augmented_photos_classifies_the_originals_and_round_trips() {
    let dir = temp_dir("round-trip");
    let data = dir.join("photos");
    augmented_samples(&data, 4);
    std::fs::write(data.join("cup").join("notes.txt"), "not an image").unwrap();
    let head = dir.join("head.safetensors");
    let head_arg = head.to_str().unwrap();

    let out = xception(&[
        "fit",
        data.to_str().unwrap(),
        "--output",
        head_arg,
        "--hidden",
        "100",
        "--seed",
        "1",
        "--val-split",
        "0.25",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("fitted on 18 images (6 classes)"), "{text}");
    assert!(
        text.contains("validation accuracy 100.00% on 6 held-out images"),
        "{text}"
    );
    assert!(stderr(&out).contains("notes.txt: skipped, not a .png/.jpg/.jpeg file"));

    // The head file holds the head alone.
    assert!(std::fs::metadata(&head).unwrap().len() < 1 << 20);
    let samples: Vec<String> = LABELS.iter().map(|l| format!("samples/{l}.jpg")).collect();
    let mut args = vec!["classify", "--json", "--head", head_arg];
    args.extend(samples.iter().map(String::as_str));
    let out = xception(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    for (line, label) in String::from_utf8_lossy(&out.stdout).lines().zip(LABELS) {
        let line: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(line["top"][0]["label"], label, "{line}");
    }

    // The library: the builder's head gives the same classes.
    let model = Xception::builder()
        .backend(BackendKind::Cpu)
        .head(&head)
        .load(WEIGHTS)
        .unwrap();
    assert_eq!(model.info().head[0].units, 100);
    assert_eq!(
        model.classify_file("samples/plate.jpg", 1).unwrap()[0].label,
        "plate"
    );

    let out = xception(&[
        "evaluate",
        data.to_str().unwrap(),
        "--head",
        head_arg,
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["images"], 24);
    assert!(report["accuracy"].as_f64().unwrap() >= 0.95, "{report}");
    assert_eq!(report["confusion"]["counts"].as_array().unwrap().len(), 6);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_layouts_and_mismatched_heads_are_clear_errors() {
    let dir = temp_dir("errors");
    let out_file = dir.join("head.safetensors");
    let out_arg = out_file.to_str().unwrap();
    let photo = std::fs::read("samples/cup.jpg").unwrap();
    let layout = |name: &str, files: &[(&str, &[u8])]| {
        let root = dir.join(name);
        for (path, bytes) in files {
            let path = root.join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, bytes).unwrap();
        }
        root
    };
    let cases = [
        (
            layout("one-class", &[("cup/a.jpg", &photo)]),
            "1 class folder(s) (cup); at least 2 are needed",
        ),
        (
            layout(
                "empty-class",
                &[("cup/a.jpg", &photo), ("fork/notes.txt", b"x")],
            ),
            "class folder",
        ),
        (
            layout(
                "nested",
                &[("cup/a.jpg", &photo), ("fork/deeper/b.jpg", &photo)],
            ),
            "is nested one level too deep",
        ),
        (
            layout(
                "unusable",
                &[("cup/a.jpg", &photo), ("fork/b.jpg", b"not a jpeg")],
            ),
            "class fork has no usable images",
        ),
    ];
    for (root, error) in &cases {
        let out = xception(&["fit", root.to_str().unwrap(), "--output", out_arg]);
        assert!(!out.status.success(), "{}", root.display());
        assert!(
            stderr(&out).contains(error),
            "{}: {}",
            root.display(),
            stderr(&out)
        );
    }
    assert!(!out_file.exists(), "nothing is written for a bad layout");

    // A head for another backbone, and a whole model's file given as a head.
    let weights = Weights::load(WEIGHTS).unwrap();
    let mut rng = StdRng::seed_from_u64(2);
    let (points, targets) = blobs(&mut rng, 2048, 2, 3);
    let labels = vec!["a".to_string(), "b".to_string()];
    let head = fit_head(&points, 2048, &targets, labels, FitOptions::default()).unwrap();
    std::fs::write(
        &out_file,
        head.to_safetensors("fnv1a64:0000000000000000").unwrap(),
    )
    .unwrap();
    let e = weights
        .clone()
        .with_head(&out_file)
        .unwrap_err()
        .to_string();
    assert!(e.contains("the head was fitted on another backbone"), "{e}");
    std::fs::write(
        &out_file,
        head.to_safetensors(&weights.backbone_fingerprint())
            .unwrap(),
    )
    .unwrap();
    let with_head = weights.clone().with_head(&out_file).unwrap();
    assert_eq!(with_head.info.labels, ["a", "b"]);
    let (points, targets) = blobs(&mut rng, 16, 2, 3);
    let labels = vec!["a".to_string(), "b".to_string()];
    let small = fit_head(&points, 16, &targets, labels, FitOptions::default()).unwrap();
    std::fs::write(
        &out_file,
        small
            .to_safetensors(&weights.backbone_fingerprint())
            .unwrap(),
    )
    .unwrap();
    let e = weights
        .clone()
        .with_head(&out_file)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("the head takes embeddings of 16 values; the backbone's (xception) have 2048"),
        "{e}"
    );
    let e = weights.with_head(WEIGHTS).unwrap_err().to_string();
    assert!(
        e.contains("a whole model's weights file, not a head"),
        "{e}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
