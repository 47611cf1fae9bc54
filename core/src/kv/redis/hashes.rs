//! Hash commands. A hash is one key of type hash holding its fields (`value`); a change
//! rewrites the key (one new version), keeping its TTL and lease as Redis keeps the TTL.
//! Deleting the last field deletes the key. A hash holds at most what one value holds.

use paxkv_proto::client::{RedisReply, ValueType};

use super::args::{float_arg, format_float, integer_arg, parse_f64, parse_i64};
use super::glob::glob_match;
use super::value::{decode_hash, encode_hash, Hash};
use super::{
    array, attempt, bulk, error, flag, integer, map, null, ok, syntax_error, valid_key, valid_size,
    wrong_arguments, wrong_type, Args, Context, KeyLease, KvStore, Ttl,
};

impl KvStore {
    /// The key's hash (None: no key); WRONGTYPE if it holds another type.
    fn hash_value(&self, key: &[u8]) -> Result<Option<Hash>, RedisReply> {
        match self.live(key) {
            None => Ok(None),
            Some(stored) if stored.value_type() == ValueType::Hash => decode_hash(stored.value())
                .map(Some)
                .ok_or_else(|| error("ERR the stored hash is corrupt")),
            Some(_) => Err(wrong_type()),
        }
    }

    /// Stores `hash` under `key` (deletes the key if it is empty).
    fn store_hash(&mut self, key: &[u8], hash: &Hash) -> Result<(), RedisReply> {
        if hash.is_empty() {
            self.delete_key(key);
            return Ok(());
        }
        let bytes = encode_hash(hash);
        valid_size(bytes.len())?;
        self.store_value(key, &bytes, ValueType::Hash, Ttl::Keep, KeyLease::Keep);
        Ok(())
    }
}

fn set_fields(kv: &mut KvStore, args: &Args, command: &str) -> Result<i64, RedisReply> {
    if !args.len().is_multiple_of(2) {
        return Err(wrong_arguments(command));
    }
    valid_key(&args[1])?;
    let mut hash = kv.hash_value(&args[1])?.unwrap_or_default();
    let mut added = 0;
    for pair in args[2..].chunks(2) {
        if hash.insert(pair[0].clone(), pair[1].clone()).is_none() {
            added += 1;
        }
    }
    kv.store_hash(&args[1], &hash)?;
    Ok(added)
}

pub fn hset(kv: &mut KvStore, args: &Args, _: &Context) -> RedisReply {
    integer(attempt!(set_fields(kv, args, "hset")))
}

pub fn hmset(kv: &mut KvStore, args: &Args, _: &Context) -> RedisReply {
    attempt!(set_fields(kv, args, "hmset"));
    ok()
}

pub fn hsetnx(kv: &mut KvStore, args: &Args, _: &Context) -> RedisReply {
    attempt!(valid_key(&args[1]));
    let mut hash = attempt!(kv.hash_value(&args[1])).unwrap_or_default();
    if hash.contains_key(&args[2]) {
        return flag(false);
    }
    hash.insert(args[2].clone(), args[3].clone());
    attempt!(kv.store_hash(&args[1], &hash));
    flag(true)
}

pub fn hget(kv: &KvStore, args: &Args, _: &Context) -> RedisReply {
    let hash = attempt!(kv.hash_value(&args[1])).unwrap_or_default();
    hash.get(&args[2])
        .map_or_else(null, |value| bulk(value.clone()))
}

pub fn hmget(kv: &KvStore, args: &Args, _: &Context) -> RedisReply {
    let hash = attempt!(kv.hash_value(&args[1])).unwrap_or_default();
    array(
        args[2..]
            .iter()
            .map(|field| {
                hash.get(field)
                    .map_or_else(null, |value| bulk(value.clone()))
            })
            .collect(),
    )
}

pub fn hgetall(kv: &KvStore, args: &Args, _: &Context) -> RedisReply {
    let hash = attempt!(kv.hash_value(&args[1])).unwrap_or_default();
    map(hash
        .into_iter()
        .flat_map(|(field, value)| [bulk(field), bulk(value)])
        .collect())
}

pub fn hdel(kv: &mut KvStore, args: &Args, _: &Context) -> RedisReply {
    let Some(mut hash) = attempt!(kv.hash_value(&args[1])) else {
        return integer(0);
    };
    let removed = args[2..]
        .iter()
        .filter(|field| hash.remove(*field).is_some())
        .count();
    if removed > 0 {
        attempt!(kv.store_hash(&args[1], &hash));
    }
    integer(removed as i64)
}

