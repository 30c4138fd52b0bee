//! A small file-system abstraction: the few operations the log engine needs,
//! with a real implementation ([`StdDisk`]) and a deterministic in-memory one
//! ([`SimDisk`]) that can crash, fail an fsync and flip bits.
//!
//! Paths are plain [`Path`]s. Directories are created with
//! [`Disk::create_dir_all`]; files are opened for append and read with
//! [`Disk::open`] and live in exactly one directory. Durability follows POSIX:
//! file contents are durable once the file is synced ([`DiskFile::sync`]); the
//! *existence* of a file (its creation, removal or rename) is durable once its
//! directory is synced ([`Disk::sync_dir`]).

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use rhea_raft::SplitMix64;

/// The file-system operations the log engine uses.
pub trait Disk: Send + Sync {
    /// Create `dir` and its parents if missing.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// Names (not paths) of the regular files directly in `dir`, sorted.
    fn list_files(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// Open `path` for append and read, creating it (empty) if missing.
    fn open(&self, path: &Path) -> io::Result<Box<dyn DiskFile>>;
    /// The whole content of `path`.
    fn read_all(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// Exactly `len` bytes of `path` from `offset` (`UnexpectedEof` if shorter).
    fn read_range(&self, path: &Path, offset: u64, len: usize) -> io::Result<Vec<u8>>;
    /// Remove the file `path`.
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// Rename `from` to `to`, replacing `to` if it exists.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Make the creations, removals and renames of files in `dir` durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
}

/// A file opened by [`Disk::open`]: appends go to the end, reads anywhere.
pub trait DiskFile: Send {
    /// Append all of `data` at the end of the file.
    fn append(&mut self, data: &[u8]) -> io::Result<()>;
    /// Exactly `len` bytes from `offset`.
    fn read_at(&mut self, offset: u64, len: usize) -> io::Result<Vec<u8>>;
    /// Current length in bytes.
    fn len(&self) -> io::Result<u64>;
    /// True when the file holds no byte.
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }
    /// Cut the file to `len` bytes (durable after [`DiskFile::sync`]).
    fn truncate(&mut self, len: u64) -> io::Result<()>;
    /// fsync: make the content (and length) durable.
    fn sync(&mut self) -> io::Result<()>;
}

/// A shared disk is a disk (lets several engines or a test hold one `Arc`).
impl<D: Disk + ?Sized> Disk for Arc<D> {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        (**self).create_dir_all(dir)
    }
    fn list_files(&self, dir: &Path) -> io::Result<Vec<String>> {
        (**self).list_files(dir)
    }
    fn open(&self, path: &Path) -> io::Result<Box<dyn DiskFile>> {
        (**self).open(path)
    }
    fn read_all(&self, path: &Path) -> io::Result<Vec<u8>> {
        (**self).read_all(path)
    }
    fn read_range(&self, path: &Path, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        (**self).read_range(path, offset, len)
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        (**self).remove(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        (**self).rename(from, to)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        (**self).sync_dir(dir)
    }
}

// ---------------------------------------------------------------------------
// StdDisk
// ---------------------------------------------------------------------------

/// Real files through `std::fs`.
#[derive(Clone, Copy, Debug, Default)]
pub struct StdDisk;

struct StdFile {
    file: File,
}

impl Disk for StdDisk {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        fs::create_dir_all(dir)
    }

    fn list_files(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            if entry.file_type()?.is_file()
                && let Some(name) = entry.file_name().to_str()
            {
                names.push(name.to_string());
            }
        }
        names.sort();
        Ok(names)
    }

    fn open(&self, path: &Path) -> io::Result<Box<dyn DiskFile>> {
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)?;
        Ok(Box::new(StdFile { file }))
    }

    fn read_all(&self, path: &Path) -> io::Result<Vec<u8>> {
        fs::read(path)
    }

    fn read_range(&self, path: &Path, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let mut file = File::open(path)?;
        read_exact_at(&mut file, offset, len)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        // Opening a directory read-only and calling fsync on it is how POSIX
        // systems persist its entries. Other systems have no equivalent call.
        #[cfg(unix)]
        {
            File::open(dir)?.sync_all()
        }
        #[cfg(not(unix))]
        {
            let _ = dir;
            Ok(())
        }
    }
}

