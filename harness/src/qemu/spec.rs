//! [`QemuSpec`]: everything QEMU is started with, as typed fields. It is the only producer of
//! QEMU's argv; preflight checks and remote staging read its fields, never argv strings.

use std::fmt;
use std::path::{Path, PathBuf};

use super::argv::Argv;
use super::ram::RamFile;
use crate::arch::{Accel, ExitDevice, QemuVersion};
use crate::plan::{InputUse, Plan};

/// QEMU options whose value is a host file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileOption {
    /// `-bios`.
    Bios,
    /// `-kernel`.
    Kernel,
    /// `-initrd`.
    Initrd,
    /// `-pflash` (one flash unit per occurrence, in order).
    Pflash,
    /// `-drive file=...`.
    Drive,
    /// `-device loader,file=...`.
    Loader,
}

impl FileOption {
    /// The options whose value is a bare path.
    pub(crate) const BARE: [FileOption; 4] = [
        FileOption::Bios,
        FileOption::Kernel,
        FileOption::Initrd,
        FileOption::Pflash,
    ];

    /// The option as written on QEMU's command line (`-drive` for drives).
    pub(crate) fn flag(self) -> &'static str {
        match self {
            FileOption::Bios => "-bios",
            FileOption::Kernel => "-kernel",
            FileOption::Initrd => "-initrd",
            FileOption::Pflash => "-pflash",
            FileOption::Drive => "-drive",
            FileOption::Loader => "-device",
        }
    }
}

impl fmt::Display for FileOption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FileOption::Drive => f.write_str("-drive file="),
            FileOption::Loader => f.write_str("-device loader,file="),
            other => f.write_str(other.flag()),
        }
    }
}

/// The drive id of the config's `[disk]` image.
pub(crate) const DISK_DRIVE_ID: &str = "vmhdisk0";

/// The config's disk image and the `-device` that presents it to the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskAttachment {
    /// The raw image file.
    pub image: PathBuf,
    /// The `-device` driver with optional properties, e.g. `virtio-blk-pci`.
    pub device: String,
}

impl DiskAttachment {
    /// `-drive file=...,format=raw,if=none,id=vmhdisk0 -device <device>,drive=vmhdisk0`.
    pub fn args(&self) -> Vec<String> {
        vec![
            "-drive".to_string(),
            format!(
                "file={},format=raw,if=none,id={DISK_DRIVE_ID}",
                escape_value(&self.image)
            ),
            "-device".to_string(),
            format!("{},drive={DISK_DRIVE_ID}", self.device),
        ]
    }
}

/// A raw image QEMU's generic loader puts at a guest-physical address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loader {
    /// The image.
    pub path: PathBuf,
    /// The address.
    pub addr: u64,
}

impl Loader {
    /// `-device loader,file=...,addr=0x...,force-raw=on`.
    pub fn args(&self) -> [String; 2] {
        [
            "-device".to_string(),
            format!(
                "loader,file={},addr={:#x},force-raw=on",
                escape_value(&self.path),
                self.addr
            ),
        ]
    }
}

/// One extra argument (`qemu.args`, `--qemu-arg`): a file-taking option is kept typed so that
/// it is checked and staged like the config's own files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExtraArg {
    /// Passed through verbatim.
    Word(String),
    /// `-bios`/`-kernel`/`-initrd`/`-pflash` and its file.
    File {
        /// The option.
        option: FileOption,
        /// The file.
        path: PathBuf,
    },
    /// `-drive` with a `file=`: the file and the other options as written (`,,`-escaped).
    Drive {
        /// The file.
        path: PathBuf,
        /// The other comma-separated options, in order.
        options: Vec<String>,
    },
}

impl ExtraArg {
    /// Types a list of extra arguments: file-taking options become [`ExtraArg::File`] and
    /// [`ExtraArg::Drive`]; everything else stays a word.
    pub(crate) fn parse_all(words: &[String]) -> Vec<ExtraArg> {
        let mut parsed = Vec::with_capacity(words.len());
        let mut words = words.iter();
        while let Some(word) = words.next() {
            let option = FileOption::BARE.into_iter().find(|o| o.flag() == word);
            match (option, word.as_str()) {
                (Some(option), _) => match words.next() {
                    Some(path) => parsed.push(ExtraArg::File {
                        option,
                        path: PathBuf::from(path),
                    }),
                    None => parsed.push(ExtraArg::Word(word.clone())),
                },
                (None, "-drive") => match words.next() {
                    Some(value) => parsed.extend(parse_drive(value).map_or_else(
                        || vec![ExtraArg::Word(word.clone()), ExtraArg::Word(value.clone())],
                        |drive| vec![drive],
                    )),
                    None => parsed.push(ExtraArg::Word(word.clone())),
                },
                _ => parsed.push(ExtraArg::Word(word.clone())),
            }
        }
        parsed
    }
}

