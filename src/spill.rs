//! Spill files: a bucket's encoded rows, appended by a writer thread while
//! the read goes on, and read back once, ahead of the worker that builds
//! the bucket (see `job::schedule_buckets`).
//!
//! On Linux they are written and read with `O_DIRECT`, past the page cache.
//! Buffered, every spilled byte passes through pages the kernel has to find,
//! fill and later drop: on the benchmark VM that costs about 2 s of system
//! time per GB written (`dd`), about 10 s of CPU for the 5.3 GB a
//! 100M-row day spills, against about 0.2 s per GB direct (see
//! BENCHMARKS.md). Direct I/O needs offsets, lengths and buffers aligned to
//! the device's block: the writer stages each file's bytes in an aligned
//! buffer and keeps the unaligned tail for the next batch; the last block is
//! padded, then the file cut back to its true length. Where the folder's
//! file system refuses `O_DIRECT` (tmpfs, some network file systems; a
//! probe file tells) or on other systems, plain buffered I/O is used.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use crate::{Error, Result};

/// Alignment of direct I/O: offsets, lengths and buffer addresses (4 KiB
/// covers every common logical block size).
const ALIGN: usize = 4096;

/// Size of the writer's staging buffer and of direct read requests.
const STAGE: usize = 8 << 20;

#[repr(C, align(4096))]
#[derive(Clone, Copy)]
struct Block([u8; ALIGN]);

/// A fixed buffer whose address and length are multiples of [`ALIGN`].
struct AlignedBuf(Vec<Block>);

impl AlignedBuf {
    fn new(bytes: usize) -> AlignedBuf {
        AlignedBuf(vec![Block([0; ALIGN]); bytes.div_ceil(ALIGN)])
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: `Block` is `repr(C)` around a byte array (no padding), so
        // the vector's blocks are `len * ALIGN` initialised, contiguous bytes.
        unsafe { std::slice::from_raw_parts(self.0.as_ptr().cast::<u8>(), self.0.len() * ALIGN) }
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `bytes`, and the borrow is unique.
        unsafe {
            std::slice::from_raw_parts_mut(self.0.as_mut_ptr().cast::<u8>(), self.0.len() * ALIGN)
        }
    }
}

#[cfg(target_os = "linux")]
fn open_direct(path: &Path, write: bool) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut o = std::fs::OpenOptions::new();
    if write {
        o.create(true).append(true);
    } else {
        o.read(true);
    }
    o.custom_flags(libc::O_DIRECT).open(path)
}

#[cfg(not(target_os = "linux"))]
fn open_direct(_path: &Path, _write: bool) -> io::Result<File> {
    Err(io::Error::new(io::ErrorKind::Unsupported, "no O_DIRECT"))
}

/// Whether files in `dir` take direct writes and reads: one aligned block
/// written and read back through a probe file.
fn direct_works(dir: &Path) -> bool {
    let probe = dir.join(format!("direct-probe-{}.bin", std::process::id()));
    let works = (|| -> io::Result<()> {
        let mut buf = AlignedBuf::new(ALIGN);
        open_direct(&probe, true)?.write_all(buf.bytes())?;
        let n = open_direct(&probe, false)?.read(buf.bytes_mut())?;
        if n == ALIGN {
            Ok(())
        } else {
            Err(io::Error::other("short read"))
        }
    })()
    .is_ok();
    let _ = std::fs::remove_file(&probe);
    works
}

/// One batch of spilled segments: (file, segments to append), in order.
pub(crate) type SpillBatch = Vec<(PathBuf, Vec<Vec<u8>>)>;

/// How the spill files were written, which is how they are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Direct,
    Buffered,
}

/// The thread that appends spilled segments to their files, batch by batch
/// in the order sent.
pub(crate) struct SpillWriter {
    tx: Option<mpsc::SyncSender<SpillBatch>>,
    handle: Option<std::thread::JoinHandle<Result<Mode>>>,
}

/// A file being appended to: its handle, how many bytes it holds when
/// complete, and (direct) the bytes past its last whole block, not yet
/// written.
struct Appender {
    file: File,
    len: u64,
    tail: Vec<u8>,
}

fn write_error(path: &Path, e: io::Error) -> Error {
    Error::Io(format!("cannot write spill file {}: {e}", path.display()))
}