fn read_exact_at(file: &mut File, offset: u64, len: usize) -> io::Result<Vec<u8>> {
    file.seek(SeekFrom::Start(offset))?;
    let mut buf = Vec::new();
    // `take` bounds the read, so a wrong `len` cannot allocate more than the file holds.
    file.take(len as u64).read_to_end(&mut buf)?;
    if buf.len() != len {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!(
                "wanted {len} bytes at offset {offset}, file has {}",
                buf.len()
            ),
        ));
    }
    Ok(buf)
}

impl DiskFile for StdFile {
    fn append(&mut self, data: &[u8]) -> io::Result<()> {
        self.file.write_all(data)
    }

    fn read_at(&mut self, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        // The file is in append mode: moving the cursor does not move writes.
        read_exact_at(&mut self.file, offset, len)
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    fn truncate(&mut self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }

    fn sync(&mut self) -> io::Result<()> {
        // sync_all rather than sync_data: truncation changes the length, which
        // fdatasync persists too, but being explicit costs nothing measurable
        // on an append-only file whose other metadata rarely changes.
        self.file.sync_all()
    }
}

// ---------------------------------------------------------------------------
// SimDisk
// ---------------------------------------------------------------------------

/// An in-memory disk for tests, deterministic and shareable (clones share the
/// same state, like handles to one device).
///
/// Crash model ([`SimDisk::crash`]):
/// * each file keeps its synced bytes and a random prefix (chosen by the seed)
///   of the bytes appended since its last sync, so the last write may be torn
///   anywhere, even inside a record;
/// * a truncation not followed by a sync is forgotten (the file keeps its last
///   synced content);
/// * creations, removals and renames of files not followed by a sync of their
///   directory are forgotten; a file whose creation is forgotten disappears
///   even if its content was synced;
/// * directories themselves are always durable;
/// * file handles opened before the crash fail from then on.
///
/// Fault injection: [`SimDisk::fail_next_syncs`] makes the next file fsyncs
/// fail (the data stays unsynced), [`SimDisk::fail_next_dir_syncs`] the same for
/// directory syncs, and [`SimDisk::flip_bit`] corrupts one stored bit.
#[derive(Clone, Default)]
pub struct SimDisk {
    inner: Arc<Mutex<SimState>>,
}

#[derive(Default)]
struct SimState {
    /// Bumped by every crash; handles of an older generation are dead.
    generation: u64,
    next_inode: u64,
    inodes: BTreeMap<u64, SimFile>,
    /// The namespace as programs see it now.
    names: BTreeMap<PathBuf, u64>,
    /// The namespace as of the last directory syncs: what a crash restores.
    durable_names: BTreeMap<PathBuf, u64>,
    dirs: BTreeSet<PathBuf>,
    fail_syncs: u32,
    fail_dir_syncs: u32,
    file_syncs: BTreeMap<PathBuf, u64>,
    dir_syncs: u64,
}

#[derive(Default, Clone)]
struct SimFile {
    data: Vec<u8>,
    /// `data[..synced_len]` is durable (unless `durable_override` is set).
    synced_len: usize,
    /// Set when the file was truncated below `synced_len` without a sync: what
    /// a crash would bring back.
    durable_override: Option<Vec<u8>>,
}

struct SimHandle {
    disk: SimDisk,
    inode: u64,
    generation: u64,
    path: PathBuf,
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{}: no such file", path.display()),
    )
}

fn parent_of(path: &Path) -> PathBuf {
    path.parent().map(Path::to_path_buf).unwrap_or_default()
}

impl SimDisk {
    pub fn new() -> SimDisk {
        SimDisk::default()
    }

    fn lock(&self) -> MutexGuard<'_, SimState> {
        // A panic while holding the lock (a failed test assertion elsewhere)
        // leaves consistent state: every mutation below is completed before
        // anything that could panic.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Simulate a power loss (see the type's documentation for what survives).
    /// The same seed on the same history gives the same result.
    pub fn crash(&self, seed: u64) {
        let mut st = self.lock();
        let mut rng = SplitMix64::new(seed);
        st.generation += 1;
        st.names = st.durable_names.clone();
        let live: BTreeSet<u64> = st.names.values().copied().collect();
        st.inodes.retain(|ino, _| live.contains(ino));
        for file in st.inodes.values_mut() {
            let survived = match file.durable_override.take() {
                Some(old) => old,
                None => {
                    let unsynced = file.data.len() - file.synced_len;
                    let keep = file.synced_len + rng.range(0, unsynced as u64 + 1) as usize;
                    file.data.truncate(keep);
                    std::mem::take(&mut file.data)
                }
            };
            file.synced_len = survived.len();
            file.data = survived;
        }
    }

