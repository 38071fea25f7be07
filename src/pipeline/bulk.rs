//! The bulk writer of large tables under the name the benchmarks know it by: it is the store
//! codec's [`TableWriter`], which writes a table's columns from the same declaration as every
//! other file of the table. Nothing else lives here.

pub use crate::store::codec::{ROW_GROUP_ROWS, TableWriter};
/// Every canonical table can be written in bulk: its declaration gives the columns.
pub use tandem_connectors::model::Table as Columnar;
