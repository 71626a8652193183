//! The subcommands of the `xception` binary.

pub mod bench;
pub mod explain;
pub mod info;
pub mod inputs;
pub mod run;
