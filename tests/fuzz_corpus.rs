//! Regression test over the fuzzing corpus (`fuzz/corpus`, minimised with `cargo fuzz cmin`),
//! the hand-made seeds and the inputs that once crashed (`fuzz/regressions`): every input
//! goes through the same entry points as the fuzz targets and must come back as a value or
//! a clean error, never a panic.

use std::path::{Path, PathBuf};

use xception_wgpu::image::DynamicImage;
use xception_wgpu::{preprocess, Size, Weights};

fn inputs(target: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut files: Vec<PathBuf> = ["corpus", "seeds", "regressions"]
        .iter()
        .filter_map(|dir| std::fs::read_dir(root.join(dir).join(target)).ok())
        .flatten()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(files.len() > 10, "no fuzz inputs found for `{target}`");
    files
}

#[test]
fn weights_loader_survives_the_fuzz_corpus() {
    for path in inputs("weights") {
        let bytes = std::fs::read(&path).unwrap();
        // None of these is a complete Xception checkpoint: each must be a clean error.
        let err = Weights::from_bytes(&bytes, "corpus")
            .expect_err(&format!("{} loaded as a model", path.display()));
        assert!(
            err.to_string().starts_with("corpus: "),
            "{}: {err}",
            path.display()
        );
    }
}

#[test]
fn image_path_survives_the_fuzz_corpus() {
    let mut decoded = 0;
    for path in inputs("image") {
        let bytes = std::fs::read(&path).unwrap();
        if let Ok(rgb) = preprocess::decode_bytes(&bytes, &path) {
            decoded += 1;
            let t = preprocess::from_image(
                &DynamicImage::ImageRgb8(rgb),
                Some(Size::new(75, 75)),
                preprocess::Resize::Stretch,
            )
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert!(
                t.data.iter().all(|v| (-1.0..=1.0).contains(v)),
                "{}",
                path.display()
            );
        }
    }
    assert!(decoded > 0, "the corpus should hold some valid images");
}