impl SpillWriter {
    /// Starts the thread; `dir` exists. With `direct`, files are written
    /// with `O_DIRECT` if a probe in `dir` shows that it works; without,
    /// they are buffered.
    pub(crate) fn start(dir: &Path, direct: bool) -> SpillWriter {
        // A rendezvous channel: a batch is handed over only when the thread
        // has finished the one before.
        let (tx, rx) = mpsc::sync_channel::<SpillBatch>(0);
        let dir = dir.to_path_buf();
        let handle = std::thread::spawn(move || -> Result<Mode> {
            let mode = if direct && direct_works(&dir) {
                Mode::Direct
            } else {
                Mode::Buffered
            };
            let mut files: HashMap<PathBuf, Appender> = HashMap::new();
            let mut stage = AlignedBuf::new(if mode == Mode::Direct { STAGE } else { 0 });
            for batch in rx {
                for (path, segments) in batch {
                    if !files.contains_key(&path) {
                        let file = match mode {
                            Mode::Direct => open_direct(&path, true),
                            Mode::Buffered => std::fs::OpenOptions::new()
                                .create(true)
                                .append(true)
                                .open(&path),
                        }
                        .map_err(|e| write_error(&path, e))?;
                        let a = Appender {
                            file,
                            len: 0,
                            tail: Vec::new(),
                        };
                        files.insert(path.clone(), a);
                    }
                    let a = files.get_mut(&path).expect("inserted");
                    match mode {
                        Mode::Direct => a.append_direct(&segments, &mut stage),
                        Mode::Buffered => segments.iter().try_for_each(|s| {
                            a.len += s.len() as u64;
                            a.file.write_all(s)
                        }),
                    }
                    .map_err(|e| write_error(&path, e))?;
                }
            }
            for (path, a) in &mut files {
                a.finish(&mut stage).map_err(|e| write_error(path, e))?;
            }
            Ok(mode)
        });
        SpillWriter {
            tx: Some(tx),
            handle: Some(handle),
        }
    }

    /// Hands a batch over (waiting for the previous one to be written);
    /// false when the thread has stopped on an error ([`SpillWriter::finish`]
    /// says which).
    pub(crate) fn send(&mut self, batch: SpillBatch) -> bool {
        self.tx.as_ref().is_some_and(|tx| tx.send(batch).is_ok())
    }

    /// Waits for every batch to be written and every file completed; says
    /// how they are to be read.
    pub(crate) fn finish(&mut self) -> Result<Mode> {
        drop(self.tx.take());
        match self.handle.take().map(|h| h.join()) {
            None => Ok(Mode::Buffered),
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(Error::Io("the spill writer thread panicked".into())),
        }
    }
}

impl Appender {
    /// Writes the tail and `segments` in whole blocks through `stage`,
    /// keeping what is left past the last whole block as the new tail.
    fn append_direct(&mut self, segments: &[Vec<u8>], stage: &mut AlignedBuf) -> io::Result<()> {
        let buf = stage.bytes_mut();
        let mut at = self.tail.len();
        buf[..at].copy_from_slice(&self.tail);
        for seg in segments {
            self.len += seg.len() as u64;
            let mut seg = &seg[..];
            while !seg.is_empty() {
                let n = seg.len().min(buf.len() - at);
                buf[at..at + n].copy_from_slice(&seg[..n]);
                at += n;
                seg = &seg[n..];
                if at == buf.len() {
                    self.file.write_all(buf)?;
                    at = 0;
                }
            }
        }
        let whole = at / ALIGN * ALIGN;
        self.file.write_all(&buf[..whole])?;
        self.tail.clear();
        self.tail.extend_from_slice(&buf[whole..at]);
        Ok(())
    }

    /// Writes the tail as one padded block and cuts the file back to its
    /// true length (nothing to do when buffered: the tail is empty).
    fn finish(&mut self, stage: &mut AlignedBuf) -> io::Result<()> {
        if self.tail.is_empty() {
            return Ok(());
        }
        let buf = stage.bytes_mut();
        buf[..ALIGN].fill(0);
        buf[..self.tail.len()].copy_from_slice(&self.tail);
        self.file.write_all(&buf[..ALIGN])?;
        self.file.set_len(self.len)?;
        self.tail.clear();
        Ok(())
    }
}

fn read_error(path: &Path, e: io::Error) -> Error {
    Error::Io(format!("cannot read spill file {}: {e}", path.display()))
}

/// Reads the direct-I/O file `f` (`len` bytes) into `out`, empty with room
/// for `len` rounded up to [`ALIGN`], when its buffer is aligned (large
/// allocations are page-aligned): no copy through a staging buffer. `false`
/// (and nothing read) when it is not.
#[cfg(target_os = "linux")]
fn read_direct_into(f: &File, out: &mut Vec<u8>, len: usize) -> io::Result<bool> {
    use std::os::unix::io::AsRawFd;
    let whole = len.next_multiple_of(ALIGN);
    if !(out.as_ptr() as usize).is_multiple_of(ALIGN) || out.capacity() < whole {
        return Ok(false);
    }
    let mut filled = 0usize;
    while filled < len {
        let want = (whole - filled).min(STAGE);
        // SAFETY: `filled + want <= whole <= capacity`, and read(2) writes
        // at most `want` bytes there; nothing reads them before `set_len`.
        let n = unsafe { libc::read(f.as_raw_fd(), out.as_mut_ptr().add(filled).cast(), want) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            break;
        }
        filled += n as usize;
    }
    if filled > len {
        return Err(io::Error::other(format!("{filled} bytes read of {len}")));
    }
    // SAFETY: the first `filled` bytes were written by read(2).
    unsafe { out.set_len(filled) };
    Ok(true)
}

