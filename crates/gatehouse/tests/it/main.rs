//! Integration tests: one binary (faster to link), one module per area.

mod access;
mod api_contract;
mod bad_input;
mod cli;
mod client_auth;
mod client_proxy;
mod clients;
mod durability;
mod firewall;
mod firewall_api;
mod firewall_clients;
mod import;
mod limits;
mod npm_commands;
mod promotion;
mod protocol;
mod provenance;
mod sigstore_fake;
mod soak;
mod support;
mod trusted_publishing;
mod upstream;
mod web_admin;
mod web_app;
mod web_browser;
mod web_policy;
