//! The fixed-format sectors: FAT32 boot sector (BPB), FSInfo, and the MBR.

use crate::geometry::{Geometry, FAT_COUNT, RESERVED_SECTORS, SECTOR};

/// Sector (within the volume) of the FSInfo structure.
pub(crate) const FSINFO_SECTOR: u64 = 1;
/// Sector (within the volume) of the backup boot sector; the backup FSInfo follows it.
pub(crate) const BACKUP_BOOT_SECTOR: u64 = 6;
/// Media descriptor for fixed disks.
const MEDIA_FIXED: u8 = 0xF8;
/// MBR partition type: FAT32 with LBA addressing.
const PARTITION_FAT32_LBA: u8 = 0x0C;

/// Fields of the boot sector that are not geometry.
pub(crate) struct VolumeInfo {
    pub volume_id: u32,
    pub label: [u8; 11],
    /// Sectors before the volume on the disk (the partition start, or 0).
    pub hidden_sectors: u32,
}

/// The FAT32 boot sector.
pub(crate) fn boot_sector(geometry: &Geometry, info: &VolumeInfo) -> [u8; 512] {
    let mut s = [0u8; 512];
    s[0..3].copy_from_slice(&[0xEB, 0x58, 0x90]);
    s[3..11].copy_from_slice(b"VMHARNES");
    s[11..13].copy_from_slice(&(SECTOR as u16).to_le_bytes());
    s[13] = geometry.sectors_per_cluster as u8;
    s[14..16].copy_from_slice(&(RESERVED_SECTORS as u16).to_le_bytes());
    s[16] = FAT_COUNT as u8;
    s[21] = MEDIA_FIXED;
    s[24..26].copy_from_slice(&63u16.to_le_bytes());
    s[26..28].copy_from_slice(&255u16.to_le_bytes());
    s[28..32].copy_from_slice(&info.hidden_sectors.to_le_bytes());
    s[32..36].copy_from_slice(&geometry.volume_sectors.to_le_bytes());
    s[36..40].copy_from_slice(&geometry.fat_sectors.to_le_bytes());
    s[44..48].copy_from_slice(&2u32.to_le_bytes());
    s[48..50].copy_from_slice(&(FSINFO_SECTOR as u16).to_le_bytes());
    s[50..52].copy_from_slice(&(BACKUP_BOOT_SECTOR as u16).to_le_bytes());
    s[64] = 0x80;
    s[66] = 0x29;
    s[67..71].copy_from_slice(&info.volume_id.to_le_bytes());
    s[71..82].copy_from_slice(&info.label);
    s[82..90].copy_from_slice(b"FAT32   ");
    // Boot code at the jump target: halt forever (this volume is not bootable).
    s[90..93].copy_from_slice(&[0xF4, 0xEB, 0xFD]);
    s[510..512].copy_from_slice(&[0x55, 0xAA]);
    s
}

/// The FSInfo sector with the free-cluster count and the next free cluster hint.
pub(crate) fn fsinfo_sector(geometry: &Geometry, used_clusters: u32) -> [u8; 512] {
    let mut s = [0u8; 512];
    let free = geometry.clusters - used_clusters;
    let next_free = if free == 0 {
        u32::MAX
    } else {
        used_clusters + 2
    };
    s[0..4].copy_from_slice(&0x4161_5252u32.to_le_bytes());
    s[484..488].copy_from_slice(&0x6141_7272u32.to_le_bytes());
    s[488..492].copy_from_slice(&free.to_le_bytes());
    s[492..496].copy_from_slice(&next_free.to_le_bytes());
    s[508..512].copy_from_slice(&0xAA55_0000u32.to_le_bytes());
    s
}

/// CHS address of `lba` for a 255-head, 63-sector geometry, saturated to the maximum.
fn chs(lba: u64) -> [u8; 3] {
    let cylinder = lba / (255 * 63);
    if cylinder > 1023 {
        return [0xFE, 0xFF, 0xFF];
    }
    let head = (lba / 63 % 255) as u8;
    let sector = (lba % 63 + 1) as u8;
    [
        head,
        sector | ((cylinder >> 2) as u8 & 0xC0),
        cylinder as u8,
    ]
}

/// An MBR with one FAT32 LBA partition of `sectors` sectors starting at `start`.
pub(crate) fn mbr_sector(start: u32, sectors: u32, disk_signature: u32) -> [u8; 512] {
    let mut s = [0u8; 512];
    s[440..444].copy_from_slice(&disk_signature.to_le_bytes());
    let entry = &mut s[446..462];
    entry[1..4].copy_from_slice(&chs(start as u64));
    entry[4] = PARTITION_FAT32_LBA;
    entry[5..8].copy_from_slice(&chs(start as u64 + sectors as u64 - 1));
    entry[8..12].copy_from_slice(&start.to_le_bytes());
    entry[12..16].copy_from_slice(&sectors.to_le_bytes());
    s[510..512].copy_from_slice(&[0x55, 0xAA]);
    s
}