fn parse_drive(value: &str) -> Option<ExtraArg> {
    let parts = split_options(value);
    match parts.iter().position(|p| p.starts_with("file=")) {
        Some(index) => {
            let mut options = parts;
            let file = options.remove(index);
            Some(ExtraArg::Drive {
                path: PathBuf::from(&file["file=".len()..]),
                options,
            })
        }
        None => None,
    }
}

/// Comma-separated QEMU option values, with `,,` (an escaped comma) unescaped.
fn split_options(value: &str) -> Vec<String> {
    value
        .replace(",,", "\u{0}")
        .split(',')
        .map(|part| part.replace('\u{0}', ","))
        .collect()
}

/// A path as a QEMU option value: a literal comma is doubled.
fn escape_value(path: &Path) -> String {
    path.to_string_lossy().replace(',', ",,")
}

/// A host file the spec makes QEMU open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SpecFile<'a> {
    /// The option that names it.
    pub option: FileOption,
    /// The file.
    pub path: &'a Path,
}

/// Everything QEMU is started with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QemuSpec {
    /// The QEMU binary: a full path once found, or a name for a remote host to look up.
    pub binary: PathBuf,
    /// `-M`.
    pub machine: String,
    /// `-accel`.
    pub accel: Accel,
    /// `-cpu`.
    pub cpu: String,
    /// `-m`.
    pub memory: String,
    /// Guest RAM in a host file instead of anonymous memory (saved states' `template`).
    pub ram_file: Option<RamFile>,
    /// `-smp`.
    pub smp: Option<u32>,
    /// `-bios`.
    pub bios: Option<PathBuf>,
    /// `-kernel`.
    pub kernel: Option<PathBuf>,
    /// `-initrd`.
    pub initrd: Option<PathBuf>,
    /// `-pflash`, one per flash unit in order.
    pub pflash: Vec<PathBuf>,
    /// Generic-loader images.
    pub loaders: Vec<Loader>,
    /// `-append`.
    pub append: Option<String>,
    /// The guest exit channel's device, if enabled.
    pub exit_device: Option<ExitDevice>,
    /// The config's disk image.
    pub disk: Option<DiskAttachment>,
    /// Extra arguments, after everything else.
    pub extra: Vec<ExtraArg>,
    /// A QMP server on this unix socket (in the run's private temp dir).
    pub qmp: Option<PathBuf>,
    /// `-incoming`: start waiting for a saved state (`defer`: it is named over QMP).
    pub incoming: Option<String>,
    /// Keep the disk image unchanged: the guest's writes go to a temporary overlay QEMU
    /// makes in this directory (`snapshot=on`, `TMPDIR`) and drops when it exits.
    pub disk_overlay_dir: Option<PathBuf>,
}

impl QemuSpec {
    /// The spec of `plan` for `binary` and `accel`, with each input's resolved path from
    /// `path_of` and the built disk image, if any.
    pub fn from_plan(
        plan: &Plan,
        binary: PathBuf,
        accel: Accel,
        version: Option<&QemuVersion>,
        path_of: &dyn Fn(&InputUse) -> Option<PathBuf>,
        disk_image: Option<PathBuf>,
    ) -> QemuSpec {
        let mut spec = QemuSpec::new(
            binary,
            &plan.qemu.machine,
            accel,
            &plan.cpu_for(accel, version),
            &plan.qemu.memory,
        );
        spec.smp = plan.qemu.smp;
        spec.bios = path_of(&InputUse::Bios);
        spec.kernel = path_of(&InputUse::Kernel);
        spec.initrd = path_of(&InputUse::Initrd);
        spec.pflash = (0..plan.loaded.config.qemu.pflash.len())
            .filter_map(|index| path_of(&InputUse::Pflash(index)))
            .collect();
        spec.loaders = plan
            .loaded
            .config
            .qemu
            .loader
            .iter()
            .enumerate()
            .filter_map(|(index, loader)| {
                path_of(&InputUse::Loader(index)).map(|path| Loader {
                    path,
                    addr: loader.addr,
                })
            })
            .collect();
        spec.append = plan.qemu.append.clone();
        spec.exit_device = plan.qemu.exit_device;
        spec.disk = match (disk_image, &plan.disk) {
            (Some(image), Some(disk)) => Some(DiskAttachment {
                image,
                device: disk.attach.driver().to_string(),
            }),
            _ => None,
        };
        spec.extra = ExtraArg::parse_all(&plan.qemu.extra);
        spec
    }
}

