//! Integration tests: one binary (faster to link), one module per area.

mod bad_input;
mod cli;
mod durability;
mod protocol;
mod support;
