//! placeholder
use std::path::Path;
use crate::error::CliError;
pub fn run(_: &Path, _: &str, _: u16, _: &str, _: bool) -> Result<(), CliError> { Err(CliError::internal("todo")) }
