//! Single-pass image writer: FATs, directories and file data in increasing offset order through
//! one staging buffer, skipping all-zero blocks so they stay holes; boot sectors last, once the
//! content hash (the default volume id) is known.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::boot::{
    boot_sector, fsinfo_sector, mbr_sector, VolumeInfo, BACKUP_BOOT_SECTOR, FSINFO_SECTOR,
};
use crate::error::ImageError;
use crate::geometry::{Geometry, SECTOR};
use crate::layout::{DosTime, Plan};
use crate::tree::Content;

/// Staging buffer size: large enough for few syscalls, small enough to stay in cache.
const STAGE_BYTES: usize = 1 << 20;
/// Granularity of hole detection (the page size, which is also the usual fs block size).
const HOLE_BLOCK: usize = 4096;

/// What the writer needs besides the plan.
pub(crate) struct WriteParams<'a> {
    pub geometry: &'a Geometry,
    pub volume_offset: u64,
    pub image_bytes: u64,
    pub label: [u8; 11],
    pub volume_id: Option<u32>,
    pub time: DosTime,
}

/// Contiguous writes collected in a buffer; flushed with `pwrite`, zero blocks left as holes.
struct Stage<'f> {
    file: &'f File,
    image: &'f Path,
    buf: Vec<u8>,
    start: u64,
    hasher: crc32fast::Hasher,
}

impl Stage<'_> {
    fn io_error(&self, source: io::Error) -> ImageError {
        ImageError::Write {
            path: self.image.to_path_buf(),
            source,
        }
    }

    /// Makes the buffer continue at `offset` (flushing if it does not) with room for one byte.
    fn seek(&mut self, offset: u64) -> Result<(), ImageError> {
        if offset != self.start + self.buf.len() as u64 || self.buf.len() == STAGE_BYTES {
            self.flush()?;
            self.start = offset;
        }
        Ok(())
    }

    fn put(&mut self, offset: u64, mut data: &[u8]) -> Result<(), ImageError> {
        self.seek(offset)?;
        while !data.is_empty() {
            let room = STAGE_BYTES - self.buf.len();
            let (now, rest) = data.split_at(room.min(data.len()));
            self.buf.extend_from_slice(now);
            data = rest;
            if self.buf.len() == STAGE_BYTES {
                self.flush()?;
            }
        }
        Ok(())
    }

    /// Copies exactly `size` bytes of host file `path` to `offset`, then pads to `align`.
    fn copy_file(
        &mut self,
        offset: u64,
        path: &Path,
        size: u64,
        align: u64,
    ) -> Result<(), ImageError> {
        let source_error = |source| ImageError::Source {
            path: path.to_path_buf(),
            source,
        };
        let mut file = File::open(path).map_err(source_error)?;
        self.seek(offset)?;
        let mut remaining = size;
        while remaining > 0 {
            if self.buf.len() == STAGE_BYTES {
                self.flush()?;
            }
            let take = (STAGE_BYTES - self.buf.len()).min(remaining as usize);
            // `read_to_end` fills spare capacity without zeroing it first.
            let read = (&mut file)
                .take(take as u64)
                .read_to_end(&mut self.buf)
                .map_err(source_error)?;
            if read != take {
                return Err(changed(path, size));
            }
            remaining -= take as u64;
        }
        let mut probe = [0u8; 1];
        if file.read(&mut probe).map_err(source_error)? != 0 {
            return Err(changed(path, size));
        }
        self.pad(offset + size, align)
    }

    /// Appends zeros up to the next multiple of `align` (relative to the image start).
    fn pad(&mut self, end: u64, align: u64) -> Result<(), ImageError> {
        let padding = end.next_multiple_of(align) - end;
        if padding > 0 {
            self.seek(end)?;
            let new_len = self.buf.len() + padding as usize;
            if new_len <= STAGE_BYTES {
                self.buf.resize(new_len, 0);
            } else {
                self.put(end, &vec![0; padding as usize])?;
            }
        }
        Ok(())
    }

    /// Writes the buffer, skipping `HOLE_BLOCK`-aligned all-zero blocks.
    fn flush(&mut self) -> Result<(), ImageError> {
        self.hasher.update(&self.buf);
        let mut pos = 0usize;
        while pos < self.buf.len() {
            let offset = self.start + pos as u64;
            let block_end = (offset + 1).next_multiple_of(HOLE_BLOCK as u64);
            let end = ((block_end - self.start) as usize).min(self.buf.len());
            let block = &self.buf[pos..end];
            let whole_block = offset.is_multiple_of(HOLE_BLOCK as u64) && block.len() == HOLE_BLOCK;
            if whole_block && is_zero(block) {
                pos = end;
                continue;
            }
            // Extend the run over following non-zero (or partial) blocks.
            let mut run_end = end;
            while run_end < self.buf.len() {
                let next = (run_end + HOLE_BLOCK).min(self.buf.len());
                let chunk = &self.buf[run_end..next];
                if chunk.len() == HOLE_BLOCK && is_zero(chunk) {
                    break;
                }
                run_end = next;
            }
            let result = self.file.write_all_at(&self.buf[pos..run_end], offset);
            result.map_err(|source| self.io_error(source))?;
            pos = run_end;
        }
        self.start += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }
}

