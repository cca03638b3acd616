//! fileserver's tests: a 9P2000.L client drives `serve` over a UnixStream pair against scratch
//! directories under /tmp. They run as root (ownership tests need it).

mod client;
mod fixture;

mod basic;
mod dirs;
mod escape;
mod file_share;
mod ownership;
mod protocol;
mod readonly;
mod throughput;
mod xattrs;
