#![doc = include_str!("../README.md")]

mod boot;
mod builder;
mod error;
mod geometry;
mod layout;
mod names;
mod options;
mod tree;
mod writer;

pub use builder::{BuiltImage, ImageBuilder};
pub use error::ImageError;
pub use options::{DiskSize, Layout};
pub use tree::Entry;