/// Whether `block` (at most `HOLE_BLOCK` bytes) is all zeros; a slice compare is a `memcmp`,
/// fast even in debug builds.
fn is_zero(block: &[u8]) -> bool {
    static ZEROS: [u8; HOLE_BLOCK] = [0; HOLE_BLOCK];
    block == &ZEROS[..block.len()]
}

fn changed(path: &Path, expected: u64) -> ImageError {
    ImageError::SourceChanged {
        path: path.to_path_buf(),
        expected,
    }
}

/// Writes the whole image described by `plan` into `file` (already sized to the image) and
/// returns the volume id used.
pub(crate) fn write_image(
    file: &File,
    image: &Path,
    plan: &Plan,
    params: &WriteParams,
) -> Result<u32, ImageError> {
    let g = params.geometry;
    let base = params.volume_offset;
    let cluster_bytes = g.cluster_bytes();
    let mut stage = Stage {
        file,
        image,
        buf: Vec::with_capacity(STAGE_BYTES),
        start: 0,
        hasher: crc32fast::Hasher::new(),
    };
    let hidden_sectors = (base / SECTOR) as u32;
    let unnamed = VolumeInfo {
        volume_id: 0,
        label: params.label,
        hidden_sectors,
    };
    stage.hasher.update(&boot_sector(g, &unnamed));
    let fat = plan.fat_bytes(cluster_bytes);
    stage.put(base + g.fat_offset(0), &fat)?;
    stage.put(base + g.fat_offset(1), &fat)?;
    for dir in 0..plan.dir_count() {
        let bytes = plan.encode_dir(dir, &params.label, params.time, cluster_bytes);
        stage.put(base + g.cluster_offset(plan.dir_cluster(dir)), &bytes)?;
    }
    for planned in plan.files.iter().filter(|f| f.first_cluster != 0) {
        let offset = base + g.cluster_offset(planned.first_cluster);
        match &planned.file.content {
            Content::Inline(data) => {
                stage.put(offset, data)?;
                stage.pad(offset + data.len() as u64, cluster_bytes)?;
            }
            Content::Host(path) => {
                stage.copy_file(offset, path, planned.file.size, cluster_bytes)?
            }
        }
    }
    stage.flush()?;
    let volume_id = params
        .volume_id
        .unwrap_or_else(|| stage.hasher.clone().finalize());
    let info = VolumeInfo {
        volume_id,
        label: params.label,
        hidden_sectors,
    };
    let boot = boot_sector(g, &info);
    let fsinfo = fsinfo_sector(g, plan.used_clusters);
    let write = |offset: u64, sector: &[u8; 512]| {
        file.write_all_at(sector, offset)
            .map_err(|source| ImageError::Write {
                path: PathBuf::from(image),
                source,
            })
    };
    write(base, &boot)?;
    write(base + FSINFO_SECTOR * SECTOR, &fsinfo)?;
    write(base + BACKUP_BOOT_SECTOR * SECTOR, &boot)?;
    write(
        base + (BACKUP_BOOT_SECTOR + FSINFO_SECTOR) * SECTOR,
        &fsinfo,
    )?;
    if base > 0 {
        let sectors = ((params.image_bytes - base) / SECTOR) as u32;
        write(0, &mbr_sector(hidden_sectors, sectors, volume_id))?;
    }
    Ok(volume_id)
}
