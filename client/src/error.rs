//! What a call that fails returns: a [`ClientError`], whose kind says what it means for the
//! request (applied or not, worth retrying or not), and whose [`ErrorDetail`] carries the
//! message, the cluster's error code when a node answered with one, and the leader the
//! cluster last named.

pub use paxkv_proto::client::ErrorCode;

/// The leader as a node named it (in a "not the leader" answer) or as it answered.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LeaderHint {
    /// The leader's node id; 0 if the node that named it did not know it.
    pub id: u64,
    /// The leader's client address (`host:port`).
    pub address: String,
}

impl LeaderHint {
    /// ```
    /// let hint = paxkv_client::LeaderHint::new(1, "[::1]:7001");
    /// assert_eq!(hint.address, "[::1]:7001");
    /// ```
    pub fn new(id: u64, address: impl Into<String>) -> LeaderHint {
        LeaderHint {
            id,
            address: address.into(),
        }
    }
}

/// What went wrong, in words, with what the cluster said about it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ErrorDetail {
    /// What happened and what to do about it.
    pub message: String,
    /// The error code of the node's answer; None when the client decided (a timeout, a
    /// connection that failed, an argument refused before sending).
    pub code: Option<ErrorCode>,
    /// The leader the cluster last named to this client, if any: where to look when a call
    /// could not reach it.
    pub leader: Option<LeaderHint>,
}

impl ErrorDetail {
    /// An error in words only.
    ///
    /// ```
    /// let detail = paxkv_client::ErrorDetail::new("no answer");
    /// assert_eq!((detail.message.as_str(), detail.code), ("no answer", None));
    /// ```
    pub fn new(message: impl Into<String>) -> ErrorDetail {
        ErrorDetail {
            message: message.into(),
            ..ErrorDetail::default()
        }
    }

    /// A node's answer with `code`.
    ///
    /// ```
    /// use paxkv_client::{ErrorCode, ErrorDetail};
    /// let detail = ErrorDetail::from_node(ErrorCode::KeyTooLarge, "keys are limited to 4096 bytes");
    /// assert_eq!(detail.code, Some(ErrorCode::KeyTooLarge));
    /// ```
    pub fn from_node(code: ErrorCode, message: impl Into<String>) -> ErrorDetail {
        ErrorDetail {
            code: Some(code),
            ..ErrorDetail::new(message)
        }
    }
}

impl std::fmt::Display for ErrorDetail {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(&self.message)
    }
}

impl From<String> for ErrorDetail {
    fn from(message: String) -> ErrorDetail {
        ErrorDetail::new(message)
    }
}

impl From<&str> for ErrorDetail {
    fn from(message: &str) -> ErrorDetail {
        ErrorDetail::new(message)
    }
}

/// Why a call failed. Match on the kind; [`ClientError::code`] and [`ClientError::leader`]
/// say more when the cluster did.
///
/// ```
/// use paxkv_client::{ClientError, ErrorCode, ErrorDetail};
///
/// let error = ClientError::NotFound(ErrorDetail::from_node(ErrorCode::NotFound, "no lease 5"));
/// assert_eq!(error.code(), Some(ErrorCode::NotFound));
/// assert_eq!(error.to_string(), "not found: no lease 5");
/// match error {
///     ClientError::NotFound(detail) => assert_eq!(detail.message, "no lease 5"),
///     // New kinds may come: a match needs an arm for them.
///     _ => unreachable!(),
/// }
/// ```
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientError {
    /// No leader with a quorum answered in time; the cluster may be down or partitioned. A
    /// write that fails with this was not applied (a write that may have been fails with
    /// `Timeout` or `SessionExpired`).
    #[error("cluster unavailable: {0}")]
    Unavailable(ErrorDetail),
    /// The call did not finish in time; a write may or may not have taken effect.
    #[error("timed out: {0}")]
    Timeout(ErrorDetail),
    /// The write's session was forgotten by the cluster (it keeps a bounded number) after an
    /// earlier attempt of this write was sent: that attempt may or may not have been applied,
    /// and the write was not applied again. Read the key to find out.
    #[error("session expired, outcome unknown: {0}")]
    SessionExpired(ErrorDetail),
    /// The request is invalid (too large, empty key, bad TTL) and was not applied.
    #[error("invalid argument: {0}")]
    InvalidArgument(ErrorDetail),
    #[error("authentication failed: {0}")]
    Authentication(ErrorDetail),
    /// The lease does not exist (or expired).
    #[error("not found: {0}")]
    NotFound(ErrorDetail),
    /// A membership change broke a rule (another change in progress, a learner still
    /// catching up, a quorum that would be lost); the message says which and what to do.
    #[error("membership change refused: {0}")]
    Refused(ErrorDetail),
    #[error("server error: {0}")]
    Server(ErrorDetail),
    /// A read at a revision older than the history the node keeps (a scan whose first page
    /// is too old): start it again.
    #[error("compacted: {0}")]
    Compacted(ErrorDetail),
}

