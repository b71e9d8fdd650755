//! The guest's initramfs: busybox, stage 1 (init.sh), the modules the root
//! filesystem needs, uncompressed, in dependency order, and where stage 2 and
//! its plan are. Written as an uncompressed newc cpio archive, the format the
//! kernel unpacks into its rootfs.

use std::{
    collections::{HashMap, HashSet},
    fs::{self, File},
    io::{BufWriter, Write},
    path::Path,
    process::Command,
};

use anyhow::{Context as _, anyhow, bail};
use nix::sys::stat::SFlag;

use super::kernel::Kernel;
use crate::describe;

/// The modules stage 1 loads: the virtio PCI transport, 9p over virtio for
/// the host's root filesystem, overlayfs for the writable layer on top.
/// Their dependencies are found in modules.dep; built-in ones are skipped.
const ROOT_MODULES: &[&str] = &["virtio_pci", "9pnet_virtio", "9p", "overlay"];

/// Writes the initramfs to `path`.
pub fn write(
    path: &Path,
    kernel: &Kernel,
    busybox: &Path,
    stage2: &Path,
    plan: &Path,
) -> anyhow::Result<()> {
    let modules = root_modules(kernel)?;
    let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut cpio = Cpio::new(BufWriter::new(file));
    for dir in ["bin", "dev", "modules"] {
        cpio.dir(dir)?;
    }
    // The kernel opens /dev/console for init's stdin, stdout and stderr.
    cpio.char_device("dev/console", 5, 1)?;
    cpio.file("init", 0o755, include_bytes!("init.sh"))?;
    let busybox = fs::read(busybox).with_context(|| format!("reading {}", busybox.display()))?;
    cpio.file("bin/busybox", 0o755, &busybox)?;
    let mut order = String::new();
    for module in &modules {
        let name = module_file_name(module);
        cpio.file(
            &format!("modules/{name}"),
            0o644,
            &read_module(&kernel.modules_dir().join(module))?,
        )?;
        order.push_str(&name);
        order.push('\n');
    }
    cpio.file("modules/order", 0o644, order.as_bytes())?;
    let env = format!(
        "STAGE2={}\nPLAN={}\n",
        shell_quote(&stage2.to_string_lossy())?,
        shell_quote(&plan.to_string_lossy())?
    );
    cpio.file("stage2.env", 0o644, env.as_bytes())?;
    cpio.finish()
}

/// The modules.dep paths of [`ROOT_MODULES`] and what they depend on, each after
/// its dependencies.
fn root_modules(kernel: &Kernel) -> anyhow::Result<Vec<String>> {
    let dir = kernel.modules_dir();
    let read = |name: &str| {
        let path = dir.join(name);
        fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
    };
    let deps = parse_modules_dep(&read("modules.dep")?);
    let builtin: HashSet<String> = read("modules.builtin")?.lines().map(module_name).collect();
    let by_name: HashMap<String, &str> = deps
        .keys()
        .map(|path| (module_name(path), path.as_str()))
        .collect();
    let mut order = Vec::new();
    for wanted in ROOT_MODULES {
        if builtin.contains(*wanted) {
            continue;
        }
        let path = by_name.get(*wanted).ok_or_else(|| {
            anyhow!(
                "{} {} has no module {wanted}",
                kernel.package,
                kernel.version
            )
        })?;
        visit(path, &deps, &mut order);
    }
    Ok(order)
}

/// Appends `module` to `order` after its dependencies (depth first).
fn visit(module: &str, deps: &HashMap<String, Vec<String>>, order: &mut Vec<String>) {
    if order.iter().any(|m| m == module) {
        return;
    }
    for dep in deps.get(module).into_iter().flatten() {
        visit(dep, deps, order);
    }
    order.push(module.to_owned());
}

/// modules.dep: `kernel/fs/9p/9p.ko: kernel/net/9p/9pnet.ko ...` per line.
fn parse_modules_dep(text: &str) -> HashMap<String, Vec<String>> {
    text.lines()
        .filter_map(|line| line.split_once(':'))
        .map(|(module, deps)| {
            (
                module.trim().to_owned(),
                deps.split_whitespace().map(str::to_owned).collect(),
            )
        })
        .collect()
}

/// `kernel/fs/9p/9p.ko.xz` → `9p`; modprobe treats `-` and `_` alike, so do we.
fn module_name(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    let stem = file.split(".ko").next().unwrap_or(file);
    stem.replace('-', "_")
}

/// The file name a module gets in the initramfs: uncompressed, `.ko`.
fn module_file_name(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    format!("{}.ko", file.split(".ko").next().unwrap_or(file))
}

