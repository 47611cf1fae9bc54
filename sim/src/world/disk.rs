//! The simulated disk: it lives outside the node, keeps synced and unsynced writes apart, and
//! loses what was not synced when the node crashes.

use super::*;

/// One write the node made that is not synced yet.
#[derive(Clone)]
pub(super) struct PendingWrite {
    hard_state: Option<HardState>,
    snapshot: Option<SnapshotWrite>,
    log_write: Option<LogWrite>,
}

#[derive(Default)]
pub(super) struct SimDisk {
    pub(super) synced: DurableState,
    pub(super) unsynced: Vec<PendingWrite>,
    pub(super) syncs: u64,
    pub(super) fail_next_sync: bool,
    /// Until this simulated time, syncs are slow (tens of milliseconds to seconds).
    pub(super) slow_until: Option<Instant>,
    /// A local snapshot written aside (as the real storage's own thread does), and the syncs
    /// left until it is durable; a crash loses it (the log it covers is still there).
    pub(super) writing: Option<(SnapshotWrite, u32)>,
    /// A local snapshot being handed over in parts; it is written aside once complete. While
    /// it comes, as while one is written aside, another local snapshot is skipped (as the real
    /// storage skips one while its writer is busy).
    pub(super) assembly: SnapshotAssembly,
}

impl SimDisk {
    /// The snapshot written aside is durable: the log it covers may go.
    fn finish_snapshot(&mut self) {
        if let Some((write, _)) = self.writing.take() {
            self.synced.apply_persisted(None, Some(&write), None);
        }
    }

    /// Makes the first `count` unsynced writes durable and forgets the rest.
    fn keep_unsynced(&mut self, count: usize) {
        for write in std::mem::take(&mut self.unsynced).iter().take(count) {
            self.synced.apply_persisted(
                write.hard_state.as_ref(),
                write.snapshot.as_ref(),
                write.log_write.as_ref(),
            );
        }
    }
}

/// A node's disk. It lives outside the node, so it survives the node's crash; what was written
/// but not synced is lost in a crash, all of it or a prefix (the seed decides).
#[derive(Clone, Default)]
pub struct SimStorage {
    /// A fast disk (flash with a write cache that survives power loss) syncs in microseconds.
    pub(super) fast: bool,
    pub(super) disk: Arc<Mutex<SimDisk>>,
    /// The bytes of snapshot parts taken since the last sync: what a real disk's writer would
    /// still have to write, so that nodes pause their encoding as they do on a real disk.
    pub(super) backlog: paxkv_server::storage::SnapshotBacklog,
}

impl SimStorage {
    /// The node crashed: keep a random prefix of the unsynced writes (often none; none at all
    /// in a power cut). Returns (writes kept, writes lost).
    pub(super) fn crash(&self, power_cut: bool) -> (usize, usize) {
        let mut disk = self.disk.lock().expect("not poisoned");
        let pending = disk.unsynced.len();
        let kept = if pending == 0 || power_cut || thread_rng().gen_bool(0.5) {
            0
        } else {
            thread_rng().gen_range(0..=pending)
        };
        disk.keep_unsynced(kept);
        disk.fail_next_sync = false;
        disk.writing = None;
        disk.assembly.clear();
        self.backlog.clear();
        (kept, pending - kept)
    }

    /// Makes syncs slow for `length` from now.
    pub(super) fn slow_down(&self, length: Duration) {
        self.disk.lock().expect("not poisoned").slow_until = Some(Instant::now() + length);
    }

    pub(super) fn fail_next_sync(&self) {
        self.disk.lock().expect("not poisoned").fail_next_sync = true;
    }
}

impl Storage for SimStorage {
    fn load(&mut self) -> Result<DurableState, StorageError> {
        Ok(self.disk.lock().expect("not poisoned").synced.clone())
    }

    fn write(
        &mut self,
        hard_state: Option<&HardState>,
        snapshot: Option<&SnapshotWrite>,
        log_write: Option<&LogWrite>,
    ) -> Result<(), StorageError> {
        let mut disk = self.disk.lock().expect("not poisoned");
        let installed = snapshot.filter(|write| write.replaces_log);
        if installed.is_some() {
            // An older snapshot must not land after an installed one: it is waited for first,
            // and one still being handed over is abandoned.
            disk.finish_snapshot();
            disk.assembly.clear();
        }
        let local = snapshot.filter(|write| !write.replaces_log);
        // As the real storage does, a local snapshot that comes while the last one is still
        // being written is skipped (the log it covers stays).
        if let (Some(write), None, false) = (local, &disk.writing, disk.assembly.in_progress()) {
            disk.writing = Some((write.clone(), thread_rng().gen_range(0..4)));
        }
        disk.unsynced.push(PendingWrite {
            hard_state: hard_state.cloned(),
            snapshot: installed.cloned(),
            log_write: log_write.cloned(),
        });
        Ok(())
    }

    fn write_snapshot_part(&mut self, part: SnapshotPart) -> Result<(), StorageError> {
        let mut disk = self.disk.lock().expect("not poisoned");
        let skip = disk.writing.is_some() || disk.assembly.in_progress();
        if let Some(write) = disk.assembly.add(&part, skip && part.first) {
            disk.writing = Some((write, thread_rng().gen_range(0..4)));
        }
        self.backlog
            .handed_over(part.pieces.iter().map(Vec::len).sum());
        Ok(())
    }

    fn sync(&mut self) -> Result<(), StorageError> {
        let mut disk = self.disk.lock().expect("not poisoned");
        if std::mem::take(&mut disk.fail_next_sync) {
            return Err(StorageError::Io {
                path: "simulated-disk".into(),
                source: std::io::Error::other("injected fsync failure"),
            });
        }
        let all = disk.unsynced.len();
        disk.keep_unsynced(all);
        self.backlog.clear();
        disk.syncs += 1;
        match &mut disk.writing {
            Some((_, 0)) => disk.finish_snapshot(),
            Some((_, syncs_left)) => *syncs_left -= 1,
            None => {}
        }
        Ok(())
    }

    fn sync_count(&self) -> u64 {
        self.disk.lock().expect("not poisoned").syncs
    }

    fn snapshot_backlog(&self) -> paxkv_server::storage::SnapshotBacklog {
        self.backlog.clone()
    }

    /// A healthy disk syncs in 10 us to 1 ms (fast) or 1 to 8 ms, a slow one in 20 ms to 2.5 s.
    fn simulated_sync_delay(&mut self) -> Duration {
        let slow = self
            .disk
            .lock()
            .expect("not poisoned")
            .slow_until
            .is_some_and(|until| Instant::now() < until);
        let micros = if slow {
            thread_rng().gen_range(20_000..2_500_000u64)
        } else if self.fast {
            thread_rng().gen_range(10..1_000u64)
        } else {
            thread_rng().gen_range(1_000..8_000u64)
        };
        Duration::from_micros(micros)
    }
}
