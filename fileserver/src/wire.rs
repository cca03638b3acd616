//! 9P's little-endian wire primitives: a bounds-checked decoder over a request body and the
//! reply buffer the server encodes into (reused from request to request).

/// A request body ended before a field it must hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Truncated;

/// Reads fields off the front of a request body. Every read checks the length first.
pub(crate) struct Decoder<'a> {
    buf: &'a [u8],
}

impl<'a> Decoder<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Decoder { buf }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], Truncated> {
        if self.buf.len() < n {
            return Err(Truncated);
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], Truncated> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, Truncated> {
        Ok(self.take(1)?[0])
    }

    pub(crate) fn u16(&mut self) -> Result<u16, Truncated> {
        self.array().map(u16::from_le_bytes)
    }

    pub(crate) fn u32(&mut self) -> Result<u32, Truncated> {
        self.array().map(u32::from_le_bytes)
    }

    pub(crate) fn u64(&mut self) -> Result<u64, Truncated> {
        self.array().map(u64::from_le_bytes)
    }

    /// `s`: len[2] then that many bytes (not necessarily UTF-8; names are bytes).
    pub(crate) fn string(&mut self) -> Result<&'a [u8], Truncated> {
        let n = self.u16()? as usize;
        self.take(n)
    }

    /// `count[4] data[count]` (Twrite's payload).
    pub(crate) fn data(&mut self) -> Result<&'a [u8], Truncated> {
        let n = self.u32()? as usize;
        self.take(n)
    }
}

/// The 13-byte qid: type[1] version[4] path[8].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Qid {
    pub ty: u8,
    pub version: u32,
    pub path: u64,
}

/// A reply being encoded. Its vector only ever grows (to the largest reply so far, at most
/// msize), so encoding a reply allocates nothing once the session has warmed up, and a read's
/// data goes straight from `pread` into it.
#[derive(Default)]
pub(crate) struct OutBuf {
    buf: Vec<u8>,
    len: usize,
}

impl OutBuf {
    /// Starts a message: size[4] (filled by [`OutBuf::finish`]) type[1] tag[2].
    pub(crate) fn begin(&mut self, ty: u8, tag: u16) {
        self.len = 0;
        self.put(&[0, 0, 0, 0, ty]);
        self.put_u16(tag);
    }

    /// Writes the size field; the message is then `bytes()`.
    pub(crate) fn finish(&mut self) {
        let size = (self.len as u32).to_le_bytes();
        self.buf[..4].copy_from_slice(&size);
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// Bytes encoded so far.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// `n` writable bytes after what is encoded; [`OutBuf::commit`] keeps those written.
    pub(crate) fn tail(&mut self, n: usize) -> &mut [u8] {
        let end = self.len + n;
        if self.buf.len() < end {
            self.buf.resize(end, 0);
        }
        &mut self.buf[self.len..end]
    }

    pub(crate) fn commit(&mut self, n: usize) {
        self.len += n;
    }

    pub(crate) fn put(&mut self, bytes: &[u8]) {
        self.tail(bytes.len()).copy_from_slice(bytes);
        self.commit(bytes.len());
    }

    pub(crate) fn put_u8(&mut self, v: u8) {
        self.put(&[v]);
    }

    pub(crate) fn put_u16(&mut self, v: u16) {
        self.put(&v.to_le_bytes());
    }

    pub(crate) fn put_u32(&mut self, v: u32) {
        self.put(&v.to_le_bytes());
    }

    pub(crate) fn put_u64(&mut self, v: u64) {
        self.put(&v.to_le_bytes());
    }

    /// Overwrites a u32 encoded earlier at `at` (a count known only afterwards).
    pub(crate) fn patch_u32(&mut self, at: usize, v: u32) {
        self.buf[at..at + 4].copy_from_slice(&v.to_le_bytes());
    }

    /// Overwrites a u16 encoded earlier at `at`.
    pub(crate) fn patch_u16(&mut self, at: usize, v: u16) {
        self.buf[at..at + 2].copy_from_slice(&v.to_le_bytes());
    }

    /// `s`: strings the server sends are under 64 KiB (names, link targets, echoed client
    /// ids); anything longer is cut there rather than mis-encoded.
    pub(crate) fn put_str(&mut self, s: &[u8]) {
        let s = &s[..s.len().min(u16::MAX as usize)];
        self.put_u16(s.len() as u16);
        self.put(s);
    }

    pub(crate) fn put_qid(&mut self, qid: Qid) {
        self.put_u8(qid.ty);
        self.put_u32(qid.version);
        self.put_u64(qid.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoder_reads_little_endian_fields_and_strings() {
        let bytes = [1, 2, 0, 3, 0, 0, 0, 2, 0, b'h', b'i'];
        let mut d = Decoder::new(&bytes);

        let (a, b, c, s) = (d.u8(), d.u16(), d.u32(), d.string());

        assert_eq!((a, b, c), (Ok(1), Ok(2), Ok(3)));
        assert_eq!(s, Ok(&b"hi"[..]));
        assert_eq!(d.u8(), Err(Truncated));
    }

    #[test]
    fn decoder_refuses_a_string_longer_than_the_body() {
        let bytes = [200, 0, b'x'];
        let mut d = Decoder::new(&bytes);

        assert_eq!(d.string(), Err(Truncated));
    }

    #[test]
    fn outbuf_frames_a_message_with_its_size() {
        let mut out = OutBuf::default();

        out.begin(7, 0x1234);
        out.put_u32(2);
        out.finish();

        assert_eq!(out.bytes(), &[11, 0, 0, 0, 7, 0x34, 0x12, 2, 0, 0, 0]);
    }

    #[test]
    fn outbuf_reuses_its_buffer_without_stale_bytes() {
        let mut out = OutBuf::default();
        out.begin(1, 1);
        out.put(&[9; 100]);
        out.finish();

        out.begin(2, 2);
        out.finish();

        assert_eq!(out.bytes(), &[7, 0, 0, 0, 2, 2, 0]);
    }
}
