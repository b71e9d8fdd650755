//! A directory on the bpf filesystem (a filter-ctl `--pin-root`), removed
//! with everything in it on drop: unpinning links detaches their programs.

use std::{
    fs,
    path::{Path, PathBuf},
};

use crate::names::{BPFFS, unique_name};

#[derive(Debug)]
pub struct BpffsDir {
    path: PathBuf,
}

impl BpffsDir {
    /// A fresh path `/sys/fs/bpf/<unique_name(prefix)>`; not created here:
    /// filter-ctl creates its pin root itself.
    pub fn unique(prefix: &str) -> Self {
        Self {
            path: Path::new(BPFFS).join(unique_name(prefix)),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for BpffsDir {
    fn drop(&mut self) {
        if self.path.exists() {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}
