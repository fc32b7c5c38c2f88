//! The free-space guard: writes stop with [`StoreError::NoSpace`] while the disk still has a
//! reserve, so that sled (whose log cannot survive `ENOSPC` mid-write) and the pin journal never
//! meet a full disk, and deletes (GC, `pin rm`) always have room to run.
//!
//! The reserve is `[store] reserve_mib` when set (0 switches the guard off), otherwise
//! [`auto_reserve`]: 5 % of the filesystem, at least 1 MiB and at most 1 GiB.

use std::path::{Path, PathBuf};

use crate::blockstore::StoreError;

/// Smallest automatic reserve.
pub const MIN_AUTO_RESERVE: u64 = 1 << 20;
/// Largest automatic reserve.
pub const MAX_AUTO_RESERVE: u64 = 1 << 30;

/// Space figures of the filesystem holding a path.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Space {
    /// Bytes an unprivileged user may still write.
    pub available: u64,
    /// Size of the filesystem in bytes.
    pub total: u64,
}

/// `statvfs` of `path`.
#[allow(unsafe_code)]
pub(crate) fn space(path: &Path) -> std::io::Result<Space> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `c` is a valid NUL-terminated path and `st` is a properly sized out-parameter.
    let rc = unsafe { libc::statvfs(c.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: statvfs returned 0, so it filled `st`.
    let st = unsafe { st.assume_init() };
    let frsize = st.f_frsize;
    Ok(Space {
        available: st.f_bavail.saturating_mul(frsize),
        total: st.f_blocks.saturating_mul(frsize),
    })
}

/// The reserve used when none is configured: 5 % of the filesystem, within
/// [`MIN_AUTO_RESERVE`]..=[`MAX_AUTO_RESERVE`].
pub fn auto_reserve(total: u64) -> u64 {
    (total / 20).clamp(MIN_AUTO_RESERVE, MAX_AUTO_RESERVE)
}

/// Checks that `incoming` more bytes can be written under `dir` while leaving the reserve.
#[derive(Debug, Clone)]
pub(crate) struct Guard {
    dir: PathBuf,
    /// `None`: automatic; `Some(0)`: off.
    reserve: Option<u64>,
}

impl Guard {
    pub(crate) fn new(dir: PathBuf, reserve: Option<u64>) -> Self {
        Guard { dir, reserve }
    }

    /// `Ok` if `incoming` bytes fit above the reserve (or the guard is off).
    pub(crate) fn check(&self, incoming: u64) -> Result<(), StoreError> {
        if self.reserve == Some(0) {
            return Ok(());
        }
        // If statvfs itself fails, let the write try: the OS will say ENOSPC if it must.
        let Ok(sp) = space(&self.dir) else {
            return Ok(());
        };
        let reserve = self.reserve.unwrap_or_else(|| auto_reserve(sp.total));
        if sp.available < reserve.saturating_add(incoming) {
            return Err(StoreError::NoSpace {
                path: self.dir.clone(),
                free: sp.available,
                reserve,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserve_bounds_and_guard() {
        assert_eq!(auto_reserve(0), MIN_AUTO_RESERVE);
        assert_eq!(auto_reserve(64 << 20), (64 << 20) / 20);
        assert_eq!(auto_reserve(u64::MAX), MAX_AUTO_RESERVE);
        let dir = tempfile::tempdir().unwrap();
        assert!(Guard::new(dir.path().into(), Some(0))
            .check(u64::MAX)
            .is_ok());
        let e = Guard::new(dir.path().into(), Some(1))
            .check(u64::MAX / 2)
            .unwrap_err();
        assert!(e.is_no_space(), "{e}");
        assert!(e.to_string().starts_with("no space left on device"), "{e}");
    }
}
