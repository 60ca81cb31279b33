//! Integration tests: one binary (faster to link), one module per area.

mod access;
mod cli;
mod client_proxy;
mod clients;
mod protocol;
mod support;
mod upstream;
