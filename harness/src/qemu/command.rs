//! A typed QEMU command line: each option is an argv element, never a concatenated shell string.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::accel::Accel;

/// A QEMU invocation under construction.
#[derive(Debug, Clone)]
pub struct QemuCommand {
    binary: PathBuf,
    args: Vec<OsString>,
}

impl QemuCommand {
    /// A command for `binary` with the options every vmharness boot uses: no display, no
    /// monitor on any port, serial on stdio (the pty), no network, no reboot.
    pub fn new(binary: impl Into<PathBuf>) -> Self {
        let mut command = QemuCommand {
            binary: binary.into(),
            args: Vec::new(),
        };
        command
            .args([
                "-display",
                "none",
                "-monitor",
                "none",
                "-no-reboot",
                "-nic",
                "none",
            ])
            .args(["-chardev", "stdio,id=vmh-console,signal=off"])
            .args(["-serial", "chardev:vmh-console"]);
        command
    }

    /// A command for `binary` with no default options: for wrappers such as the `ssh -tt`
    /// command of [`crate::remote::stage`], which carries the real QEMU argv inside.
    pub fn raw(binary: impl Into<PathBuf>) -> Self {
        QemuCommand {
            binary: binary.into(),
            args: Vec::new(),
        }
    }

    /// The QEMU binary.
    pub fn binary(&self) -> &Path {
        &self.binary
    }

    /// Replaces the binary (after resolving it on `PATH`).
    pub fn set_binary(&mut self, binary: impl Into<PathBuf>) {
        self.binary = binary.into();
    }

    /// The arguments after the binary.
    pub fn get_args(&self) -> &[OsString] {
        &self.args
    }

    /// Appends one argument.
    pub fn arg(&mut self, arg: impl Into<OsString>) -> &mut Self {
        self.args.push(arg.into());
        self
    }

    /// Appends several arguments.
    pub fn args<I, S>(&mut self, args: I) -> &mut Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Appends an option and its value.
    pub fn opt(&mut self, name: &str, value: impl Into<OsString>) -> &mut Self {
        self.arg(name).arg(value)
    }

    /// Appends an option whose value is a path.
    pub fn path_opt(&mut self, name: &str, path: &Path) -> &mut Self {
        self.arg(name).arg(path.as_os_str())
    }

    /// `-M machine`.
    pub fn machine(&mut self, machine: &str) -> &mut Self {
        self.opt("-M", machine)
    }

    /// `-accel kvm|tcg`.
    pub fn accel(&mut self, accel: Accel) -> &mut Self {
        self.opt("-accel", accel.qemu_name())
    }

    /// `-cpu model`.
    pub fn cpu(&mut self, cpu: &str) -> &mut Self {
        self.opt("-cpu", cpu)
    }

    /// `-m size`.
    pub fn memory(&mut self, memory: &str) -> &mut Self {
        self.opt("-m", memory)
    }

    /// `-smp n`.
    pub fn smp(&mut self, cpus: u32) -> &mut Self {
        self.opt("-smp", cpus.to_string())
    }

    /// The value following the last occurrence of option `name`, if any.
    pub fn value_of(&self, name: &str) -> Option<&OsString> {
        self.args
            .windows(2)
            .rev()
            .find(|pair| pair[0] == name)
            .map(|pair| &pair[1])
    }

    /// The full argv (binary first) as one copy-pasteable POSIX shell line.
    pub fn to_shell_line(&self) -> String {
        let words: Vec<String> = std::iter::once(self.binary.as_os_str())
            .chain(self.args.iter().map(OsString::as_os_str))
            .map(|word| word.to_string_lossy().into_owned())
            .collect();
        shell_words::join(words)
    }

    /// The command as a `std::process::Command` (arguments only; stdio is set by the spawner).
    pub fn to_command(&self) -> std::process::Command {
        let mut command = std::process::Command::new(&self.binary);
        command.args(&self.args);
        command
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_line_quotes_what_needs_quoting() {
        let mut command = QemuCommand::new("qemu-system-x86_64");
        command.opt("-append", "console=ttyS0 panic=-1");
        let line = command.to_shell_line();
        assert!(
            line.starts_with("qemu-system-x86_64 -display none"),
            "{line}"
        );
        assert!(line.ends_with("-append 'console=ttyS0 panic=-1'"), "{line}");
        assert_eq!(
            shell_words::split(&line).unwrap().len(),
            command.get_args().len() + 1
        );
    }

    #[test]
    fn value_of_finds_last_occurrence() {
        let mut command = QemuCommand::new("q");
        command.cpu("max").cpu("host");
        assert_eq!(command.value_of("-cpu").unwrap(), "host");
        assert!(command.value_of("-kernel").is_none());
    }
}
