//! Binary snapshots of a [`crate::MemoryState`]: every account, slot and
//! contract with both tries and their cached node hashes, so a restart loads
//! the state and its Merkle-Patricia tries without rehashing a single node
//! (see [`crate::MemoryState::encode_snapshot`]).
//!
//! The format is private to this crate and versioned by its first byte; a
//! snapshot of another version is refused and the caller rebuilds from the
//! state tables.

/// Format version (the first byte of every snapshot).
pub(crate) const VERSION: u8 = 2;

/// Why a snapshot did not decode.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotError {
    /// The bytes end early.
    #[error("snapshot truncated")]
    Truncated,
    /// A field holds an impossible value.
    #[error("snapshot invalid: {0}")]
    Invalid(&'static str),
    /// Another format version.
    #[error("snapshot version {0}, expected {VERSION}")]
    Version(u8),
}

/// Appends snapshot fields to a buffer.
#[derive(Debug, Default)]
pub(crate) struct Writer {
    pub(crate) out: Vec<u8>,
}

impl Writer {
    pub(crate) fn u8(&mut self, value: u8) {
        self.out.push(value);
    }

    pub(crate) fn u64(&mut self, value: u64) {
        self.out.extend_from_slice(&value.to_le_bytes());
    }

    pub(crate) fn bytes(&mut self, value: &[u8]) {
        self.u64(value.len() as u64);
        self.out.extend_from_slice(value);
    }

    pub(crate) fn fixed(&mut self, value: &[u8]) {
        self.out.extend_from_slice(value);
    }

    /// Starts a section read back with [`Reader::bytes`]: its length is
    /// written by [`Writer::end_section`], so the section is not copied.
    pub(crate) fn begin_section(&mut self) -> usize {
        self.u64(0);
        self.out.len()
    }

    pub(crate) fn end_section(&mut self, start: usize) {
        let len = (self.out.len() - start) as u64;
        self.out[start - 8..start].copy_from_slice(&len.to_le_bytes());
    }
}

/// Reads snapshot fields from a buffer.
#[derive(Debug)]
pub(crate) struct Reader<'a> {
    pub(crate) input: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn fixed(&mut self, len: usize) -> Result<&'a [u8], SnapshotError> {
        if self.input.len() < len {
            return Err(SnapshotError::Truncated);
        }
        let (head, rest) = self.input.split_at(len);
        self.input = rest;
        Ok(head)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, SnapshotError> {
        Ok(self.fixed(1)?[0])
    }

    pub(crate) fn u64(&mut self) -> Result<u64, SnapshotError> {
        Ok(u64::from_le_bytes(self.fixed(8)?.try_into().expect("8 bytes")))
    }

    /// A length that cannot exceed the remaining input (at least `unit`
    /// bytes per element), so a corrupt length never allocates wildly.
    pub(crate) fn len(&mut self, unit: usize) -> Result<usize, SnapshotError> {
        let len = usize::try_from(self.u64()?).map_err(|_| SnapshotError::Truncated)?;
        if len.saturating_mul(unit.max(1)) > self.input.len() {
            return Err(SnapshotError::Truncated);
        }
        Ok(len)
    }

    pub(crate) fn bytes(&mut self) -> Result<&'a [u8], SnapshotError> {
        let len = self.len(1)?;
        self.fixed(len)
    }
}
