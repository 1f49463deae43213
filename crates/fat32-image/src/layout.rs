//! Where everything goes: directories and files flattened in cluster order, directory entries
//! encoded, the FAT computed. Nothing here touches the image file.

use std::collections::VecDeque;

use crate::error::ImageError;
use crate::geometry::Geometry;
use crate::names::{assign_names, FatName};
use crate::tree::{DirNode, FileNode, Node, Tree};

/// Bytes per directory entry.
const DIR_ENTRY: u64 = 32;
/// Most entries a FAT directory may hold.
const MAX_DIR_ENTRIES: u64 = 65536;
const ATTR_DIRECTORY: u8 = 0x10;
const ATTR_ARCHIVE: u8 = 0x20;
const ATTR_VOLUME_ID: u8 = 0x08;
/// End-of-chain marker.
const FAT_EOC: u32 = 0x0FFF_FFFF;

/// A DOS timestamp (local time fields, 2-second resolution plus hundredths).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DosTime {
    date: u16,
    time: u16,
    hundredths: u8,
}

impl DosTime {
    /// Converts Unix seconds (UTC) to a DOS timestamp, clamped to 1980-01-01..2107-12-31.
    pub fn from_unix(seconds: u64) -> DosTime {
        const MIN: u64 = 315_532_800; // 1980-01-01T00:00:00Z
        const MAX: u64 = 4_354_819_199; // 2107-12-31T23:59:59Z
        let seconds = seconds.clamp(MIN, MAX);
        let (days, secs) = (seconds / 86_400, seconds % 86_400);
        // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
        let z = days as i64 + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        let date = (((year - 1980) as u16) << 9) | ((month as u16) << 5) | day as u16;
        let (hour, minute, second) = (secs / 3600, secs / 60 % 60, secs % 60);
        let time = ((hour as u16) << 11) | ((minute as u16) << 5) | (second as u16 / 2);
        DosTime {
            date,
            time,
            hundredths: (second % 2 * 100) as u8,
        }
    }
}

/// A directory in cluster order.
struct PlanDir<'t> {
    node: &'t DirNode,
    names: Vec<FatName>,
    /// Index of the parent in `Plan::dirs` (the root is its own parent).
    parent: usize,
    /// Directory size in bytes before rounding to clusters.
    bytes: u64,
    /// For each child, its index in `dirs` or `files`.
    targets: Vec<usize>,
    first_cluster: u32,
}

/// A file in cluster order.
pub(crate) struct PlanFile<'t> {
    pub file: &'t FileNode,
    pub first_cluster: u32,
}

/// Everything placed: root directory first (cluster 2), other directories breadth-first, then files.
pub(crate) struct Plan<'t> {
    dirs: Vec<PlanDir<'t>>,
    pub files: Vec<PlanFile<'t>>,
    has_label: bool,
    /// Clusters in use after [`Plan::assign`].
    pub used_clusters: u32,
}

