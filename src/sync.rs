//! Lock helpers that ignore poisoning: a panic caught at the ABI boundary
//! must not leave a socket unusable.

use std::sync::{Mutex, MutexGuard, PoisonError};

pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
