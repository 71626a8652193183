//! `explain`: a Grad-CAM heatmap per image, drawn over the photo into a PNG, and printed.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::json;
use xception_wgpu::image::DynamicImage;
use xception_wgpu::{preprocess, Error, Size, Xception};

use super::inputs;
use super::run::{check_can_create, load, report_failure, CpuFallbackNotices};
use crate::{Common, Format};

/// Explains every image; returns whether all of them succeeded.
pub fn images(common: &Common, class: Option<&str>, output: &Path) -> Result<bool, Error> {
    let json = match common.format() {
        Format::Text => false,
        Format::Json => true,
        Format::Csv => {
            return Err(Error::Argument(
                "explain prints text or JSON (its heatmaps are grids), not CSV".into(),
            ))
        }
    };
    // The folder is made, and tried, before any work.
    std::fs::create_dir_all(output).map_err(|e| {
        Error::Argument(format!(
            "--output {}: cannot be created: {e}",
            output.display()
        ))
    })?;
    let probe = output.join(format!(".xception-write-test-{}", std::process::id()));
    check_can_create(&probe).map_err(|e| {
        Error::Argument(format!(
            "--output {}: cannot be written in: {e}",
            output.display()
        ))
    })?;
    let (model, target) = load(common)?;
    if model.info().num_classes() == 0 {
        return Err(Error::NoHead);
    }
    let class = class.map(|c| class_index(&model, c)).transpose()?;
    let (paths, mut all_ok) = inputs::expand(&common.images);
    if paths.is_empty() {
        return Err(Error::Input("no images to run".into()));
    }
    let overlays = overlay_paths(&paths, output)?;
    let mut notices = CpuFallbackNotices::default();
    for (path, overlay) in paths.iter().zip(&overlays) {
        match explain(&model, path, target, class, overlay, &mut notices) {
            Ok(line) => outln!("{}", if json { line.0 } else { line.1 }),
            Err(e) => {
                report_failure(path, &e, json);
                all_ok = false;
            }
        }
    }
    Ok(all_ok)
}

/// Computes, draws and writes one image's heatmap; returns its JSON and its text line.
fn explain(
    model: &Xception,
    path: &Path,
    target: Option<Size>,
    class: Option<usize>,
    overlay: &Path,
    notices: &mut CpuFallbackNotices,
) -> Result<(String, String), Error> {
    let resize = model.info().resize;
    // A centre-cropping model sees part of the photo: the heatmap is drawn over that part.
    let photo = match (resize, target) {
        (preprocess::Resize::CenterCrop { .. }, Some(target)) => {
            resize.apply(preprocess::decode(path)?, target)
        }
        _ => preprocess::decode(path)?,
    };
    let input = preprocess::from_image(&DynamicImage::ImageRgb8(photo.clone()), target, resize)?;
    if let Some(warning) = notices.check(model, path, &input) {
        eprintln!("{warning}");
    }
    let heatmap = model.grad_cam(&input, class)?.remove(0);
    heatmap
        .overlay(&photo)
        .save(overlay)
        .map_err(|e| Error::Input(format!("{}: cannot write: {e}", overlay.display())))?;
    let json = json!({
        "image": path.display().to_string(),
        "class": heatmap.label,
        "heatmap": heatmap.rows(),
        "overlay": overlay.display().to_string(),
    });
    let text = format!(
        "{}: {} -> {}",
        path.display(),
        heatmap.label,
        overlay.display()
    );
    Ok((json.to_string(), text))
}

/// `--class`: a label of the model, or a class index.
fn class_index(model: &Xception, class: &str) -> Result<usize, Error> {
    let labels = &model.info().labels;
    if let Some(index) = labels.iter().position(|l| l == class) {
        return Ok(index);
    }
    match class.parse::<usize>() {
        Ok(index) if index < labels.len() => Ok(index),
        Ok(index) => Err(Error::Argument(format!(
            "--class {index} is out of range: the model has {} classes",
            labels.len()
        ))),
        Err(_) => Err(Error::Argument(format!(
            "--class {class:?} is not one of the model's classes ({})",
            labels.join(", ")
        ))),
    }
}

/// The overlay file of each image: `DIR/<file stem>.gradcam.png`; two images that would
/// write the same file are refused before any work starts.
fn overlay_paths(paths: &[PathBuf], dir: &Path) -> Result<Vec<PathBuf>, Error> {
    let mut seen: HashMap<PathBuf, &Path> = HashMap::new();
    paths
        .iter()
        .map(|path| {
            let stem = path
                .file_stem()
                .unwrap_or(path.as_os_str())
                .to_string_lossy();
            let overlay = dir.join(format!("{stem}.gradcam.png"));
            match seen.insert(overlay.clone(), path) {
                Some(other) => Err(Error::Input(format!(
                    "{} and {} would both write {}; explain them separately",
                    other.display(),
                    path.display(),
                    overlay.display()
                ))),
                None => Ok(overlay),
            }
        })
        .collect()
}
