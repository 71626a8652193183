//! `fit` (a new head on labelled folders) and `evaluate` (a model on labelled folders), with
//! their shared report: accuracy, per-class precision and recall, confusion matrix.

use std::path::PathBuf;

use clap::Args;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde_json::json;
use xception_wgpu::files::write_atomically;
use xception_wgpu::fit::{fit_head, FitOptions};
use xception_wgpu::Error;

use super::dataset::{self, Dataset, Ran};
use super::run::check_writable;
use crate::ModelArgs;

/// Options of `fit`.
#[derive(Args)]
pub struct FitArgs {
    /// Folder with one subfolder of images per class; the subfolders' names are the labels.
    dir: PathBuf,
    /// The head file to write (safetensors: the dense layers, labels and backbone).
    #[arg(long, value_name = "FILE")]
    output: PathBuf,
    /// Share of each class's images held out to validate on.
    #[arg(long, default_value_t = 0.2)]
    val_split: f64,
    /// Most L-BFGS iterations over the whole training set.
    #[arg(long, default_value_t = 300)]
    epochs: u64,
    /// Seed of the validation split and of the hidden layer's initial weights.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Units of a hidden ReLU layer (100: the bundled model's head); 0 fits softmax
    /// regression.
    #[arg(long, default_value_t = 0)]
    hidden: usize,
    /// L2 penalty on the head's kernels.
    #[arg(long, default_value_t = 1e-3)]
    l2: f64,
    #[command(flatten)]
    model: ModelArgs,
}

/// Options of `evaluate`.
#[derive(Args)]
pub struct EvaluateArgs {
    /// Folder with one subfolder of images per class, named by labels of the model.
    dir: PathBuf,
    /// Print the report as one JSON object.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    model: ModelArgs,
}

/// `fit`: embeds every image, fits a head and writes it; returns whether every image was used.
pub fn fit(args: &FitArgs) -> Result<bool, Error> {
    if !(0.0..1.0).contains(&args.val_split) {
        return Err(Error::Argument(format!(
            "--val-split {} is not in [0, 1)",
            args.val_split
        )));
    }
    if args.output.extension().and_then(|e| e.to_str()) != Some("safetensors") {
        return Err(Error::Argument(format!(
            "--output {}: a head is written as .safetensors",
            args.output.display()
        )));
    }
    if args.epochs == 0 {
        return Err(Error::Argument("--epochs must be at least 1".into()));
    }
    check_writable(&args.output)?;
    let data = dataset::scan(&args.dir, 2)?;
    let model = args.model.load()?;
    let ran = dataset::run(&model, &data, model.info().input_size);
    let all_used = ran.len() == data.images.len();
    for (class, label) in data.labels.iter().enumerate() {
        if !ran.iter().any(|r| data.images[r.image].1 == class) {
            return Err(Error::Input(format!(
                "{}: class {label} has no usable images",
                args.dir.display()
            )));
        }
    }
    let (train, validation) = split(&data, &ran, args.val_split, args.seed);
    let embeddings: Vec<f32> = train.iter().flat_map(|r| r.embedding.clone()).collect();
    let targets: Vec<usize> = train.iter().map(|r| data.images[r.image].1).collect();
    let options = FitOptions {
        hidden: args.hidden,
        l2: args.l2,
        iterations: args.epochs,
        seed: args.seed,
    };
    let head = fit_head(
        &embeddings,
        model.embedding_dim(),
        &targets,
        data.labels.clone(),
        options,
    )?;
    let predict = |set: &[&Ran]| -> Vec<(usize, usize)> {
        set.iter()
            .map(|r| (data.images[r.image].1, head.predict(&r.embedding)))
            .collect()
    };
    let fitted = predict(&train);
    outln!(
        "fitted on {} images ({} classes), loss {:.4}: training accuracy {:.2}%",
        train.len(),
        data.labels.len(),
        head.loss,
        accuracy(&fitted) * 100.0
    );
    let (shown, name) = if validation.is_empty() {
        (fitted, "training")
    } else {
        let checked = predict(&validation);
        outln!(
            "validation accuracy {:.2}% on {} held-out images",
            accuracy(&checked) * 100.0,
            validation.len()
        );
        (checked, "validation")
    };
    outln!("{name} confusion matrix (rows: true class, columns: predicted):");
    out!("{}", confusion_table(&data.labels, &data.labels, &shown));
    let bytes = head.to_safetensors(&model.weights().backbone_fingerprint())?;
    write_atomically(&args.output, &bytes).map_err(|source| Error::Io {
        path: args.output.clone(),
        source,
    })?;
    outln!("wrote {}", args.output.display());
    Ok(all_used)
}