    /// The next `n` file fsyncs fail with an I/O error (their data stays unsynced).
    pub fn fail_next_syncs(&self, n: u32) {
        self.lock().fail_syncs = n;
    }

    /// The next `n` directory syncs fail with an I/O error (nothing becomes durable).
    pub fn fail_next_dir_syncs(&self, n: u32) {
        self.lock().fail_dir_syncs = n;
    }

    /// Flip bit `bit` (0..8) of the byte at `offset` of `path`, in the current
    /// and in the durable content (media corruption).
    pub fn flip_bit(&self, path: &Path, offset: u64, bit: u8) -> io::Result<()> {
        let mut st = self.lock();
        let ino = *st.names.get(path).ok_or_else(|| not_found(path))?;
        let file = st.inodes.get_mut(&ino).ok_or_else(|| not_found(path))?;
        let offset = usize::try_from(offset).map_err(io::Error::other)?;
        let mask = 1u8 << (bit % 8);
        let byte = file.data.get_mut(offset).ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "offset past end of file")
        })?;
        *byte ^= mask;
        if let Some(old) = file.durable_override.as_mut()
            && let Some(b) = old.get_mut(offset)
        {
            *b ^= mask;
        }
        Ok(())
    }

    /// Replace the whole content of `path` (creating it) and make it durable,
    /// name included: for tests that craft files by hand.
    pub fn write_durable(&self, path: &Path, data: &[u8]) {
        let mut st = self.lock();
        let ino = match st.names.get(path) {
            Some(ino) => *ino,
            None => {
                st.next_inode += 1;
                let ino = st.next_inode;
                st.names.insert(path.to_path_buf(), ino);
                ino
            }
        };
        st.durable_names.insert(path.to_path_buf(), ino);
        st.dirs.insert(parent_of(path));
        st.inodes.insert(
            ino,
            SimFile {
                data: data.to_vec(),
                synced_len: data.len(),
                durable_override: None,
            },
        );
    }

    /// Successful fsyncs of the file now named `path` (counted by name).
    pub fn file_syncs(&self, path: &Path) -> u64 {
        self.lock().file_syncs.get(path).copied().unwrap_or(0)
    }

    /// Successful file fsyncs, all files together.
    pub fn total_file_syncs(&self) -> u64 {
        self.lock().file_syncs.values().sum()
    }

    /// Successful directory syncs.
    pub fn dir_syncs(&self) -> u64 {
        self.lock().dir_syncs
    }

    /// True if `path` exists now.
    pub fn exists(&self, path: &Path) -> bool {
        self.lock().names.contains_key(path)
    }

    /// Length of `path` now.
    pub fn len_of(&self, path: &Path) -> io::Result<u64> {
        let st = self.lock();
        let ino = st.names.get(path).ok_or_else(|| not_found(path))?;
        let file = st.inodes.get(ino).ok_or_else(|| not_found(path))?;
        Ok(file.data.len() as u64)
    }
}

