//! Which instruction set the CPU kernels run on: the best this CPU has, or the one the
//! `KD_ISA` environment variable names (`avx512`, `avx2` or `portable`).
//!
//! The matmul's micro-kernel, the packing's transposes and the row kernels' vector
//! width ([`super::vmath`]) all follow [`Isa::active`], so a developer on an AVX-512
//! machine can time the AVX2 path (`KD_ISA=avx2 cargo bench ...`) or the portable one.
//! A program checks the variable once at start with [`Isa::from_env`] and refuses a
//! value it cannot honour; the kernels themselves never fail on it (an unusable value
//! falls back to [`Isa::detect`]).

use std::fmt;
use std::sync::OnceLock;

/// The environment variable that forces an instruction set.
pub const ISA_ENV: &str = "KD_ISA";

/// The instruction sets this build has kernels for, best first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    /// AVX-512F: a 16 × 16 matmul micro-kernel, 16-lane row kernels.
    #[cfg(target_arch = "x86_64")]
    Avx512,
    /// AVX2 + FMA: a 6 × 16 micro-kernel, 8-lane row kernels.
    #[cfg(target_arch = "x86_64")]
    Avx2,
    /// Plain Rust left to the auto-vectoriser at the build's baseline (SSE2 on x86-64).
    Portable,
}

impl Isa {
    /// Every instruction set of this build, best first.
    #[cfg(target_arch = "x86_64")]
    pub const ALL: [Isa; 3] = [Isa::Avx512, Isa::Avx2, Isa::Portable];
    #[cfg(not(target_arch = "x86_64"))]
    pub const ALL: [Isa; 1] = [Isa::Portable];

    /// The name `KD_ISA` takes.
    pub fn name(self) -> &'static str {
        match self {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => "avx512",
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => "avx2",
            Isa::Portable => "portable",
        }
    }

    /// Whether this CPU runs it.
    pub fn supported(self) -> bool {
        match self {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => is_x86_feature_detected!("avx512f"),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"),
            Isa::Portable => true,
        }
    }

    /// The best instruction set this CPU runs.
    pub fn detect() -> Isa {
        Self::ALL
            .into_iter()
            .find(|isa| isa.supported())
            .unwrap_or(Isa::Portable)
    }

    /// What `KD_ISA` asks for, or [`Isa::detect`]'s choice when it is unset or empty;
    /// an unknown name, or one this CPU cannot run, is an error saying so.
    pub fn from_env() -> Result<Isa, IsaError> {
        match std::env::var(ISA_ENV) {
            Ok(value) if !value.is_empty() => Self::parse(&value),
            _ => Ok(Self::detect()),
        }
    }

    /// `name` as an instruction set this CPU runs.
    pub fn parse(name: &str) -> Result<Isa, IsaError> {
        let isa = Self::ALL
            .into_iter()
            .find(|isa| isa.name() == name)
            .ok_or_else(|| IsaError::Unknown(name.to_string()))?;
        if isa.supported() {
            Ok(isa)
        } else {
            Err(IsaError::Unsupported(isa))
        }
    }

    /// The instruction set the kernels use in this process: [`Isa::from_env`], read
    /// once, falling back to [`Isa::detect`] when that is an error.
    pub fn active() -> Isa {
        static ACTIVE: OnceLock<Isa> = OnceLock::new();
        *ACTIVE.get_or_init(|| Self::from_env().unwrap_or_else(|_| Self::detect()))
    }
}

impl fmt::Display for Isa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A `KD_ISA` value the kernels cannot honour.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IsaError {
    /// Not the name of an instruction set of this build.
    Unknown(String),
    /// One this CPU does not have.
    Unsupported(Isa),
}

impl fmt::Display for IsaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = Isa::ALL.iter().map(|isa| isa.name()).collect();
        match self {
            IsaError::Unknown(name) => write!(
                f,
                "{ISA_ENV}={name:?} is not an instruction set of this build (one of: {})",
                names.join(", ")
            ),
            IsaError::Unsupported(isa) => {
                let usable: Vec<&str> = Isa::ALL
                    .iter()
                    .filter(|isa| isa.supported())
                    .map(|isa| isa.name())
                    .collect();
                write!(
                    f,
                    "{ISA_ENV}={isa}: this CPU does not have it (it runs: {})",
                    usable.join(", ")
                )
            }
        }
    }
}

impl std::error::Error for IsaError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back_and_others_are_refused() {
        for isa in Isa::ALL.into_iter().filter(|isa| isa.supported()) {
            assert_eq!(Isa::parse(isa.name()), Ok(isa));
        }
        let err = Isa::parse("sse9").unwrap_err().to_string();
        assert!(
            err.contains("KD_ISA=\"sse9\"") && err.contains("portable"),
            "{err}"
        );
        for isa in Isa::ALL.into_iter().filter(|isa| !isa.supported()) {
            let err = Isa::parse(isa.name()).unwrap_err().to_string();
            assert!(err.contains("this CPU does not have it"), "{err}");
        }
    }

    #[test]
    fn the_best_supported_is_detected() {
        let best = Isa::detect();
        assert!(best.supported());
        assert!(Isa::ALL
            .into_iter()
            .take_while(|&isa| isa != best)
            .all(|isa| !isa.supported()));
    }
}
