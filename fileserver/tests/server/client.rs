//! A small 9P2000.L client for the tests: encodes T-messages, decodes R-messages, drives
//! `fileserver::serve` over a UnixStream pair.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::thread::JoinHandle;

use fileserver::{Limits, Shares};

/// A request's errno, as the server sent it in Rlerror.
pub type R<T> = Result<T, i32>;

pub const NOFID: u32 = u32::MAX;
pub const NOTAG: u16 = u16::MAX;

pub mod t {
    pub const TLERROR: u8 = 6;
    pub const RLERROR: u8 = 7;
    pub const TSTATFS: u8 = 8;
    pub const TLOPEN: u8 = 12;
    pub const TLCREATE: u8 = 14;
    pub const TSYMLINK: u8 = 16;
    pub const TMKNOD: u8 = 18;
    pub const TRENAME: u8 = 20;
    pub const TREADLINK: u8 = 22;
    pub const TGETATTR: u8 = 24;
    pub const TSETATTR: u8 = 26;
    pub const TXATTRWALK: u8 = 30;
    pub const TXATTRCREATE: u8 = 32;
    pub const TREADDIR: u8 = 40;
    pub const TFSYNC: u8 = 50;
    pub const TLOCK: u8 = 52;
    pub const TGETLOCK: u8 = 54;
    pub const TLINK: u8 = 70;
    pub const TMKDIR: u8 = 72;
    pub const TRENAMEAT: u8 = 74;
    pub const TUNLINKAT: u8 = 76;
    pub const TVERSION: u8 = 100;
    pub const TAUTH: u8 = 102;
    pub const TATTACH: u8 = 104;
    pub const TFLUSH: u8 = 108;
    pub const RFLUSH: u8 = 109;
    pub const TWALK: u8 = 110;
    pub const TOPEN: u8 = 112;
    pub const TREAD: u8 = 116;
    pub const TWRITE: u8 = 118;
    pub const TCLUNK: u8 = 120;
    pub const TREMOVE: u8 = 122;
}

/// 9P2000.L open flags.
pub mod o {
    pub const RDONLY: u32 = 0;
    pub const WRONLY: u32 = 1;
    pub const RDWR: u32 = 2;
    pub const CREATE: u32 = 0o100;
    pub const EXCL: u32 = 0o200;
    pub const TRUNC: u32 = 0o1000;
    pub const APPEND: u32 = 0o2000;
}

/// Tsetattr valid bits.
pub mod a {
    pub const MODE: u32 = 1 << 0;
    pub const UID: u32 = 1 << 1;
    pub const GID: u32 = 1 << 2;
    pub const SIZE: u32 = 1 << 3;
    pub const ATIME: u32 = 1 << 4;
    pub const MTIME: u32 = 1 << 5;
    pub const ATIME_SET: u32 = 1 << 7;
    pub const MTIME_SET: u32 = 1 << 8;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Qid {
    pub ty: u8,
    pub version: u32,
    pub path: u64,
}

pub const QTDIR: u8 = 0x80;
pub const QTSYMLINK: u8 = 0x02;

#[derive(Debug, Clone)]
pub struct Attr {
    pub valid: u64,
    pub qid: Qid,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub nlink: u64,
    pub size: u64,
    pub atime: (u64, u64),
    pub mtime: (u64, u64),
}

#[derive(Debug, Clone, Default)]
pub struct SetAttr {
    pub valid: u32,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub atime: (u64, u64),
    pub mtime: (u64, u64),
}

#[derive(Debug, Clone)]
pub struct Dirent {
    pub qid: Qid,
    pub offset: u64,
    pub ty: u8,
    pub name: String,
}

#[derive(Debug, Clone)]
pub struct Statfs {
    pub bsize: u32,
    pub blocks: u64,
    pub namelen: u32,
}

/// A message body being encoded.
#[derive(Default)]
pub struct Msg(pub Vec<u8>);

impl Msg {
    pub fn u8(mut self, v: u8) -> Self {
        self.0.push(v);
        self
    }
    pub fn u16(mut self, v: u16) -> Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn u32(mut self, v: u32) -> Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn u64(mut self, v: u64) -> Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn bytes(self, s: &[u8]) -> Self {
        let mut m = self.u16(s.len() as u16);
        m.0.extend_from_slice(s);
        m
    }
    pub fn str(self, s: &str) -> Self {
        self.bytes(s.as_bytes())
    }
    pub fn data(self, d: &[u8]) -> Self {
        let mut m = self.u32(d.len() as u32);
        m.0.extend_from_slice(d);
        m
    }
}

/// A reply body being decoded.
pub struct Body<'a>(pub &'a [u8]);