impl std::fmt::Debug for SimDisk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = self.lock();
        f.debug_struct("SimDisk")
            .field("generation", &st.generation)
            .field("files", &st.names.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Disk for SimDisk {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut st = self.lock();
        for d in dir.ancestors() {
            st.dirs.insert(d.to_path_buf());
        }
        Ok(())
    }

    fn list_files(&self, dir: &Path) -> io::Result<Vec<String>> {
        let st = self.lock();
        if !st.dirs.contains(dir) {
            return Err(not_found(dir));
        }
        let mut out: Vec<String> = st
            .names
            .keys()
            .filter(|p| p.parent() == Some(dir))
            .filter_map(|p| p.file_name()?.to_str().map(str::to_string))
            .collect();
        out.sort();
        Ok(out)
    }

    fn open(&self, path: &Path) -> io::Result<Box<dyn DiskFile>> {
        let mut st = self.lock();
        let parent = parent_of(path);
        if !st.dirs.contains(&parent) {
            return Err(not_found(&parent));
        }
        let ino = match st.names.get(path) {
            Some(ino) => *ino,
            None => {
                st.next_inode += 1;
                let ino = st.next_inode;
                st.inodes.insert(ino, SimFile::default());
                st.names.insert(path.to_path_buf(), ino);
                ino
            }
        };
        Ok(Box::new(SimHandle {
            disk: self.clone(),
            inode: ino,
            generation: st.generation,
            path: path.to_path_buf(),
        }))
    }

    fn read_all(&self, path: &Path) -> io::Result<Vec<u8>> {
        let st = self.lock();
        let ino = st.names.get(path).ok_or_else(|| not_found(path))?;
        let file = st.inodes.get(ino).ok_or_else(|| not_found(path))?;
        Ok(file.data.clone())
    }

    fn read_range(&self, path: &Path, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let st = self.lock();
        let ino = st.names.get(path).ok_or_else(|| not_found(path))?;
        let file = st.inodes.get(ino).ok_or_else(|| not_found(path))?;
        slice_range(&file.data, offset, len)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        let mut st = self.lock();
        let ino = st.names.remove(path).ok_or_else(|| not_found(path))?;
        // The inode lives on while the durable namespace or a handle names it.
        if !st.durable_names.values().any(|i| *i == ino) {
            st.inodes.remove(&ino);
        }
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut st = self.lock();
        let ino = st.names.remove(from).ok_or_else(|| not_found(from))?;
        st.names.insert(to.to_path_buf(), ino);
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut st = self.lock();
        if st.fail_dir_syncs > 0 {
            st.fail_dir_syncs -= 1;
            return Err(io::Error::other("injected directory sync failure"));
        }
        let in_dir = |p: &PathBuf| p.parent() == Some(dir);
        st.durable_names.retain(|p, _| !in_dir(p));
        let now: Vec<(PathBuf, u64)> = st
            .names
            .iter()
            .filter(|(p, _)| in_dir(p))
            .map(|(p, i)| (p.clone(), *i))
            .collect();
        st.durable_names.extend(now);
        st.dir_syncs += 1;
        Ok(())
    }
}

fn slice_range(data: &[u8], offset: u64, len: usize) -> io::Result<Vec<u8>> {
    let eof = || {
        io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!(
                "wanted {len} bytes at offset {offset}, file has {}",
                data.len()
            ),
        )
    };
    let start = usize::try_from(offset).map_err(|_| eof())?;
    let end = start.checked_add(len).ok_or_else(eof)?;
    data.get(start..end).map(<[u8]>::to_vec).ok_or_else(eof)
}

impl SimHandle {
    fn with_file<T>(&self, f: impl FnOnce(&mut SimState, u64) -> io::Result<T>) -> io::Result<T> {
        let mut st = self.disk.lock();
        if st.generation != self.generation {
            return Err(io::Error::other(format!(
                "{}: stale handle (the disk crashed since it was opened)",
                self.path.display()
            )));
        }
        if !st.inodes.contains_key(&self.inode) {
            return Err(not_found(&self.path));
        }
        f(&mut st, self.inode)
    }
}

impl DiskFile for SimHandle {
    fn append(&mut self, data: &[u8]) -> io::Result<()> {
        self.with_file(|st, ino| {
            if let Some(file) = st.inodes.get_mut(&ino) {
                file.data.extend_from_slice(data);
            }
            Ok(())
        })
    }

    fn read_at(&mut self, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        self.with_file(|st, ino| match st.inodes.get(&ino) {
            Some(file) => slice_range(&file.data, offset, len),
            None => Err(not_found(&self.path)),
        })
    }

    fn len(&self) -> io::Result<u64> {
        self.with_file(|st, ino| Ok(st.inodes.get(&ino).map_or(0, |f| f.data.len() as u64)))
    }

    fn truncate(&mut self, len: u64) -> io::Result<()> {
        self.with_file(|st, ino| {
            let len = usize::try_from(len).map_err(io::Error::other)?;
            if let Some(file) = st.inodes.get_mut(&ino) {
                if len < file.synced_len && file.durable_override.is_none() {
                    file.durable_override = Some(file.data[..file.synced_len].to_vec());
                }
                file.data.resize(len, 0);
                file.synced_len = file.synced_len.min(len);
            }
            Ok(())
        })
    }

