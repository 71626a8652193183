//! `classify` and `embed`: images in, one result per image out, failures reported and skipped.

use std::collections::{HashMap, HashSet};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressStyle};
use npyz::WriterBuilder;
use serde_json::json;
use xception_wgpu::files::{temporary_beside, write_atomically};
use xception_wgpu::graph::Graph;
use xception_wgpu::{preprocess, Error, Fallback, Outputs, Size, Tensor, Xception};

use super::inputs;
use crate::cli::stdout::Stdout;
use crate::{parse_size, Common, Format, Sizing};

/// A progress bar is shown for more images than this, when standard error is a terminal.
const PROGRESS_ABOVE: usize = 4;

/// What to do with each image.
pub enum Task<'a> {
    /// Print the top-K classes.
    Classify(usize),
    /// Print the embedding, and write all of them to a file if one is given.
    Embed(Option<&'a Path>),
}

/// Runs every image, `batch` per forward pass; returns whether all of them succeeded.
pub fn images(common: &Common, task: Task<'_>, batch: usize) -> Result<bool, Error> {
    match task {
        Task::Classify(0) => return Err(Error::Argument("--top must be at least 1".into())),
        Task::Embed(Some(output)) => {
            EmbeddingFile::of(output)?;
            check_writable(output)?;
        }
        _ => {}
    }
    let (model, target) = load(common)?;
    if matches!(task, Task::Classify(_)) && model.info().num_classes() == 0 {
        return Err(Error::NoHead);
    }

    let (paths, mut all_ok) = inputs::expand(&common.images);
    if paths.is_empty() {
        return Err(Error::Input("no images to run".into()));
    }
    let embedding_dim = model.embedding_dim();
    let mut printer = Printer::new(common.format(), &task, embedding_dim);
    let progress = progress_bar(paths.len());
    let mut notices = CpuFallbackNotices::default();
    // With --output: every image's row, in input order (`None` where it failed).
    let mut embeddings: Vec<(PathBuf, Option<Vec<f32>>)> = Vec::new();
    let keep_rows = matches!(task, Task::Embed(Some(_)));
    // Images wait here until a batch is full; results are printed in input order.
    let mut pending: Vec<(&Path, Result<Tensor, Error>)> = Vec::new();
    for (i, path) in paths.iter().enumerate() {
        let tensor = match target {
            Some(_) => preprocess::load_image(path, target, model.info().resize),
            None => load_native(path),
        };
        if let Some(warning) = tensor
            .as_ref()
            .ok()
            .and_then(|input| notices.check(&model, path, input))
        {
            progress.suspend(|| eprintln!("{warning}"));
        }
        pending.push((path, tensor));
        // Native sizes differ from image to image, so those run one at a time.
        let ready = pending.iter().filter(|(_, t)| t.is_ok()).count();
        if ready < batch && target.is_some() && i + 1 < paths.len() {
            continue;
        }
        let tensors: Vec<Tensor> = pending
            .iter()
            .filter_map(|(_, t)| t.as_ref().ok().cloned())
            .collect();
        let outputs = (!tensors.is_empty())
            .then(|| Tensor::stack(&tensors).and_then(|batch| model.forward(&batch)));
        let mut row = 0;
        for (path, tensor) in &pending {
            let result = match (tensor, &outputs) {
                (Err(e), _) => Err(e),
                (Ok(_), Some(Err(e))) => Err(e),
                (Ok(_), Some(Ok(outputs))) => Ok(outputs),
                (Ok(_), None) => unreachable!("an image without a batch"),
            };
            match result {
                Err(e) => {
                    progress.suspend(|| printer.failure(path, e));
                    all_ok = false;
                    if keep_rows {
                        embeddings.push((path.to_path_buf(), None));
                    }
                }
                Ok(outputs) => {
                    match &task {
                        Task::Classify(k) => {
                            progress.suspend(|| printer.classes(&model, outputs, row, path, *k))
                        }
                        Task::Embed(_) => {
                            progress.suspend(|| printer.embedding(outputs, row, path));
                            if keep_rows {
                                let embedding = outputs.embedding(row).to_vec();
                                embeddings.push((path.to_path_buf(), Some(embedding)));
                            }
                        }
                    }
                    row += 1;
                }
            }
        }
        progress.inc(pending.len() as u64);
        pending.clear();
    }
    progress.finish_and_clear();
    if let Task::Embed(Some(output)) = task {
        write_embeddings(output, &embeddings, embedding_dim)?;
    }
    Ok(all_ok)
}

