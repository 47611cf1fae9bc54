//! `delete`: removes a key, optionally only if its revision is as expected
//! (compare-and-delete); or every key under a prefix or in a range, at one revision.

use std::ops::Bound;

use paxkv_proto::client::{client_response::Body as Response, DeleteRequest, DeleteResponse};

use paxkv_proto::{DELETE_PREFIX_KEYS_MAX, KEY_BYTES_MAX};

use crate::kv::errors::{bad_request, validate_key};
use crate::kv::history::After;
use crate::kv::KvStore;

#[allow(clippy::result_large_err)]
pub(super) fn validate(delete: &DeleteRequest) -> Result<(), Response> {
    let ranged = !delete.range_end.is_empty();
    if (delete.prefix || ranged) && delete.expected_revision.is_some() {
        return Err(bad_request(
            "a prefix or range delete takes no expected revision (compare one key at a time)",
        ));
    }
    if delete.prefix && ranged {
        return Err(bad_request(
            "a delete names a prefix or a range end, not both",
        ));
    }
    if delete.range_end.len() > KEY_BYTES_MAX {
        return Err(bad_request(format!(
            "the range end has {} bytes; keys are limited to {KEY_BYTES_MAX}",
            delete.range_end.len()
        )));
    }
    if ranged && delete.range_end <= delete.key {
        return Err(bad_request(
            "the range end must come after the start key (the range is start..end, end excluded)",
        ));
    }
    validate_key(&delete.key)
}

/// The keys a multi-key delete covers.
#[derive(Debug, Clone, Copy)]
pub(in crate::kv) enum Span<'a> {
    /// Every key starting with these bytes.
    Prefix(&'a [u8]),
    /// Every key from the first (included) to the second (excluded).
    Range(&'a [u8], &'a [u8]),
}

impl<'a> Span<'a> {
    /// The span of a prefix or range delete; None for a single-key delete.
    pub(in crate::kv) fn of(delete: &'a DeleteRequest) -> Option<Span<'a>> {
        if delete.prefix {
            Some(Span::Prefix(&delete.key))
        } else if !delete.range_end.is_empty() {
            Some(Span::Range(&delete.key, &delete.range_end))
        } else {
            None
        }
    }

    pub(in crate::kv) fn contains(self, key: &[u8]) -> bool {
        match self {
            Span::Prefix(prefix) => key.starts_with(prefix),
            Span::Range(start, end) => start <= key && key < end,
        }
    }

    fn start(self) -> &'a [u8] {
        match self {
            Span::Prefix(start) | Span::Range(start, _) => start,
        }
    }
}

impl KvStore {
    pub(super) fn delete(&mut self, delete: &DeleteRequest) -> Response {
        if let Some(span) = Span::of(delete) {
            return self.delete_span(span);
        }
        let current = self.stored(delete.key.as_slice());
        let previous = current.map(|stored| Self::key_value(&delete.key, stored));
        if current.is_none() || !Self::revision_matches(current, delete.expected_revision) {
            return Response::Delete(DeleteResponse {
                header: self.header(),
                deleted: false,
                previous,
                deleted_count: 0,
                more: false,
            });
        }
        self.delete_key(&delete.key);
        Response::Delete(DeleteResponse {
            header: self.header(),
            deleted: true,
            previous,
            deleted_count: 1,
            more: false,
        })
    }

    /// The stored keys in `span`, in order.
    pub(in crate::kv) fn keys_in<'s>(&'s self, span: Span<'s>) -> impl Iterator<Item = &'s [u8]> {
        self.stored_from(Bound::Included(span.start()))
            .map(|(key, _)| key)
            .take_while(move |key| span.contains(key))
    }

    /// Deletes the keys in `span` (at most `DELETE_PREFIX_KEYS_MAX`) at one revision.
    fn delete_span(&mut self, span: Span<'_>) -> Response {
        let mut keys: Vec<Vec<u8>> = self
            .keys_in(span)
            .take(DELETE_PREFIX_KEYS_MAX + 1)
            .map(<[u8]>::to_vec)
            .collect();
        let more = keys.len() > DELETE_PREFIX_KEYS_MAX;
        keys.truncate(DELETE_PREFIX_KEYS_MAX);
        if !keys.is_empty() {
            self.take_revision();
        }
        for key in &keys {
            let removed = self.remove_key(key);
            self.record(key, removed, After::Deleted);
        }
        Response::Delete(DeleteResponse {
            header: self.header(),
            deleted: !keys.is_empty(),
            previous: None,
            deleted_count: keys.len() as u64,
            more,
        })
    }
}
