//! A program and its arguments, each an argv element, never a concatenated shell string.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// A command line to start: QEMU itself, or a wrapper such as the `ssh -tt` of
/// `remote::stage` that carries QEMU's argv inside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Argv {
    program: PathBuf,
    args: Vec<OsString>,
    env: Vec<(String, OsString)>,
}

impl Argv {
    /// A command for `program` with no arguments yet.
    pub fn new(program: impl Into<PathBuf>) -> Self {
        Argv {
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
        }
    }

    /// Sets an environment variable for the program (e.g. QEMU's `TMPDIR`).
    pub fn env(&mut self, key: &str, value: impl Into<OsString>) -> &mut Self {
        self.env.push((key.to_string(), value.into()));
        self
    }

    /// The program.
    pub fn program(&self) -> &Path {
        &self.program
    }

    /// The arguments after the program.
    pub fn args(&self) -> &[OsString] {
        &self.args
    }

    /// Appends one argument.
    pub fn arg(&mut self, arg: impl Into<OsString>) -> &mut Self {
        self.args.push(arg.into());
        self
    }

    /// Appends several arguments.
    pub fn extend<I, S>(&mut self, args: I) -> &mut Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// The program and its arguments as strings (lossy), program first.
    pub(crate) fn words(&self) -> Vec<String> {
        std::iter::once(self.program.as_os_str())
            .chain(self.args.iter().map(OsString::as_os_str))
            .map(|word| word.to_string_lossy().into_owned())
            .collect()
    }

    /// The full argv as one copy-pasteable shell line (POSIX sh, bash, zsh), environment
    /// assignments first.
    pub fn to_shell_line(&self) -> String {
        let assignments = self
            .env
            .iter()
            .map(|(key, value)| format!("{key}={}", shell_quote(&value.to_string_lossy())));
        let words = self.words();
        let command = words
            .iter()
            .map(|word| shell_quote(word))
            .collect::<Vec<_>>()
            .join(" ");
        assignments
            .chain(std::iter::once(command))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The command as a `std::process::Command` (arguments only; stdio is set by the spawner).
    pub(crate) fn to_command(&self) -> std::process::Command {
        let mut command = std::process::Command::new(&self.program);
        command.args(&self.args);
        command.envs(self.env.iter().map(|(key, value)| (key, value)));
        command
    }
}

/// `word` as one shell word in POSIX sh, bash and zsh: `shell_words::quote`, which leaves
/// the braces of bash's and zsh's brace expansion (`{a,b}`) and zsh's `^` and `!` bare, with
/// those quoted too.
pub(crate) fn shell_quote(word: &str) -> std::borrow::Cow<'_, str> {
    let quoted = shell_words::quote(word);
    let bare = matches!(quoted, std::borrow::Cow::Borrowed(_));
    if bare && word.contains(['{', '}', '!', '^']) {
        // No `'` in a word shell_words leaves bare.
        return format!("'{word}'").into();
    }
    quoted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_line_quotes_what_needs_quoting() {
        let mut argv = Argv::new("qemu-system-x86_64");
        argv.extend(["-append", "console=ttyS0 panic=-1"]);
        let line = argv.to_shell_line();
        assert_eq!(line, "qemu-system-x86_64 -append 'console=ttyS0 panic=-1'");
        assert_eq!(
            shell_words::split(&line).unwrap().len(),
            argv.args().len() + 1
        );
    }
}
