//! Key commands: DEL, EXISTS, TYPE, the EXPIRE and TTL families, PERSIST, RENAME, COPY, KEYS,
//! DBSIZE, RANDOMKEY, and the pages the port's SCAN and FLUSHDB are made of.
//!
//! SCAN: paxkv's keys are ordered, so a page resumes after the last key it looked at. Redis's
//! cursor is a number, so the port keeps the resume key and hands the client a number for it
//! (`PAXKV.SCAN start count [MATCH p] [TYPE t]` answers the next start, or null at the end,
//! and the keys). Every key present for a whole iteration is returned once.

use std::ops::Bound;

use paxkv_proto::client::{RedisReply, ValueType};
use paxkv_proto::DELETE_PREFIX_KEYS_MAX;

use super::args::{integer_arg, is};
use super::glob::glob_match;
use super::{
    array, attempt, bulk, error, flag, integer, null, ok, simple, syntax_error, valid_key, Args,
    Context, KeyLease, KvStore, Ttl, LIST_BYTES_MAX,
};

pub fn del(kv: &mut KvStore, args: &Args, _: &Context) -> RedisReply {
    let deleted = args[1..].iter().filter(|key| kv.delete_key(key)).count();
    integer(deleted as i64)
}

pub fn exists(kv: &KvStore, args: &Args, _: &Context) -> RedisReply {
    let found = args[1..]
        .iter()
        .filter(|key| kv.live(key).is_some())
        .count();
    integer(found as i64)
}

pub(super) fn type_name(value_type: ValueType) -> &'static str {
    match value_type {
        ValueType::String => "string",
        ValueType::Hash => "hash",
    }
}

pub fn key_type(kv: &KvStore, args: &Args, _: &Context) -> RedisReply {
    simple(
        kv.live(&args[1])
            .map_or("none", |stored| type_name(stored.value_type())),
    )
}

/// EXPIRE's conditions.
#[derive(Default)]
struct Conditions {
    nx: bool,
    xx: bool,
    gt: bool,
    lt: bool,
}

fn conditions(args: &Args) -> Result<Conditions, RedisReply> {
    let mut found = Conditions::default();
    for arg in &args[3..] {
        if is(arg, "nx") {
            found.nx = true;
        } else if is(arg, "xx") {
            found.xx = true;
        } else if is(arg, "gt") {
            found.gt = true;
        } else if is(arg, "lt") {
            found.lt = true;
        } else {
            return Err(error(format!(
                "ERR Unsupported option {}",
                String::from_utf8_lossy(arg)
            )));
        }
    }
    if found.nx && (found.xx || found.gt || found.lt) {
        return Err(error(
            "ERR NX and XX, GT or LT options at the same time are not compatible",
        ));
    }
    if found.gt && found.lt {
        return Err(error(
            "ERR GT and LT options at the same time are not compatible",
        ));
    }
    Ok(found)
}

/// EXPIRE and its kin: `unit_ms` per unit, absolute (Unix) or relative.
fn expire_generic(
    kv: &mut KvStore,
    args: &Args,
    context: &Context,
    unit_ms: i64,
    absolute: bool,
    command: &str,
) -> RedisReply {
    let value = attempt!(integer_arg(&args[2]));
    let conditions = attempt!(conditions(args));
    let invalid = || error(format!("ERR invalid expire time in '{command}' command"));
    let Some(ms) = value.checked_mul(unit_ms) else {
        return invalid();
    };
    let deadline = if absolute {
        kv.log_time_at(i128::from(ms), context)
    } else if ms <= 0 {
        kv.log_time_ms
    } else if ms as u64 > crate::kv::TTL_MS_MAX {
        return invalid();
    } else {
        kv.log_time_ms.saturating_add(ms as u64)
    };
    let key = &args[1];
    let Some(stored) = kv.live(key) else {
        return flag(false);
    };
    let current = stored.expires_at_ms();
    let applies = if conditions.nx {
        current == 0
    } else {
        (!conditions.xx || current != 0)
            && (!conditions.gt || (current != 0 && deadline > current))
            && (!conditions.lt || current == 0 || deadline < current)
    };
    if applies {
        kv.set_deadline(key, deadline);
    }
    flag(applies)
}

pub fn expire(kv: &mut KvStore, args: &Args, context: &Context) -> RedisReply {
    expire_generic(kv, args, context, 1000, false, "expire")
}

