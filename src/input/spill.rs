//! Spill files: a bucket's encoded rows, appended by a writer thread while
//! the read goes on, and read back once, ahead of the worker that builds
//! the bucket (see `job::schedule_buckets`), large files in pieces by
//! several threads at once. The writer can instead gather one bucket's
//! segments in memory (the largest, built first: see
//! `BucketStore::spill_if_over` in the `buckets` module).
//!
//! On Linux they are written and read with `O_DIRECT`, past the page cache.
//! Buffered, every spilled byte passes through pages the kernel has to find,
//! fill and later drop, which on the benchmark VM costs several times the
//! system time of direct writes (see BENCHMARKS.md). Direct I/O needs offsets, lengths and buffers aligned to
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
    handle: Option<std::thread::JoinHandle<Result<Written>>>,
}

/// What [`SpillWriter::finish`] reports: how the files were written, and
/// the bytes sent for the path kept in memory (`None` when none was kept).
pub(crate) struct Written {
    pub(crate) mode: Mode,
    pub(crate) kept: Option<Vec<u8>>,
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
    /// they are buffered. The segments sent for `keep`'s path (with room
    /// reserved for about as many bytes as its number) are not written but
    /// gathered in memory, in order, for [`SpillWriter::finish`] to return.
    pub(crate) fn start(dir: &Path, direct: bool, keep: Option<(PathBuf, usize)>) -> SpillWriter {
        // A rendezvous channel: a batch is handed over only when the thread
        // has finished the one before.
        let (tx, rx) = mpsc::sync_channel::<SpillBatch>(0);
        let dir = dir.to_path_buf();
        let handle = std::thread::spawn(move || -> Result<Written> {
            let mode = if direct && direct_works(&dir) {
                Mode::Direct
            } else {
                Mode::Buffered
            };
            // The room is an estimate, possibly far too large (a day at the
            // start of a month-long file): a reservation refused (no
            // overcommit) only means the buffer grows as it fills.
            let mut kept = keep.map(|(path, room)| {
                let mut bytes = Vec::new();
                let _ = bytes.try_reserve_exact(room);
                (path, bytes)
            });
            let mut files: HashMap<PathBuf, Appender> = HashMap::new();
            let mut stage = AlignedBuf::new(if mode == Mode::Direct { STAGE } else { 0 });
            for batch in rx {
                for (path, segments) in batch {
                    if let Some((_, bytes)) = kept.as_mut().filter(|(p, _)| *p == path) {
                        for seg in segments {
                            bytes.extend_from_slice(&seg);
                        }
                        continue;
                    }
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
            Ok(Written {
                mode,
                kept: kept.map(|(_, bytes)| bytes),
            })
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
    /// how they are to be read, and gives the bytes kept in memory (once).
    pub(crate) fn finish(&mut self) -> Result<Written> {
        drop(self.tx.take());
        match self.handle.take().map(|h| h.join()) {
            None => Ok(Written {
                mode: Mode::Buffered,
                kept: None,
            }),
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

/// Smallest piece of a spill file read by a thread of its own, and most
/// pieces read at once (see [`read_into`]).
const PIECE_MIN: usize = 32 << 20;
const PIECES_MAX: usize = 4;

/// Reads the file `f` (`len` bytes) into `out`, empty with room for `len`
/// (rounded up to [`ALIGN`] when `direct`), in pieces of at least
/// [`PIECE_MIN`] read at once by one thread each: first touches of fresh
/// memory are what such a read mostly waits on (more than the disk's direct
/// reads into touched memory, and less on two threads than on one: see
/// BENCHMARKS.md), and the disk serves several requests
/// at once. `false` (and nothing read) when `direct` and `out`'s buffer is
/// not aligned (large allocations are page-aligned).
#[cfg(target_os = "linux")]
fn read_into(
    f: &File,
    out: &mut Vec<u8>,
    len: usize,
    direct: bool,
    piece_min: usize,
) -> io::Result<bool> {
    use std::os::unix::io::AsRawFd;
    let whole = if direct {
        len.next_multiple_of(ALIGN)
    } else {
        len
    };
    if direct && !(out.as_ptr() as usize).is_multiple_of(ALIGN) || out.capacity() < whole {
        return Ok(false);
    }
    let fd = f.as_raw_fd();
    // Piece boundaries are whole stages, so aligned for direct reads.
    let pieces = (whole / piece_min.max(1)).clamp(1, PIECES_MAX);
    let step = whole.div_ceil(pieces).next_multiple_of(STAGE);
    // The buffer's address as an integer, so that the threads may share it:
    // each writes only its own range.
    let base = out.as_mut_ptr() as usize;
    let read_piece = |from: usize| -> io::Result<usize> {
        let to = (from + step).min(whole);
        let mut at = from;
        while at < to {
            let want = (to - at).min(STAGE);
            // SAFETY: `at + want <= whole <= capacity`; pread(2) writes at
            // most `want` bytes there, in this piece's range, which no other
            // thread writes; nothing reads them before `set_len`.
            let n = unsafe { libc::pread(fd, (base + at) as *mut libc::c_void, want, at as i64) };
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
            at += n as usize;
        }
        Ok(at - from)
    };
    let starts: Vec<usize> = (0..whole).step_by(step.max(1)).collect();
    let got: Vec<io::Result<usize>> = if starts.len() <= 1 {
        vec![read_piece(0)]
    } else {
        std::thread::scope(|s| {
            let handles: Vec<_> = starts
                .iter()
                .map(|&from| s.spawn(move || read_piece(from)))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .collect()
        })
    };
    // Every piece whole but the last, which ends at the file's end (a short
    // piece leaves `filled` short of the next one's start, and of `len`).
    let mut filled = 0usize;
    for (&from, n) in starts.iter().zip(got) {
        let n = n?;
        if from != filled {
            break;
        }
        filled += n;
    }
    if filled != len {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("{filled} bytes read of {len}"),
        ));
    }
    // SAFETY: the first `len` bytes were written by pread(2).
    unsafe { out.set_len(len) };
    Ok(true)
}

#[cfg(not(target_os = "linux"))]
fn read_into(
    _f: &File,
    _out: &mut Vec<u8>,
    _len: usize,
    _direct: bool,
    _piece_min: usize,
) -> io::Result<bool> {
    Ok(false)
}

/// Reads a spill file (written in `mode`) whole, with room for `extra` more
/// bytes, and removes it.
pub(crate) fn read(path: &Path, extra: usize, mode: Mode) -> Result<Vec<u8>> {
    read_in_pieces(path, extra, mode, PIECE_MIN)
}

fn read_in_pieces(path: &Path, extra: usize, mode: Mode, piece_min: usize) -> Result<Vec<u8>> {
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
            _ if read_into(&f, &mut out, len, mode == Mode::Direct, piece_min)? => {}
            Mode::Buffered => {
                f.read_to_end(&mut out)?;
            }
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
            // File 1's segments are kept in memory (with too little room
            // reserved, so that its buffer grows too).
            let kept_path = dir.path().join("b1");
            let mut w = SpillWriter::start(dir.path(), direct, Some((kept_path.clone(), 1000)));
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
            let Written { mode, kept } = w.finish().unwrap();
            assert_eq!(kept.as_ref(), Some(&expect[1]), "{mode:?}");
            assert!(!kept_path.exists());
            expect[1].clear();
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

    /// Files of several stages read in pieces by threads of their own
    /// (pieces of one stage here), in both modes, with lengths that end
    /// inside a block, on a block, and on a stage.
    #[test]
    fn files_read_in_pieces_at_once_read_back_as_written() {
        for direct in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            let mut state = 0x2545_F491_4F6C_DD1Du64;
            let lens = [5 * STAGE + 123, 3 * STAGE + ALIGN, 4 * STAGE, 2 * STAGE - 1];
            let mut w = SpillWriter::start(dir.path(), direct, None);
            let mut expect = Vec::new();
            for (k, &len) in lens.iter().enumerate() {
                let bytes: Vec<u8> = (0..len).map(|_| xorshift(&mut state) as u8).collect();
                // In two segments, the first unaligned.
                let cut = len / 3 + 1;
                let segs = vec![bytes[..cut].to_vec(), bytes[cut..].to_vec()];
                assert!(w.send(vec![(dir.path().join(format!("p{k}")), segs)]));
                expect.push(bytes);
            }
            let mode = w.finish().unwrap().mode;
            for (k, want) in expect.iter().enumerate() {
                let path = dir.path().join(format!("p{k}"));
                let got = read_in_pieces(&path, 5, mode, STAGE).unwrap();
                assert!(got == *want, "file {k}, {mode:?}: not as written");
                assert!(got.capacity() >= got.len() + 5);
                assert!(!path.exists());
            }
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