impl<'t> Plan<'t> {
    /// Flattens `tree` and sizes every directory.
    pub fn new(tree: &'t Tree, has_label: bool) -> Result<Plan<'t>, ImageError> {
        let mut plan = Plan {
            dirs: Vec::new(),
            files: Vec::new(),
            has_label,
            used_clusters: 0,
        };
        let mut queue = VecDeque::from([(&tree.root, 0usize, String::from("/"))]);
        while let Some((node, parent, path)) = queue.pop_front() {
            let index = plan.dirs.len();
            let names = assign_names(node.children.iter().map(|child| child.name.as_str()));
            let fixed = if index == 0 { u64::from(has_label) } else { 2 };
            let entries = fixed + names.iter().map(|n| n.entry_count() as u64).sum::<u64>();
            if entries > MAX_DIR_ENTRIES {
                return Err(ImageError::DirectoryTooLarge { path, entries });
            }
            let mut targets = Vec::with_capacity(node.children.len());
            let mut queued = plan.dirs.len() + queue.len() + 1;
            for child in &node.children {
                match &child.node {
                    Node::Dir(sub) => {
                        targets.push(queued);
                        queued += 1;
                        let sub_path = format!("{}/{}", path.trim_end_matches('/'), child.name);
                        queue.push_back((sub, index, sub_path));
                    }
                    Node::File(file) => {
                        targets.push(plan.files.len());
                        plan.files.push(PlanFile {
                            file,
                            first_cluster: 0,
                        });
                    }
                }
            }
            plan.dirs.push(PlanDir {
                node,
                names,
                parent,
                bytes: entries * DIR_ENTRY,
                targets,
                first_cluster: 0,
            });
        }
        Ok(plan)
    }

    /// Clusters the content needs with clusters of `cluster_bytes` (every directory takes at
    /// least one; empty files take none).
    pub fn clusters_needed(&self, cluster_bytes: u64) -> u64 {
        let dirs: u64 = self
            .dirs
            .iter()
            .map(|d| d.bytes.div_ceil(cluster_bytes).max(1))
            .sum();
        let files: u64 = self
            .files
            .iter()
            .map(|f| f.file.size.div_ceil(cluster_bytes))
            .sum();
        dirs + files
    }

    /// Assigns first clusters in order; the caller has checked that everything fits.
    pub fn assign(&mut self, geometry: &Geometry) {
        let cluster_bytes = geometry.cluster_bytes();
        let mut next = 2u32;
        for dir in &mut self.dirs {
            dir.first_cluster = next;
            next += dir.bytes.div_ceil(cluster_bytes).max(1) as u32;
        }
        for file in &mut self.files {
            let clusters = file.file.size.div_ceil(cluster_bytes) as u32;
            file.first_cluster = if clusters == 0 { 0 } else { next };
            next += clusters;
        }
        self.used_clusters = next - 2;
    }

    /// Number of directories (they occupy the first clusters, in order).
    pub fn dir_count(&self) -> usize {
        self.dirs.len()
    }

    /// First cluster of directory `index` (after [`Plan::assign`]).
    pub fn dir_cluster(&self, index: usize) -> u32 {
        self.dirs[index].first_cluster
    }

    /// The encoded entries of directory `index`, padded to whole clusters.
    pub fn encode_dir(
        &self,
        index: usize,
        label: &[u8; 11],
        time: DosTime,
        cluster_bytes: u64,
    ) -> Vec<u8> {
        let dir = &self.dirs[index];
        let mut out = Vec::with_capacity(
            dir.bytes.div_ceil(cluster_bytes).max(1) as usize * cluster_bytes as usize,
        );
        if index == 0 {
            if self.has_label {
                out.extend_from_slice(&short_entry(label, ATTR_VOLUME_ID, 0, 0, 0, time));
            }
        } else {
            let parent = &self.dirs[dir.parent];
            let parent_cluster = if dir.parent == 0 {
                0
            } else {
                parent.first_cluster
            };
            out.extend_from_slice(&short_entry(
                b".          ",
                ATTR_DIRECTORY,
                0,
                dir.first_cluster,
                0,
                time,
            ));
            out.extend_from_slice(&short_entry(
                b"..         ",
                ATTR_DIRECTORY,
                0,
                parent_cluster,
                0,
                time,
            ));
        }
        for ((child, name), &target) in dir.node.children.iter().zip(&dir.names).zip(&dir.targets) {
            name.write_lfn_entries(&mut out);
            let entry = match &child.node {
                Node::Dir(_) => {
                    let cluster = self.dirs[target].first_cluster;
                    short_entry(
                        &name.short,
                        ATTR_DIRECTORY,
                        name.case_bits,
                        cluster,
                        0,
                        time,
                    )
                }
                Node::File(file) => {
                    let cluster = self.files[target].first_cluster;
                    short_entry(
                        &name.short,
                        ATTR_ARCHIVE,
                        name.case_bits,
                        cluster,
                        file.size as u32,
                        time,
                    )
                }
            };
            out.extend_from_slice(&entry);
        }
        out.resize(
            out.len().div_ceil(cluster_bytes as usize).max(1) * cluster_bytes as usize,
            0,
        );
        out
    }

    /// The used prefix of the FAT (entries 0 and 1 plus every allocated cluster), little endian.
    pub fn fat_bytes(&self, cluster_bytes: u64) -> Vec<u8> {
        let mut fat = Vec::with_capacity((self.used_clusters as usize + 2) * 4);
        fat.extend_from_slice(&0x0FFF_FFF8u32.to_le_bytes());
        fat.extend_from_slice(&FAT_EOC.to_le_bytes());
        let dir_chains = self
            .dirs
            .iter()
            .map(|d| d.bytes.div_ceil(cluster_bytes).max(1));
        let file_chains = self
            .files
            .iter()
            .map(|f| f.file.size.div_ceil(cluster_bytes));
        let mut cluster = 2u32;
        for length in dir_chains.chain(file_chains).filter(|&n| n > 0) {
            for _ in 1..length {
                cluster += 1;
                fat.extend_from_slice(&cluster.to_le_bytes());
            }
            cluster += 1;
            fat.extend_from_slice(&FAT_EOC.to_le_bytes());
        }
        fat
    }
}

/// One 8.3 directory entry.
fn short_entry(
    name: &[u8; 11],
    attr: u8,
    case_bits: u8,
    cluster: u32,
    size: u32,
    time: DosTime,
) -> [u8; 32] {
    let mut entry = [0u8; 32];
    entry[..11].copy_from_slice(name);
    entry[11] = attr;
    entry[12] = case_bits;
    entry[13] = time.hundredths;
    entry[14..16].copy_from_slice(&time.time.to_le_bytes());
    entry[16..18].copy_from_slice(&time.date.to_le_bytes());
    entry[18..20].copy_from_slice(&time.date.to_le_bytes());
    entry[20..22].copy_from_slice(&((cluster >> 16) as u16).to_le_bytes());
    entry[22..24].copy_from_slice(&time.time.to_le_bytes());
    entry[24..26].copy_from_slice(&time.date.to_le_bytes());
    entry[26..28].copy_from_slice(&(cluster as u16).to_le_bytes());
    entry[28..32].copy_from_slice(&size.to_le_bytes());
    entry
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dos_time_matches_known_dates() {
        // 2024-02-29T13:45:31Z
        let t = DosTime::from_unix(1_709_214_331);
        assert_eq!(t.date, (44 << 9) | (2 << 5) | 29);
        assert_eq!(t.time, (13 << 11) | (45 << 5) | 15);
        assert_eq!(t.hundredths, 100);
        assert_eq!(
            DosTime::from_unix(0).date,
            (1 << 5) | 1,
            "clamped to 1980-01-01"
        );
    }
}
