//! Load-balancing algorithms, one file each, dispatched by `match` on the table's
//! `Balance` enum as more arrive.

mod round_robin;

pub use round_robin::SmoothWeighted;
