//! Target platforms: what `--platform linux/amd64,linux/arm64` means for cargo and for
//! the image config.

use anyhow::{Result, bail};
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum Platform {
    Amd64,
    Arm64,
}

impl Platform {
    /// The platform of the machine xtask runs on (the original build script asked `uname -m`).
    pub fn host() -> Result<Platform> {
        match std::env::consts::ARCH {
            "x86_64" => Ok(Platform::Amd64),
            "aarch64" => Ok(Platform::Arm64),
            other => bail!("images are built for linux/amd64 and linux/arm64; this machine is {other}"),
        }
    }

    /// `linux/amd64`, as Docker spells it.
    pub fn docker(self) -> &'static str {
        match self {
            Platform::Amd64 => "linux/amd64",
            Platform::Arm64 => "linux/arm64",
        }
    }

    /// The image config's `architecture`.
    pub fn arch(self) -> &'static str {
        match self {
            Platform::Amd64 => "amd64",
            Platform::Arm64 => "arm64",
        }
    }

    /// The image config's `variant` (arm64 images say v8, as Docker's own do).
    pub fn variant(self) -> Option<&'static str> {
        match self {
            Platform::Amd64 => None,
            Platform::Arm64 => Some("v8"),
        }
    }

    /// The Rust target the binaries are built for: glibc, linked statically (crt-static).
    pub fn rust_target(self) -> &'static str {
        match self {
            Platform::Amd64 => "x86_64-unknown-linux-gnu",
            Platform::Arm64 => "aarch64-unknown-linux-gnu",
        }
    }

    /// Environment for cargo when this target is not the host's: Debian's cross gcc links.
    pub fn linker_env(self, host: Platform) -> Option<(String, String)> {
        if self == host {
            return None;
        }
        let (var, gcc) = match self {
            Platform::Amd64 => ("X86_64_UNKNOWN_LINUX_GNU", "x86_64-linux-gnu-gcc"),
            Platform::Arm64 => ("AARCH64_UNKNOWN_LINUX_GNU", "aarch64-linux-gnu-gcc"),
        };
        Some((format!("CARGO_TARGET_{var}_LINKER"), gcc.to_string()))
    }

    /// Reads one platform: `linux/amd64`, `amd64`, `x86_64`, `linux/arm64`, `arm64`,
    /// `aarch64`, `linux/arm64/v8`.
    pub fn parse(s: &str) -> Result<Platform> {
        let s = s.trim();
        let arch = s.strip_prefix("linux/").unwrap_or(s);
        match arch {
            "amd64" | "x86_64" => Ok(Platform::Amd64),
            "arm64" | "arm64/v8" | "aarch64" => Ok(Platform::Arm64),
            _ => bail!("unknown platform `{s}`: use linux/amd64, linux/arm64 or both, comma-separated"),
        }
    }

    /// Reads `--platform`: a comma-separated list; duplicates collapse; host first.
    pub fn parse_list(s: &str, host: Platform) -> Result<Vec<Platform>> {
        let mut list = Vec::new();
        for part in s.split(',').filter(|p| !p.trim().is_empty()) {
            let p = Platform::parse(part)?;
            if !list.contains(&p) {
                list.push(p);
            }
        }
        if list.is_empty() {
            bail!("--platform is empty: use linux/amd64, linux/arm64 or both, comma-separated");
        }
        list.sort_by_key(|p| (*p != host, *p));
        Ok(list)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_docker_and_uname_spellings() {
        for s in ["linux/amd64", "amd64", "x86_64", " linux/amd64 "] {
            assert_eq!(Platform::parse(s).unwrap(), Platform::Amd64, "{s}");
        }
        for s in ["linux/arm64", "arm64", "aarch64", "linux/arm64/v8"] {
            assert_eq!(Platform::parse(s).unwrap(), Platform::Arm64, "{s}");
        }
        let err = Platform::parse("linux/s390x").unwrap_err().to_string();
        assert!(err.contains("linux/s390x") && err.contains("linux/amd64"), "{err}");
    }

    #[test]
    fn lists_put_the_host_first_and_drop_duplicates() {
        let both = Platform::parse_list("linux/arm64,linux/amd64,amd64", Platform::Amd64).unwrap();
        assert_eq!(both, [Platform::Amd64, Platform::Arm64]);
        let both = Platform::parse_list("linux/amd64,linux/arm64", Platform::Arm64).unwrap();
        assert_eq!(both, [Platform::Arm64, Platform::Amd64]);
        assert!(Platform::parse_list(" , ", Platform::Amd64).is_err());
    }

    #[test]
    fn cross_targets_get_debians_cross_linker() {
        assert_eq!(Platform::Amd64.linker_env(Platform::Amd64), None);
        assert_eq!(
            Platform::Arm64.linker_env(Platform::Amd64),
            Some(("CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER".into(), "aarch64-linux-gnu-gcc".into()))
        );
        assert_eq!(Platform::Amd64.linker_env(Platform::Arm64).unwrap().1, "x86_64-linux-gnu-gcc");
        assert_eq!(Platform::Arm64.rust_target(), "aarch64-unknown-linux-gnu");
        assert_eq!((Platform::Arm64.arch(), Platform::Arm64.variant()), ("arm64", Some("v8")));
    }
}
