//! The firewall, pure (no IO but reading an advisory import, no async runtime, no SQL):
//! what a registry's policy says, what the advisory data says, and the one evaluator
//! that decides, per version, whether it is served.

pub mod advisory;
pub mod audit;
pub mod document;
pub mod evaluate;
pub mod license;
pub mod range;
pub mod severity;
