//! `dax-check PATH...`: whether each file is accessed through DAX (statx's STATX_ATTR_DAX: the
//! kernel maps the file's storage directly, with no page cache copy). Prints one line a file,
//! `dax-check: PATH dax=yes|no|unknown`, and exits 0 if every file is DAX, 1 if one is not, 2 if
//! one cannot be examined.

use std::ffi::CString;

/// include/uapi/linux/stat.h (not in the libc crate).
const STATX_ATTR_DAX: u64 = 0x0020_0000;

fn main() {
    let mut status = 0;
    for path in std::env::args().skip(1) {
        let Ok(c_path) = CString::new(path.as_str()) else {
            eprintln!("dax-check: {path}: contains a NUL byte");
            status = 2;
            continue;
        };
        // SAFETY: statx only writes into the struct we pass; zero is a valid bit pattern for it.
        let mut st: libc::statx = unsafe { std::mem::zeroed() };
        // SAFETY: a NUL-terminated path and a valid, writable statx struct.
        let r = unsafe {
            libc::statx(
                libc::AT_FDCWD,
                c_path.as_ptr(),
                0,
                libc::STATX_BASIC_STATS,
                &mut st,
            )
        };
        if r != 0 {
            eprintln!("dax-check: {path}: {}", std::io::Error::last_os_error());
            status = 2;
            continue;
        }
        let state = if st.stx_attributes & STATX_ATTR_DAX != 0 {
            "yes"
        } else if st.stx_attributes_mask & STATX_ATTR_DAX != 0 {
            "no"
        } else {
            "unknown"
        };
        println!("dax-check: {path} dax={state}");
        if state != "yes" && status == 0 {
            status = 1;
        }
    }
    std::process::exit(status);
}