/// The image at `path` at its own size, unless the network cannot run it so (its activations
/// would pass the library's limit, or it is too small): then an error that says how to run it.
fn load_native(path: &Path) -> Result<Tensor, Error> {
    let rgb = preprocess::decode(path)?;
    let size = Size::new(rgb.width() as usize, rgb.height() as usize);
    let image_error = |problem: String| Error::Image {
        path: path.to_path_buf(),
        problem,
    };
    Graph::check_input_size(size).map_err(|e| {
        image_error(format!(
            "at its own size: {e}; pass --size (e.g. --size 299) to run it resized"
        ))
    })?;
    preprocess::from_image(
        &xception_wgpu::image::DynamicImage::ImageRgb8(rgb),
        None,
        preprocess::Resize::Stretch,
    )
    .map_err(|e| match e {
        Error::Input(problem) => image_error(problem),
        other => other,
    })
}

/// The model `common` asks for, and the size images are resized to (`None`: each at its own
/// size).
pub fn load(common: &Common) -> Result<(Xception, Option<Size>), Error> {
    let requested = common.size.as_deref().map(parse_size).transpose()?;
    let model = common.model.load()?;
    let target = match requested.unwrap_or(Sizing::Fixed(model.info().input_size)) {
        Sizing::Fixed(size) => Some(size),
        Sizing::Native => None,
    };
    Ok((model, target))
}

/// Warns, once per input size, where images run on the CPU because the GPU of an `auto` model
/// cannot hold them.
#[derive(Default)]
pub struct CpuFallbackNotices(HashSet<Size>);

impl CpuFallbackNotices {
    /// The warning to print if `input`, the tensor of `path`, runs on the CPU and no image of
    /// its size has been named yet.
    pub fn check(&mut self, model: &Xception, path: &Path, input: &Tensor) -> Option<String> {
        let size = Size {
            width: input.shape.width,
            height: input.shape.height,
        };
        match model.fallback_for(size) {
            Some(Fallback::InputTooLarge(why)) if self.0.insert(size) => Some(format!(
                "warning: {}: {why}; images of this size run on the CPU",
                path.display()
            )),
            _ => None,
        }
    }
}

/// A progress bar over `images` on standard error, where that is a terminal and there are
/// more than a few; hidden otherwise. It is drawn from the start: print results and errors
/// through it (`suspend`), so that no remnant of the bar lands between them.
pub fn progress_bar(images: usize) -> ProgressBar {
    let progress = if images > PROGRESS_ABOVE && std::io::stderr().is_terminal() {
        let style =
            ProgressStyle::with_template("{bar:40} {pos}/{len} images, {per_sec}, eta {eta}")
                .expect("valid progress template");
        ProgressBar::new(images as u64).with_style(style)
    } else {
        ProgressBar::hidden()
    };
    progress.tick();
    progress
}

/// What failed for `path`, starting with the path.
fn failure_message(path: &Path, error: &Error) -> String {
    match error {
        // These already start with the path.
        Error::Image { .. } | Error::Io { .. } => error.to_string(),
        _ => format!("{}: {error}", path.display()),
    }
}

/// Reports an image that failed: on standard error, and with `--json` as a line
/// `{"image": PATH, "error": MESSAGE}` too, so that a JSON reader sees every input.
pub fn report_failure(path: &Path, error: &Error, json: bool) {
    let message = failure_message(path, error);
    eprintln!("error: {message}");
    if json {
        outln!(
            "{}",
            json!({"image": path.display().to_string(), "error": message})
        );
    }
}

