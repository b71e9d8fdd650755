//! What filter-ctl takes and prints, apart from the types the kernel
//! shares (filter-common): [`settings`], the one table of run-time settings
//! that `filter-ctl set`, `config`, `apply`, TOML files, `set --help` and the
//! man page are made from, and [`report`], the JSON that `--json` prints and
//! the tests, the benchmark and the lab read back. filter-ctl's build embeds
//! the eBPF object, which depends on filter-common alone: a help string
//! changed here never rebuilds it.

pub mod report;
pub mod settings;
