//! tandem: one set of numbers IT and operations both trust.
//!
//! Data flows one way: source API → connector (`tandem-connectors`) → [`store`] (the lake of Delta tables)
//! → [`pipeline`] (metric tables) → [`report`] and [`export`]. A lower floor never imports a
//! higher one.

pub mod alloc;
pub mod atomic;
pub mod cli;
pub mod commands;
pub mod config;
pub mod export;
pub mod metric;
pub mod pipeline;
pub mod report;
pub mod store;
pub mod sync;
