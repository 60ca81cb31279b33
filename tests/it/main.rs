//! Integration tests: one binary (faster to link), one module per area.

mod access;
mod cli;
mod client_auth;
mod clients;
mod promotion;
mod protocol;
mod support;
mod upstream;
