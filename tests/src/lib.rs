//! Test support shared by the verdict tests, the end-to-end tests and the lab:
//! crafted packets, network namespaces, the lab topology and a filter-ctl driver.

pub mod bench;
pub mod bpf;
pub mod ctl;
pub mod flood;
pub mod http;
pub mod lab;
pub mod netns;
pub mod packet;
pub mod synflood;
