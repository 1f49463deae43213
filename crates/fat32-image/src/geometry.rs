//! FAT32 volume geometry: cluster size (chosen like mkfs.fat), FAT size, cluster count.

/// Bytes per sector; the only sector size we write.
pub(crate) const SECTOR: u64 = 512;
/// Reserved sectors before the first FAT (boot sector, FSInfo, backup boot sector).
pub(crate) const RESERVED_SECTORS: u32 = 32;
/// Number of FAT copies.
pub(crate) const FAT_COUNT: u32 = 2;
/// Fewest clusters a FAT32 volume may have; fewer makes readers treat it as FAT16.
pub(crate) const MIN_CLUSTERS: u32 = 65525;
/// Most clusters a FAT32 volume may have (cluster numbers above are reserved).
pub(crate) const MAX_CLUSTERS: u32 = 0x0FFF_FFF4;
/// Largest volume whose sector count fits the 32-bit BPB field.
pub(crate) const MAX_VOLUME_BYTES: u64 = u32::MAX as u64 * SECTOR;

/// The layout of one FAT32 volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Geometry {
    /// Sectors in the volume (the partition, or the whole image without a partition table).
    pub volume_sectors: u32,
    /// Sectors per cluster.
    pub sectors_per_cluster: u32,
    /// Sectors per FAT copy.
    pub fat_sectors: u32,
    /// Data clusters, numbered 2..clusters+2.
    pub clusters: u32,
}

/// Why a volume size cannot hold FAT32.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GeometryError {
    /// Fewer than [`MIN_CLUSTERS`] clusters fit.
    TooSmall,
    /// More sectors or clusters than FAT32 can address.
    TooLarge,
}

/// Sectors per cluster mkfs.fat picks for a FAT32 volume of `volume_bytes`
/// (after Microsoft's table: 512 B up to 260 MiB, 4 KiB up to 8 GiB, then doubling).
fn mkfs_sectors_per_cluster(volume_bytes: u64) -> u32 {
    let mib = volume_bytes.div_ceil(1 << 20);
    match mib {
        0..=260 => 1,
        261..=8192 => 8,
        8193..=16384 => 16,
        16385..=32768 => 32,
        _ => 64,
    }
}

impl Geometry {
    /// The geometry mkfs.fat would choose for a volume of `volume_bytes` (rounded down to sectors).
    pub fn for_volume(volume_bytes: u64) -> Result<Geometry, GeometryError> {
        if volume_bytes > MAX_VOLUME_BYTES {
            return Err(GeometryError::TooLarge);
        }
        let volume_sectors = (volume_bytes / SECTOR) as u32;
        let spc = mkfs_sectors_per_cluster(volume_bytes);
        let after_reserved = volume_sectors.saturating_sub(RESERVED_SECTORS) as u64;
        let entries_per_sector = SECTOR / 4;
        let clusters_with =
            |fat: u64| after_reserved.saturating_sub(FAT_COUNT as u64 * fat) / spc as u64;
        // Smallest FAT that can address every cluster left after it.
        let mut fat = (after_reserved / spc as u64 + 2)
            .div_ceil(entries_per_sector)
            .max(1);
        while fat > 1 && (clusters_with(fat - 1) + 2) <= (fat - 1) * entries_per_sector {
            fat -= 1;
        }
        // Align the data region to the cluster size (and to 4 KiB pages) like mkfs.fat does.
        let align = spc.max(8) as u64;
        while !(RESERVED_SECTORS as u64 + FAT_COUNT as u64 * fat).is_multiple_of(align) {
            fat += 1;
        }
        let clusters = clusters_with(fat);
        if clusters < MIN_CLUSTERS as u64 {
            return Err(GeometryError::TooSmall);
        }
        if clusters > MAX_CLUSTERS as u64 {
            return Err(GeometryError::TooLarge);
        }
        Ok(Geometry {
            volume_sectors,
            sectors_per_cluster: spc,
            fat_sectors: fat as u32,
            clusters: clusters as u32,
        })
    }

    /// Smallest volume size in bytes (a whole number of MiB) that holds FAT32.
    pub fn minimum_volume_bytes() -> u64 {
        let overhead = (RESERVED_SECTORS as u64 + 2 * 520) * SECTOR;
        let mut bytes = (overhead + MIN_CLUSTERS as u64 * SECTOR).next_multiple_of(1 << 20);
        while Geometry::for_volume(bytes).is_err() {
            bytes += 1 << 20;
        }
        bytes
    }

    /// Bytes per cluster.
    pub fn cluster_bytes(&self) -> u64 {
        self.sectors_per_cluster as u64 * SECTOR
    }

    /// Byte offset (within the volume) of FAT copy `index`.
    pub fn fat_offset(&self, index: u32) -> u64 {
        (RESERVED_SECTORS + index * self.fat_sectors) as u64 * SECTOR
    }

    /// Byte offset (within the volume) of data cluster `cluster` (2-based).
    pub fn cluster_offset(&self, cluster: u32) -> u64 {
        let data_start = RESERVED_SECTORS as u64 + FAT_COUNT as u64 * self.fat_sectors as u64;
        (data_start + (cluster as u64 - 2) * self.sectors_per_cluster as u64) * SECTOR
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_sizes_follow_mkfs() {
        let mib = 1u64 << 20;
        assert_eq!(
            Geometry::for_volume(64 * mib).map(|g| g.sectors_per_cluster),
            Ok(1)
        );
        assert_eq!(
            Geometry::for_volume(1024 * mib).map(|g| g.sectors_per_cluster),
            Ok(8)
        );
        assert_eq!(Geometry::for_volume(16 * mib), Err(GeometryError::TooSmall));
        assert_eq!(
            Geometry::for_volume(4096 * 1024 * mib),
            Err(GeometryError::TooLarge)
        );
    }

    #[test]
    fn fat_covers_every_cluster_and_data_is_aligned() {
        for mib in [33u64, 64, 100, 260, 261, 1024, 9000] {
            let g = Geometry::for_volume(mib << 20).expect("valid FAT32 size");
            assert!(
                (g.clusters as u64 + 2) * 4 <= g.fat_sectors as u64 * SECTOR,
                "{mib} MiB"
            );
            assert!(g.clusters >= MIN_CLUSTERS);
            assert_eq!(g.cluster_offset(2) % 4096, 0, "{mib} MiB");
            let used = g.cluster_offset(2) + g.clusters as u64 * g.cluster_bytes();
            assert!(used <= mib << 20);
        }
    }

    #[test]
    fn minimum_is_the_smallest_valid_mib() {
        let min = Geometry::minimum_volume_bytes();
        assert!(Geometry::for_volume(min).is_ok());
        assert!(Geometry::for_volume(min - (1 << 20)).is_err());
    }
}
