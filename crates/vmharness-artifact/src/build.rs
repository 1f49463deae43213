//! Runs the command of a `kind = "command"` recipe.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::error::ArtifactError;
use super::recipe::CommandRecipe;

/// Lines of stderr kept in error messages.
const STDERR_TAIL_LINES: usize = 20;

/// Runs the recipe's command in `guests_dir` with `{out}` replaced by `out_dir` and
/// `{package:<role>}` by the downloaded `.deb` of that role, then checks that every declared
/// output is a regular file in `out_dir`.
pub(super) fn run_command(
    artifact: &str,
    recipe: &CommandRecipe,
    guests_dir: &Path,
    out_dir: &Path,
    debs: &BTreeMap<String, PathBuf>,
) -> Result<(), ArtifactError> {
    let out = out_dir.to_string_lossy();
    let argv: Vec<String> = recipe
        .command
        .iter()
        .map(|arg| {
            debs.iter()
                .fold(arg.replace("{out}", &out), |arg, (role, deb)| {
                    arg.replace(&format!("{{package:{role}}}"), &deb.to_string_lossy())
                })
        })
        .collect();
    let Some((program, args)) = argv.split_first() else {
        return Err(ArtifactError::Recipe {
            file: guests_dir.to_path_buf(),
            message: format!("artifact `{artifact}`: empty command"),
        });
    };
    let mut command = Command::new(program);
    command
        .args(args)
        .current_dir(guests_dir)
        .envs(&recipe.env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    kill_with_parent(&mut command);
    let output = command.output().map_err(|e| ArtifactError::Unavailable {
        artifact: artifact.to_string(),
        reason: format!("cannot run `{}`: {e}", argv.join(" ")),
    })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let lines: Vec<&str> = stderr.lines().collect();
        let stderr_tail = lines[lines.len().saturating_sub(STDERR_TAIL_LINES)..].join("\n");
        if recipe.network {
            return Err(ArtifactError::Unavailable {
                artifact: artifact.to_string(),
                reason: format!(
                    "network command `{}` failed ({}): {stderr_tail}",
                    argv.join(" "),
                    output.status
                ),
            });
        }
        return Err(ArtifactError::CommandFailed {
            artifact: artifact.to_string(),
            command: argv.join(" "),
            status: output.status.to_string(),
            stderr_tail,
        });
    }
    for name in &recipe.outputs {
        let path = out_dir.join(name);
        if !std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_file()) {
            return Err(ArtifactError::MissingOutput {
                artifact: artifact.to_string(),
                output: name.clone(),
                detail: format!("no regular file at {}", path.display()),
            });
        }
    }
    Ok(())
}

/// Makes the build command die with the resolving process, so a killed resolver leaves no
/// orphan build behind.
fn kill_with_parent(command: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure only calls prctl(2), which is async-signal-safe.
    unsafe {
        command.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                .map_err(std::io::Error::from)
        });
    }
}
