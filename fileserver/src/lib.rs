//! vmctl's 9P2000.L file server (being written).
