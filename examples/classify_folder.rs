//! Classifies every PNG/JPEG in a folder and prints a CSV line per image.
//!
//! ```sh
//! cargo run --release --example classify_folder -- samples
//! ```

use std::path::{Path, PathBuf};

use xception_wgpu::{BackendKind, Xception};

fn images_in(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| ["png", "jpg", "jpeg"].contains(&e.to_ascii_lowercase().as_str()))
        })
        .collect();
    paths.sort();
    Ok(paths)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args().nth(1).unwrap_or_else(|| "samples".into());
    let model = Xception::builder().backend(BackendKind::Gpu).load(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/weights/xception_kitchenware.safetensors"
    ))?;
    eprintln!("running on {}", model.backend_description());
    println!("image,label,probability");
    for path in images_in(Path::new(&dir))? {
        // A bad file is reported and skipped; the rest of the folder still runs.
        match model.classify_file(&path, 1) {
            Ok(top) => println!(
                "{},{},{:.4}",
                path.display(),
                top[0].label,
                top[0].probability
            ),
            Err(e) => eprintln!("skipping {e}"),
        }
    }
    Ok(())
}
