//! tandem-connectors: canonical records, the connector contract, the shared HTTP client and one
//! connector per source. Knows nothing of polars, Parquet or reports.

pub mod model;