pub fn hexists(kv: &KvStore, args: &Args, _: &Context) -> RedisReply {
    let hash = attempt!(kv.hash_value(&args[1])).unwrap_or_default();
    flag(hash.contains_key(&args[2]))
}

pub fn hincrby(kv: &mut KvStore, args: &Args, _: &Context) -> RedisReply {
    let by = attempt!(integer_arg(&args[3]));
    attempt!(valid_key(&args[1]));
    let mut hash = attempt!(kv.hash_value(&args[1])).unwrap_or_default();
    let current = match hash.get(&args[2]) {
        None => 0,
        Some(value) => match parse_i64(value) {
            Some(value) => value,
            None => return error("ERR hash value is not an integer"),
        },
    };
    let Some(new) = current.checked_add(by) else {
        return error("ERR increment or decrement would overflow");
    };
    hash.insert(args[2].clone(), new.to_string().into_bytes());
    attempt!(kv.store_hash(&args[1], &hash));
    integer(new)
}

pub fn hincrbyfloat(kv: &mut KvStore, args: &Args, _: &Context) -> RedisReply {
    let by = attempt!(float_arg(&args[3]));
    attempt!(valid_key(&args[1]));
    let mut hash = attempt!(kv.hash_value(&args[1])).unwrap_or_default();
    let current = match hash.get(&args[2]) {
        None => 0.0,
        Some(value) => match parse_f64(value) {
            Some(value) => value,
            None => return error("ERR hash value is not a float"),
        },
    };
    let new = current + by;
    if !new.is_finite() {
        return error("ERR increment would produce NaN or Infinity");
    }
    let text = format_float(new);
    hash.insert(args[2].clone(), text.clone().into_bytes());
    attempt!(kv.store_hash(&args[1], &hash));
    bulk(text)
}

pub fn hlen(kv: &KvStore, args: &Args, _: &Context) -> RedisReply {
    let hash = attempt!(kv.hash_value(&args[1])).unwrap_or_default();
    integer(hash.len() as i64)
}

pub fn hkeys(kv: &KvStore, args: &Args, _: &Context) -> RedisReply {
    let hash = attempt!(kv.hash_value(&args[1])).unwrap_or_default();
    array(hash.into_keys().map(bulk).collect())
}

pub fn hvals(kv: &KvStore, args: &Args, _: &Context) -> RedisReply {
    let hash = attempt!(kv.hash_value(&args[1])).unwrap_or_default();
    array(hash.into_values().map(bulk).collect())
}

pub fn hstrlen(kv: &KvStore, args: &Args, _: &Context) -> RedisReply {
    let hash = attempt!(kv.hash_value(&args[1])).unwrap_or_default();
    integer(hash.get(&args[2]).map_or(0, |value| value.len() as i64))
}

/// HSCAN key cursor [MATCH pattern] [COUNT n] [NOVALUES]: a hash is at most one value's size,
/// so the whole of it comes in one page (cursor 0), as Redis answers a small hash.
pub fn hscan(kv: &KvStore, args: &Args, _: &Context) -> RedisReply {
    if args[2].as_slice() != b"0" {
        if super::args::parse_i64(&args[2]).is_none_or(|cursor| cursor < 0) {
            return error("ERR invalid cursor");
        }
        return array(vec![bulk("0"), array(Vec::new())]);
    }
    let (mut pattern, mut values) = (None, true);
    let mut i = 3;
    while i < args.len() {
        if super::args::is(&args[i], "match") && i + 1 < args.len() {
            pattern = Some(args[i + 1].clone());
            i += 2;
        } else if super::args::is(&args[i], "count") && i + 1 < args.len() {
            let count = attempt!(integer_arg(&args[i + 1]));
            if count < 1 {
                return syntax_error();
            }
            i += 2;
        } else if super::args::is(&args[i], "novalues") {
            values = false;
            i += 1;
        } else {
            return syntax_error();
        }
    }
    let hash = attempt!(kv.hash_value(&args[1])).unwrap_or_default();
    let mut items = Vec::new();
    for (field, value) in hash {
        if pattern
            .as_deref()
            .is_none_or(|pattern| glob_match(pattern, &field))
        {
            items.push(bulk(field));
            if values {
                items.push(bulk(value));
            }
        }
    }
    array(vec![bulk("0"), array(items)])
}
