//! `disk-img`: build a FAT32 image by hand.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Args;
use serde::Deserialize;
use vmharness::disk::{DiskSize, DiskSpec, EntrySpec, Layout};
use vmharness::fileref::FileRef;
use vmharness::qemu::DiskAttachment;
use vmharness::run::Resolver;
use vmharness::settings::Settings;

/// Arguments of `disk-img`.
#[derive(Args)]
pub struct DiskImgArgs {
    /// VM config TOML whose `[disk]` section describes the image.
    #[arg(long, conflicts_with = "manifest")]
    config: Option<PathBuf>,
    /// Disk manifest TOML (a `[disk]` section's keys at top level).
    #[arg(long)]
    manifest: Option<PathBuf>,
    /// Add a host file or directory: `HOST[:DEST]` (DEST defaults to `/`). Repeatable.
    #[arg(long = "add", value_name = "HOST:DEST")]
    add: Vec<String>,
    /// Image size: `auto`, `64M`, `1G`, ... (overrides the config).
    #[arg(long)]
    size: Option<DiskSize>,
    /// Volume label (overrides the config).
    #[arg(long)]
    label: Option<String>,
    /// Partition layout: `none` or `mbr` (overrides the config).
    #[arg(long)]
    layout: Option<Layout>,
    /// Output image path.
    #[arg(short = 'o', long = "output")]
    output: PathBuf,
}

/// The part of a VM config this command reads; other keys are ignored.
#[derive(Deserialize)]
struct VmConfigDisk {
    disk: DiskSpec,
}

fn read_toml<T: for<'de> Deserialize<'de>>(path: &Path) -> anyhow::Result<T> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

/// Resolves `source` strings like a VM run does: `artifact:` through the verified guest
/// cache, `env:VAR`, and paths relative to `base`.
fn resolver(
    base: PathBuf,
    settings: Settings,
) -> impl Fn(&FileRef) -> Result<PathBuf, vmharness::disk::ResolveFailure> {
    let resolver = Resolver::from_settings(&settings);
    move |source: &FileRef| {
        vmharness::run::resolve_ref(source, &base, &resolver, &settings).map_err(Into::into)
    }
}

/// Builds the image and prints its geometry and the QEMU arguments that attach it.
pub fn run(args: DiskImgArgs) -> anyhow::Result<()> {
    let (mut spec, base) = match (&args.config, &args.manifest) {
        (Some(config), _) => (read_toml::<VmConfigDisk>(config)?.disk, parent_dir(config)),
        (None, Some(manifest)) => (read_toml::<DiskSpec>(manifest)?, parent_dir(manifest)),
        (None, None) => (DiskSpec::default(), PathBuf::from(".")),
    };
    let cwd = std::env::current_dir().context("current directory")?;
    for add in &args.add {
        let (host, dest) = add.rsplit_once(':').unwrap_or((add.as_str(), "/"));
        if host.is_empty() {
            bail!("--add `{add}`: expected HOST:DEST");
        }
        // `--add` paths are relative to the current directory, config sources to the config.
        let host = cwd.join(host);
        spec.entries.push(EntrySpec {
            dest: dest.to_string(),
            source: Some(FileRef::Path(host)),
            text: None,
        });
    }
    if let Some(size) = args.size {
        spec.size = size;
    }
    if let Some(label) = args.label {
        spec.label = Some(label);
    }
    if let Some(layout) = args.layout {
        spec.layout = layout;
    }
    let settings = Settings::from_env()?;
    let epoch = settings.source_date_epoch;
    let mut builder = spec.builder(&resolver(base, settings))?;
    if let Some(epoch) = epoch {
        builder = builder.timestamp(epoch);
    }
    let image = builder
        .build(&args.output)
        .with_context(|| format!("building {}", args.output.display()))?;
    println!(
        "{}: {} bytes, layout {}, {} of {} clusters of {} bytes used, volume id {:08X}",
        image.path.display(),
        image.size_bytes,
        image.layout,
        image.used_clusters,
        image.clusters,
        image.cluster_bytes,
        image.volume_id
    );
    let attachment = DiskAttachment {
        image: image.path.clone(),
        device: spec.attach.driver().to_string(),
    };
    println!("qemu: {}", attachment.args().join(" "));
    Ok(())
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    }
}
