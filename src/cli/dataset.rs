//! Labelled folders for `fit` and `evaluate`: one subfolder per class, named by its label,
//! with the images directly inside; and running a model over them.

use std::path::{Path, PathBuf};

use xception_wgpu::{preprocess, Error, Size, Tensor, Xception};

use super::inputs::is_image;
use super::run::{progress_bar, report_failure};

/// Images run together in one forward pass.
const BATCH: usize = 8;

/// The images of a labelled folder.
pub struct Dataset {
    /// Class labels: the subfolders' names, sorted.
    pub labels: Vec<String>,
    /// Every image with its class index.
    pub images: Vec<(PathBuf, usize)>,
}

/// One image the model ran on.
pub struct Ran {
    /// Index into [`Dataset::images`].
    pub image: usize,
    /// Its embedding.
    pub embedding: Vec<f32>,
    /// Its logits (empty for a backbone without head).
    pub logits: Vec<f32>,
}

fn layout_error(dir: &Path, problem: impl std::fmt::Display) -> Error {
    Error::Input(format!(
        "{}: {problem} (expected one folder per class, named by its label, with the images \
         directly inside)",
        dir.display()
    ))
}

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>, Error> {
    let io = |source| Error::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .map_err(io)?;
    entries.sort();
    Ok(entries)
}

/// Reads the layout of `dir`, reporting (on standard error) and skipping files that are not
/// images; fails on nested folders, on a class folder without images, and on fewer than
/// `min_classes` classes.
pub fn scan(dir: &Path, min_classes: usize) -> Result<Dataset, Error> {
    let mut labels = Vec::new();
    let mut images = Vec::new();
    for entry in sorted_entries(dir)? {
        if !entry.is_dir() {
            eprintln!(
                "warning: {}: skipped, not in a class folder",
                entry.display()
            );
            continue;
        }
        let class = labels.len();
        let before = images.len();
        for file in sorted_entries(&entry)? {
            if file.is_dir() {
                return Err(layout_error(
                    dir,
                    format!("{} is nested one level too deep", file.display()),
                ));
            } else if is_image(&file) {
                images.push((file, class));
            } else {
                eprintln!(
                    "warning: {}: skipped, not a .png/.jpg/.jpeg file",
                    file.display()
                );
            }
        }
        if images.len() == before {
            return Err(layout_error(
                dir,
                format!("class folder {} has no images", entry.display()),
            ));
        }
        labels.push(
            entry
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned(),
        );
    }
    if labels.len() < min_classes {
        return Err(layout_error(
            dir,
            format!(
                "{} class folder(s) ({}); at least {min_classes} are needed",
                labels.len(),
                labels.join(", ")
            ),
        ));
    }
    Ok(Dataset { labels, images })
}

/// Runs `model` on every image of `data`, resized to `target`, with a progress bar on a
/// terminal; images that cannot be read or run are reported and left out.
pub fn run(model: &Xception, data: &Dataset, target: Size) -> Vec<Ran> {
    let progress = progress_bar(data.images.len());
    let report = |path: &Path, e: &Error| progress.suspend(|| report_failure(path, e, false));
    let mut ran = Vec::new();
    let indices: Vec<usize> = (0..data.images.len()).collect();
    for chunk in indices.chunks(BATCH) {
        let mut batch = Vec::new();
        for &i in chunk {
            let path = &data.images[i].0;
            match preprocess::load_image(path, Some(target), model.info().resize) {
                Ok(tensor) => batch.push((i, tensor)),
                Err(e) => report(path, &e),
            }
        }
        let tensors: Vec<Tensor> = batch.iter().map(|(_, t)| t.clone()).collect();
        if tensors.is_empty() {
            progress.inc(chunk.len() as u64);
            continue;
        }
        match Tensor::stack(&tensors).and_then(|input| model.forward(&input)) {
            Ok(outputs) => ran.extend(batch.iter().enumerate().map(|(j, &(i, _))| Ran {
                image: i,
                embedding: outputs.embedding(j).to_vec(),
                logits: outputs.logits(j).to_vec(),
            })),
            Err(e) => batch
                .iter()
                .for_each(|(i, _)| report(&data.images[*i].0, &e)),
        }
        progress.inc(chunk.len() as u64);
    }
    progress.finish_and_clear();
    ran
}
