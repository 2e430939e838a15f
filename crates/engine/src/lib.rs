//! The query engine: the data contract's tables registered in an Apache DataFusion
//! [`SessionContext`], so that every later stage — and every analyst, through
//! `distillguard sql` — reads the logs with SQL.
//!
//! Tables are streamed from their files on every scan ([`table::ContractTable`]); nothing
//! is materialised, so memory stays bounded by the batch size whatever the input size.
//!
//! **Architecture invariant:** the engine knows the contract's tables and how to query them;
//! it does not print, parse command lines or decide verdicts.

pub mod session;
pub mod summary;
pub mod table;

pub use session::{Engine, EngineError, Inputs};
