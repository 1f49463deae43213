//! What a failure report shows besides the console: the guest's first crash block ([`crash`]),
//! its vCPUs' state over QMP ([`vcpu`]) and the symbols that name their addresses
//! ([`Symbols`]).

pub(crate) mod crash;
pub(crate) mod symbols;
pub mod vcpu;

pub use crash::CrashBlock;
pub(crate) use symbols::Symbols;