impl QemuSpec {
    /// A spec with no files, no disk and no extra arguments.
    pub fn new(
        binary: impl Into<PathBuf>,
        machine: &str,
        accel: Accel,
        cpu: &str,
        memory: &str,
    ) -> Self {
        QemuSpec {
            binary: binary.into(),
            machine: machine.to_string(),
            accel,
            cpu: cpu.to_string(),
            memory: memory.to_string(),
            ram_file: None,
            smp: None,
            bios: None,
            kernel: None,
            initrd: None,
            pflash: Vec::new(),
            loaders: Vec::new(),
            append: None,
            exit_device: None,
            disk: None,
            extra: Vec::new(),
            qmp: None,
            incoming: None,
            disk_overlay_dir: None,
        }
    }

    /// QEMU's argv. Every boot gets: no display, no monitor, the serial console on stdio (the
    /// pty), no network, no reboot.
    pub fn argv(&self) -> Argv {
        let mut argv = Argv::new(&self.binary);
        argv.extend([
            "-display",
            "none",
            "-monitor",
            "none",
            "-no-reboot",
            "-nic",
            "none",
            "-chardev",
            "stdio,id=vmh-console,signal=off",
            "-serial",
            "chardev:vmh-console",
        ]);
        argv.extend(["-M", &self.machine, "-accel", self.accel.qemu_name()]);
        argv.extend(["-cpu", &self.cpu, "-m", &self.memory]);
        if let Some(ram) = &self.ram_file {
            ram.push_args(&mut argv);
        }
        if let Some(smp) = self.smp {
            argv.arg("-smp").arg(smp.to_string());
        }
        for (option, path) in [
            (FileOption::Bios, &self.bios),
            (FileOption::Kernel, &self.kernel),
            (FileOption::Initrd, &self.initrd),
        ] {
            if let Some(path) = path {
                argv.arg(option.flag()).arg(path.as_os_str());
            }
        }
        for path in &self.pflash {
            argv.arg(FileOption::Pflash.flag()).arg(path.as_os_str());
        }
        for loader in &self.loaders {
            argv.extend(loader.args());
        }
        if let Some(append) = &self.append {
            argv.arg("-append").arg(append);
        }
        if let Some(device) = self.exit_device {
            argv.extend(device.qemu_args().iter().copied());
        }
        if let Some(disk) = &self.disk {
            let mut args = disk.args();
            if let Some(dir) = &self.disk_overlay_dir {
                args[1].push_str(",snapshot=on");
                argv.env("TMPDIR", dir.as_os_str());
            }
            argv.extend(args);
        }
        if let Some(incoming) = &self.incoming {
            argv.arg("-incoming").arg(incoming);
        }
        if let Some(socket) = &self.qmp {
            argv.arg("-qmp")
                .arg(format!("unix:{},server=on,wait=off", escape_value(socket)));
        }
        for extra in &self.extra {
            match extra {
                ExtraArg::Word(word) => argv.arg(word),
                ExtraArg::File { option, path } => argv.arg(option.flag()).arg(path.as_os_str()),
                ExtraArg::Drive { path, options } => {
                    let mut value = format!("file={}", escape_value(path));
                    for option in options {
                        value.push(',');
                        value.push_str(&option.replace(',', ",,"));
                    }
                    argv.arg("-drive").arg(value)
                }
            };
        }
        argv
    }

