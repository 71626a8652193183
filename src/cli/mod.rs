//! The subcommands of the `xception` binary.

pub mod bench;
pub mod check;
pub mod dataset;
pub mod explain;
pub mod fit;
pub mod info;
pub mod inputs;
pub mod run;
pub mod stdout;
