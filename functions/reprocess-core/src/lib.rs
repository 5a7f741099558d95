//! The Reprocess service's core, shared by every function: the domain (names, configuration,
//! queue items, the queueing service and the worker), its ports, and their AWS adapters.
//!
//! The domain sees AWS only through the traits in [`ports`]; [`adapters`] implement them over
//! DynamoDB and SQS, and [`memory`] in memory for tests. [`api`] holds the little that the HTTP
//! functions share and nothing of the domain.

pub mod adapters;
pub mod admin;
#[cfg(feature = "http")]
pub mod api;
pub mod config;
#[cfg(test)]
mod domain_tests;
pub mod error;
pub mod expansion;
#[cfg(any(test, feature = "test-support"))]
pub mod memory;
pub mod modules;
pub mod names;
pub mod ports;
pub mod queue;
pub mod runtime;
pub mod service;
pub mod worker;

pub use error::{BackendError, Error};
pub use names::{ItemRef, Key, Scope, StorageUnit};
pub use ports::Ports;
