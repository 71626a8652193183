//! The crate's error type.

use std::path::PathBuf;

/// Everything that can go wrong when loading weights, reading images or running the network.
#[derive(thiserror::Error)]
pub enum Error {
    /// A file could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file that failed.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// A weights file is malformed, incomplete or does not describe an Xception model.
    #[error("{origin}: {problem}")]
    Weights {
        /// Where the weights came from (a path, or a description of an in-memory buffer).
        origin: String,
        /// What is wrong with them.
        problem: String,
    },
    /// An image could not be decoded or is unusable as network input.
    #[error("{}: {problem}", path.display())]
    Image {
        /// The image file.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// An input tensor has a shape the network cannot run.
    #[error("invalid input: {0}")]
    Input(String),
    /// An argument is invalid: an unknown name, a count out of range, an output that cannot
    /// be written. The command line exits with status 2 on it, as on its own usage errors.
    #[error("invalid argument: {0}")]
    Argument(String),
    /// The model has no classification head, so only embeddings are available.
    #[error("this model has no classification head: only `embed` is available")]
    NoHead,
    /// No suitable GPU adapter was found.
    #[error("no usable GPU adapter: {0}")]
    NoAdapter(String),
    /// The GPU device reported an error.
    #[error("GPU error: {0}")]
    Gpu(String),
}

/// The message, as `Display` gives it: `main() -> Result<_, Error>` then prints it readably.
impl std::fmt::Debug for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

/// Shorthand for results with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::Error;

    #[test]
    fn debug_prints_the_message() {
        let error = Error::Image {
            path: "photo.jpg".into(),
            problem: "the file is empty".into(),
        };
        assert_eq!(format!("{error:?}"), "photo.jpg: the file is empty");
    }
}
