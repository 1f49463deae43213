//! `guests list|fetch|build|verify|lock|import|clean`: manage guest artifacts.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use vmharness::artifact::{Catalog, LockMode, LockStatus, ResolveOptions, Source};

/// How strictly `--locked` treats keys the lock has not recorded.
#[derive(Clone, Copy, clap::ValueEnum)]
enum Locked {
    /// Unpinned `url`/`path` artifacts fail; command artifacts whose inputs moved are built
    /// and reported (what CI=true and VMHARNESS_LOCKED=1 mean).
    Ci,
    /// Any key the lock has not recorded fails (VMHARNESS_LOCKED=strict).
    Strict,
}

/// Arguments of `guests`.
#[derive(Args)]
pub struct GuestsArgs {
    /// Check against guests.lock: `--locked` (= `ci`) or `--locked=strict`.
    #[arg(long, global = true, num_args = 0..=1, require_equals = true, default_missing_value = "ci", value_name = "MODE")]
    locked: Option<Locked>,
    /// The guests directory (default: `<workspace>/guests`).
    #[arg(long, global = true)]
    guests_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: GuestsCommand,
}

#[derive(Subcommand)]
enum GuestsCommand {
    /// List artifacts, their kind, outputs, lock state and the sha256s the lock pins.
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
    /// Put a file obtained elsewhere into the cache as the download of a `url` artifact,
    /// verified against guests.lock (or pinned there when the lock has no entry).
    Import {
        /// The file is not the release but a build from source that stands in for it when the
        /// release cannot be downloaded; recorded in the cache, never pinned in guests.lock.
        #[arg(long)]
        local_build: bool,
        /// The artifact name.
        name: String,
        /// The downloaded file (or, with --local-build, the file built from source).
        file: PathBuf,
    },
    /// Remove the artifact cache.
    Clean,
}