/// Prints each image's result, or its error, on standard output in the chosen format; errors
/// also go to standard error.
struct Printer {
    format: Format,
    csv: csv::Writer<Stdout>,
    /// Fields of a CSV row.
    columns: usize,
}

impl Printer {
    /// A printer for `task`'s results in `format`; CSV starts with its header:
    /// `image,rank,label,probability,error` (a row per class) or `image,e0,...,e2047,error`
    /// (as many values as the model's embeddings have).
    fn new(format: Format, task: &Task<'_>, embedding_dim: usize) -> Self {
        let header: Vec<String> = match task {
            Task::Classify(_) => ["image", "rank", "label", "probability", "error"]
                .map(String::from)
                .to_vec(),
            Task::Embed(_) => std::iter::once("image".to_string())
                .chain((0..embedding_dim).map(|i| format!("e{i}")))
                .chain(std::iter::once("error".to_string()))
                .collect(),
        };
        let mut printer = Self {
            format,
            csv: csv::Writer::from_writer(Stdout),
            columns: header.len(),
        };
        if format == Format::Csv {
            printer.row(header);
        }
        printer
    }

    /// Writes one CSV row, flushed at once so that it keeps its place among the messages on
    /// standard error (writing cannot fail: see [`Stdout`]).
    fn row(&mut self, fields: impl IntoIterator<Item = String>) {
        let _ = self.csv.write_record(fields);
        let _ = self.csv.flush();
    }

    fn failure(&mut self, path: &Path, error: &Error) {
        report_failure(path, error, self.format == Format::Json);
        if self.format == Format::Csv {
            let fields = std::iter::once(path.display().to_string())
                .chain(std::iter::repeat_n(String::new(), self.columns - 2))
                .chain(std::iter::once(failure_message(path, error)));
            self.row(fields);
        }
    }

    fn classes(&mut self, model: &Xception, outputs: &Outputs, i: usize, path: &Path, k: usize) {
        let predictions = match model.top_k(outputs, i, k) {
            Ok(p) => p,
            Err(e) => return self.failure(path, &e),
        };
        let image = path.display().to_string();
        match self.format {
            Format::Json => {
                let top: Vec<_> = predictions
                    .iter()
                    .map(|p| json!({"index": p.index, "label": p.label, "probability": p.probability}))
                    .collect();
                outln!(
                    "{}",
                    json!({"image": image, "top": top, "logits": outputs.logits(i)})
                );
            }
            Format::Text => {
                let ranked: Vec<String> = predictions
                    .iter()
                    .map(|p| format!("{} ({:.2}%)", p.label, p.probability * 100.0))
                    .collect();
                outln!("{image}: {}", ranked.join(", "));
            }
            Format::Csv => {
                for (rank, p) in predictions.iter().enumerate() {
                    self.row([
                        image.clone(),
                        (rank + 1).to_string(),
                        p.label.clone(),
                        p.probability.to_string(),
                        String::new(),
                    ]);
                }
            }
        }
    }

    fn embedding(&mut self, outputs: &Outputs, i: usize, path: &Path) {
        let embedding = outputs.embedding(i);
        let image = path.display().to_string();
        match self.format {
            Format::Json => outln!("{}", json!({"image": image, "embedding": embedding})),
            Format::Text => {
                let values: Vec<String> = embedding.iter().map(|v| format!("{v:.6}")).collect();
                outln!("{image}: {}", values.join(" "));
            }
            Format::Csv => self.row(
                std::iter::once(image)
                    .chain(embedding.iter().map(f32::to_string))
                    .chain(std::iter::once(String::new())),
            ),
        }
    }
}

/// The formats `embed --output` writes, chosen by the file's extension.
enum EmbeddingFile {
    Npy,
    Safetensors,
}