    fn sync(&mut self) -> io::Result<()> {
        let path = self.path.clone();
        self.with_file(|st, ino| {
            if st.fail_syncs > 0 {
                st.fail_syncs -= 1;
                return Err(io::Error::other("injected fsync failure"));
            }
            if let Some(file) = st.inodes.get_mut(&ino) {
                file.synced_len = file.data.len();
                file.durable_override = None;
            }
            *st.file_syncs.entry(path).or_insert(0) += 1;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> PathBuf {
        PathBuf::from(s)
    }

    #[test]
    fn synced_bytes_survive_and_unsynced_is_a_prefix() {
        for seed in 0..200 {
            let disk = SimDisk::new();
            disk.create_dir_all(&p("/d")).expect("mkdir");
            let mut f = disk.open(&p("/d/a")).expect("open");
            disk.sync_dir(&p("/d")).expect("dir sync");
            f.append(b"hello ").expect("append");
            f.sync().expect("sync");
            f.append(b"world").expect("append");
            disk.crash(seed);
            let data = disk.read_all(&p("/d/a")).expect("read");
            assert!(data.len() >= 6 && data.len() <= 11, "seed {seed}: {data:?}");
            assert_eq!(&b"hello world"[..data.len()], &data[..]);
            assert!(f.append(b"x").is_err(), "stale handle must fail");
        }
    }

    #[test]
    fn unsynced_directory_operations_are_forgotten() {
        let disk = SimDisk::new();
        disk.create_dir_all(&p("/d")).expect("mkdir");
        let mut a = disk.open(&p("/d/a")).expect("open");
        a.append(b"aaa").expect("append");
        a.sync().expect("sync");
        disk.sync_dir(&p("/d")).expect("dir sync");
        let mut b = disk.open(&p("/d/b")).expect("open");
        b.append(b"bbb").expect("append");
        b.sync().expect("sync");
        disk.remove(&p("/d/a")).expect("remove");
        disk.crash(1);
        assert_eq!(disk.list_files(&p("/d")).expect("list"), vec!["a"]);
        assert_eq!(disk.read_all(&p("/d/a")).expect("read"), b"aaa");

        disk.rename(&p("/d/a"), &p("/d/c")).expect("rename");
        disk.sync_dir(&p("/d")).expect("dir sync");
        disk.crash(2);
        assert_eq!(disk.list_files(&p("/d")).expect("list"), vec!["c"]);
        assert_eq!(disk.read_range(&p("/d/c"), 1, 2).expect("read"), b"aa");
        assert!(disk.read_range(&p("/d/c"), 2, 2).is_err());
    }

    #[test]
    fn unsynced_truncation_is_forgotten_and_sync_failure_is_injected() {
        let disk = SimDisk::new();
        disk.create_dir_all(&p("/d")).expect("mkdir");
        let mut f = disk.open(&p("/d/a")).expect("open");
        disk.sync_dir(&p("/d")).expect("dir sync");
        f.append(b"0123456789").expect("append");
        f.sync().expect("sync");
        f.truncate(4).expect("truncate");
        assert_eq!(f.len().expect("len"), 4);
        disk.crash(3);
        assert_eq!(disk.read_all(&p("/d/a")).expect("read"), b"0123456789");

        let mut f = disk.open(&p("/d/a")).expect("open");
        f.append(b"abc").expect("append");
        disk.fail_next_syncs(1);
        assert!(f.sync().is_err());
        assert_eq!(disk.file_syncs(&p("/d/a")), 1);
        f.sync().expect("second sync works");
        assert_eq!(disk.file_syncs(&p("/d/a")), 2);
        disk.flip_bit(&p("/d/a"), 0, 0).expect("flip");
        assert_eq!(f.read_at(0, 2).expect("read"), b"11");
    }

    #[test]
    fn std_disk_smoke() {
        let dir = std::env::temp_dir().join(format!(
            "rhea-disk-smoke-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = fs::remove_dir_all(&dir);
        let disk = StdDisk;
        disk.create_dir_all(&dir).expect("mkdir");
        let path = dir.join("f");
        let mut f = disk.open(&path).expect("open");
        f.append(b"abcdef").expect("append");
        f.sync().expect("sync");
        disk.sync_dir(&dir).expect("dir sync");
        assert_eq!(f.read_at(2, 3).expect("read"), b"cde");
        f.append(b"gh").expect("append after read goes to the end");
        assert_eq!(disk.read_all(&path).expect("read"), b"abcdefgh");
        f.truncate(3).expect("truncate");
        assert_eq!(f.len().expect("len"), 3);
        assert!(disk.read_range(&path, 2, 5).is_err());
        disk.rename(&path, &dir.join("g")).expect("rename");
        assert_eq!(disk.list_files(&dir).expect("list"), vec!["g"]);
        disk.remove(&dir.join("g")).expect("remove");
        fs::remove_dir_all(&dir).expect("cleanup");
    }
}
