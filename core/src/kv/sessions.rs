//! Client sessions: what makes a retried write apply once. Each session remembers the last
//! sequence number it applied and the answer it got; a bounded number are kept, the least
//! recently used forgotten first, and a write of a session not kept is refused, never applied
//! as new (it may be the retry of a write applied before the session was forgotten).

use paxkv_proto::client::{client_response::Body as Response, ClientResponse, ErrorCode};
use paxkv_proto::peer::{Command, SessionRecord};
use prost::Message;

use super::errors::error_response;
use super::KvStore;

/// Client sessions remembered for exactly-once writes by default; the least recently used one
/// is forgotten beyond this, and its next write is refused as of an expired session (never
/// applied as new, which could apply a retried write twice).
pub const SESSIONS_MAX: usize = 10_000;

impl KvStore {
    /// The answer a write gets without being applied: its session is unknown, it is a retry
    /// (answered as the first time), or it is older than the session's last write.
    pub(super) fn session_answer(&self, command: &Command) -> Option<Response> {
        if command.client_id == 0 {
            return None;
        }
        let known = self.sessions.contains_key(&command.client_id);
        if !known && !crate::planted::active(crate::planted::Bug::UnknownSessionApplied) {
            return Some(error_response(
                ErrorCode::SessionExpired,
                format!(
                    "session {} is not known (never registered, or forgotten among the {} most \
                     recently used); the write was not applied now, but if it was sent before, \
                     an earlier attempt may have been: its outcome is unknown",
                    command.client_id, self.sessions_max
                ),
            ));
        }
        let session = self.sessions.get(&command.client_id)?;
        if command.sequence == session.last_sequence
            && !crate::planted::active(crate::planted::Bug::RetryAppliedTwice)
        {
            let cached = ClientResponse::decode(session.last_response.as_slice())
                .expect("session answers are encoded by this state machine");
            return Some(cached.body.expect("session answers always have a body"));
        }
        if command.sequence < session.last_sequence {
            return Some(error_response(
                ErrorCode::StaleSequence,
                format!(
                    "sequence {} of client {} is older than its last applied write {}",
                    command.sequence, command.client_id, session.last_sequence
                ),
            ));
        }
        None
    }

    /// Records the write's answer in its session, as the answer to any retry of it.
    pub(super) fn remember_session(&mut self, index: u64, command: &Command, response: &Response) {
        if let Some(old) = self.sessions.get(&command.client_id) {
            self.sessions_by_age
                .remove(&(old.last_index, command.client_id));
        }
        // A `ClientResponse` of request id 0 (a default, not encoded) holding `response`: the
        // same bytes, encoded from the response where it is, not from a copy of it (every
        // write of a session passes here, on every node).
        let mut encoded = Vec::with_capacity(response.encoded_len());
        response.encode(&mut encoded);
        self.sessions.insert(
            command.client_id,
            SessionRecord {
                client_id: command.client_id,
                last_sequence: command.sequence,
                last_response: encoded,
                last_index: index,
            },
        );
        self.sessions_by_age.insert((index, command.client_id), ());
        self.evict_sessions();
    }

    /// Sets how many sessions are kept (the simulator lowers it to exercise forgetting).
    pub fn set_sessions_max(&mut self, sessions_max: usize) {
        assert!(sessions_max > 0, "at least one session is kept");
        self.sessions_max = sessions_max;
        self.evict_sessions();
    }

    /// Forgets the least recently used sessions beyond the bound.
    fn evict_sessions(&mut self) {
        while self.sessions.len() > self.sessions_max {
            let (&(_, oldest), _) = self
                .sessions_by_age
                .iter()
                .next()
                .expect("sessions are not empty");
            self.sessions_by_age
                .remove(&(self.sessions[&oldest].last_index, oldest));
            self.sessions.remove(&oldest);
        }
        assert_eq!(
            self.sessions.len(),
            self.sessions_by_age.len(),
            "session index out of step"
        );
    }
}
