//! `paxkv._native`: the Rust client of paxkv seen from Python.
//!
//! The `paxkv` package (client-py/python/paxkv) is the public face; this module does the work
//! underneath: it turns arguments into requests, runs them on one shared tokio runtime and turns
//! answers into Python values. Every call can run two ways:
//! - blocking (no `done` given): the calling thread waits with the GIL released, waking every
//!   100 ms to let Python deliver signals, so Ctrl-C interrupts a call that is retrying;
//! - in the background (`done` given): the call runs on the runtime and `done(ok, value)` is
//!   called from a runtime thread when it ends; the asyncio client passes a `done` that hands
//!   the result to its event loop.
//!
//! After `fork()` the child has none of the runtime's threads: the package calls
//! `after_fork_in_child`, and from then on the child uses a runtime of its own, and each client
//! made before the fork opens new connections on it (the parent's are left alone: see
//! `NativeClient::client`). The client's `tracing` events (retries, leader changes) reach
//! Python's `logging` as the `paxkv` logger's records (see `PythonLog`).

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use paxkv_client::{
    Client, ClientConfig, ClientError, Compare, CompareOn, ExpireCondition, Held, KeyValue,
    Leadership, LockGuard, LockOptions, Observer, PutOptions, ReadConsistency, StatusResponse,
    TtlState, Txn, TxnOp, TxnOpResult,
};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyDict, PyList, PyString};
use pyo3::IntoPyObjectExt;

/// How often a blocking call lets Python handle signals (Ctrl-C).
const SIGNAL_CHECK: Duration = Duration::from_millis(100);

/// How many forks deep a process may be and still get a runtime of its own (each generation
/// of `fork()` children uses the next one; a runtime is never dropped, as its threads, or in a
/// child their absence, make that unsafe).
const GENERATIONS_MAX: usize = 64;

/// Which runtime this process uses: 0 in the process that imported paxkv, one more in each
/// generation of forked children.
static GENERATION: AtomicU64 = AtomicU64::new(0);

/// One runtime for every client in the process: two workers drive all connections.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIMES: [OnceLock<tokio::runtime::Runtime>; GENERATIONS_MAX] =
        [const { OnceLock::new() }; GENERATIONS_MAX];
    let generation = GENERATION.load(Ordering::SeqCst) as usize;
    RUNTIMES[generation.min(GENERATIONS_MAX - 1)].get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("paxkv-io")
            .enable_all()
            .build()
            .expect("cannot start the paxkv I/O runtime")
    })
}

/// Called in a child right after `fork()` (the package registers it with
/// `os.register_at_fork`): the parent's runtime has no threads here, so the child's calls go
/// to a new one.
#[pyfunction]
fn after_fork_in_child() -> PyResult<()> {
    let generation = GENERATION.fetch_add(1, Ordering::SeqCst) + 1;
    if generation as usize >= GENERATIONS_MAX {
        return Err(pyo3::exceptions::PyRuntimeError::new_err(format!(
            "paxkv works in processes at most {GENERATIONS_MAX} forks deep"
        )));
    }
    Ok(())
}

/// Forwards the client library's log records (its `tracing` events) to Python's `logging`, as
/// records of the `paxkv` logger. Records below the level that logger had when the last client
/// was made are dropped without taking the GIL.
struct PythonLog;

/// The `log::LevelFilter` the `paxkv` logger lets through, as a number (0: off).
static LOG_LEVEL: AtomicUsize = AtomicUsize::new(0);

impl log::Log for PythonLog {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.target().starts_with("paxkv")
            && (metadata.level() as usize) <= LOG_LEVEL.load(Ordering::Relaxed)
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let level = match record.level() {
            log::Level::Error => 40,
            log::Level::Warn => 30,
            log::Level::Info => 20,
            log::Level::Debug => 10,
            log::Level::Trace => 5,
        };
        let message = record.args().to_string();
        Python::attach(|py| {
            let logged = py
                .import("logging")
                .and_then(|logging| logging.call_method1("getLogger", ("paxkv",)))
                .and_then(|logger| logger.call_method1("log", (level, message)));
            if let Err(error) = logged {
                error.write_unraisable(py, None);
            }
        });
    }

    fn flush(&self) {}
}

/// Reads the `paxkv` logger's level again (each new client does).
fn refresh_log_level(py: Python<'_>) -> PyResult<()> {
    let logger = py
        .import("logging")?
        .call_method1("getLogger", ("paxkv",))?;
    let enabled =
        |level: u32| -> PyResult<bool> { logger.call_method1("isEnabledFor", (level,))?.extract() };
    let filter = if enabled(5)? {
        log::LevelFilter::Trace
    } else if enabled(10)? {
        log::LevelFilter::Debug
    } else if enabled(20)? {
        log::LevelFilter::Info
    } else if enabled(30)? {
        log::LevelFilter::Warn
    } else if enabled(40)? {
        log::LevelFilter::Error
    } else {
        log::LevelFilter::Off
    };
    LOG_LEVEL.store(filter as usize, Ordering::Relaxed);
    log::set_max_level(filter);
    Ok(())
}

/// A key or value given as `str` (stored as its UTF-8 bytes), `bytes` or `bytearray`.
struct Data(Vec<u8>);

impl<'a, 'py> FromPyObject<'a, 'py> for Data {
    type Error = PyErr;

    fn extract(object: Borrowed<'a, 'py, PyAny>) -> PyResult<Data> {
        if let Ok(bytes) = object.cast::<PyBytes>() {
            return Ok(Data(bytes.as_bytes().to_vec()));
        }
        if let Ok(text) = object.cast::<PyString>() {
            return Ok(Data(text.to_cow()?.into_owned().into_bytes()));
        }
        if let Ok(array) = object.cast::<PyByteArray>() {
            return Ok(Data(array.to_vec()));
        }
        Err(PyTypeError::new_err(format!(
            "expected str or bytes, not {}",
            object.get_type().name()?
        )))
    }
}

