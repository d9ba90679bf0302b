//! `tern mcp expose --http` (placeholder).
use std::os::unix::net::UnixStream;
use std::time::Duration;
use serde_json::Value;
use super::client::{Answer, Rpc};
use crate::error::CliError;

/// An HTTP MCP endpoint.
#[derive(Clone, Debug)]
pub struct Target { pub url: String }
impl Target {
    pub fn parse(url: &str) -> Result<Self, CliError> { Ok(Self { url: url.into() }) }
}
pub struct HttpRpc;
impl HttpRpc { pub fn new(_: Target) -> Self { Self } }
impl Rpc for HttpRpc {
    fn call(&mut self, _: &str, _: Value, _: Duration) -> Result<Answer, CliError> { Err(CliError::internal("todo")) }
    fn notify(&mut self, _: &str, _: Value) -> Result<(), CliError> { Err(CliError::internal("todo")) }
}
pub fn run(_: UnixStream, _: Vec<u8>, _: &Target) {}
