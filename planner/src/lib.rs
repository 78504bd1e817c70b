//! The accelerator planner: which accelerators, how many, in which TP x PP layout.
//!
//! Pure functions over plain data, so the CLI (`deepseek-operator plan`) and the
//! controller give identical answers and everything here is unit- and property-tested.

mod types;

pub use types::{Quantization, Vendor};