impl Body<'_> {
    fn take(&mut self, n: usize) -> &[u8] {
        let (h, t) = self.0.split_at(n);
        self.0 = t;
        h
    }
    pub fn u8(&mut self) -> u8 {
        self.take(1)[0]
    }
    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes(self.take(2).try_into().unwrap())
    }
    pub fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.take(4).try_into().unwrap())
    }
    pub fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.take(8).try_into().unwrap())
    }
    pub fn str(&mut self) -> String {
        let n = self.u16() as usize;
        String::from_utf8_lossy(self.take(n)).into_owned()
    }
    pub fn qid(&mut self) -> Qid {
        Qid {
            ty: self.u8(),
            version: self.u32(),
            path: self.u64(),
        }
    }
}

/// One frame: type, tag, body.
pub type Frame = (u8, u16, Vec<u8>);

pub struct Client {
    pub stream: UnixStream,
    server: Option<JoinHandle<fileserver::Result<()>>>,
    next_tag: u16,
    pub msize: u32,
}

impl Client {
    /// A session on a fresh socket pair, not yet versioned.
    pub fn start(shares: Arc<Shares>, limits: Limits) -> Client {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let server = std::thread::spawn(move || fileserver::serve(theirs, shares, limits));
        Client {
            stream: ours,
            server: Some(server),
            next_tag: 1,
            msize: 8192,
        }
    }

    /// A versioned session (msize 1 MiB) with default limits.
    pub fn connect(shares: &Arc<Shares>) -> Client {
        let mut c = Client::start(Arc::clone(shares), Limits::default());
        c.version(1 << 20, "9P2000.L");
        c
    }

    /// A versioned session with `aname` attached as `uid` on fid 0.
    pub fn attached(shares: &Arc<Shares>, aname: &str, uid: u32) -> Client {
        let mut c = Client::connect(shares);
        c.attach(0, aname, uid).unwrap();
        c
    }

