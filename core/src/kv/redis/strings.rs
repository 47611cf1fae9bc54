//! String commands: GET and SET with every option, the SET variants, MGET / MSET / MSETNX,
//! counters (INCR and its kin), APPEND, STRLEN, GETRANGE, SETRANGE. A read-modify-write keeps
//! the key's TTL and lease, as Redis keeps the TTL.

use paxkv_proto::client::{RedisReply, ValueType};

use super::args::{expiry_ms, float_arg, format_float, integer_arg, is, parse_f64, parse_i64};
use super::{
    attempt, bulk, error, flag, integer, null, ok, syntax_error, valid_key, valid_size,
    wrong_arguments, Args, Context, KeyLease, KvStore, Ttl,
};

pub fn get(kv: &KvStore, args: &Args, _: &Context) -> RedisReply {
    match attempt!(kv.string_value(&args[1])) {
        Some(stored) => bulk(stored.value().to_vec()),
        None => null(),
    }
}

/// What SET's options ask.
#[derive(Default)]
struct SetOptions {
    nx: bool,
    xx: bool,
    get: bool,
    keep_ttl: bool,
    /// Relative or absolute expiry, once given.
    expiry: Option<Expiry>,
}

#[derive(Clone, Copy)]
enum Expiry {
    /// Milliseconds from now.
    In(i64),
    /// Unix time in milliseconds.
    At(i64),
}

impl KvStore {
    /// The deadline of log time an expiry stands for.
    fn deadline(&self, expiry: Expiry, context: &Context) -> u64 {
        match expiry {
            Expiry::In(ms) => self.log_time_ms.saturating_add(ms as u64),
            Expiry::At(unix_ms) => self.log_time_at(i128::from(unix_ms), context),
        }
    }
}

/// Reads EX / PX / EXAT / PXAT at `args[i]` (its value at `i + 1`) for `command`.
fn expiry_option(args: &Args, i: usize, command: &str) -> Option<Result<Expiry, RedisReply>> {
    let option = &args[i];
    let value = args.get(i + 1)?;
    let (unit, absolute) = if is(option, "ex") {
        (1000, false)
    } else if is(option, "px") {
        (1, false)
    } else if is(option, "exat") {
        (1000, true)
    } else if is(option, "pxat") {
        (1, true)
    } else {
        return None;
    };
    Some(expiry_ms(value, unit, command).and_then(|ms| {
        if !absolute && ms as u64 > crate::kv::TTL_MS_MAX {
            return Err(error(format!(
                "ERR invalid expire time in '{command}' command"
            )));
        }
        Ok(if absolute {
            Expiry::At(ms)
        } else {
            Expiry::In(ms)
        })
    }))
}

fn set_options(args: &Args) -> Result<SetOptions, RedisReply> {
    let mut options = SetOptions::default();
    let mut i = 3;
    while i < args.len() {
        let arg = &args[i];
        if is(arg, "nx") && !options.xx {
            options.nx = true;
        } else if is(arg, "xx") && !options.nx {
            options.xx = true;
        } else if is(arg, "get") {
            options.get = true;
        } else if is(arg, "keepttl") && options.expiry.is_none() {
            options.keep_ttl = true;
        } else if let Some(expiry) = expiry_option(args, i, "set") {
            if options.keep_ttl || options.expiry.is_some() {
                return Err(syntax_error());
            }
            options.expiry = Some(expiry?);
            i += 1;
        } else {
            return Err(syntax_error());
        }
        i += 1;
    }
    Ok(options)
}

pub fn set(kv: &mut KvStore, args: &Args, context: &Context) -> RedisReply {
    let options = attempt!(set_options(args));
    let (key, value) = (&args[1], &args[2]);
    attempt!(valid_key(key));
    attempt!(valid_size(value.len()));
    // A plain SET replaces a key of any type; SET ... GET reads it first, as a string.
    let old = match options.get {
        true => attempt!(kv.string_value(key)).map(|stored| stored.value().to_vec()),
        false => None,
    };
    let exists = kv.live(key).is_some();
    let applies = !(options.nx && exists || options.xx && !exists);
    if applies {
        let ttl = match (options.expiry, options.keep_ttl) {
            (Some(expiry), _) => Ttl::At(kv.deadline(expiry, context)),
            (None, true) => Ttl::Keep,
            (None, false) => Ttl::Clear,
        };
        kv.store_value(key, value, ValueType::String, ttl, KeyLease::Detach);
    }
    match (options.get, applies) {
        (true, _) => old.map_or_else(null, bulk),
        (false, true) => ok(),
        (false, false) => null(),
    }
}

