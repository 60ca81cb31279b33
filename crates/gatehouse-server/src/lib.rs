//! Gatehouse: a self-hosted private npm registry and package firewall.
//! See ARCHITECTURE.md for the map of the code.

pub mod admission;
pub mod app;
pub mod auth;
pub mod blob_journal;
pub mod cli;
pub mod config;
pub mod http;
pub mod npm;
pub mod offload;
pub mod packument_cache;
pub mod registry;
pub mod store;
pub mod upstream;
