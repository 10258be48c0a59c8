//! The snapshot file format: `CETESNAP1`, then `[u32 LE key length][key][u32 LE record
//! length][record]` per key, in key order (records as the store keeps them); then, after an
//! empty key (keys are never empty), the applied request ids as `[16-byte id][8-byte log
//! index]` frames (see [`crate::requests`]). Written from a redb read view and read back as a
//! stream, so neither end holds a snapshot whole.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;

use redb::ReadableTable;

use crate::requests::RequestId;
use crate::store::{SnapshotView, KV};

const MAGIC: &[u8] = b"CETESNAP1";
const BUFFER_BYTES: usize = 1 << 20;

/// Writes every pair of the view to `path`, fsyncs it, and returns the key count.
pub fn write(path: &Path, view: SnapshotView) -> std::io::Result<u64> {
    let mut out = BufWriter::with_capacity(BUFFER_BYTES, File::create(path)?);
    out.write_all(MAGIC)?;
    let table = view.txn.open_table(KV).map_err(std::io::Error::other)?;
    let mut keys = 0;
    for item in table.iter().map_err(std::io::Error::other)? {
        let (key, record) = item.map_err(std::io::Error::other)?;
        write_frame(&mut out, key.value().as_bytes())?;
        write_frame(&mut out, record.value())?;
        keys += 1;
    }
    write_frame(&mut out, b"")?;
    for (id, index) in crate::requests::all(&view.txn).map_err(std::io::Error::other)? {
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&id.origin.to_le_bytes());
        bytes[8..].copy_from_slice(&id.sequence.to_le_bytes());
        write_frame(&mut out, &bytes)?;
        write_frame(&mut out, &index.to_le_bytes())?;
    }
    let file = out.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    Ok(keys)
}

fn write_frame(out: &mut impl Write, bytes: &[u8]) -> std::io::Result<()> {
    let len = u32::try_from(bytes.len()).map_err(std::io::Error::other)?;
    out.write_all(&len.to_le_bytes())?;
    out.write_all(bytes)
}

/// The pairs of a snapshot file, one at a time.
pub struct Pairs {
    input: BufReader<File>,
}

impl Pairs {
    pub fn open(path: &Path) -> std::io::Result<Self> {
        let mut input = BufReader::with_capacity(BUFFER_BYTES, File::open(path)?);
        let mut magic = [0u8; MAGIC.len()];
        input.read_exact(&mut magic)?;
        if magic != MAGIC {
            return Err(std::io::Error::other(format!("{} is not a Cete snapshot", path.display())));
        }
        Ok(Pairs { input })
    }

    fn read_frame(&mut self) -> std::io::Result<Option<Vec<u8>>> {
        let mut len = [0u8; 4];
        match self.input.read_exact(&mut len) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e),
        }
        let mut bytes = vec![0u8; u32::from_le_bytes(len) as usize];
        self.input.read_exact(&mut bytes)?;
        Ok(Some(bytes))
    }

    fn next_pair(&mut self) -> std::io::Result<Option<(String, Vec<u8>)>> {
        let Some(key) = self.read_frame()? else { return Ok(None) };
        if key.is_empty() {
            // The end of the pairs: the applied request ids follow.
            return Ok(None);
        }
        let record = self.read_frame()?.ok_or_else(|| std::io::Error::other("snapshot truncated"))?;
        Ok(Some((String::from_utf8(key).map_err(std::io::Error::other)?, record)))
    }
}

impl Pairs {
    /// After the pairs: the applied request ids and the index each was applied at.
    pub fn requests(mut self) -> impl Iterator<Item = std::io::Result<(RequestId, u64)>> {
        std::iter::from_fn(move || self.next_request().transpose())
    }

    fn next_request(&mut self) -> std::io::Result<Option<(RequestId, u64)>> {
        let Some(id) = self.read_frame()? else { return Ok(None) };
        let index = self.read_frame()?.ok_or_else(|| std::io::Error::other("snapshot truncated"))?;
        let (Ok(id), Ok(index)) = (<[u8; 16]>::try_from(id), <[u8; 8]>::try_from(index)) else {
            return Err(std::io::Error::other("malformed request record in the snapshot"));
        };
        let origin = u64::from_le_bytes(id[..8].try_into().map_err(std::io::Error::other)?);
        let sequence = u64::from_le_bytes(id[8..].try_into().map_err(std::io::Error::other)?);
        Ok(Some((RequestId { origin, sequence }, u64::from_le_bytes(index))))
    }
}

impl Iterator for Pairs {
    type Item = std::io::Result<(String, Vec<u8>)>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_pair().transpose()
    }
}
