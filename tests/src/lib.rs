//! The verdict tests' harness ([`bpf`]: the filter's own programs loaded
//! from filter-ctl's embedded object and driven through BPF_PROG_TEST_RUN),
//! what the fault and upgrade tests share ([`faults`]), the model check
//! ([`check`]) and what the coverage guard reads from the test files
//! ([`coverage`]).
//! The end-to-end tests use the `harness` crate (namespaces, the lab, the
//! floods, the filter-ctl driver); the tests themselves are in `tests/`.

pub mod bpf;
pub mod check;
pub mod coverage;
pub mod faults;