/// Stores `value` as a plain string that replaces whatever `key` held, as SET does: no TTL,
/// no lease.
fn set_string(kv: &mut KvStore, key: &[u8], value: &[u8]) {
    kv.store_value(key, value, ValueType::String, Ttl::Clear, KeyLease::Detach);
}

/// Stores `value` as `key`'s new string, keeping its TTL and lease (INCR, APPEND, SETRANGE).
fn update_string(kv: &mut KvStore, key: &[u8], value: &[u8]) {
    kv.store_value(key, value, ValueType::String, Ttl::Keep, KeyLease::Keep);
}

pub fn setnx(kv: &mut KvStore, args: &Args, _: &Context) -> RedisReply {
    attempt!(valid_key(&args[1]));
    attempt!(valid_size(args[2].len()));
    if kv.live(&args[1]).is_some() {
        return flag(false);
    }
    set_string(kv, &args[1], &args[2]);
    flag(true)
}

fn set_with_expiry(kv: &mut KvStore, args: &Args, unit_ms: i64, command: &str) -> RedisReply {
    let ms = attempt!(expiry_ms(&args[2], unit_ms, command));
    if ms as u64 > crate::kv::TTL_MS_MAX {
        return error(format!("ERR invalid expire time in '{command}' command"));
    }
    attempt!(valid_key(&args[1]));
    attempt!(valid_size(args[3].len()));
    let deadline = kv.log_time_ms.saturating_add(ms as u64);
    kv.store_value(
        &args[1],
        &args[3],
        ValueType::String,
        Ttl::At(deadline),
        KeyLease::Detach,
    );
    ok()
}

pub fn setex(kv: &mut KvStore, args: &Args, _: &Context) -> RedisReply {
    set_with_expiry(kv, args, 1000, "setex")
}

pub fn psetex(kv: &mut KvStore, args: &Args, _: &Context) -> RedisReply {
    set_with_expiry(kv, args, 1, "psetex")
}

pub fn getset(kv: &mut KvStore, args: &Args, _: &Context) -> RedisReply {
    attempt!(valid_key(&args[1]));
    attempt!(valid_size(args[2].len()));
    let old = attempt!(kv.string_value(&args[1])).map(|stored| stored.value().to_vec());
    set_string(kv, &args[1], &args[2]);
    old.map_or_else(null, bulk)
}

pub fn getdel(kv: &mut KvStore, args: &Args, _: &Context) -> RedisReply {
    let Some(old) = attempt!(kv.string_value(&args[1])).map(|stored| stored.value().to_vec())
    else {
        return null();
    };
    kv.delete_key(&args[1]);
    bulk(old)
}

pub fn getex(kv: &mut KvStore, args: &Args, context: &Context) -> RedisReply {
    let mut change: Option<Option<Expiry>> = None;
    let mut i = 2;
    while i < args.len() {
        if is(&args[i], "persist") && change.is_none() {
            change = Some(None);
        } else if let Some(expiry) = expiry_option(args, i, "getex") {
            if change.is_some() {
                return syntax_error();
            }
            change = Some(Some(attempt!(expiry)));
            i += 1;
        } else {
            return syntax_error();
        }
        i += 1;
    }
    let key = &args[1];
    let Some(stored) = attempt!(kv.string_value(key)) else {
        return null();
    };
    let (value, deadline) = (stored.value().to_vec(), stored.expires_at_ms());
    match change {
        None => {}
        Some(None) if deadline == 0 => {}
        Some(None) => kv.set_deadline(key, 0),
        Some(Some(expiry)) => {
            let new = kv.deadline(expiry, context);
            kv.set_deadline(key, new);
        }
    }
    bulk(value)
}

pub fn mget(kv: &KvStore, args: &Args, _: &Context) -> RedisReply {
    let values = args[1..]
        .iter()
        .map(|key| match kv.string_value(key) {
            Ok(Some(stored)) => bulk(stored.value().to_vec()),
            _ => null(),
        })
        .collect();
    super::array(values)
}

/// Checks MSET's pairs: an even count, valid keys and sizes.
/// Keys and values, in order.
type Pairs<'a> = Vec<(&'a [u8], &'a [u8])>;

fn pairs<'a>(args: &'a Args, command: &str) -> Result<Pairs<'a>, RedisReply> {
    if args.len().is_multiple_of(2) {
        return Err(wrong_arguments(command));
    }
    let pairs: Vec<_> = args[1..]
        .chunks(2)
        .map(|pair| (pair[0].as_slice(), pair[1].as_slice()))
        .collect();
    for (key, value) in &pairs {
        valid_key(key)?;
        valid_size(value.len())?;
    }
    Ok(pairs)
}

pub fn mset(kv: &mut KvStore, args: &Args, _: &Context) -> RedisReply {
    for (key, value) in attempt!(pairs(args, "mset")) {
        set_string(kv, key, value);
    }
    ok()
}