/// Runs one `guests` subcommand.
pub fn run(args: GuestsArgs) -> anyhow::Result<()> {
    let settings = vmharness::settings::Settings::from_env()?;
    let guests_dir = args
        .guests_dir
        .clone()
        .unwrap_or_else(|| settings.guests_dir());
    let required = settings.require_artifacts;
    let mut options = settings.artifacts;
    match args.locked {
        Some(Locked::Ci) if options.lock_mode != LockMode::Strict => {
            options.lock_mode = LockMode::Locked
        }
        Some(Locked::Strict) => options.lock_mode = LockMode::Strict,
        _ => {}
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
        GuestsCommand::List => list(&catalog, &options),
        GuestsCommand::Fetch { names } => resolve_kind(&catalog, &names, &options, required, |s| {
            !matches!(s, Source::Command(_))
        }),
        GuestsCommand::Build { names } => resolve_kind(&catalog, &names, &options, required, |s| {
            matches!(s, Source::Command(_))
        }),
        GuestsCommand::Verify => {
            options.lock_mode = LockMode::Locked;
            resolve_kind(&catalog, &[], &options, required, |_| true)
        }
        GuestsCommand::Lock { update } => lock(&catalog, options, update),
        GuestsCommand::Import {
            local_build: true,
            name,
            file,
        } => import_local_build(&catalog, &name, &file, &options),
        GuestsCommand::Import {
            local_build: false,
            name,
            file,
        } => import(&catalog, &name, &file, &options),
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

fn list(catalog: &Catalog, options: &ResolveOptions) -> anyhow::Result<()> {
    for name in catalog.names() {
        let recipe = catalog.recipe(name)?;
        let entry = catalog.lock().get(name);
        println!(
            "{name:<28} {:<8} {:<11} {}",
            kind(&recipe.source),
            if entry.is_some() {
                "locked"
            } else {
                "not locked"
            },
            recipe.outputs().join(", ")
        );
        if let Source::Command(command) = &recipe.source {
            for (role, spec) in &command.packages {
                let via = spec
                    .via_depends
                    .as_deref()
                    .map(|p| format!(" via Depends ~ {p}"))
                    .unwrap_or_default();
                println!(
                    "    package {role}: {} ({}, {}){via}",
                    spec.name,
                    spec.arch,
                    spec.suites.join(" ")
                );
            }
        }
        if let Some(entry) = entry {
            if let Some(download) = &entry.download {
                println!("    pinned download sha256 {download}");
            }
            for (output, sha256) in &entry.outputs {
                println!("    pinned {output} sha256 {sha256}");
            }
            for (input, value) in &entry.inputs {
                println!("    locked {input} = {value}");
            }
        }
        if let Some(local) = catalog.local_build(name, options)? {
            println!(
                "    local build (stands in when the release is unavailable; not pinned): sha256 {} from {}, imported {}",
                local.sha256,
                local.from.display(),
                local.imported
            );
        }
    }
    Ok(())
}

fn import(
    catalog: &Catalog,
    name: &str,
    file: &std::path::Path,
    options: &ResolveOptions,
) -> anyhow::Result<()> {
    let resolved = catalog
        .import(name, file, options)
        .map_err(|e| anyhow::anyhow!(crate::error_chain(&e)))?;
    println!(
        "{name:<28} imported {} -> {}",
        file.display(),
        resolved.dir.display()
    );
    if catalog.lock().get(name).is_none() {
        let mut lock = catalog.lock().clone();
        lock.insert(name, resolved.entry);
        lock.save()?;
        println!("{name:<28} pinned on import in {}", lock.path().display());
    }
    Ok(())
}

fn import_local_build(
    catalog: &Catalog,
    name: &str,
    file: &std::path::Path,
    options: &ResolveOptions,
) -> anyhow::Result<()> {
    let resolved = catalog
        .import_local_build(name, file, options)
        .map_err(|e| anyhow::anyhow!(crate::error_chain(&e)))?;
    println!(
        "{name:<28} {} -> {}",
        resolved.status.describe(),
        resolved.dir.display()
    );
    println!(
        "{name:<28} recorded in {}; used only when the release cannot be downloaded, never pinned in guests.lock",
        vmharness::artifact::cache::Cache::new(&options.cache_dir)
            .local_build_record(name)
            .display()
    );
    Ok(())
}

/// Resolves the named artifacts (or all matching `filter`), printing one line each.
fn resolve_kind(
    catalog: &Catalog,
    names: &[String],
    options: &ResolveOptions,
    required: bool,
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
                let state = match &resolved.status {
                    LockStatus::Locked => "verified".to_string(),
                    LockStatus::NewKey { .. } => resolved.status.describe(),
                    LockStatus::Unlocked { reason } => format!("NOT LOCKED ({reason})"),
                    LockStatus::LocalBuild { .. } | LockStatus::Recorded { .. } => {
                        resolved.status.describe()
                    }
                };
                println!(
                    "{name:<28} {:?} {state} {}",
                    resolved.origin,
                    resolved.dir.display()
                );
            }
            Err(error) if error.is_unavailable() && !required => {
                println!("{name:<28} unavailable: {error}");
            }
            Err(error) => {
                failures += 1;
                eprintln!("error: {}", crate::error_chain(&error));
            }
        }
    }
    if failures > 0 {
        bail!("{failures} of {} artifacts failed", selected.len());
    }
    Ok(())
}

fn lock(catalog: &Catalog, mut options: ResolveOptions, update: bool) -> anyhow::Result<()> {
    let check_only = options.lock_mode.requires_pins();
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
                let kept = if lock.get(name).is_some() {
                    "entry kept as is"
                } else {
                    "no entry, still not locked"
                };
                println!("{name:<28} unavailable, {kept}: {error}");
            }
            Err(error) => {
                failures += 1;
                eprintln!("error: {}", crate::error_chain(&error));
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
            "{} is out of date; run `{} guests lock`",
            lock.path().display(),
            options.cli
        );
    } else {
        lock.save()?;
        println!("wrote {}", lock.path().display());
    }
    Ok(())
}
