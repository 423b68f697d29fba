//! TODO

pub mod upstream;
