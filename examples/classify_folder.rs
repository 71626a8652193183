//! Classifies every PNG/JPEG in a folder and its subfolders and prints a CSV line per image
//! (quoted where a path holds a comma or a quote).
//!
//! ```sh
//! cargo run --release --example classify_folder -- samples
//! ```

use std::path::{Path, PathBuf};

use xception_wgpu::{BackendKind, Xception};

/// Every PNG/JPEG below `dir`, in path order.
fn images_in(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut paths = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            paths.extend(images_in(&path)?);
        } else if path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| ["png", "jpg", "jpeg"].contains(&e.to_ascii_lowercase().as_str()))
        {
            paths.push(path);
        }
    }
    paths.sort();
    Ok(paths)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args().nth(1).unwrap_or_else(|| "samples".into());
    let model = Xception::builder()
        .backend(BackendKind::Auto)
        .load(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/weights/xception_kitchenware.safetensors"
        ))?;
    eprintln!("running on {}", model.backend_description());
    let mut csv = csv::Writer::from_writer(std::io::stdout());
    csv.write_record(["image", "label", "probability"])?;
    for path in images_in(Path::new(&dir))? {
        // A bad file is reported and skipped; the rest of the folder still runs.
        match model.classify_file(&path, 1) {
            Ok(top) => csv.write_record([
                path.display().to_string(),
                top[0].label.clone(),
                format!("{:.4}", top[0].probability),
            ])?,
            Err(e) => eprintln!("skipping {e}"),
        }
    }
    csv.flush()?;
    Ok(())
}
