//! How a client is set up ([`ClientConfig`]) and how a call is asked ([`PutOptions`],
//! [`ReadConsistency`]). Each is `#[non_exhaustive]`: build them with their constructors and
//! builder methods, so that a new setting is not a breaking change.

use std::time::Duration;

/// How long one attempt at one node may take by default before the client tries another.
/// kv-server elects a new leader within two election timeouts (300 ms each by default) of the
/// old one going silent, and a healthy leader answers in milliseconds even under heavy load, so
/// one second outlasts both: a working leader is rarely given up on, and when it is, nothing is
/// lost (its answer still counts if it comes first, and a write keeps its sequence, so it applies
/// once). It is short enough that a frozen leader, whose open connections give no sign, costs a
/// call one second instead of its whole timeout. Raise it with the servers' election timeout.
pub const ATTEMPT_TIMEOUT_DEFAULT: Duration = Duration::from_secs(1);

/// How long one call may take by default, retries included.
pub const TIMEOUT_DEFAULT: Duration = Duration::from_secs(10);

/// Client settings, built from the endpoints:
///
/// ```
/// use std::time::Duration;
/// use paxkv_client::ClientConfig;
///
/// let config = ClientConfig::new(vec!["[::1]:7001".into(), "[::1]:7002".into()])
///     .secret(b"the cluster's shared secret, 32 bytes or more".to_vec())
///     .timeout(Duration::from_secs(5));
/// assert_eq!(config.timeout, Duration::from_secs(5));
/// ```
///
/// It cannot be written as a struct literal, so that new settings can come without breaking
/// anyone:
///
/// ```compile_fail
/// let config = paxkv_client::ClientConfig {
///     endpoints: vec![],
///     secret: None,
///     timeout: std::time::Duration::from_secs(1),
///     attempt_timeout: std::time::Duration::from_secs(1),
/// };
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ClientConfig {
    /// `host:port` of the nodes; IPv6 in brackets (`[::1]:7001`).
    pub endpoints: Vec<String>,
    /// The cluster secret, if the cluster requires one.
    pub secret: Option<Vec<u8>>,
    /// How long one call may take, retries included ([`TIMEOUT_DEFAULT`] unless set).
    pub timeout: Duration,
    /// How long one attempt at one node may take (within `timeout`) before the client tries
    /// the other nodes; see [`ATTEMPT_TIMEOUT_DEFAULT`].
    pub attempt_timeout: Duration,
}

impl ClientConfig {
    /// Settings for the nodes at `endpoints`, with no secret and the default timeouts.
    ///
    /// ```
    /// let config = paxkv_client::ClientConfig::new(vec!["[::1]:7001".into()]);
    /// assert_eq!(config.timeout, paxkv_client::TIMEOUT_DEFAULT);
    /// ```
    pub fn new(endpoints: Vec<String>) -> ClientConfig {
        ClientConfig {
            endpoints,
            secret: None,
            timeout: TIMEOUT_DEFAULT,
            attempt_timeout: ATTEMPT_TIMEOUT_DEFAULT,
        }
    }

    /// The cluster's shared secret (the contents of the file given to `kv-server`).
    ///
    /// ```
    /// let config = paxkv_client::ClientConfig::new(vec!["[::1]:7001".into()])
    ///     .secret(b"0123456789abcdef0123456789abcdef".to_vec());
    /// assert!(config.secret.is_some());
    /// ```
    pub fn secret(mut self, secret: Vec<u8>) -> ClientConfig {
        self.secret = Some(secret);
        self
    }

    /// How long one call may take, retries included.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let config = paxkv_client::ClientConfig::new(vec!["[::1]:7001".into()])
    ///     .timeout(Duration::from_millis(300));
    /// assert_eq!(config.timeout, Duration::from_millis(300));
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> ClientConfig {
        self.timeout = timeout;
        self
    }

    /// How long one attempt at one node may take before the client tries another.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let config = paxkv_client::ClientConfig::new(vec!["[::1]:7001".into()])
    ///     .attempt_timeout(Duration::from_secs(2));
    /// assert_eq!(config.attempt_timeout, Duration::from_secs(2));
    /// ```
    pub fn attempt_timeout(mut self, attempt_timeout: Duration) -> ClientConfig {
        self.attempt_timeout = attempt_timeout;
        self
    }
}

