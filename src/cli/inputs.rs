//! Turning command-line arguments into a list of image files.

use std::io::BufRead;
use std::path::{Path, PathBuf};

/// File extensions taken from folders (case-insensitive).
const IMAGE_EXTENSIONS: [&str; 3] = ["png", "jpg", "jpeg"];

/// Whether `path` has an image file extension (`.png`, `.jpg`, `.jpeg`).
pub fn is_image(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(e)))
}

fn walk(dir: &Path, found: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    entries.sort();
    for path in entries {
        if path.is_dir() {
            walk(&path, found)?;
        } else if is_image(&path) {
            found.push(path);
        }
    }
    Ok(())
}

/// Expands `args`: folders recursively into their image files (sorted), `-` into the paths
/// listed on standard input, one per line; other paths are kept as they are, so that a
/// missing file is reported when it is read. Unreadable folders are reported and skipped;
/// returns the paths and whether every argument could be expanded.
pub fn expand(args: &[PathBuf]) -> (Vec<PathBuf>, bool) {
    let mut paths = Vec::new();
    let mut ok = true;
    for arg in args {
        if arg.as_os_str() == "-" {
            for line in std::io::stdin().lock().lines() {
                match line {
                    Ok(line) if !line.trim().is_empty() => paths.push(PathBuf::from(line.trim())),
                    Ok(_) => {}
                    Err(e) => {
                        eprintln!("error: reading image paths from standard input: {e}");
                        ok = false;
                        break;
                    }
                }
            }
        } else if arg.is_dir() {
            let before = paths.len();
            if let Err(e) = walk(arg, &mut paths) {
                eprintln!("error: {}: {e}", arg.display());
                ok = false;
            } else if paths.len() == before {
                eprintln!("warning: {}: no .png, .jpg or .jpeg files", arg.display());
            }
        } else {
            paths.push(arg.clone());
        }
    }
    (paths, ok)
}