/// Bytes handed back to Python as `bytes` (a `Vec<u8>` would become a list of ints).
struct Bytes(Vec<u8>);

impl<'py> IntoPyObject<'py> for Bytes {
    type Target = PyBytes;
    type Output = Bound<'py, PyBytes>;
    type Error = std::convert::Infallible;

    fn into_pyobject(self, py: Python<'py>) -> Result<Self::Output, Self::Error> {
        Ok(PyBytes::new(py, &self.0))
    }
}

/// A key's value and metadata as a tuple: (value, create_revision, mod_revision, version,
/// lease_id, expires_at_ms, log_time_ms of the answer). The package makes an `Entry` of it.
type EntryTuple = (Bytes, u64, u64, u64, u64, u64, u64);

fn entry_tuple(kv: KeyValue, log_time_ms: u64) -> EntryTuple {
    (
        Bytes(kv.value),
        kv.create_revision,
        kv.mod_revision,
        kv.version,
        kv.lease_id,
        kv.expires_at_ms,
        log_time_ms,
    )
}

/// The exception a client error becomes: a class of `paxkv._errors`, with a message that says
/// what to do about it.
fn to_pyerr(py: Python<'_>, error: ClientError) -> PyErr {
    let problem = error.message();
    let (class, message) = match &error {
        ClientError::Unavailable(_) => (
            "Unavailable",
            format!(
                "no leader with a quorum answered: {problem}. Check that most nodes are \
                 running and reach each other, or pass a longer timeout"
            ),
        ),
        ClientError::Timeout(_) => (
            "Timeout",
            format!("{problem}. Read the key to find out, or pass a longer timeout"),
        ),
        ClientError::Authentication(_) => (
            "AuthenticationError",
            format!(
                "{problem}. Pass the cluster's secret as cluster_secret= or \
                 cluster_secret_file="
            ),
        ),
        ClientError::SessionExpired(_) => (
            "SessionExpired",
            format!("{problem}. Read the key to find out before you write it again"),
        ),
        ClientError::InvalidArgument(_) => ("InvalidArgument", problem.to_string()),
        ClientError::NotFound(_) => ("NotFound", problem.to_string()),
        ClientError::Refused(_) => ("MembershipRefused", problem.to_string()),
        ClientError::Compacted(_) => ("Compacted", problem.to_string()),
        _ => ("Error", format!("the server failed: {problem}")),
    };
    let made = py
        .import("paxkv._errors")
        .and_then(|module| module.getattr(class))
        .and_then(|class| class.call1((message,)));
    match made {
        Ok(exception) => PyErr::from_value(exception),
        Err(error) => error,
    }
}

