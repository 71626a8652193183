//! Embeds images and lists, for each, its nearest neighbours by cosine similarity of the
//! 2048-d Xception embeddings.
//!
//! ```sh
//! cargo run --release --example nearest_neighbours -- samples/*.jpg
//! ```

use xception_wgpu::image::DynamicImage;
use xception_wgpu::{preprocess, Xception};

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (norm(a) * norm(b)).max(f32::MIN_POSITIVE)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut paths: Vec<String> = std::env::args().skip(1).collect();
    if paths.is_empty() {
        let samples = concat!(env!("CARGO_MANIFEST_DIR"), "/samples");
        paths = ["cup", "fork", "glass", "knife", "plate", "spoon"]
            .iter()
            .map(|l| format!("{samples}/{l}.jpg"))
            .collect();
    }
    let model = Xception::load(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/weights/xception_kitchenware.safetensors"
        ),
        xception_wgpu::BackendKind::Gpu,
    )?;
    let images = paths
        .iter()
        .map(|p| preprocess::decode(p).map(DynamicImage::ImageRgb8))
        .collect::<Result<Vec<_>, _>>()?;
    // One batched forward pass for all images.
    let embeddings = model.embed(&images)?;
    for (i, path) in paths.iter().enumerate() {
        let mut others: Vec<(f32, &str)> = (0..paths.len())
            .filter(|&j| j != i)
            .map(|j| (cosine(&embeddings[i], &embeddings[j]), paths[j].as_str()))
            .collect();
        others.sort_by(|a, b| b.0.total_cmp(&a.0));
        let nearest: Vec<String> = others
            .iter()
            .take(3)
            .map(|(s, p)| format!("{p} ({s:.3})"))
            .collect();
        println!("{path}: {}", nearest.join(", "));
    }
    Ok(())
}