impl ClientError {
    /// The message, the code and the leader hint.
    ///
    /// ```no_run
    /// # async fn example(client: paxkv_client::Client) -> Result<(), paxkv_client::ClientError> {
    /// if let Err(error) = client.lease_keep_alive(5).await {
    ///     println!("{} (code {:?})", error.detail().message, error.detail().code);
    /// }
    /// # Ok(()) }
    /// ```
    pub fn detail(&self) -> &ErrorDetail {
        match self {
            ClientError::Unavailable(detail)
            | ClientError::Timeout(detail)
            | ClientError::SessionExpired(detail)
            | ClientError::InvalidArgument(detail)
            | ClientError::Authentication(detail)
            | ClientError::NotFound(detail)
            | ClientError::Refused(detail)
            | ClientError::Server(detail)
            | ClientError::Compacted(detail) => detail,
        }
    }

    fn detail_mut(&mut self) -> &mut ErrorDetail {
        match self {
            ClientError::Unavailable(detail)
            | ClientError::Timeout(detail)
            | ClientError::SessionExpired(detail)
            | ClientError::InvalidArgument(detail)
            | ClientError::Authentication(detail)
            | ClientError::NotFound(detail)
            | ClientError::Refused(detail)
            | ClientError::Server(detail)
            | ClientError::Compacted(detail) => detail,
        }
    }

    /// What happened, without the kind's prefix.
    ///
    /// ```no_run
    /// # async fn example(client: paxkv_client::Client) -> Result<(), paxkv_client::ClientError> {
    /// if let Err(error) = client.lease_keep_alive(5).await {
    ///     eprintln!("{}", error.message());
    /// }
    /// # Ok(()) }
    /// ```
    pub fn message(&self) -> &str {
        &self.detail().message
    }

    /// The error code of the node's answer, if a node answered with one.
    ///
    /// ```no_run
    /// # async fn example(client: paxkv_client::Client) -> Result<(), paxkv_client::ClientError> {
    /// use paxkv_client::ErrorCode;
    /// match client.lease_keep_alive(5).await {
    ///     Err(error) if error.code() == Some(ErrorCode::NotFound) => println!("the lease is gone"),
    ///     other => { other?; }
    /// }
    /// # Ok(()) }
    /// ```
    pub fn code(&self) -> Option<ErrorCode> {
        self.detail().code
    }

    /// The leader the cluster last named to this client, if any.
    ///
    /// ```no_run
    /// # async fn example(client: paxkv_client::Client) -> Result<(), paxkv_client::ClientError> {
    /// if let Err(error) = client.get(b"k", Default::default()).await {
    ///     if let Some(leader) = error.leader() {
    ///         eprintln!("the leader was said to be n{} at {}", leader.id, leader.address);
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub fn leader(&self) -> Option<&LeaderHint> {
        self.detail().leader.as_ref()
    }

    /// The same error, naming `leader` unless it names one already.
    pub(crate) fn with_leader(mut self, leader: Option<LeaderHint>) -> ClientError {
        let detail = self.detail_mut();
        if detail.leader.is_none() {
            detail.leader = leader;
        }
        self
    }
}