/// A module's bytes, decompressed: busybox's insmod takes plain ELF.
fn read_module(path: &Path) -> anyhow::Result<Vec<u8>> {
    let name = path.to_string_lossy();
    let decompressor = if name.ends_with(".ko") {
        return fs::read(path).with_context(|| format!("reading {}", path.display()));
    } else if name.ends_with(".ko.xz") {
        "xz"
    } else if name.ends_with(".ko.zst") {
        "zstd"
    } else {
        bail!("{name}: unknown module compression");
    };
    let mut cmd = Command::new(decompressor);
    cmd.arg("-dc").arg(path);
    let out = cmd
        .output()
        .with_context(|| format!("starting {}", describe(&cmd)))?;
    if !out.status.success() {
        bail!(
            "{} failed: {}",
            describe(&cmd),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out.stdout)
}

/// `value` in single quotes for a POSIX shell; paths with quotes or newlines are refused.
fn shell_quote(value: &str) -> anyhow::Result<String> {
    if value.contains(['\'', '\n']) {
        bail!("the path {value:?} cannot be passed to the guest (it has a quote or newline)");
    }
    Ok(format!("'{value}'"))
}

/// A newc ("070701") cpio archive writer: the entries the initramfs needs.
struct Cpio<W: Write> {
    out: W,
    next_inode: u32,
    written: usize,
}

impl<W: Write> Cpio<W> {
    fn new(out: W) -> Self {
        Self {
            out,
            next_inode: 1,
            written: 0,
        }
    }

    fn dir(&mut self, name: &str) -> anyhow::Result<()> {
        self.entry(name, SFlag::S_IFDIR.bits() | 0o755, 0, &[])
    }

    fn file(&mut self, name: &str, permissions: u32, data: &[u8]) -> anyhow::Result<()> {
        self.entry(name, SFlag::S_IFREG.bits() | permissions, 0, data)
    }

    fn char_device(&mut self, name: &str, major: u32, minor: u32) -> anyhow::Result<()> {
        self.entry(
            name,
            SFlag::S_IFCHR.bits() | 0o600,
            (major << 8) | minor,
            &[],
        )
    }

    /// One header, the NUL-terminated name and the data, each padded to 4 bytes.
    /// `rdev` packs the device's major and minor (major << 8 | minor).
    fn entry(&mut self, name: &str, mode: u32, rdev: u32, data: &[u8]) -> anyhow::Result<()> {
        let size = u32::try_from(data.len()).context("a file too large for cpio")?;
        let nlink = if mode & SFlag::S_IFMT.bits() == SFlag::S_IFDIR.bits() {
            2
        } else {
            1
        };
        let fields = [
            self.next_inode,
            mode,
            0, // uid
            0, // gid
            nlink,
            0, // mtime
            size,
            0, // dev major
            0, // dev minor
            rdev >> 8,
            rdev & 0xff,
            u32::try_from(name.len() + 1)?,
            0, // check
        ];
        self.next_inode += 1;
        let mut header = String::from("070701");
        for field in fields {
            header.push_str(&format!("{field:08x}"));
        }
        self.write(header.as_bytes())?;
        self.write(name.as_bytes())?;
        self.write(&[0])?;
        self.pad()?;
        self.write(data)?;
        self.pad()
    }

    fn write(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        self.out.write_all(bytes)?;
        self.written += bytes.len();
        Ok(())
    }

    fn pad(&mut self) -> anyhow::Result<()> {
        let padding = (4 - self.written % 4) % 4;
        self.write(&[0; 3][..padding])
    }

    fn finish(mut self) -> anyhow::Result<()> {
        self.entry("TRAILER!!!", 0, 0, &[])?;
        self.out.flush()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dependencies_come_first_and_once() {
        let deps = parse_modules_dep(
            "kernel/fs/9p/9p.ko: kernel/net/9p/9pnet.ko kernel/fs/netfs/netfs.ko\n\
             kernel/net/9p/9pnet_virtio.ko: kernel/net/9p/9pnet.ko kernel/drivers/virtio/virtio.ko\n\
             kernel/net/9p/9pnet.ko:\n\
             kernel/fs/netfs/netfs.ko:\n\
             kernel/drivers/virtio/virtio.ko:\n",
        );
        let mut order = Vec::new();
        visit("kernel/net/9p/9pnet_virtio.ko", &deps, &mut order);
        visit("kernel/fs/9p/9p.ko", &deps, &mut order);
        assert_eq!(
            order,
            [
                "kernel/net/9p/9pnet.ko",
                "kernel/drivers/virtio/virtio.ko",
                "kernel/net/9p/9pnet_virtio.ko",
                "kernel/fs/netfs/netfs.ko",
                "kernel/fs/9p/9p.ko",
            ]
        );
    }

    #[test]
    fn module_names_drop_directories_and_compression() {
        assert_eq!(module_name("kernel/fs/9p/9p.ko.xz"), "9p");
        assert_eq!(
            module_name("kernel/drivers/virtio/virtio_pci.ko"),
            "virtio_pci"
        );
        assert_eq!(
            module_name("kernel/net/sched/sch-ingress.ko.zst"),
            "sch_ingress"
        );
        assert_eq!(module_file_name("kernel/fs/9p/9p.ko.xz"), "9p.ko");
    }

    #[test]
    fn cpio_entries_are_newc_and_aligned() {
        let mut archive = Vec::new();
        let mut cpio = Cpio::new(&mut archive);
        cpio.file("init", 0o755, b"#!/bin/sh\n").unwrap();
        cpio.char_device("dev/console", 5, 1).unwrap();
        cpio.finish().unwrap();
        assert_eq!(archive.len() % 4, 0);
        let text = String::from_utf8_lossy(&archive);
        assert!(text.starts_with("070701"));
        // The header is 110 bytes: magic and 13 fields of 8 hex digits.
        assert_eq!(&archive[110..115], b"init\0");
        // File size 10 (0xa), name size 5.
        assert_eq!(&text[6 + 6 * 8..6 + 7 * 8], "0000000a");
        assert_eq!(&text[6 + 11 * 8..6 + 12 * 8], "00000005");
        assert!(text.contains("TRAILER!!!"));
        let console = text.find("dev/console").unwrap() - 110;
        // rdev major 5, minor 1.
        assert_eq!(
            &text[console + 6 + 9 * 8..console + 6 + 11 * 8],
            "0000000500000001"
        );
    }

    #[test]
    fn paths_are_quoted_for_the_shell() {
        assert_eq!(shell_quote("/a b/c").unwrap(), "'/a b/c'");
        assert!(shell_quote("/it's").is_err());
    }
}
