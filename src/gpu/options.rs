//! How the GPU computes: the precision of weights and activations, and the user's choice of
//! convolution kernels.

use super::kernels::Element;
use crate::error::{Error, Result};

/// How convolution weights are stored, and computed where a kernel has a float16 variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    /// float32 everywhere (the default).
    #[default]
    F32,
    /// GEMM weights stored as float16, and activations too where the device has
    /// `SHADER_F16` (see [`activation_element`]). The tiled and cooperative-matrix kernels
    /// also multiply in float16; every kernel sums in float32.
    F16,
}

impl Precision {
    /// Every precision by the name the command line and the bindings give it.
    pub const NAMES: [(&'static str, Precision); 2] =
        [("f32", Precision::F32), ("f16", Precision::F16)];
}

impl std::str::FromStr for Precision {
    type Err = Error;

    /// Parses a name of [`Precision::NAMES`].
    fn from_str(name: &str) -> Result<Self> {
        from_name("precision", &Self::NAMES, name)
    }
}

/// The value named `name` in `names`, or an error listing the names of `what`.
pub(crate) fn from_name<T: Copy>(what: &str, names: &[(&str, T)], name: &str) -> Result<T> {
    names
        .iter()
        .find(|(n, _)| *n == name)
        .map(|&(_, value)| value)
        .ok_or_else(|| {
            let known: Vec<&str> = names.iter().map(|(n, _)| *n).collect();
            Error::Argument(format!(
                "unknown {what} {name:?}; one of: {}",
                known.join(", ")
            ))
        })
}

/// The element type of the activations at `precision` on `device`: float16 at
/// [`Precision::F16`] where the device has `SHADER_F16`, float32 otherwise.
pub fn activation_element(precision: Precision, device: &wgpu::Device) -> Element {
    if precision == Precision::F16 && device.features().contains(wgpu::Features::SHADER_F16) {
        Element::F16
    } else {
        Element::F32
    }
}

/// Which convolution kernels to use: [`KernelChoice::Auto`] picks per adapter by a rule,
/// [`KernelChoice::Tuned`] by measuring; the others ask for one variant, which runs every
/// convolution it can (the rest fall back to the portable kernels), and fail at load where
/// the adapter cannot run it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KernelChoice {
    /// The subgroup GEMM on CPU drivers that have subgroups of 8 or more; on GPUs the
    /// cooperative-matrix GEMM (float16, where offered), else the tiled GEMM (its float16
    /// variant at [`Precision::F16`] where the device has float16 arithmetic); otherwise the
    /// portable kernels.
    #[default]
    Auto,
    /// The portable pointwise kernel and the direct convolution.
    Portable,
    /// The subgroup GEMM.
    Subgroup,
    /// The tiled GEMM (float16 at [`Precision::F16`] where the device can).
    Tiled,
    /// The cooperative-matrix GEMM (needs [`Precision::F16`]).
    Coopmat,
    /// For each convolution shape, the variant measured fastest on this adapter among those
    /// that pass their parity check, timed once and remembered in the kernel cache (see
    /// [`crate::gpu::tune`]).
    Tuned,
}

impl KernelChoice {
    /// Every choice by the name the command line and the bindings give it.
    pub const NAMES: [(&'static str, KernelChoice); 6] = [
        ("auto", KernelChoice::Auto),
        ("portable", KernelChoice::Portable),
        ("subgroup", KernelChoice::Subgroup),
        ("tiled", KernelChoice::Tiled),
        ("coopmat", KernelChoice::Coopmat),
        ("tuned", KernelChoice::Tuned),
    ];
}

impl std::str::FromStr for KernelChoice {
    type Err = Error;

    /// Parses a name of [`KernelChoice::NAMES`].
    fn from_str(name: &str) -> Result<Self> {
        from_name("convolution kernel", &Self::NAMES, name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_to_their_values_and_unknown_names_list_the_known_ones() {
        for (name, choice) in KernelChoice::NAMES {
            assert_eq!(name.parse::<KernelChoice>().unwrap(), choice);
        }
        for (name, precision) in Precision::NAMES {
            assert_eq!(name.parse::<Precision>().unwrap(), precision);
        }
        let error = "fast".parse::<KernelChoice>().unwrap_err().to_string();
        assert!(
            error.contains("\"fast\"")
                && error.contains("auto, portable, subgroup, tiled, coopmat, tuned"),
            "{error}"
        );
        let error = "f64".parse::<Precision>().unwrap_err().to_string();
        assert!(error.contains("one of: f32, f16"), "{error}");
        for (name, kind) in crate::BackendKind::NAMES {
            assert_eq!(name.parse::<crate::BackendKind>().unwrap(), kind);
            assert_eq!(kind.name(), name);
        }
        let error = "tpu".parse::<crate::BackendKind>().unwrap_err().to_string();
        assert!(
            error.contains("one of: auto, gpu, cpu, reference"),
            "{error}"
        );
    }
}
