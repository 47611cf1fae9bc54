//! The response header (revision, log position, log time and serving node of the state an
//! answer was served at), found in one place for every kind of answer: the replica fills in
//! the serving node, clients read the rest. A new kind of answer with a header is one more
//! line in `answers_with_header!`.

use crate::client::{client_response::Body, ResponseHeader};

/// Evaluates `$then` with `$answer` bound to the answer of any variant that has a header, and
/// `$none` for the others (status, errors, authentication).
macro_rules! answers_with_header {
    ($body:expr, $answer:ident => $then:expr, _ => $none:expr) => {
        match $body {
            Body::Put($answer) => $then,
            Body::Get($answer) => $then,
            Body::Delete($answer) => $then,
            Body::Scan($answer) => $then,
            Body::Expire($answer) => $then,
            Body::Persist($answer) => $then,
            Body::Ttl($answer) => $then,
            Body::LeaseGrant($answer) => $then,
            Body::LeaseKeepAlive($answer) => $then,
            Body::LeaseRevoke($answer) => $then,
            Body::LeaseTimeToLive($answer) => $then,
            Body::LeaseList($answer) => $then,
            Body::Watch($answer) => $then,
            Body::RegisterSession($answer) => $then,
            Body::Members($answer) => $then,
            Body::Txn($answer) => $then,
            Body::Redis($answer) => $then,
            Body::Status(_) | Body::Error(_) | Body::AuthChallenge(_) | Body::AuthOk(_) => $none,
        }
    };
}

impl Body {
    /// The answer's header; None for answers without one.
    pub fn header(&self) -> Option<&ResponseHeader> {
        answers_with_header!(self, answer => answer.header.as_ref(), _ => None)
    }

    pub fn header_mut(&mut self) -> Option<&mut ResponseHeader> {
        answers_with_header!(self, answer => answer.header.as_mut(), _ => None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::{GetResponse, StatusResponse};

    #[test]
    fn answers_with_a_header_expose_it_and_others_do_not() {
        let mut get = Body::Get(GetResponse {
            header: Some(ResponseHeader {
                revision: 7,
                ..Default::default()
            }),
            kv: None,
        });
        get.header_mut()
            .expect("a get answer has a header")
            .served_by = 3;
        let header = get.header().expect("a get answer has a header");
        assert_eq!((header.revision, header.served_by), (7, 3));
        let mut status = Body::Status(StatusResponse::default());
        assert!(status.header().is_none() && status.header_mut().is_none());
    }
}