pub fn pexpire(kv: &mut KvStore, args: &Args, context: &Context) -> RedisReply {
    expire_generic(kv, args, context, 1, false, "pexpire")
}

pub fn expireat(kv: &mut KvStore, args: &Args, context: &Context) -> RedisReply {
    expire_generic(kv, args, context, 1000, true, "expireat")
}

pub fn pexpireat(kv: &mut KvStore, args: &Args, context: &Context) -> RedisReply {
    expire_generic(kv, args, context, 1, true, "pexpireat")
}

/// The TTL family: -2 for no key, -1 for no TTL, else the remaining time or the deadline as
/// Unix time, in seconds (rounded) or milliseconds.
fn ttl_generic(
    kv: &KvStore,
    key: &[u8],
    context: &Context,
    ms: bool,
    absolute: bool,
) -> RedisReply {
    let Some(stored) = kv.live(key) else {
        return integer(-2);
    };
    if stored.expires_at_ms() == 0 {
        return integer(-1);
    }
    let value = if absolute {
        kv.unix_time_at(stored.expires_at_ms(), context)
    } else {
        (stored.expires_at_ms() - kv.log_time_ms) as i64
    };
    integer(if ms { value } else { (value + 500) / 1000 })
}

pub fn ttl(kv: &KvStore, args: &Args, context: &Context) -> RedisReply {
    ttl_generic(kv, &args[1], context, false, false)
}

pub fn pttl(kv: &KvStore, args: &Args, context: &Context) -> RedisReply {
    ttl_generic(kv, &args[1], context, true, false)
}

pub fn expiretime(kv: &KvStore, args: &Args, context: &Context) -> RedisReply {
    ttl_generic(kv, &args[1], context, false, true)
}

pub fn pexpiretime(kv: &KvStore, args: &Args, context: &Context) -> RedisReply {
    ttl_generic(kv, &args[1], context, true, true)
}

pub fn persist(kv: &mut KvStore, args: &Args, _: &Context) -> RedisReply {
    let has_ttl = kv
        .live(&args[1])
        .is_some_and(|stored| stored.expires_at_ms() != 0);
    if has_ttl {
        kv.set_deadline(&args[1], 0);
    }
    flag(has_ttl)
}

/// Moves or copies `from` to `to` with its type and TTL; false if `to` exists and may not be
/// replaced. `from` must exist.
fn transfer(kv: &mut KvStore, from: &[u8], to: &[u8], replace: bool, keep_source: bool) -> bool {
    if !replace && kv.live(to).is_some() {
        return false;
    }
    let stored = kv
        .live(from)
        .expect("the caller checked the source")
        .clone();
    if !keep_source {
        kv.delete_key(from);
    }
    kv.store_value(
        to,
        stored.value(),
        stored.value_type(),
        Ttl::At(stored.expires_at_ms()),
        KeyLease::Detach,
    );
    true
}

fn rename_generic(kv: &mut KvStore, args: &Args, replace: bool) -> RedisReply {
    let (from, to) = (&args[1], &args[2]);
    if kv.live(from).is_none() {
        return error("ERR no such key");
    }
    attempt!(valid_key(to));
    if from == to {
        return if replace { ok() } else { flag(false) };
    }
    let moved = transfer(kv, from, to, replace, false);
    if replace {
        ok()
    } else {
        flag(moved)
    }
}

pub fn rename(kv: &mut KvStore, args: &Args, _: &Context) -> RedisReply {
    rename_generic(kv, args, true)
}

pub fn renamenx(kv: &mut KvStore, args: &Args, _: &Context) -> RedisReply {
    rename_generic(kv, args, false)
}

pub fn copy(kv: &mut KvStore, args: &Args, _: &Context) -> RedisReply {
    let (from, to) = (&args[1], &args[2]);
    let mut replace = false;
    let mut i = 3;
    while i < args.len() {
        if is(&args[i], "replace") {
            replace = true;
        } else if is(&args[i], "db") && i + 1 < args.len() {
            let db = attempt!(integer_arg(&args[i + 1]));
            if db != 0 {
                return error("ERR DB index is out of range");
            }
            i += 1;
        } else {
            return syntax_error();
        }
        i += 1;
    }
    if from == to {
        return error("ERR source and destination objects are the same");
    }
    attempt!(valid_key(to));
    if kv.live(from).is_none() {
        return flag(false);
    }
    flag(transfer(kv, from, to, replace, true))
}

