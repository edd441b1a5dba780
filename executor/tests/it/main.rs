//! Integration tests of the executor (one test binary, see STYLE.md).

mod common;
mod differential;
mod workloads;