    /// Every host file QEMU will open, with the option that names it, in argv order.
    pub(crate) fn files(&self) -> Vec<SpecFile<'_>> {
        let mut out: Vec<SpecFile<'_>> = Vec::new();
        for (option, path) in [
            (FileOption::Bios, &self.bios),
            (FileOption::Kernel, &self.kernel),
            (FileOption::Initrd, &self.initrd),
        ] {
            if let Some(path) = path {
                out.push(SpecFile { option, path });
            }
        }
        out.extend(self.pflash.iter().map(|path| SpecFile {
            option: FileOption::Pflash,
            path,
        }));
        out.extend(self.loaders.iter().map(|loader| SpecFile {
            option: FileOption::Loader,
            path: &loader.path,
        }));
        if let Some(disk) = &self.disk {
            out.push(SpecFile {
                option: FileOption::Drive,
                path: &disk.image,
            });
        }
        for extra in &self.extra {
            match extra {
                ExtraArg::File { option, path } => out.push(SpecFile {
                    option: *option,
                    path,
                }),
                ExtraArg::Drive { path, .. } => out.push(SpecFile {
                    option: FileOption::Drive,
                    path,
                }),
                ExtraArg::Word(_) => {}
            }
        }
        out
    }

    /// The same spec with every host file replaced by `map(option, path)` (in [`files`] order),
    /// e.g. with its copy on a remote host.
    ///
    /// [`files`]: QemuSpec::files
    pub(crate) fn map_files(&self, mut map: impl FnMut(FileOption, &Path) -> PathBuf) -> QemuSpec {
        let mut spec = self.clone();
        for (option, slot) in [
            (FileOption::Bios, &mut spec.bios),
            (FileOption::Kernel, &mut spec.kernel),
            (FileOption::Initrd, &mut spec.initrd),
        ] {
            if let Some(path) = slot {
                *path = map(option, path);
            }
        }
        for path in &mut spec.pflash {
            *path = map(FileOption::Pflash, path);
        }
        for loader in &mut spec.loaders {
            loader.path = map(FileOption::Loader, &loader.path);
        }
        if let Some(disk) = &mut spec.disk {
            disk.image = map(FileOption::Drive, &disk.image);
        }
        for extra in &mut spec.extra {
            match extra {
                ExtraArg::File { option, path } => *path = map(*option, path),
                ExtraArg::Drive { path, .. } => *path = map(FileOption::Drive, path),
                ExtraArg::Word(_) => {}
            }
        }
        spec
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> QemuSpec {
        let mut spec = QemuSpec::new(
            "/usr/bin/qemu-system-x86_64",
            "q35",
            Accel::Tcg,
            "max",
            "256M",
        );
        spec.kernel = Some("/k/vmlinuz".into());
        spec.pflash = vec!["/fw/CODE.fd".into(), "/fw/VARS.fd".into()];
        spec.disk = Some(DiskAttachment {
            image: "/t/a,b.img".into(),
            device: "virtio-blk-pci".into(),
        });
        spec.extra = ExtraArg::parse_all(&[
            "-fw_cfg".into(),
            "name=opt/x,string=y".into(),
            "-drive".into(),
            "if=none,file=/d/x,,y.img,format=raw,id=d1".into(),
            "-initrd".into(),
            "/i/initrd".into(),
        ]);
        spec
    }

    #[test]
    fn argv_has_every_field_in_order() {
        let line = spec().argv().words().join(" ");
        assert!(
            line.starts_with("/usr/bin/qemu-system-x86_64 -display none"),
            "{line}"
        );
        assert!(
            line.contains("-M q35 -accel tcg -cpu max -m 256M -kernel /k/vmlinuz -pflash /fw/CODE.fd -pflash /fw/VARS.fd"),
            "{line}"
        );
        assert!(
            line.contains("-drive file=/t/a,,b.img,format=raw,if=none,id=vmhdisk0 -device virtio-blk-pci,drive=vmhdisk0"),
            "{line}"
        );
        assert!(
            line.ends_with("-fw_cfg name=opt/x,string=y -drive file=/d/x,,y.img,if=none,format=raw,id=d1 -initrd /i/initrd"),
            "{line}"
        );
    }

    #[test]
    fn files_lists_typed_and_extra_files() {
        let spec = spec();
        let files: Vec<String> = spec
            .files()
            .iter()
            .map(|f| format!("{} {}", f.option, f.path.display()))
            .collect();
        assert_eq!(
            files,
            [
                "-kernel /k/vmlinuz",
                "-pflash /fw/CODE.fd",
                "-pflash /fw/VARS.fd",
                "-drive file= /t/a,b.img",
                "-drive file= /d/x,y.img",
                "-initrd /i/initrd"
            ]
        );
    }

    #[test]
    fn map_files_rewrites_every_file_and_nothing_else() {
        let original = spec();
        let mut index = 0;
        let mapped = original.map_files(|_, path| {
            index += 1;
            PathBuf::from(format!(
                "/remote/{index}-{}",
                path.file_name().unwrap().to_string_lossy()
            ))
        });
        assert_eq!(index, original.files().len());
        let line = mapped.argv().words().join(" ");
        for local in ["/k/", "/fw/", "/t/", "/d/", "/i/"] {
            assert!(!line.contains(local), "{local} left in {line}");
        }
        assert!(line.contains("-pflash /remote/3-VARS.fd"), "{line}");
        assert!(line.contains("name=opt/x,string=y"), "{line}");
    }

    #[test]
    fn drive_without_file_and_dangling_options_pass_through() {
        let extra =
            ExtraArg::parse_all(&["-drive".into(), "if=none,id=x".into(), "-kernel".into()]);
        let mut spec = QemuSpec::new("q", "virt", Accel::Tcg, "max", "1G");
        spec.extra = extra;
        assert!(spec.files().is_empty());
        assert!(spec
            .argv()
            .words()
            .join(" ")
            .ends_with("-drive if=none,id=x -kernel"));
    }
}
