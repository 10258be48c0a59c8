//! `cete version`: print the version of this binary.

use std::process::ExitCode;

use super::emit;

pub fn run() -> anyhow::Result<ExitCode> {
    emit(concat!("cete ", env!("CARGO_PKG_VERSION"), "\n").as_bytes())?;
    Ok(ExitCode::SUCCESS)
}
