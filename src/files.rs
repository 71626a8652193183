//! Files in and out. Reading with a bound: only regular files (a FIFO, device or socket is
//! refused by its metadata, before it is opened), no larger than a cap, and never more bytes
//! read than the cap, even from a file that grows while it is read. Writing whole: through a
//! temporary file beside the target and a rename, so that a reader never sees half a file and
//! a failed write leaves the old one.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Reads `path` whole where it is a regular file of at most `cap` bytes; `refuse` turns what
/// is wrong with it into the caller's error. A file that cannot be read is an [`Error::Io`].
pub(crate) fn read_bounded(
    path: &Path,
    cap: u64,
    refuse: impl Fn(String) -> Error,
) -> Result<Vec<u8>> {
    let io_error = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let metadata = std::fs::metadata(path).map_err(io_error)?;
    if !metadata.is_file() {
        return Err(refuse(
            "not a regular file (a folder, FIFO, device or socket); only files are read".into(),
        ));
    }
    let too_large = |len: u64| {
        refuse(format!(
            "the file is {len} bytes; the largest read is {cap}"
        ))
    };
    if metadata.len() > cap {
        return Err(too_large(metadata.len()));
    }
    let mut bytes = Vec::with_capacity(metadata.len() as usize);
    std::fs::File::open(path)
        .and_then(|file| file.take(cap + 1).read_to_end(&mut bytes))
        .map_err(io_error)?;
    if bytes.len() as u64 > cap {
        return Err(too_large(bytes.len() as u64));
    }
    Ok(bytes)
}

/// Writes `bytes` to `path` (creating its folder where missing) through a temporary file in
/// the same folder and a rename.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let temporary = temporary_beside(path);
    std::fs::write(&temporary, bytes)
        .and_then(|()| std::fs::rename(&temporary, path))
        .inspect_err(|_| {
            let _ = std::fs::remove_file(&temporary);
        })
}

/// The temporary file [`write_atomically`] writes before renaming it to `path`: a hidden
/// name, unique to this process, in `path`'s folder.
pub fn temporary_beside(path: &Path) -> PathBuf {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    path.with_file_name(format!(".{name}.{}.tmp", std::process::id()))
}