impl EmbeddingFile {
    fn of(path: &Path) -> Result<Self, Error> {
        match path.extension().and_then(|e| e.to_str()) {
            Some("npy") => Ok(Self::Npy),
            Some("safetensors") => Ok(Self::Safetensors),
            _ => Err(Error::Argument(format!(
                "{}: --output must end in .npy or .safetensors",
                path.display()
            ))),
        }
    }
}

/// Writes `[N, 2048]` float32 embeddings, a row per image in input order (NaN where the
/// image failed), as `.npy` (with the images and which succeeded in `FILE.npy.json` beside
/// it) or `.safetensors` (in its metadata), each through a temporary file and a rename. Where
/// no image succeeded nothing is written, and an existing file is kept.
fn write_embeddings(
    path: &Path,
    rows: &[(PathBuf, Option<Vec<f32>>)],
    embedding_dim: usize,
) -> Result<(), Error> {
    if rows.iter().all(|(_, row)| row.is_none()) {
        return Err(Error::Input(format!(
            "no image succeeded, so {} was not written",
            path.display()
        )));
    }
    let io_error = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let failed = vec![f32::NAN; embedding_dim];
    let values: Vec<f32> = rows
        .iter()
        .flat_map(|(_, row)| row.as_deref().unwrap_or(&failed).iter().copied())
        .collect();
    let shape = [rows.len(), embedding_dim];
    let images: Vec<String> = rows.iter().map(|(p, _)| p.display().to_string()).collect();
    let ok: Vec<bool> = rows.iter().map(|(_, row)| row.is_some()).collect();
    match EmbeddingFile::of(path)? {
        EmbeddingFile::Npy => {
            let mut bytes = Vec::new();
            let mut writer = npyz::WriteOptions::new()
                .default_dtype()
                .shape(&[shape[0] as u64, shape[1] as u64])
                .writer(&mut bytes)
                .begin_nd()
                .map_err(io_error)?;
            writer.extend(values).map_err(io_error)?;
            writer.finish().map_err(io_error)?;
            let sidecar = npy_sidecar(path);
            let rows = json!({"images": images, "ok": ok}).to_string();
            write_atomically(&sidecar, rows.as_bytes()).map_err(|source| Error::Io {
                path: sidecar.clone(),
                source,
            })?;
            write_atomically(path, &bytes).map_err(io_error)
        }
        EmbeddingFile::Safetensors => {
            let bytes: Vec<u8> = bytemuck_bytes(&values);
            let view = safetensors::tensor::TensorView::new(
                safetensors::Dtype::F32,
                shape.to_vec(),
                &bytes,
            )
            .map_err(|e| Error::Input(format!("{}: {e}", path.display())))?;
            let metadata = HashMap::from([
                ("images".to_string(), json!(images).to_string()),
                ("ok".to_string(), json!(ok).to_string()),
            ]);
            let bytes = safetensors::serialize([("embeddings", view)], Some(metadata))
                .map_err(|e| Error::Input(format!("{}: cannot write: {e}", path.display())))?;
            write_atomically(path, &bytes).map_err(io_error)
        }
    }
}

/// The file beside `FILE.npy` that names its rows: `FILE.npy.json`.
fn npy_sidecar(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".json");
    PathBuf::from(name)
}

/// Fails before any work, as a usage error, where a file cannot be created at `path`: a
/// folder, a missing parent, or a folder this process cannot write in (tried by creating and
/// removing a temporary file there).
pub fn check_writable(path: &Path) -> Result<(), Error> {
    let refuse = |problem: String| {
        Err(Error::Argument(format!(
            "--output {}: {problem}",
            path.display()
        )))
    };
    if path.is_dir() {
        return refuse("is a folder".into());
    }
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if !parent.is_dir() {
        return refuse("is in a folder that does not exist".into());
    }
    check_can_create(&temporary_beside(path)).or_else(|e| refuse(format!("cannot be written: {e}")))
}

/// Creates and removes the file `probe`: whether its folder can be written in.
pub fn check_can_create(probe: &Path) -> std::io::Result<()> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(probe)?;
    std::fs::remove_file(probe)
}

fn bytemuck_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}