pub fn msetnx(kv: &mut KvStore, args: &Args, _: &Context) -> RedisReply {
    let pairs = attempt!(pairs(args, "msetnx"));
    if pairs.iter().any(|(key, _)| kv.live(key).is_some()) {
        return flag(false);
    }
    for (key, value) in pairs {
        set_string(kv, key, value);
    }
    flag(true)
}

fn increment(kv: &mut KvStore, key: &[u8], by: i64) -> RedisReply {
    attempt!(valid_key(key));
    let current = match attempt!(kv.string_value(key)) {
        None => 0,
        Some(stored) => match parse_i64(stored.value()) {
            Some(value) => value,
            None => return super::args::not_an_integer(),
        },
    };
    let Some(new) = current.checked_add(by) else {
        return error("ERR increment or decrement would overflow");
    };
    update_string(kv, key, new.to_string().as_bytes());
    integer(new)
}

pub fn incr(kv: &mut KvStore, args: &Args, _: &Context) -> RedisReply {
    increment(kv, &args[1], 1)
}

pub fn decr(kv: &mut KvStore, args: &Args, _: &Context) -> RedisReply {
    increment(kv, &args[1], -1)
}

pub fn incrby(kv: &mut KvStore, args: &Args, _: &Context) -> RedisReply {
    let by = attempt!(integer_arg(&args[2]));
    increment(kv, &args[1], by)
}

pub fn decrby(kv: &mut KvStore, args: &Args, _: &Context) -> RedisReply {
    let by = attempt!(integer_arg(&args[2]));
    let Some(by) = by.checked_neg() else {
        return error("ERR decrement would overflow");
    };
    increment(kv, &args[1], by)
}

pub fn incrbyfloat(kv: &mut KvStore, args: &Args, _: &Context) -> RedisReply {
    let by = attempt!(float_arg(&args[2]));
    let key = &args[1];
    attempt!(valid_key(key));
    let current = match attempt!(kv.string_value(key)) {
        None => 0.0,
        Some(stored) => match parse_f64(stored.value()) {
            Some(value) => value,
            None => return super::args::not_a_float(),
        },
    };
    let new = current + by;
    if !new.is_finite() {
        return error("ERR increment would produce NaN or Infinity");
    }
    let text = format_float(new);
    update_string(kv, key, text.as_bytes());
    bulk(text)
}

pub fn append(kv: &mut KvStore, args: &Args, _: &Context) -> RedisReply {
    let key = &args[1];
    attempt!(valid_key(key));
    let mut value = attempt!(kv.string_value(key))
        .map(|stored| stored.value().to_vec())
        .unwrap_or_default();
    attempt!(valid_size(value.len() + args[2].len()));
    value.extend_from_slice(&args[2]);
    let length = value.len();
    update_string(kv, key, &value);
    integer(length as i64)
}

pub fn strlen(kv: &KvStore, args: &Args, _: &Context) -> RedisReply {
    let length = attempt!(kv.string_value(&args[1])).map_or(0, |stored| stored.value().len());
    integer(length as i64)
}

pub fn getrange(kv: &KvStore, args: &Args, _: &Context) -> RedisReply {
    let start = attempt!(integer_arg(&args[2]));
    let end = attempt!(integer_arg(&args[3]));
    let Some(stored) = attempt!(kv.string_value(&args[1])) else {
        return bulk(Vec::new());
    };
    let value = &stored.value();
    let length = value.len() as i64;
    if start < 0 && end < 0 && start > end {
        return bulk(Vec::new());
    }
    let start = if start < 0 {
        (length + start).max(0)
    } else {
        start
    };
    let end = if end < 0 { (length + end).max(0) } else { end };
    let end = end.min(length - 1);
    if length == 0 || start > end {
        return bulk(Vec::new());
    }
    bulk(value[start as usize..=end as usize].to_vec())
}

pub fn setrange(kv: &mut KvStore, args: &Args, _: &Context) -> RedisReply {
    let key = &args[1];
    let offset = attempt!(integer_arg(&args[2]));
    if offset < 0 {
        return error("ERR offset is out of range");
    }
    attempt!(valid_key(key));
    let piece = &args[3];
    let current = attempt!(kv.string_value(key)).map(|stored| stored.value().to_vec());
    if piece.is_empty() {
        return integer(current.map_or(0, |value| value.len() as i64));
    }
    let offset = offset as usize;
    attempt!(valid_size(offset.saturating_add(piece.len())));
    let mut value = current.unwrap_or_default();
    if value.len() < offset + piece.len() {
        value.resize(offset + piece.len(), 0);
    }
    value[offset..offset + piece.len()].copy_from_slice(piece);
    let length = value.len();
    update_string(kv, key, &value);
    integer(length as i64)
}
