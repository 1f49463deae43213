//! `cargo xtask guests list|fetch|build|verify|lock|clean`: manage guest artifacts.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use vmharness::artifact::{
    require_artifacts, ArtifactError, Catalog, LockMode, LockStatus, ResolveOptions, Source,
};

/// Arguments of `cargo xtask guests`.
#[derive(Args)]
pub struct GuestsArgs {
    /// Fail on artifacts missing from guests.lock (implied by CI=true or VMHARNESS_LOCKED=1).
    #[arg(long, global = true)]
    locked: bool,
    /// The guests directory (default: `<workspace>/guests`).
    #[arg(long, global = true)]
    guests_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: GuestsCommand,
}

#[derive(Subcommand)]
enum GuestsCommand {
    /// List artifacts, their kind, outputs and lock state.
    List,
    /// Download url artifacts (all, or the named ones) and check path artifacts.
    Fetch { names: Vec<String> },
    /// Build command artifacts (all, or the named ones).
    Build { names: Vec<String> },
    /// Resolve every artifact strictly against guests.lock.
    Verify,
    /// Record missing or stale entries in guests.lock; `--update` re-pins changed bytes too.
    Lock {
        #[arg(long)]
        update: bool,
    },
    /// Remove the artifact cache.
    Clean,
}

/// Runs one `guests` subcommand.
pub fn run(args: GuestsArgs) -> anyhow::Result<()> {
    let guests_dir = args
        .guests_dir
        .clone()
        .unwrap_or_else(|| vmharness::paths::workspace_root().join("guests"));
    let mut options = ResolveOptions::from_env();
    if args.locked {
        options.lock_mode = LockMode::Locked;
    }
    if let GuestsCommand::Clean = args.command {
        let dir = &options.cache_dir;
        if dir.exists() {
            std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
        }
        println!("removed {}", dir.display());
        return Ok(());
    }
    let catalog = Catalog::load(&guests_dir)?;
    match args.command {
        GuestsCommand::List => list(&catalog),
        GuestsCommand::Fetch { names } => resolve_kind(&catalog, &names, &options, |s| {
            !matches!(s, Source::Command(_))
        }),
        GuestsCommand::Build { names } => resolve_kind(&catalog, &names, &options, |s| {
            matches!(s, Source::Command(_))
        }),
        GuestsCommand::Verify => {
            options.lock_mode = LockMode::Locked;
            resolve_kind(&catalog, &[], &options, |_| true)
        }
        GuestsCommand::Lock { update } => lock(&catalog, options, update),
        GuestsCommand::Clean => Ok(()),
    }
}

fn kind(source: &Source) -> &'static str {
    match source {
        Source::Command(_) => "command",
        Source::Url(_) => "url",
        Source::Path(_) => "path",
    }
}

fn list(catalog: &Catalog) -> anyhow::Result<()> {
    for name in catalog.names() {
        let recipe = catalog.recipe(name)?;
        let locked = if catalog.lock().get(name).is_some() {
            "locked"
        } else {
            "not locked"
        };
        println!(
            "{name:<28} {:<8} {:<11} {}",
            kind(&recipe.source),
            locked,
            recipe.outputs().join(", ")
        );
    }
    Ok(())
}

/// Resolves the named artifacts (or all matching `filter`), printing one line each.
fn resolve_kind(
    catalog: &Catalog,
    names: &[String],
    options: &ResolveOptions,
    filter: impl Fn(&Source) -> bool,
) -> anyhow::Result<()> {
    let selected: Vec<String> = if names.is_empty() {
        catalog
            .names()
            .filter(|n| catalog.recipe(n).is_ok_and(|r| filter(&r.source)))
            .map(str::to_string)
            .collect()
    } else {
        names.to_vec()
    };
    let mut failures = 0;
    for name in &selected {
        match catalog.resolve(name, options) {
            Ok(resolved) => {
                let state = match resolved.status {
                    LockStatus::Locked => "verified".to_string(),
                    LockStatus::Unlocked { reason } => format!("NOT LOCKED ({reason})"),
                };
                println!(
                    "{name:<28} {:?} {state} {}",
                    resolved.origin,
                    resolved.dir.display()
                );
            }
            Err(error) if error.is_unavailable() && !require_artifacts() => {
                println!("{name:<28} unavailable: {error}");
            }
            Err(error) => {
                failures += 1;
                eprintln!("error: {}", chain(&error));
            }
        }
    }
    if failures > 0 {
        bail!("{failures} of {} artifacts failed", selected.len());
    }
    Ok(())
}

fn lock(catalog: &Catalog, mut options: ResolveOptions, update: bool) -> anyhow::Result<()> {
    let check_only = options.lock_mode == LockMode::Locked;
    options.lock_mode = if update {
        LockMode::Update
    } else {
        LockMode::Record
    };
    let mut lock = catalog.lock().clone();
    let dropped = lock.retain_names(|name| catalog.recipe(name).is_ok());
    for name in &dropped {
        println!("{name:<28} dropped (no recipe)");
    }
    let mut failures = 0;
    for name in catalog.names() {
        match catalog.resolve(name, &options) {
            Ok(resolved) => {
                let previous = lock.get(name).cloned();
                if previous.as_ref() != Some(&resolved.entry) {
                    println!(
                        "{name:<28} {}",
                        if previous.is_some() {
                            "updated"
                        } else {
                            "added"
                        }
                    );
                    lock.insert(name, resolved.entry);
                }
            }
            Err(error) if error.is_unavailable() => {
                println!("{name:<28} unavailable, entry kept as is: {error}");
            }
            Err(error) => {
                failures += 1;
                eprintln!("error: {}", chain(&error));
            }
        }
    }
    if failures > 0 {
        bail!("{failures} artifacts failed; guests.lock not written (use --update to re-pin changed bytes)");
    }
    if lock == *catalog.lock() {
        println!("{} is up to date", lock.path().display());
    } else if check_only {
        bail!(
            "{} is out of date; run `cargo xtask guests lock`",
            lock.path().display()
        );
    } else {
        lock.save()?;
        println!("wrote {}", lock.path().display());
    }
    Ok(())
}

/// The error and its causes, one per line.
fn chain(error: &ArtifactError) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(&format!("\n  caused by: {cause}"));
        source = cause.source();
    }
    text
}