#[cfg(not(target_os = "linux"))]
fn read_direct_into(_f: &File, _out: &mut Vec<u8>, _len: usize) -> io::Result<bool> {
    Ok(false)
}

/// Reads a spill file (written in `mode`) whole, with room for `extra` more
/// bytes, and removes it.
pub(crate) fn read(path: &Path, extra: usize, mode: Mode) -> Result<Vec<u8>> {
    let bytes = (|| -> io::Result<Vec<u8>> {
        let mut f = match mode {
            Mode::Direct => open_direct(path, false)?,
            Mode::Buffered => File::open(path)?,
        };
        let len = usize::try_from(f.metadata()?.len()).map_err(io::Error::other)?;
        let mut out = Vec::with_capacity(match mode {
            Mode::Buffered => len + extra,
            // Room for the last block whole.
            Mode::Direct => len.next_multiple_of(ALIGN).max(len + extra),
        });
        match mode {
            Mode::Buffered => {
                f.read_to_end(&mut out)?;
            }
            Mode::Direct if read_direct_into(&f, &mut out, len)? => {}
            Mode::Direct => {
                // Whole-block requests into an aligned buffer; the last one
                // is cut short by the end of the file.
                let mut scratch = AlignedBuf::new(STAGE.min(len.next_multiple_of(ALIGN)));
                while out.len() < len {
                    let n = f.read(scratch.bytes_mut())?;
                    if n == 0 {
                        break;
                    }
                    out.extend_from_slice(&scratch.bytes()[..n]);
                }
            }
        }
        if out.len() != len {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{} bytes read of {len}", out.len()),
            ));
        }
        Ok(out)
    })()
    .map_err(|e| read_error(path, e));
    let _ = std::fs::remove_file(path);
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn xorshift(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    /// Random segments appended to several files over several batches,
    /// read back whole, in both modes, with sizes around the block and
    /// stage boundaries.
    #[test]
    fn spilled_files_read_back_as_written() {
        for direct in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            let mut state = 0x9E37_79B9_7F4A_7C15u64;
            let files = 5;
            let mut expect: Vec<Vec<u8>> = vec![Vec::new(); files];
            let mut w = SpillWriter::start(dir.path(), direct);
            let sizes = [
                0,
                1,
                ALIGN - 1,
                ALIGN,
                ALIGN + 1,
                STAGE - 3,
                STAGE,
                2 * STAGE + 7,
            ];
            for batch_no in 0..6 {
                let mut batch: SpillBatch = Vec::new();
                for (k, want) in expect.iter_mut().enumerate() {
                    if (k + batch_no) % 3 == 0 {
                        continue;
                    }
                    let mut segs = Vec::new();
                    for _ in 0..(xorshift(&mut state) % 4) {
                        let r = xorshift(&mut state) as usize;
                        let n = if r.is_multiple_of(2) {
                            sizes[r / 2 % sizes.len()]
                        } else {
                            r % 100_000
                        };
                        let seg: Vec<u8> = (0..n).map(|_| xorshift(&mut state) as u8).collect();
                        want.extend_from_slice(&seg);
                        segs.push(seg);
                    }
                    batch.push((dir.path().join(format!("b{k}")), segs));
                }
                assert!(w.send(batch));
            }
            let mode = w.finish().unwrap();
            // Direct where the folder's file system takes it (the disk's
            // here; not tmpfs).
            let want = if direct && direct_works(dir.path()) {
                Mode::Direct
            } else {
                Mode::Buffered
            };
            assert_eq!(mode, want);
            let present: Vec<usize> = (0..files)
                .filter(|k| dir.path().join(format!("b{k}")).exists())
                .collect();
            for &k in &present {
                let len = std::fs::metadata(dir.path().join(format!("b{k}")))
                    .unwrap()
                    .len();
                assert_eq!(len as usize, expect[k].len(), "file {k}, {mode:?}");
            }
            for &k in &present {
                let got = read(&dir.path().join(format!("b{k}")), 10, mode).unwrap();
                assert_eq!(got, expect[k], "file {k}, {mode:?}");
                assert!(got.capacity() >= got.len() + 10);
            }
            assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        }
    }

    #[test]
    fn a_missing_spill_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bucket-00003.bin");
        let e = read(&path, 0, Mode::Direct).unwrap_err().to_string();
        assert!(e.contains("bucket-00003.bin"), "{e}");
        let e = read(&path, 0, Mode::Buffered).unwrap_err().to_string();
        assert!(e.contains("cannot read spill file"), "{e}");
    }
}