/// How fresh a read must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ReadConsistency {
    /// Reflects every write acknowledged before the read (served by the leader).
    #[default]
    Linearizable,
    /// Any node's local state; may be behind.
    Stale,
    /// Any node, but never older than what this client has already seen.
    Session,
    /// Any node, once it has applied at least this revision.
    AtLeast(u64),
}

/// What a put (or compare-and-set) does to the key's time to live and lease. The default
/// makes the key permanent and attached to no lease, whatever it had before:
///
/// ```
/// use paxkv_client::PutOptions;
///
/// let permanent = PutOptions::default();
/// let expiring = PutOptions::new().ttl_ms(30_000);
/// let leased = PutOptions::new().lease(7);
/// let unchanged = PutOptions::new().keep_ttl();
/// assert_eq!((expiring.ttl_ms, leased.lease_id, unchanged.keep_ttl), (Some(30_000), Some(7), true));
/// # let _ = permanent;
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PutOptions {
    pub ttl_ms: Option<u64>,
    pub lease_id: Option<u64>,
    pub keep_ttl: bool,
    /// The answer leaves out the key as it was ([`PutResult::previous`](crate::PutResult) is
    /// then `None`): see [`PutOptions::without_previous`].
    pub skip_previous: bool,
}

impl PutOptions {
    /// The put request these options make of `key` and `value`.
    pub(crate) fn request(
        &self,
        key: &[u8],
        value: &[u8],
        expected_revision: Option<u64>,
    ) -> paxkv_proto::client::PutRequest {
        paxkv_proto::client::PutRequest {
            key: key.to_vec(),
            value: value.to_vec(),
            ttl_ms: self.ttl_ms,
            lease_id: self.lease_id,
            keep_ttl: self.keep_ttl,
            expected_revision,
            skip_previous: self.skip_previous,
        }
    }

    /// A permanent key on no lease (as [`PutOptions::default`]).
    ///
    /// ```
    /// assert_eq!(paxkv_client::PutOptions::new(), paxkv_client::PutOptions::default());
    /// ```
    pub fn new() -> PutOptions {
        PutOptions::default()
    }

    /// Expire the key this many milliseconds (of log time) after the write.
    ///
    /// ```
    /// let options = paxkv_client::PutOptions::new().ttl_ms(1500);
    /// assert_eq!(options.ttl_ms, Some(1500));
    /// ```
    pub fn ttl_ms(mut self, ttl_ms: u64) -> PutOptions {
        self.ttl_ms = Some(ttl_ms);
        self
    }

    /// Attach the key to this lease: it goes when the lease does.
    ///
    /// ```
    /// let options = paxkv_client::PutOptions::new().lease(42);
    /// assert_eq!(options.lease_id, Some(42));
    /// ```
    pub fn lease(mut self, lease_id: u64) -> PutOptions {
        self.lease_id = Some(lease_id);
        self
    }

    /// Keep the time to live the key has.
    ///
    /// ```
    /// let options = paxkv_client::PutOptions::new().keep_ttl();
    /// assert!(options.keep_ttl);
    /// ```
    pub fn keep_ttl(mut self) -> PutOptions {
        self.keep_ttl = true;
        self
    }

    /// Do not send back the key as it was before a put that succeeds: the old value is then
    /// not copied, sent or remembered for retries, which a write-heavy caller that never reads
    /// `previous` saves on every put. A compare-and-set that fails still shows the key as it
    /// is.
    ///
    /// ```
    /// let options = paxkv_client::PutOptions::new().without_previous();
    /// assert!(options.skip_previous);
    /// ```
    pub fn without_previous(mut self) -> PutOptions {
        self.skip_previous = true;
        self
    }
}

/// Splits `a,b,c` into endpoints, trimming blanks.
///
/// ```
/// assert_eq!(
///     paxkv_client::parse_endpoints(" [::1]:7001, [::1]:7002,"),
///     ["[::1]:7001", "[::1]:7002"]
/// );
/// ```
pub fn parse_endpoints(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|endpoint| !endpoint.is_empty())
        .map(str::to_string)
        .collect()
}
