//! Blobs in memory, for tests of the parts above the store.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use sha2::{Digest as _, Sha512};

use super::{BlobError, BlobKey, BlobStore, BlobStream, Collected, StagedBlob};

#[derive(Default, Clone)]
pub struct MemoryBlobStore {
    blobs: Arc<Mutex<HashMap<BlobKey, Bytes>>>,
}

impl MemoryBlobStore {
    fn blobs(&self) -> MutexGuard<'_, HashMap<BlobKey, Bytes>> {
        self.blobs.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[async_trait]
impl BlobStore for MemoryBlobStore {
    async fn put(&self, key: &BlobKey, bytes: Bytes) -> Result<(), BlobError> {
        if Sha512::digest(&bytes).as_slice() != key.as_bytes() {
            return Err(BlobError::DigestMismatch);
        }
        self.blobs().insert(key.clone(), bytes);
        Ok(())
    }

    async fn stage(&self) -> Result<Box<dyn StagedBlob>, BlobError> {
        Ok(Box::new(MemoryStagedBlob {
            store: self.clone(),
            bytes: BytesMut::new(),
        }))
    }

    async fn open(&self, key: &BlobKey) -> Result<Option<BlobStream>, BlobError> {
        Ok(self
            .blobs()
            .get(key)
            .map(|bytes| BlobStream::from_bytes(key, bytes.clone())))
    }

    async fn contains(&self, key: &BlobKey) -> Result<bool, BlobError> {
        Ok(self.blobs().contains_key(key))
    }

    async fn list(&self) -> Result<Vec<BlobKey>, BlobError> {
        Ok(self.blobs().keys().cloned().collect())
    }

    async fn staged(&self) -> Result<usize, BlobError> {
        Ok(0)
    }

    /// Memory keeps no ages: every blob counts as young unless the grace is zero.
    async fn collect(&self, key: &BlobKey, grace: std::time::Duration) -> Result<Collected, BlobError> {
        if !grace.is_zero() {
            return Ok(if self.blobs().contains_key(key) {
                Collected::Young
            } else {
                Collected::Missing
            });
        }
        Ok(match self.blobs().remove(key) {
            Some(_) => Collected::Removed,
            None => Collected::Missing,
        })
    }
}

struct MemoryStagedBlob {
    store: MemoryBlobStore,
    bytes: BytesMut,
}

#[async_trait]
impl StagedBlob for MemoryStagedBlob {
    async fn write(&mut self, chunk: &[u8]) -> Result<(), BlobError> {
        self.bytes.extend_from_slice(chunk);
        Ok(())
    }

    async fn commit(self: Box<Self>, key: &BlobKey) -> Result<(), BlobError> {
        self.store.put(key, self.bytes.freeze()).await
    }
}
