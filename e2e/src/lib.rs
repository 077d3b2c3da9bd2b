//! Test support for the black-box tests in `tests/`: build and start the real
//! `sluice-proxy` binary, run in-process backends and clients on 127.0.0.1.
//! The `controller_*` tests start the real `sluice-controller` against a real
//! Kubernetes API server (see `cluster` for how it is found).
//!
//! Each proxy gets a temporary directory (table file, stderr log, stdout) that
//! is removed afterwards; set `SLUICE_E2E_KEEP=1` to keep it. A failing test
//! prints the proxy's log.
//!
//! This is test-support code: a failed expectation here should fail the test
//! loudly, so `unwrap`/`expect` are allowed like in the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod apiserver;
pub mod backend;
pub mod backend_process;
pub mod balancing;
pub mod binary;
pub mod client;
pub mod cluster;
pub mod config_file;
pub mod controller;
pub mod databases;
pub mod handshakes;
pub mod haproxy;
pub mod health;
pub mod k8s;
pub mod load;
pub mod passthrough;
pub mod pattern;
pub mod process;
pub mod raw;
pub mod sticky;
pub mod tcp;
pub mod tls;
pub mod tls_backend;
pub mod tls_client;
pub mod tools;
pub mod traffic;
pub mod util;
pub mod ws;

pub use backend::Backend;
pub use backend_process::BackendProcess;
pub use client::{HttpClient, Reply};
pub use cluster::Cluster;
pub use config_file::{Layout, forward_all};
pub use controller::{ControllerOptions, ControllerProcess};
pub use process::{Options, ProxyProcess};
pub use util::{eventually, free_addr};
