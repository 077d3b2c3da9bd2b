//! Sticky sessions by cookie (see `table/sticky.rs` for the settings).

mod keys;

pub use keys::SessionKeys;
