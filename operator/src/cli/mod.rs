//! Command-line front ends. Each returns the text to print or a one-line error, so
//! `main` alone decides exit codes and nothing here calls `process::exit`.

pub mod crd;
pub mod plan;
pub mod render;
pub mod run;