    pub fn tag(&mut self) -> u16 {
        let t = self.next_tag;
        self.next_tag = if t >= 60000 { 1 } else { t + 1 };
        t
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    pub fn send(&mut self, ty: u8, tag: u16, body: &[u8]) {
        let mut frame = Vec::with_capacity(7 + body.len());
        frame.extend_from_slice(&((7 + body.len()) as u32).to_le_bytes());
        frame.push(ty);
        frame.extend_from_slice(&tag.to_le_bytes());
        frame.extend_from_slice(body);
        self.send_raw(&frame);
    }

    /// The next frame, None when the server closed the connection.
    pub fn recv(&mut self) -> Option<Frame> {
        let mut head = [0u8; 7];
        if self.stream.read_exact(&mut head).is_err() {
            return None;
        }
        let size = u32::from_le_bytes(head[..4].try_into().unwrap()) as usize;
        assert!(
            size >= 7 && size <= self.msize.max(8192) as usize,
            "reply size {size}"
        );
        let mut body = vec![0u8; size - 7];
        self.stream.read_exact(&mut body).ok()?;
        Some((head[4], u16::from_le_bytes([head[5], head[6]]), body))
    }

    /// Sends a request and waits for its reply: its body, or the Rlerror errno.
    pub fn rpc(&mut self, ty: u8, msg: Msg) -> R<Vec<u8>> {
        let tag = self.tag();
        self.send(ty, tag, &msg.0);
        let (rty, rtag, body) = self.recv().expect("server closed the connection");
        assert_eq!(rtag, tag, "reply tag");
        if rty == t::RLERROR {
            assert_eq!(body.len(), 4, "Rlerror body");
            return Err(u32::from_le_bytes(body[..4].try_into().unwrap()) as i32);
        }
        assert_eq!(rty, ty + 1, "reply type");
        Ok(body)
    }

    pub fn version(&mut self, msize: u32, version: &str) -> (u32, String) {
        self.send(
            t::TVERSION,
            NOTAG,
            &Msg::default().u32(msize).str(version).0,
        );
        let (ty, tag, body) = self.recv().unwrap();
        assert_eq!((ty, tag), (t::TVERSION + 1, NOTAG));
        let mut b = Body(&body);
        let (m, v) = (b.u32(), b.str());
        if v == "9P2000.L" {
            self.msize = m;
        }
        (m, v)
    }

    pub fn attach(&mut self, fid: u32, aname: &str, uid: u32) -> R<Qid> {
        let msg = Msg::default()
            .u32(fid)
            .u32(NOFID)
            .str("user")
            .str(aname)
            .u32(uid);
        self.rpc(t::TATTACH, msg).map(|b| Body(&b).qid())
    }

    pub fn walk_bytes(&mut self, fid: u32, newfid: u32, names: &[&[u8]]) -> R<Vec<Qid>> {
        let mut msg = Msg::default().u32(fid).u32(newfid).u16(names.len() as u16);
        for n in names {
            msg = msg.bytes(n);
        }
        let body = self.rpc(t::TWALK, msg)?;
        let mut b = Body(&body);
        let n = b.u16();
        Ok((0..n).map(|_| b.qid()).collect())
    }

    pub fn walk(&mut self, fid: u32, newfid: u32, names: &[&str]) -> R<Vec<Qid>> {
        let raw: Vec<&[u8]> = names.iter().map(|n| n.as_bytes()).collect();
        self.walk_bytes(fid, newfid, &raw)
    }

    /// Walks `path` ("a/b/c", "" for a clone) from fid 0 to `newfid`.
    pub fn walk_to(&mut self, newfid: u32, path: &str) -> R<Vec<Qid>> {
        let names: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let qids = self.walk(0, newfid, &names)?;
        if qids.len() != names.len() {
            return Err(libc::ENOENT);
        }
        Ok(qids)
    }

    pub fn getattr(&mut self, fid: u32) -> R<Attr> {
        let body = self.rpc(t::TGETATTR, Msg::default().u32(fid).u64(0x3fff))?;
        let mut b = Body(&body);
        let valid = b.u64();
        let qid = b.qid();
        let (mode, uid, gid) = (b.u32(), b.u32(), b.u32());
        let nlink = b.u64();
        let _rdev = b.u64();
        let size = b.u64();
        let (_blksize, _blocks) = (b.u64(), b.u64());
        let atime = (b.u64(), b.u64());
        let mtime = (b.u64(), b.u64());
        Ok(Attr {
            valid,
            qid,
            mode,
            uid,
            gid,
            nlink,
            size,
            atime,
            mtime,
        })
    }

    pub fn setattr(&mut self, fid: u32, s: &SetAttr) -> R<()> {
        let msg = Msg::default()
            .u32(fid)
            .u32(s.valid)
            .u32(s.mode)
            .u32(s.uid)
            .u32(s.gid)
            .u64(s.size)
            .u64(s.atime.0)
            .u64(s.atime.1)
            .u64(s.mtime.0)
            .u64(s.mtime.1);
        self.rpc(t::TSETATTR, msg).map(drop)
    }

    pub fn statfs(&mut self, fid: u32) -> R<Statfs> {
        let body = self.rpc(t::TSTATFS, Msg::default().u32(fid))?;
        let mut b = Body(&body);
        let (_ty, bsize) = (b.u32(), b.u32());
        let blocks = b.u64();
        for _ in 0..5 {
            b.u64();
        }
        Ok(Statfs {
            bsize,
            blocks,
            namelen: b.u32(),
        })
    }

    pub fn lopen(&mut self, fid: u32, flags: u32) -> R<Qid> {
        let body = self.rpc(t::TLOPEN, Msg::default().u32(fid).u32(flags))?;
        Ok(Body(&body).qid())
    }

    pub fn lcreate(&mut self, fid: u32, name: &str, flags: u32, mode: u32, gid: u32) -> R<Qid> {
        let msg = Msg::default()
            .u32(fid)
            .str(name)
            .u32(flags)
            .u32(mode)
            .u32(gid);
        self.rpc(t::TLCREATE, msg).map(|b| Body(&b).qid())
    }

    pub fn read(&mut self, fid: u32, offset: u64, count: u32) -> R<Vec<u8>> {
        let body = self.rpc(t::TREAD, Msg::default().u32(fid).u64(offset).u32(count))?;
        let n = u32::from_le_bytes(body[..4].try_into().unwrap()) as usize;
        assert_eq!(body.len(), 4 + n, "Rread count");
        Ok(body[4..].to_vec())
    }

    /// Reads a whole open file with reads of `msize - 24`.
    pub fn read_all(&mut self, fid: u32) -> R<Vec<u8>> {
        let mut all = Vec::new();
        loop {
            let chunk = self.read(fid, all.len() as u64, self.msize - 24)?;
            if chunk.is_empty() {
                return Ok(all);
            }
            all.extend_from_slice(&chunk);
        }
    }

    pub fn write(&mut self, fid: u32, offset: u64, data: &[u8]) -> R<u32> {
        let body = self.rpc(t::TWRITE, Msg::default().u32(fid).u64(offset).data(data))?;
        Ok(Body(&body).u32())
    }

    pub fn clunk(&mut self, fid: u32) -> R<()> {
        self.rpc(t::TCLUNK, Msg::default().u32(fid)).map(drop)
    }

    pub fn remove(&mut self, fid: u32) -> R<()> {
        self.rpc(t::TREMOVE, Msg::default().u32(fid)).map(drop)
    }

    pub fn fsync(&mut self, fid: u32) -> R<()> {
        self.rpc(t::TFSYNC, Msg::default().u32(fid).u32(0))
            .map(drop)
    }

    pub fn readdir(&mut self, fid: u32, offset: u64, count: u32) -> R<Vec<Dirent>> {
        let body = self.rpc(t::TREADDIR, Msg::default().u32(fid).u64(offset).u32(count))?;
        let mut b = Body(&body);
        let n = b.u32() as usize;
        assert!(n <= count as usize, "Rreaddir over count");
        assert_eq!(b.0.len(), n, "Rreaddir count");
        let mut entries = Vec::new();
        while !b.0.is_empty() {
            entries.push(Dirent {
                qid: b.qid(),
                offset: b.u64(),
                ty: b.u8(),
                name: b.str(),
            });
        }
        Ok(entries)
    }

    /// Every entry name of an open directory fid, reading `count` bytes at a time.
    pub fn readdir_all(&mut self, fid: u32, count: u32) -> R<Vec<String>> {
        let mut names = Vec::new();
        let mut offset = 0;
        loop {
            let entries = self.readdir(fid, offset, count)?;
            let Some(last) = entries.last() else {
                return Ok(names);
            };
            offset = last.offset;
            names.extend(entries.into_iter().map(|e| e.name));
        }
    }

    pub fn mkdir(&mut self, dfid: u32, name: &str, mode: u32, gid: u32) -> R<Qid> {
        let msg = Msg::default().u32(dfid).str(name).u32(mode).u32(gid);
        self.rpc(t::TMKDIR, msg).map(|b| Body(&b).qid())
    }

    pub fn symlink(&mut self, fid: u32, name: &str, target: &str, gid: u32) -> R<Qid> {
        let msg = Msg::default().u32(fid).str(name).str(target).u32(gid);
        self.rpc(t::TSYMLINK, msg).map(|b| Body(&b).qid())
    }

    pub fn mknod(
        &mut self,
        dfid: u32,
        name: &str,
        mode: u32,
        rdev: (u32, u32),
        gid: u32,
    ) -> R<Qid> {
        let msg = Msg::default()
            .u32(dfid)
            .str(name)
            .u32(mode)
            .u32(rdev.0)
            .u32(rdev.1)
            .u32(gid);
        self.rpc(t::TMKNOD, msg).map(|b| Body(&b).qid())
    }

    pub fn readlink(&mut self, fid: u32) -> R<String> {
        let body = self.rpc(t::TREADLINK, Msg::default().u32(fid))?;
        Ok(Body(&body).str())
    }

    pub fn link(&mut self, dfid: u32, fid: u32, name: &str) -> R<()> {
        let msg = Msg::default().u32(dfid).u32(fid).str(name);
        self.rpc(t::TLINK, msg).map(drop)
    }

    pub fn rename(&mut self, fid: u32, dfid: u32, name: &str) -> R<()> {
        let msg = Msg::default().u32(fid).u32(dfid).str(name);
        self.rpc(t::TRENAME, msg).map(drop)
    }

    pub fn renameat(&mut self, olddir: u32, oldname: &str, newdir: u32, newname: &str) -> R<()> {
        let msg = Msg::default()
            .u32(olddir)
            .str(oldname)
            .u32(newdir)
            .str(newname);
        self.rpc(t::TRENAMEAT, msg).map(drop)
    }

    pub fn unlinkat(&mut self, dfid: u32, name: &str, flags: u32) -> R<()> {
        let msg = Msg::default().u32(dfid).str(name).u32(flags);
        self.rpc(t::TUNLINKAT, msg).map(drop)
    }

    pub fn xattrwalk(&mut self, fid: u32, newfid: u32, name: &str) -> R<u64> {
        let msg = Msg::default().u32(fid).u32(newfid).str(name);
        let body = self.rpc(t::TXATTRWALK, msg)?;
        Ok(Body(&body).u64())
    }

    pub fn xattrcreate(&mut self, fid: u32, name: &str, size: u64, flags: u32) -> R<()> {
        let msg = Msg::default().u32(fid).str(name).u64(size).u32(flags);
        self.rpc(t::TXATTRCREATE, msg).map(drop)
    }

    /// getxattr as the Linux client does it: xattrwalk to a scratch fid, read, clunk.
    pub fn getxattr(&mut self, fid: u32, name: &str) -> R<Vec<u8>> {
        let scratch = 9000;
        let size = self.xattrwalk(fid, scratch, name)?;
        let value = self.read(scratch, 0, size as u32);
        self.clunk(scratch).unwrap();
        value
    }

    /// setxattr as the Linux client does it: clone, xattrcreate, write, clunk.
    pub fn setxattr(&mut self, fid: u32, name: &str, value: &[u8], flags: u32) -> R<()> {
        let scratch = 9001;
        self.walk(fid, scratch, &[]).unwrap();
        if let Err(e) = self.xattrcreate(scratch, name, value.len() as u64, flags) {
            self.clunk(scratch).unwrap();
            return Err(e);
        }
        if !value.is_empty() {
            self.write(scratch, 0, value)?;
        }
        self.clunk(scratch)
    }

    pub fn lock(&mut self, fid: u32, ty: u8) -> R<u8> {
        let msg = Msg::default()
            .u32(fid)
            .u8(ty)
            .u32(0)
            .u64(0)
            .u64(0)
            .u32(42)
            .str("guest");
        let body = self.rpc(t::TLOCK, msg)?;
        Ok(Body(&body).u8())
    }

    pub fn getlock(&mut self, fid: u32, ty: u8) -> R<(u8, u64, u64, u32, String)> {
        let msg = Msg::default()
            .u32(fid)
            .u8(ty)
            .u64(10)
            .u64(20)
            .u32(42)
            .str("guest");
        let body = self.rpc(t::TGETLOCK, msg)?;
        let mut b = Body(&body);
        Ok((b.u8(), b.u64(), b.u64(), b.u32(), b.str()))
    }

    /// Closes our side and waits for the server's result.
    pub fn finish(mut self) -> fileserver::Result<()> {
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
        self.server
            .take()
            .unwrap()
            .join()
            .expect("the server panicked")
    }

    /// Waits for the server to end on its own (it closed the connection).
    pub fn server_result(mut self) -> fileserver::Result<()> {
        self.server
            .take()
            .unwrap()
            .join()
            .expect("the server panicked")
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
        if let Some(server) = self.server.take() {
            let _ = server.join();
        }
    }
}