/// Runs `work` blocking (GIL released) or in the background, see the module comment.
fn run<T, F>(py: Python<'_>, done: Option<Py<PyAny>>, work: F) -> PyResult<Py<PyAny>>
where
    F: Future<Output = Result<T, ClientError>> + Send + 'static,
    T: for<'py> IntoPyObject<'py> + Send + 'static,
{
    let Some(done) = done else {
        let result = block(py, work)?;
        return result.map_err(|error| to_pyerr(py, error))?.into_py_any(py);
    };
    runtime().spawn(async move {
        let result = work.await;
        Python::attach(|py| {
            let settled = match result {
                Ok(value) => value.into_py_any(py).map(|value| (true, value)),
                Err(error) => Ok((false, to_pyerr(py, error).into_value(py).into_any())),
            };
            let outcome = settled.unwrap_or_else(|error| (false, error.into_value(py).into_any()));
            if let Err(error) = done.call1(py, outcome) {
                error.write_unraisable(py, None);
            }
        });
    });
    Ok(py.None())
}

/// Waits for `work` with the GIL released, in slices, checking for signals between them.
fn block<F: Future + Send>(py: Python<'_>, work: F) -> PyResult<F::Output>
where
    F::Output: Send,
{
    // Work dropped unfinished (Ctrl-C) is dropped in the runtime's context (declared first,
    // so it outlives `work`): what it leaves behind, like a lock's lease, is then revoked by
    // a task instead of waiting out its time to live.
    let _context = runtime().enter();
    let mut work = pin!(work);
    loop {
        let slice = py.detach(|| {
            runtime().block_on(async { tokio::time::timeout(SIGNAL_CHECK, work.as_mut()).await })
        });
        match slice {
            Ok(output) => return Ok(output),
            Err(_elapsed) => py.check_signals()?,
        }
    }
}

fn consistency(name: &str, min_revision: u64) -> Result<ReadConsistency, ClientError> {
    match name {
        "linearizable" => Ok(ReadConsistency::Linearizable),
        "stale" => Ok(ReadConsistency::Stale),
        "session" if min_revision == 0 => Ok(ReadConsistency::Session),
        "session" => Ok(ReadConsistency::AtLeast(min_revision)),
        other => Err(ClientError::InvalidArgument(
            format!("consistency {other:?} is not one of \"linearizable\", \"stale\", \"session\"")
                .into(),
        )),
    }
}

fn expire_condition(name: Option<&str>) -> Result<ExpireCondition, ClientError> {
    match name {
        None => Ok(ExpireCondition::Always),
        Some("nx") => Ok(ExpireCondition::Nx),
        Some("xx") => Ok(ExpireCondition::Xx),
        Some("gt") => Ok(ExpireCondition::Gt),
        Some("lt") => Ok(ExpireCondition::Lt),
        Some(other) => Err(ClientError::InvalidArgument(
            format!(
            "condition {other:?} is not one of None, \"nx\" (only without a TTL), \"xx\" (only \
             with one), \"gt\" (only later), \"lt\" (only sooner)"
        )
            .into(),
        )),
    }
}

/// The handle to a cluster that `paxkv.Client` and `paxkv.AsyncClient` share.
#[pyclass(frozen, module = "paxkv._native")]
struct NativeClient {
    config: ClientConfig,
    /// The runtime generation (see `GENERATION`) the client was made in.
    generation: u64,
    /// The client of the process that made this one (None only once dropped).
    client: Option<Client>,
    /// In a forked child: a client of the same settings on the child's runtime. The parent's
    /// is never used or dropped there: its connections are the parent's, registered with the
    /// parent's runtime, and closing them from the child would disturb the parent.
    in_child: Mutex<Option<(u64, Client)>>,
}

impl NativeClient {
    /// The client for this process, with `timeout_ms` for this call if given.
    fn client(&self, timeout_ms: Option<u64>) -> Client {
        let generation = GENERATION.load(Ordering::SeqCst);
        let client = match &self.client {
            Some(client) if generation == self.generation => client.clone(),
            _ => {
                let mut in_child = self
                    .in_child
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                match &*in_child {
                    Some((made_in, client)) if *made_in == generation => client.clone(),
                    _ => {
                        let client = Client::new(self.config.clone())
                            .expect("the settings were accepted when the client was made");
                        // A grandparent's client belongs to another process's runtime too.
                        if let Some((_, older)) = in_child.replace((generation, client.clone())) {
                            std::mem::forget(older);
                        }
                        client
                    }
                }
            }
        };
        match timeout_ms {
            Some(timeout_ms) => client.with_timeout(Duration::from_millis(timeout_ms)),
            None => client,
        }
    }
}

impl Drop for NativeClient {
    fn drop(&mut self) {
        let generation = GENERATION.load(Ordering::SeqCst);
        if let Some(client) = self.client.take() {
            if generation != self.generation {
                std::mem::forget(client);
            }
        }
        let in_child = self
            .in_child
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((made_in, client)) = in_child.take() {
            if made_in != generation {
                std::mem::forget(client);
            }
        }
    }
}

#[pymethods]
impl NativeClient {
    #[new]
    #[pyo3(signature = (endpoints, timeout_ms, secret=None))]
    fn new(
        endpoints: Vec<String>,
        timeout_ms: u64,
        secret: Option<Data>,
        py: Python<'_>,
    ) -> PyResult<Self> {
        refresh_log_level(py)?;
        let mut config = ClientConfig::new(endpoints).timeout(Duration::from_millis(timeout_ms));
        config.secret = secret.map(|secret| secret.0);
        let client = Client::new(config.clone()).map_err(|error| to_pyerr(py, error))?;
        Ok(NativeClient {
            config,
            generation: GENERATION.load(Ordering::SeqCst),
            client: Some(client),
            in_child: Mutex::new(None),
        })
    }

    /// Closes the connections; a later call opens new ones.
    fn close(&self) {
        self.client(None).close();
    }

    /// Returns (succeeded, revision, previous entry tuple or None); `expected_revision` makes
    /// it a compare-and-set; `skip_previous` leaves the previous entry out of a put that
    /// succeeds (the cluster then neither copies nor sends it).
    #[pyo3(signature = (key, value, ttl_ms, lease_id, keep_ttl, expected_revision, skip_previous=false, timeout_ms=None, done=None))]
    #[allow(clippy::too_many_arguments)]
    fn put(
        &self,
        py: Python<'_>,
        key: Data,
        value: Data,
        ttl_ms: Option<u64>,
        lease_id: Option<u64>,
        keep_ttl: bool,
        expected_revision: Option<u64>,
        skip_previous: bool,
        timeout_ms: Option<u64>,
        done: Option<Py<PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let client = self.client(timeout_ms);
        let put = paxkv_client::PutRequest {
            key: key.0,
            value: value.0,
            ttl_ms,
            lease_id,
            keep_ttl,
            expected_revision,
            skip_previous,
        };
        run(py, done, async move {
            let put = client.put_with(put).await?;
            let log_time_ms = put.log_time_ms;
            let previous = put.previous.map(|kv| entry_tuple(kv, log_time_ms));
            Ok((put.succeeded, put.revision, previous))
        })
    }

    /// Returns None or an entry tuple (see `EntryTuple`).
    #[pyo3(signature = (key, consistency, min_revision=0, timeout_ms=None, done=None))]
    fn get(
        &self,
        py: Python<'_>,
        key: Data,
        consistency: &str,
        min_revision: u64,
        timeout_ms: Option<u64>,
        done: Option<Py<PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let client = self.client(timeout_ms);
        let consistency = self::consistency(consistency, min_revision);
        run(py, done, async move {
            let answer = client.get(&key.0, consistency?).await?;
            let log_time_ms = answer.log_time_ms;
            Ok(answer.kv.map(|kv| entry_tuple(kv, log_time_ms)))
        })
    }

    /// Returns (deleted, revision, previous entry tuple or None); `expected_revision` makes
    /// it a compare-and-delete.
    #[pyo3(signature = (key, expected_revision=None, timeout_ms=None, done=None))]
    fn delete(
        &self,
        py: Python<'_>,
        key: Data,
        expected_revision: Option<u64>,
        timeout_ms: Option<u64>,
        done: Option<Py<PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let client = self.client(timeout_ms);
        run(py, done, async move {
            let delete = match expected_revision {
                Some(expected) => client.compare_and_delete(&key.0, expected).await?,
                None => client.delete(&key.0).await?,
            };
            let log_time_ms = delete.log_time_ms;
            let previous = delete.previous.map(|kv| entry_tuple(kv, log_time_ms));
            Ok((delete.deleted, delete.revision, previous))
        })
    }

    /// Deletes every key under `prefix`; returns how many went.
    #[pyo3(signature = (prefix, timeout_ms=None, done=None))]
    fn delete_prefix(
        &self,
        py: Python<'_>,
        prefix: Data,
        timeout_ms: Option<u64>,
        done: Option<Py<PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let client = self.client(timeout_ms);
        run(
            py,
            done,
            async move { client.delete_prefix(&prefix.0).await },
        )
    }

    /// Returns ([(key, entry tuple), ...], more, revision) for keys with `prefix` after
    /// `start_after` (see `EntryTuple`), as they are, or as they were at `revision` if given.
    #[pyo3(signature = (prefix, start_after, limit, consistency, revision=0, timeout_ms=None, done=None))]
    #[allow(clippy::too_many_arguments)] // one per Python argument
    fn scan(
        &self,
        py: Python<'_>,
        prefix: Data,
        start_after: Data,
        limit: u32,
        consistency: &str,
        revision: u64,
        timeout_ms: Option<u64>,
        done: Option<Py<PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let client = self.client(timeout_ms);
        let consistency = self::consistency(consistency, 0);
        run(py, done, async move {
            let page = match revision {
                0 => {
                    client
                        .scan(&prefix.0, &start_after.0, limit, consistency?)
                        .await?
                }
                revision => {
                    client
                        .scan_at(&prefix.0, &start_after.0, limit, revision)
                        .await?
                }
            };
            let log_time_ms = page.log_time_ms;
            let entries: Vec<(Bytes, EntryTuple)> = page
                .kvs
                .into_iter()
                .map(|mut kv| {
                    (
                        Bytes(std::mem::take(&mut kv.key)),
                        entry_tuple(kv, log_time_ms),
                    )
                })
                .collect();
            Ok((entries, page.more, page.revision))
        })
    }

    /// Returns None if the key does not exist, else (has_ttl, remaining_ms).
    #[pyo3(signature = (key, timeout_ms=None, done=None))]
    fn ttl(
        &self,
        py: Python<'_>,
        key: Data,
        timeout_ms: Option<u64>,
        done: Option<Py<PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let client = self.client(timeout_ms);
        run(py, done, async move {
            let answer = client.ttl(&key.0).await?;
            Ok(match answer.state {
                TtlState::NoKey => None,
                TtlState::NoTtl => Some((false, 0)),
                TtlState::Remaining => Some((true, answer.remaining_ms)),
            })
        })
    }

    /// Returns whether the TTL was set.
    #[pyo3(signature = (key, ttl_ms, condition, timeout_ms=None, done=None))]
    fn expire(
        &self,
        py: Python<'_>,
        key: Data,
        ttl_ms: u64,
        condition: Option<&str>,
        timeout_ms: Option<u64>,
        done: Option<Py<PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let client = self.client(timeout_ms);
        let condition = expire_condition(condition);
        run(py, done, async move {
            client.expire(&key.0, ttl_ms, condition?).await
        })
    }

    /// Returns whether the key had a TTL.
    #[pyo3(signature = (key, timeout_ms=None, done=None))]
    fn persist(
        &self,
        py: Python<'_>,
        key: Data,
        timeout_ms: Option<u64>,
        done: Option<Py<PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let client = self.client(timeout_ms);
        run(py, done, async move { client.persist(&key.0).await })
    }

    /// `"grant"` a lease of `number` ms (returns its id), `"keep_alive"` lease `number`
    /// (returns its time to live in ms), or `"revoke"` it (returns how many keys went).
    #[pyo3(signature = (action, number, timeout_ms=None, done=None))]
    fn lease(
        &self,
        py: Python<'_>,
        action: &str,
        number: u64,
        timeout_ms: Option<u64>,
        done: Option<Py<PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let client = self.client(timeout_ms);
        let action = action.to_string();
        run(py, done, async move {
            match action.as_str() {
                "grant" => client.lease_grant(number).await,
                "keep_alive" => client.lease_keep_alive(number).await,
                "revoke" => client.lease_revoke(number).await,
                other => Err(ClientError::InvalidArgument(
                    format!("no lease action {other:?}").into(),
                )),
            }
        })
    }

    /// Returns (remaining_ms, granted_ttl_ms, [key, ...]).
    #[pyo3(signature = (lease_id, keys, timeout_ms=None, done=None))]
    fn lease_time_to_live(
        &self,
        py: Python<'_>,
        lease_id: u64,
        keys: bool,
        timeout_ms: Option<u64>,
        done: Option<Py<PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let client = self.client(timeout_ms);
        run(py, done, async move {
            let lease = client.lease_time_to_live(lease_id, keys).await?;
            let keys: Vec<Bytes> = lease.keys.into_iter().map(Bytes).collect();
            Ok((lease.remaining_ms, lease.granted_ttl_ms, keys))
        })
    }

    /// Membership: `"list"`, `"add"` (a learner at `peer_address`), `"promote"` or `"remove"`
    /// node `node_id`; returns the members as a dict (see `Members`).
    #[pyo3(signature = (action, node_id=0, peer_address=String::new(), client_address=String::new(), timeout_ms=None, done=None))]
    #[allow(clippy::too_many_arguments)] // one per Python argument
    fn member(
        &self,
        py: Python<'_>,
        action: &str,
        node_id: u64,
        peer_address: String,
        client_address: String,
        timeout_ms: Option<u64>,
        done: Option<Py<PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let client = self.client(timeout_ms);
        let action = action.to_string();
        run(py, done, async move {
            let members = match action.as_str() {
                "list" => client.members().await,
                "add" => client.member_add(&peer_address, &client_address).await,
                "promote" => client.member_promote(node_id).await,
                "remove" => client.member_remove(node_id).await,
                other => Err(ClientError::InvalidArgument(
                    format!("no member action {other:?}").into(),
                )),
            };
            members.map(Members)
        })
    }

    /// Opens a change stream (see `NativeWatch`); raises like a read if no node takes it.
    #[pyo3(signature = (key, prefix, start_revision, prev_kv, progress_ms, timeout_ms=None, done=None))]
    #[allow(clippy::too_many_arguments)] // one per Python argument
    fn watch_open(
        &self,
        py: Python<'_>,
        key: Data,
        prefix: bool,
        start_revision: u64,
        prev_kv: bool,
        progress_ms: u64,
        timeout_ms: Option<u64>,
        done: Option<Py<PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let client = self.client(timeout_ms);
        let mut options = paxkv_client::WatchOptions::new().from_revision(start_revision);
        if prefix {
            options = options.prefix();
        }
        if prev_kv {
            options = options.prev_kv();
        }
        if progress_ms > 0 {
            options = options.progress(Duration::from_millis(progress_ms));
        }
        run(py, done, async move {
            let watch = client.watch(&key.0, options).await?;
            Ok(NativeWatch {
                watch: std::sync::Arc::new(tokio::sync::Mutex::new(watch)),
            })
        })
    }

    /// Deletes every key from `start` (included) to `end` (excluded); returns how many went.
    #[pyo3(signature = (start, end, timeout_ms=None, done=None))]
    fn delete_range(
        &self,
        py: Python<'_>,
        start: Data,
        end: Data,
        timeout_ms: Option<u64>,
        done: Option<Py<PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let client = self.client(timeout_ms);
        run(py, done, async move {
            client.delete_range(&start.0, &end.0).await
        })
    }

    /// Runs a transaction; returns (succeeded, revision, [op answer, ...]) for the branch that
    /// ran (see `OpAnswer`).
    #[pyo3(signature = (compares, success, failure, timeout_ms=None, done=None))]
    fn txn(
        &self,
        py: Python<'_>,
        compares: Vec<Py<NativeCompare>>,
        success: Vec<Py<NativeOp>>,
        failure: Vec<Py<NativeOp>>,
        timeout_ms: Option<u64>,
        done: Option<Py<PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let client = self.client(timeout_ms);
        let txn = Txn::new()
            .when(compares.iter().map(|compare| compare.get().compare.clone()))
            .and_then(success.iter().map(|op| op.get().op.clone()))
            .or_else(failure.iter().map(|op| op.get().op.clone()));
        run(py, done, async move {
            let result = client.txn(txn).await?;
            let log_time_ms = result.log_time_ms;
            let answers: Vec<OpAnswer> = result
                .results
                .into_iter()
                .map(|answer| match answer {
                    TxnOpResult::Delete { deleted } => ("delete", deleted, None),
                    TxnOpResult::Get(kv) => ("get", 0, kv.map(|kv| keyed_entry(kv, log_time_ms))),
                    TxnOpResult::Put => ("put", 0, None),
                    // A kind this binding does not know yet: the package shows None.
                    _ => ("other", 0, None),
                })
                .collect();
            Ok((result.succeeded, result.revision, answers))
        })
    }

    /// Takes the lock `name` (see `Client::lock`): a lease of `ttl_ms`, waiting at most
    /// `wait_ms` (None: as long as it takes) for the turn. Returns a `NativeHold`.
    #[pyo3(signature = (name, ttl_ms, wait_ms=None, timeout_ms=None, done=None))]
    fn lock(
        &self,
        py: Python<'_>,
        name: Data,
        ttl_ms: u64,
        wait_ms: Option<u64>,
        timeout_ms: Option<u64>,
        done: Option<Py<PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let client = self.client(timeout_ms);
        let options = lock_options(ttl_ms, wait_ms);
        run(py, done, async move {
            let lock = client.lock(&name.0, options).await?;
            Ok(NativeHold::new(Holding::Lock(lock)))
        })
    }

    /// Campaigns in the election `name` with `value` (see `Election::campaign`); the options
    /// as for `lock`. Returns a `NativeHold` once leading.
    #[pyo3(signature = (name, value, ttl_ms, wait_ms=None, timeout_ms=None, done=None))]
    #[allow(clippy::too_many_arguments)] // one per Python argument
    fn campaign(
        &self,
        py: Python<'_>,
        name: Data,
        value: Data,
        ttl_ms: u64,
        wait_ms: Option<u64>,
        timeout_ms: Option<u64>,
        done: Option<Py<PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let client = self.client(timeout_ms);
        let options = lock_options(ttl_ms, wait_ms);
        run(py, done, async move {
            let election = client.election(&name.0);
            let leadership = election.campaign(&value.0, options).await?;
            Ok(NativeHold::new(Holding::Leadership(leadership)))
        })
    }

    /// The leader of the election `name` as (key, entry tuple), or None.
    #[pyo3(signature = (name, timeout_ms=None, done=None))]
    fn election_leader(
        &self,
        py: Python<'_>,
        name: Data,
        timeout_ms: Option<u64>,
        done: Option<Py<PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let client = self.client(timeout_ms);
        run(py, done, async move {
            let leader = client.election(&name.0).leader().await?;
            Ok(leader.map(|kv| keyed_entry(kv, 0)))
        })
    }

    /// Starts following the leader of the election `name` (see `NativeObserver`).
    #[pyo3(signature = (name, timeout_ms=None, done=None))]
    fn election_observe(
        &self,
        py: Python<'_>,
        name: Data,
        timeout_ms: Option<u64>,
        done: Option<Py<PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let client = self.client(timeout_ms);
        run(py, done, async move {
            let observer = client.election(&name.0).observe().await?;
            Ok(NativeObserver {
                observer: Arc::new(tokio::sync::Mutex::new(observer)),
            })
        })
    }

    /// Asks every node at once; returns {endpoint: status dict}, where a node that did not
    /// answer has {"reachable": False, "error": message}.
    #[pyo3(signature = (timeout_ms=None, done=None))]
    fn status(
        &self,
        py: Python<'_>,
        timeout_ms: Option<u64>,
        done: Option<Py<PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let client = self.client(timeout_ms);
        run(
            py,
            done,
            async move { Ok(Statuses(client.status_all().await)) },
        )
    }
}

/// One change stream. `next` returns (revision, [event tuple, ...], progress), each event
/// (kind, revision, key, entry tuple of the key after a put or None, entry tuple before or
/// None), kind one of "put", "delete", "expire".
#[pyclass(frozen, module = "paxkv._native")]
struct NativeWatch {
    watch: std::sync::Arc<tokio::sync::Mutex<paxkv_client::Watch>>,
}

/// A watch event as a tuple for the package (see `NativeWatch`).
type EventTuple = (
    &'static str,
    u64,
    Bytes,
    Option<EntryTuple>,
    Option<EntryTuple>,
);

#[pymethods]
impl NativeWatch {
    #[pyo3(signature = (done=None))]
    fn next(&self, py: Python<'_>, done: Option<Py<PyAny>>) -> PyResult<Py<PyAny>> {
        let watch = self.watch.clone();
        run(py, done, async move {
            let batch = watch.lock().await.next().await?;
            let events: Vec<EventTuple> = batch
                .events
                .into_iter()
                .map(|event| {
                    let kind = match event.kind() {
                        paxkv_client::EventKind::Put => "put",
                        paxkv_client::EventKind::Delete => "delete",
                        paxkv_client::EventKind::Expire => "expire",
                    };
                    let mut kv = event.kv.unwrap_or_default();
                    let key = Bytes(std::mem::take(&mut kv.key));
                    let after = (kind == "put").then(|| entry_tuple(kv, 0));
                    let before = event.prev_kv.map(|previous| entry_tuple(previous, 0));
                    (kind, event.revision, key, after, before)
                })
                .collect();
            Ok((batch.revision, events, batch.progress))
        })
    }
}

/// A key with its entry tuple (see `EntryTuple`), for answers that name the key.
type KeyedEntry = (Bytes, EntryTuple);

fn keyed_entry(mut kv: KeyValue, log_time_ms: u64) -> KeyedEntry {
    (
        Bytes(std::mem::take(&mut kv.key)),
        entry_tuple(kv, log_time_ms),
    )
}

/// One operation's answer in a transaction (see `NativeClient::txn`): its kind ("put",
/// "delete", "get"), the keys a delete removed, the key a get found.
type OpAnswer = (&'static str, u64, Option<KeyedEntry>);

/// Bounds `work` by `timeout_ms`, if given: the calls of a held lock or leadership go through
/// the client it was taken with, so a per-call timeout is applied here.
async fn within<T>(
    timeout_ms: Option<u64>,
    work: impl Future<Output = Result<T, ClientError>>,
) -> Result<T, ClientError> {
    let Some(timeout_ms) = timeout_ms else {
        return work.await;
    };
    match tokio::time::timeout(Duration::from_millis(timeout_ms), work).await {
        Ok(result) => result,
        Err(_elapsed) => Err(ClientError::Timeout(
            format!("no answer within {timeout_ms} ms").into(),
        )),
    }
}

fn lock_options(ttl_ms: u64, wait_ms: Option<u64>) -> LockOptions {
    let options = LockOptions::new().ttl_ms(ttl_ms);
    match wait_ms {
        Some(wait_ms) => options.timeout(Duration::from_millis(wait_ms)),
        None => options,
    }
}

/// The Rust client's compare for what the package describes: `target` one of "value",
/// "mod_revision", "create_revision", "version", "lease", "exists"; `op` one of "==", "!=",
/// ">", "<" ("==" exists and "!=" absent for "exists"); `value` the operand of a value
/// compare, `number` of the others.
fn compare(
    key: &[u8],
    target: &str,
    op: &str,
    value: &[u8],
    number: u64,
) -> Result<Compare, ClientError> {
    let unknown_op = || {
        ClientError::InvalidArgument(
            format!("compare operator {op:?} is not one of \"==\", \"!=\", \">\", \"<\"").into(),
        )
    };
    let by_number = |on: CompareOn<u64>| match op {
        "==" => Ok(on.eq(number)),
        "!=" => Ok(on.ne(number)),
        ">" => Ok(on.gt(number)),
        "<" => Ok(on.lt(number)),
        _ => Err(unknown_op()),
    };
    match target {
        "value" => {
            let on = Compare::value(key);
            match op {
                "==" => Ok(on.eq(value)),
                "!=" => Ok(on.ne(value)),
                ">" => Ok(on.gt(value)),
                "<" => Ok(on.lt(value)),
                _ => Err(unknown_op()),
            }
        }
        "mod_revision" => by_number(Compare::mod_revision(key)),
        "create_revision" => by_number(Compare::create_revision(key)),
        "version" => by_number(Compare::version(key)),
        "lease" => by_number(Compare::lease(key)),
        "exists" => match op {
            "==" => Ok(Compare::exists(key)),
            "!=" => Ok(Compare::absent(key)),
            _ => Err(ClientError::InvalidArgument(
                "an exists compare takes \"==\" (the key exists) or \"!=\" (it does not)".into(),
            )),
        },
        other => Err(ClientError::InvalidArgument(
            format!(
                "compare target {other:?} is not one of \"value\", \"mod_revision\", \
                 \"create_revision\", \"version\", \"lease\", \"exists\""
            )
            .into(),
        )),
    }
}

/// One compare of a transaction, as the Rust client builds it (`paxkv.Compare` holds one).
#[pyclass(frozen, module = "paxkv._native")]
struct NativeCompare {
    compare: Compare,
}

#[pymethods]
impl NativeCompare {
    /// See `compare` for the arguments.
    #[new]
    fn new(
        py: Python<'_>,
        key: Data,
        target: &str,
        op: &str,
        value: Data,
        number: u64,
    ) -> PyResult<Self> {
        let compare =
            compare(&key.0, target, op, &value.0, number).map_err(|error| to_pyerr(py, error))?;
        Ok(NativeCompare { compare })
    }
}

/// One operation of a transaction's branch, as the Rust client builds it (`paxkv.Op` holds
/// one).
#[pyclass(frozen, module = "paxkv._native")]
struct NativeOp {
    op: TxnOp,
}

#[pymethods]
impl NativeOp {
    #[staticmethod]
    #[pyo3(signature = (key, value, ttl_ms=None, lease_id=None, keep_ttl=false))]
    fn put(
        key: Data,
        value: Data,
        ttl_ms: Option<u64>,
        lease_id: Option<u64>,
        keep_ttl: bool,
    ) -> Self {
        let mut options = PutOptions::new();
        if let Some(ttl_ms) = ttl_ms {
            options = options.ttl_ms(ttl_ms);
        }
        if let Some(lease_id) = lease_id {
            options = options.lease(lease_id);
        }
        if keep_ttl {
            options = options.keep_ttl();
        }
        NativeOp {
            op: TxnOp::put(&key.0, &value.0, options),
        }
    }

    #[staticmethod]
    fn delete(key: Data) -> Self {
        NativeOp {
            op: TxnOp::delete(&key.0),
        }
    }

    #[staticmethod]
    fn delete_prefix(prefix: Data) -> Self {
        NativeOp {
            op: TxnOp::delete_prefix(&prefix.0),
        }
    }

    #[staticmethod]
    fn delete_range(start: Data, end: Data) -> Self {
        NativeOp {
            op: TxnOp::delete_range(&start.0, &end.0),
        }
    }

    #[staticmethod]
    fn get(key: Data) -> Self {
        NativeOp {
            op: TxnOp::get(&key.0),
        }
    }
}

/// The Rust guard of a held lock or leadership.
enum Holding {
    Lock(LockGuard),
    Leadership(Leadership),
}

/// A lock or leadership this process holds (`NativeClient::lock`, `campaign`). The Rust
/// guard inside renews its lease in a task on the runtime of the generation that took it, and
/// releases it when released or dropped. In a forked child the guard is the parent's: the
/// child never releases or drops it (that would end the parent's hold, or touch the parent's
/// runtime); it only reads what it held.
#[pyclass(frozen, module = "paxkv._native")]
struct NativeHold {
    /// Key, fencing token and word of a lost lease, readable without the guard.
    held: Held,
    /// The guard; None once released. Shared with a release or proclaim in flight.
    holding: Arc<tokio::sync::Mutex<Option<Holding>>>,
    /// The runtime generation (see `GENERATION`) the guard was taken in.
    generation: u64,
}

impl NativeHold {
    fn new(holding: Holding) -> NativeHold {
        let held = match &holding {
            Holding::Lock(lock) => lock.held(),
            Holding::Leadership(leadership) => leadership.held(),
        };
        NativeHold {
            held,
            holding: Arc::new(tokio::sync::Mutex::new(Some(holding))),
            generation: GENERATION.load(Ordering::SeqCst),
        }
    }

    fn in_other_process(&self) -> bool {
        GENERATION.load(Ordering::SeqCst) != self.generation
    }
}

impl Drop for NativeHold {
    /// Dropped while held: the guard is dropped on the runtime, which revokes its lease in
    /// the background (the lease runs out by itself if that cannot be sent).
    fn drop(&mut self) {
        // Locked: a call in flight owns the guard now and drops it on the runtime.
        let Ok(mut holding) = self.holding.try_lock() else {
            return;
        };
        let Some(holding) = holding.take() else {
            return;
        };
        if self.in_other_process() {
            std::mem::forget(holding);
        } else {
            let _context = runtime().enter();
            drop(holding);
        }
    }
}

#[pymethods]
impl NativeHold {
    /// The fencing token.
    fn token(&self) -> u64 {
        self.held.token()
    }

    /// The holder's own key.
    fn key(&self) -> Bytes {
        Bytes(self.held.key().to_vec())
    }

    /// Whether a renewal found the lease gone.
    fn lost(&self) -> bool {
        self.held.is_lost()
    }

    /// The compare that holds only while this is still held.
    fn held(&self) -> NativeCompare {
        NativeCompare {
            compare: self.held.held(),
        }
    }

    /// Unlocks or resigns; returns whether it was still held by this object (False: released
    /// before, or, in a forked child, the parent's to release).
    #[pyo3(signature = (timeout_ms=None, done=None))]
    fn release(
        &self,
        py: Python<'_>,
        timeout_ms: Option<u64>,
        done: Option<Py<PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let holding = self.holding.clone();
        let in_other_process = self.in_other_process();
        run(py, done, async move {
            let taken = holding.lock().await.take();
            match taken {
                None => Ok(false),
                Some(holding) if in_other_process => {
                    std::mem::forget(holding);
                    Ok(false)
                }
                Some(Holding::Lock(lock)) => within(timeout_ms, lock.unlock()).await.map(|()| true),
                Some(Holding::Leadership(leadership)) => {
                    within(timeout_ms, leadership.resign()).await.map(|()| true)
                }
            }
        })
    }

    /// Changes the leader's value; returns False if leadership was lost (or resigned).
    #[pyo3(signature = (value, timeout_ms=None, done=None))]
    fn proclaim(
        &self,
        py: Python<'_>,
        value: Data,
        timeout_ms: Option<u64>,
        done: Option<Py<PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        if self.in_other_process() {
            return Err(to_pyerr(
                py,
                ClientError::InvalidArgument(
                    "this leadership was won before fork(): only the process that won it \
                     may proclaim"
                        .into(),
                ),
            ));
        }
        let holding = self.holding.clone();
        run(py, done, async move {
            let holding = holding.lock().await;
            match &*holding {
                Some(Holding::Leadership(leadership)) => {
                    within(timeout_ms, leadership.proclaim(&value.0)).await
                }
                Some(Holding::Lock(_)) => Err(ClientError::InvalidArgument(
                    "a lock has no value to proclaim".into(),
                )),
                None => Ok(false),
            }
        })
    }
}

/// Who leads an election, as it changes. `next` returns the leader as (key, entry tuple) or
/// None, the first time the leader now, then at each change.
#[pyclass(frozen, module = "paxkv._native")]
struct NativeObserver {
    observer: Arc<tokio::sync::Mutex<Observer>>,
}

#[pymethods]
impl NativeObserver {
    #[pyo3(signature = (timeout_ms=None, done=None))]
    fn next(
        &self,
        py: Python<'_>,
        timeout_ms: Option<u64>,
        done: Option<Py<PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let observer = self.observer.clone();
        run(py, done, async move {
            let mut observer = observer.lock().await;
            let leader = within(timeout_ms, observer.next()).await?;
            Ok(leader.map(|kv| keyed_entry(kv, 0)))
        })
    }
}

/// The members as a dict: `configuration_index`, `change_in_progress`, `leader_id`, `node_id`
/// (the node a change was about), `members` (each a dict of `node_id`, `voter`,
/// `peer_address`, `client_address`, `match_index`, `reachable`) and `retired` ids.
struct Members(paxkv_client::MembersResponse);

impl<'py> IntoPyObject<'py> for Members {
    type Target = PyDict;
    type Output = Bound<'py, PyDict>;
    type Error = PyErr;

    fn into_pyobject(self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let answer = self.0;
        let all = PyDict::new(py);
        all.set_item("configuration_index", answer.configuration_index)?;
        all.set_item("change_in_progress", answer.change_in_progress)?;
        all.set_item(
            "leader_id",
            (answer.leader_id != 0).then_some(answer.leader_id),
        )?;
        all.set_item("node_id", (answer.node_id != 0).then_some(answer.node_id))?;
        let members = PyList::empty(py);
        for member in &answer.members {
            let entry = PyDict::new(py);
            entry.set_item("node_id", member.node_id)?;
            entry.set_item("voter", member.voter)?;
            entry.set_item("peer_address", member.peer_address.clone())?;
            entry.set_item("client_address", member.client_address.clone())?;
            entry.set_item("match_index", member.match_index)?;
            entry.set_item("reachable", member.reachable)?;
            members.append(entry)?;
        }
        all.set_item("members", members)?;
        all.set_item("retired", answer.retired.clone())?;
        Ok(all)
    }
}

/// Every node's status or why it gave none, by endpoint.
struct Statuses(Vec<(String, Result<StatusResponse, ClientError>)>);

impl<'py> IntoPyObject<'py> for Statuses {
    type Target = PyDict;
    type Output = Bound<'py, PyDict>;
    type Error = PyErr;

    fn into_pyobject(self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let all = PyDict::new(py);
        for (endpoint, answer) in self.0 {
            let row = PyDict::new(py);
            match answer {
                Ok(status) => {
                    let role = match status.role() {
                        paxkv_client::Role::Leader => "leader",
                        paxkv_client::Role::Candidate => "candidate",
                        paxkv_client::Role::Follower => "follower",
                    };
                    row.set_item("reachable", true)?;
                    row.set_item("node_id", status.node_id)?;
                    row.set_item("role", role)?;
                    row.set_item("ballot", (status.ballot_round, status.ballot_node))?;
                    row.set_item(
                        "leader_id",
                        (status.leader_id != 0).then_some(status.leader_id),
                    )?;
                    row.set_item("leader_address", status.leader_address.clone())?;
                    row.set_item("commit_index", status.commit_index)?;
                    row.set_item("applied_index", status.applied_index)?;
                    row.set_item("revision", status.revision)?;
                    row.set_item("key_count", status.key_count)?;
                    row.set_item("lease_count", status.lease_count)?;
                    row.set_item("requests_per_second", status.requests_per_second)?;
                    row.set_item("syncs", status.syncs)?;
                    let peers = PyList::empty(py);
                    for peer in &status.peers {
                        let entry = PyDict::new(py);
                        entry.set_item("node_id", peer.node_id)?;
                        entry.set_item("address", peer.address.clone())?;
                        entry.set_item("reachable", peer.reachable)?;
                        entry.set_item("last_contact_ms", peer.last_contact_ms)?;
                        entry.set_item("match_index", peer.match_index)?;
                        entry.set_item("lag_entries", peer.lag_entries)?;
                        peers.append(entry)?;
                    }
                    row.set_item("peers", peers)?;
                }
                Err(error) => {
                    row.set_item("reachable", false)?;
                    row.set_item("error", error.to_string())?;
                }
            }
            all.set_item(endpoint, row)?;
        }
        Ok(all)
    }
}

#[pymodule]
fn _native(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_class::<NativeClient>()?;
    module.add_class::<NativeWatch>()?;
    module.add_class::<NativeCompare>()?;
    module.add_class::<NativeOp>()?;
    module.add_class::<NativeHold>()?;
    module.add_class::<NativeObserver>()?;
    module.add_function(wrap_pyfunction!(after_fork_in_child, module)?)?;
    // Another extension may have set a logger first: then paxkv's records go there.
    if log::set_logger(&PythonLog).is_ok() {
        log::set_max_level(log::LevelFilter::Off);
    }
    module.add("KEY_BYTES_MAX", paxkv_client::KEY_BYTES_MAX)?;
    module.add("VALUE_BYTES_MAX", paxkv_client::VALUE_BYTES_MAX)?;
    module.add("SCAN_LIMIT_MAX", paxkv_client::SCAN_LIMIT_MAX)?;
    module.add("HISTORY_REVISIONS_MAX", paxkv_client::HISTORY_REVISIONS_MAX)?;
    module.add(
        "DELETE_PREFIX_KEYS_MAX",
        paxkv_client::DELETE_PREFIX_KEYS_MAX,
    )?;
    module.add("TXN_COMPARES_MAX", paxkv_client::TXN_COMPARES_MAX)?;
    module.add("TXN_OPS_MAX", paxkv_client::TXN_OPS_MAX)?;
    Ok(())
}
