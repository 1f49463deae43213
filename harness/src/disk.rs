//! FAT32 disk images built in-process (owned by the disk work; see issue 3).
