//! Stands for the project under test (an OS, a hypervisor); vmharness only needs its tests.