/// The bytes a pattern starts with before its first special character: every key it
/// matches starts with them.
fn literal_prefix(pattern: &[u8]) -> &[u8] {
    let end = pattern
        .iter()
        .position(|byte| matches!(byte, b'*' | b'?' | b'[' | b'\\'))
        .unwrap_or(pattern.len());
    &pattern[..end]
}

pub fn keys(kv: &KvStore, args: &Args, _: &Context) -> RedisReply {
    let pattern = &args[1];
    let prefix = literal_prefix(pattern);
    let mut found = Vec::new();
    let mut bytes = 0;
    for (key, _) in kv
        .stored_from(Bound::Included(prefix))
        .take_while(|(key, _)| key.starts_with(prefix))
    {
        if glob_match(pattern, key) {
            bytes += key.len() + 16;
            if bytes > LIST_BYTES_MAX {
                return error(format!(
                    "ERR KEYS would answer more than {LIST_BYTES_MAX} bytes; page through the \
                     keys with SCAN"
                ));
            }
            found.push(bulk(key.to_vec()));
        }
    }
    array(found)
}

pub fn dbsize(kv: &KvStore, _: &Args, _: &Context) -> RedisReply {
    integer(kv.map.len() as i64)
}

pub fn randomkey(kv: &KvStore, _: &Args, context: &Context) -> RedisReply {
    // Any key will do; the request's arrival time picks where to look.
    let start = crate::kv::fnv1a(&context.unix_time_ms.to_be_bytes()).to_be_bytes();
    let found = kv
        .stored_from(Bound::Included(&start[..]))
        .next()
        .or_else(|| kv.stored_from(Bound::Unbounded).next());
    found.map_or_else(null, |(key, _)| bulk(key.to_vec()))
}

/// Keys a SCAN page looks at most.
const SCAN_COUNT_MAX: i64 = 100_000;

/// `PAXKV.SCAN start count [MATCH pattern] [TYPE type]`: looks at up to `count` keys from
/// `start` (empty: the first key); answers [next start or null, [matching keys]].
pub fn scan_page(kv: &KvStore, args: &Args, _: &Context) -> RedisReply {
    let start = &args[1];
    let count = attempt!(integer_arg(&args[2]));
    if count < 1 {
        return syntax_error();
    }
    let count = count.min(SCAN_COUNT_MAX) as usize;
    let (mut pattern, mut wanted_type) = (None, None);
    let mut i = 3;
    while i + 1 < args.len() {
        if is(&args[i], "match") {
            pattern = Some(args[i + 1].as_slice());
        } else if is(&args[i], "type") {
            wanted_type = Some(args[i + 1].to_ascii_lowercase());
        } else {
            return syntax_error();
        }
        i += 2;
    }
    if i != args.len() {
        return syntax_error();
    }
    let prefix = pattern.map_or(&b""[..], literal_prefix);
    let from: &[u8] = if start.as_slice() < prefix {
        prefix
    } else {
        start
    };
    let mut range = kv
        .stored_from(Bound::Included(from))
        .take_while(|(key, _)| key.starts_with(prefix));
    let mut keys = Vec::new();
    for (key, stored) in range.by_ref().take(count) {
        let matches = pattern.is_none_or(|pattern| glob_match(pattern, key))
            && wanted_type
                .as_deref()
                .is_none_or(|wanted| wanted == type_name(stored.value_type()).as_bytes());
        if matches {
            keys.push(bulk(key.to_vec()));
        }
    }
    let next = range
        .next()
        .map_or_else(null, |(key, _)| bulk(key.to_vec()));
    array(vec![next, array(keys)])
}

/// `PAXKV.FLUSH`: deletes up to `DELETE_PREFIX_KEYS_MAX` keys; answers how many are left (the
/// port repeats it until none are).
pub fn flush_page(kv: &mut KvStore, _: &Args, _: &Context) -> RedisReply {
    let keys: Vec<Vec<u8>> = kv
        .stored_from(Bound::Unbounded)
        .map(|(key, _)| key)
        .take(DELETE_PREFIX_KEYS_MAX)
        .map(|key| key.to_vec())
        .collect();
    for key in keys {
        kv.delete_key(&key);
    }
    integer(kv.map.len() as i64)
}