/// `evaluate`: runs the model on every image and prints the report; returns whether every
/// image could be run.
pub fn evaluate(args: &EvaluateArgs) -> Result<bool, Error> {
    let data = dataset::scan(&args.dir, 1)?;
    let model = args.model.load()?;
    let labels = &model.info().labels;
    if labels.is_empty() {
        return Err(Error::NoHead);
    }
    let truth: Vec<usize> = data
        .labels
        .iter()
        .map(|folder| {
            labels.iter().position(|l| l == folder).ok_or_else(|| {
                Error::Input(format!(
                    "{}: folder {folder} is not one of the model's classes ({})",
                    args.dir.display(),
                    labels.join(", ")
                ))
            })
        })
        .collect::<Result<_, _>>()?;
    let ran = dataset::run(&model, &data, model.info().input_size);
    let pairs: Vec<(usize, usize)> = ran
        .iter()
        .map(|r| {
            let predicted = (0..r.logits.len())
                .max_by(|&a, &b| r.logits[a].total_cmp(&r.logits[b]))
                .expect("a head has classes");
            (truth[data.images[r.image].1], predicted)
        })
        .collect();
    let classes: Vec<_> = data
        .labels
        .iter()
        .zip(&truth)
        .map(|(label, &c)| {
            let count = |f: &dyn Fn(&(usize, usize)) -> bool| pairs.iter().filter(|p| f(p)).count();
            let hits = count(&|&(t, p)| t == c && p == c);
            let ratio = |n: usize| {
                if n == 0 {
                    None
                } else {
                    Some(hits as f64 / n as f64)
                }
            };
            json!({
                "label": label,
                "images": count(&|&(t, _)| t == c),
                "precision": ratio(count(&|&(_, p)| p == c)),
                "recall": ratio(count(&|&(t, _)| t == c)),
            })
        })
        .collect();
    if args.json {
        let rows: Vec<Vec<usize>> = truth
            .iter()
            .map(|&t| {
                (0..labels.len())
                    .map(|p| pairs.iter().filter(|&&pair| pair == (t, p)).count())
                    .collect()
            })
            .collect();
        let report = json!({
            "images": pairs.len(),
            "accuracy": accuracy(&pairs),
            "classes": classes,
            "confusion": {"rows": data.labels, "columns": labels, "counts": rows},
        });
        outln!("{report}");
    } else {
        outln!(
            "accuracy {:.2}% on {} images",
            accuracy(&pairs) * 100.0,
            pairs.len()
        );
        for class in &classes {
            let percent = |v: &serde_json::Value| {
                v.as_f64()
                    .map_or("-".to_string(), |v| format!("{:.2}%", v * 100.0))
            };
            outln!(
                "{:>12}: {} images, precision {}, recall {}",
                class["label"].as_str().unwrap_or_default(),
                class["images"],
                percent(&class["precision"]),
                percent(&class["recall"])
            );
        }
        outln!("confusion matrix (rows: true class, columns: predicted):");
        let rows: Vec<(usize, usize)> = pairs
            .iter()
            .map(|&(t, p)| (truth.iter().position(|&c| c == t).expect("a folder"), p))
            .collect();
        out!("{}", confusion_table(&data.labels, labels, &rows));
    }
    Ok(ran.len() == data.images.len())
}

/// Splits the images that ran into training and validation sets: `share` of each class,
/// shuffled with `seed`, is held out, keeping at least one image of each class for training.
fn split<'a>(
    data: &Dataset,
    ran: &'a [Ran],
    share: f64,
    seed: u64,
) -> (Vec<&'a Ran>, Vec<&'a Ran>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut train, mut validation) = (Vec::new(), Vec::new());
    for class in 0..data.labels.len() {
        let mut members: Vec<&Ran> = ran
            .iter()
            .filter(|r| data.images[r.image].1 == class)
            .collect();
        members.shuffle(&mut rng);
        let held = ((members.len() as f64 * share).floor() as usize).min(members.len() - 1);
        validation.extend(members.drain(..held));
        train.extend(members);
    }
    (train, validation)
}

/// The share of `(true, predicted)` pairs that agree.
fn accuracy(pairs: &[(usize, usize)]) -> f64 {
    let right = pairs.iter().filter(|(t, p)| t == p).count();
    right as f64 / pairs.len().max(1) as f64
}

/// A text table counting `(row, column)` pairs, rows and columns named.
fn confusion_table(rows: &[String], columns: &[String], pairs: &[(usize, usize)]) -> String {
    let width = columns
        .iter()
        .chain(rows)
        .map(|l| l.len())
        .max()
        .unwrap_or(0)
        .max(5);
    let mut table = format!("{:>width$}", "");
    for column in columns {
        table += &format!(" {column:>width$}");
    }
    table.push('\n');
    for (r, row) in rows.iter().enumerate() {
        table += &format!("{row:>width$}");
        for c in 0..columns.len() {
            let n = pairs.iter().filter(|&&pair| pair == (r, c)).count();
            table += &format!(" {n:>width$}");
        }
        table.push('\n');
    }
    table
}
