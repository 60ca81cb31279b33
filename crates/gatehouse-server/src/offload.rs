//! CPU-bound work on request paths whose cost grows with its input (parsing publish
//! bodies: JSON, base64, digests). A trip to the blocking pool and back costs two
//! thread hand-offs, more than the work itself for small inputs: those run in place.
//! Large inputs go to the blocking pool, so a runtime worker is never busy for long.
//! (Not for inflating: its cost is bounded by the limits, not by the input.)

use tokio::task::JoinError;

/// Inputs up to this size are handled in place (tens of microseconds of work).
pub const IN_PLACE_BYTES: usize = 32 * 1024;

/// Runs `work`, in place when `input_len` is small, otherwise on the blocking pool.
pub async fn cpu<T: Send + 'static>(
    input_len: usize,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, JoinError> {
    if input_len <= IN_PLACE_BYTES {
        Ok(work())
    } else {
        tokio::task::spawn_blocking(work).await
    }
}
