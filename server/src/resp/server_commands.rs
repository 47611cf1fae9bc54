//! The commands the port answers itself: connection state (PING, HELLO, AUTH, SELECT, CLIENT,
//! QUIT, RESET, READONLY), transactions' bookkeeping, pub/sub, server information (COMMAND,
//! INFO, CONFIG), and SCAN and FLUSHDB, which the port drives page by page.

use paxkv_core::kv::redis::{self, Handler, COMMANDS};
use paxkv_proto::client::client_response::Body as Response;
use paxkv_proto::resp::{Protocol, Reply};

use super::connection::{error_reply, is, Conn};

/// The Redis version paxkv answers as (the commands and replies it follows).
const REDIS_VERSION: &str = "7.0.0";

fn bulk(text: impl Into<Vec<u8>>) -> Reply {
    Reply::Bulk(text.into())
}

fn syntax_error() -> Reply {
    Reply::err("syntax error")
}

impl Conn {
    pub(super) async fn port_command(&mut self, name: &str, args: Vec<Vec<u8>>) {
        let reply = match name {
            "ping" => self.ping(&args),
            "echo" => bulk(args[1].clone()),
            "hello" => self.hello(&args),
            "auth" => match args.len() {
                2 => self.authenticate(None, &args[1]),
                3 => self.authenticate(Some(&args[1]), &args[2]),
                _ => syntax_error(),
            },
            "select" => match args[1].as_slice() {
                b"0" => Reply::ok(),
                other if paxkv_core::kv::redis::glob::glob_match(b"[0-9]*", other) => {
                    Reply::err("DB index is out of range")
                }
                _ => Reply::err("value is not an integer or out of range"),
            },
            "client" => self.client(&args),
            "quit" => {
                self.reply(Reply::ok()).await;
                return self.close().await;
            }
            "reset" => {
                self.reset();
                Reply::Simple("RESET".into())
            }
            "command" => command(&args),
            "info" => self.info(&args).await,
            "config" => config(&args),
            "readonly" => {
                self.readonly = true;
                Reply::ok()
            }
            "readwrite" => {
                self.readonly = false;
                Reply::ok()
            }
            "multi" => self.multi(),
            "exec" => return self.exec().await,
            "discard" => self.discard(),
            "watch" => self.watch(&args[1..]).await,
            "unwatch" => self.unwatch(),
            "subscribe" | "psubscribe" | "unsubscribe" | "punsubscribe" => {
                return self.subscription(name, &args[1..]).await
            }
            "publish" => {
                let receivers = self.shared.channels.publish(&args[1], &args[2]);
                Reply::Integer(receivers as i64)
            }
            "scan" => self.scan(&args).await,
            "flushdb" | "flushall" => self.flush(name, &args).await,
            _ => Reply::err(format!("{name} is not served by this port")),
        };
        self.reply(reply).await;
    }

    fn ping(&self, args: &[Vec<u8>]) -> Reply {
        if args.len() > 2 {
            return redis::wrong_arguments("ping").into();
        }
        if self.subscriptions.active() && self.protocol == Protocol::Resp2 {
            let message = args.get(1).cloned().unwrap_or_default();
            return Reply::Array(vec![bulk("pong"), bulk(message)]);
        }
        match args.get(1) {
            Some(message) => bulk(message.clone()),
            None => Reply::Simple("PONG".into()),
        }
    }

    /// HELLO [protover [AUTH username password] [SETNAME clientname]].
    fn hello(&mut self, args: &[Vec<u8>]) -> Reply {
        let mut protocol = self.protocol;
        if let Some(version) = args.get(1) {
            protocol = match version.as_slice() {
                b"2" => Protocol::Resp2,
                b"3" => Protocol::Resp3,
                _ if paxkv_core::kv::redis::glob::glob_match(b"[0-9]*", version) => {
                    return Reply::Error("NOPROTO unsupported protocol version".into())
                }
                _ => return Reply::err("Protocol version is not an integer or out of range"),
            };
        }
        let mut name = None;
        let mut i = 2;
        while i < args.len() {
            if is(&args[i], "auth") && i + 2 < args.len() {
                let reply = self.authenticate(Some(&args[i + 1]), &args[i + 2]);
                if matches!(reply, Reply::Error(_)) {
                    return reply;
                }
                i += 3;
            } else if is(&args[i], "setname") && i + 1 < args.len() {
                name = Some(args[i + 1].clone());
                i += 2;
            } else {
                return Reply::err(format!(
                    "Syntax error in HELLO option '{}'",
                    String::from_utf8_lossy(&args[i])
                ));
            }
        }
        if !self.is_authenticated() {
            return Reply::Error(
                "NOAUTH HELLO must be called with the client already authenticated, otherwise \
                 the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the \
                 client and select the RESP protocol version at the same time"
                    .into(),
            );
        }
        self.protocol = protocol;
        if name.is_some() {
            self.name = name;
        }
        let leader = self.shared.router.leader();
        let role = if leader.this_node {
            "master"
        } else {
            "replica"
        };
        let number = match protocol {
            Protocol::Resp2 => 2,
            Protocol::Resp3 => 3,
        };
        Reply::Map(vec![
            (bulk("server"), bulk("redis")),
            (bulk("version"), bulk(REDIS_VERSION)),
            (bulk("proto"), Reply::Integer(number)),
            (bulk("id"), Reply::Integer(self.id as i64)),
            (bulk("mode"), bulk("standalone")),
            (bulk("role"), bulk(role)),
            (bulk("modules"), Reply::Array(Vec::new())),
        ])
    }

    fn client(&mut self, args: &[Vec<u8>]) -> Reply {
        let sub = String::from_utf8_lossy(&args[1]).to_ascii_lowercase();
        match (sub.as_str(), args.len()) {
            ("setname", 3) => {
                let name = &args[2];
                if name.iter().any(|byte| *byte <= b' ' || *byte > b'~') {
                    return Reply::err(
                        "Client names cannot contain spaces, newlines or special characters.",
                    );
                }
                self.name = (!name.is_empty()).then(|| name.clone());
                Reply::ok()
            }
            ("getname", 2) => self.name.clone().map_or(Reply::Null, Reply::Bulk),
            ("id", 2) => Reply::Integer(self.id as i64),
            ("info", 2) => bulk(self.client_line()),
            ("list", _) => bulk(self.client_line()),
            // Clients announce their library; nothing to keep.
            ("setinfo", 4) => Reply::ok(),
            ("reply", 3) if is(&args[2], "on") => Reply::ok(),
            ("no-evict", 3) | ("no-touch", 3) => Reply::ok(),
            ("setname" | "getname" | "id" | "info" | "setinfo", _) => Reply::err(format!(
                "wrong number of arguments for 'client|{sub}' command"
            )),
            _ => Reply::err(format!(
                "unknown subcommand '{}'. Try CLIENT HELP.",
                String::from_utf8_lossy(&args[1])
            )),
        }
    }

    fn client_line(&self) -> String {
        let name = self
            .name
            .as_deref()
            .map(String::from_utf8_lossy)
            .unwrap_or_default();
        let protocol = match self.protocol {
            Protocol::Resp2 => 2,
            Protocol::Resp3 => 3,
        };
        format!(
            "id={} addr={} laddr= fd=0 name={name} db=0 sub={} psub={} multi=-1 resp={protocol}\n",
            self.id,
            self.address,
            self.subscriptions.channel_count(),
            self.subscriptions.pattern_count()
        )
    }

    /// INFO [section ...]: server, clients, replication (role and leader), keyspace.
    async fn info(&mut self, args: &[Vec<u8>]) -> Reply {
        let wanted: Vec<String> = args[1..]
            .iter()
            .map(|arg| String::from_utf8_lossy(arg).to_ascii_lowercase())
            .collect();
        let shows = |section: &str| {
            wanted.is_empty()
                || wanted.iter().any(|want| {
                    want == section || want == "all" || want == "everything" || want == "default"
                })
        };
        let mut text = String::new();
        if shows("server") {
            text.push_str(&format!(
                "# Server\r\nredis_version:{REDIS_VERSION}\r\npaxkv_version:{}\r\nredis_mode:standalone\r\nnode_id:{}\r\n\r\n",
                env!("CARGO_PKG_VERSION"),
                self.shared.node_id
            ));
        }
        if shows("clients") {
            text.push_str(&format!(
                "# Clients\r\nconnected_clients:{}\r\n\r\n",
                self.shared
                    .connections
                    .load(std::sync::atomic::Ordering::Relaxed)
            ));
        }
        if shows("replication") {
            let leader = self.shared.router.leader();
            let role = if leader.this_node { "master" } else { "slave" };
            text.push_str(&format!(
                "# Replication\r\nrole:{role}\r\nleader_id:{}\r\npaxkv_leader:{}\r\n\r\n",
                leader.id.unwrap_or(0),
                if leader.this_node {
                    "this node".to_string()
                } else {
                    leader.address.unwrap_or_else(|| "unknown".into())
                }
            ));
        }
        if shows("keyspace") {
            let request = self.request(vec![vec![b"dbsize".to_vec()]]);
            text.push_str("# Keyspace\r\n");
            if let Response::Redis(mut redis) = self.ask(request).await {
                if let Some(Reply::Integer(keys)) = redis.replies.pop().map(Reply::from) {
                    if keys > 0 {
                        text.push_str(&format!("db0:keys={keys},expires=0,avg_ttl=0\r\n"));
                    }
                }
            }
            text.push_str("\r\n");
        }
        bulk(text)
    }

    /// SCAN cursor [MATCH pattern] [COUNT count] [TYPE type].
    async fn scan(&mut self, args: &[Vec<u8>]) -> Reply {
        let cursor = String::from_utf8_lossy(&args[1]);
        let start = match cursor.parse::<u64>() {
            Ok(0) => Vec::new(),
            Ok(cursor) => match self
                .shared
                .cursors
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .start_of(cursor)
            {
                Some(start) => start,
                None => return Reply::err("invalid cursor"),
            },
            Err(_) => return Reply::err("invalid cursor"),
        };
        let mut count = b"10".to_vec();
        let mut options = Vec::new();
        let mut i = 2;
        while i < args.len() {
            if i + 1 >= args.len() {
                return syntax_error();
            }
            if is(&args[i], "count") {
                match paxkv_core::kv::redis::glob::glob_match(b"[1-9]*", &args[i + 1]) {
                    true => count = args[i + 1].clone(),
                    false => return syntax_error(),
                }
            } else if is(&args[i], "match") || is(&args[i], "type") {
                options.push(args[i].clone());
                options.push(args[i + 1].clone());
            } else {
                return syntax_error();
            }
            i += 2;
        }
        let page = [b"paxkv.scan".to_vec(), start, count]
            .into_iter()
            .chain(options)
            .collect();
        let request = self.request(vec![page]);
        match self.ask(request).await {
            Response::Redis(mut redis) => match redis.replies.pop().map(Reply::from) {
                Some(Reply::Array(parts)) if parts.len() == 2 => {
                    let [next, keys]: [Reply; 2] = parts
                        .try_into()
                        .unwrap_or_else(|_| unreachable!("a page is two parts: checked above"));
                    let next = match next {
                        Reply::Bulk(start) => self
                            .shared
                            .cursors
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .remember(start),
                        _ => 0,
                    };
                    Reply::Array(vec![bulk(next.to_string()), keys])
                }
                Some(other) => other,
                None => Reply::err("the store gave no reply"),
            },
            other => error_reply(other),
        }
    }

    /// FLUSHDB / FLUSHALL [ASYNC | SYNC]: every key, in rounds of a bounded size each.
    async fn flush(&mut self, name: &str, args: &[Vec<u8>]) -> Reply {
        if args.len() > 2
            || args
                .get(1)
                .is_some_and(|mode| !is(mode, "async") && !is(mode, "sync"))
        {
            return syntax_error();
        }
        if !self.shared.config.allow_flush {
            return Reply::err(format!(
                "{} is off on this server: it deletes every key of the cluster (start kv-server \
                 with --resp-allow-flush to allow it)",
                name.to_ascii_uppercase()
            ));
        }
        loop {
            let request = self.request(vec![vec![b"paxkv.flush".to_vec()]]);
            match self.ask(request).await {
                Response::Redis(mut redis) => match redis.replies.pop().map(Reply::from) {
                    Some(Reply::Integer(0)) => return Reply::ok(),
                    Some(Reply::Integer(_)) => continue,
                    Some(other) => return other,
                    None => return Reply::err("the store gave no reply"),
                },
                other => return error_reply(other),
            }
        }
    }
}

/// COMMAND, COMMAND COUNT, COMMAND INFO name..., COMMAND DOCS [name...], COMMAND LIST.
fn command(args: &[Vec<u8>]) -> Reply {
    let sub = args
        .get(1)
        .map(|sub| String::from_utf8_lossy(sub).to_ascii_lowercase());
    let visible = || {
        COMMANDS
            .iter()
            .filter(|spec| !spec.name.starts_with("paxkv."))
    };
    let named = |names: &[Vec<u8>]| -> Vec<Option<&'static redis::Spec>> {
        names
            .iter()
            .map(|name| redis::spec(name).filter(|spec| !spec.name.starts_with("paxkv.")))
            .collect()
    };
    match sub.as_deref() {
        None => Reply::Array(visible().map(info).collect()),
        Some("count") => Reply::Integer(visible().count() as i64),
        Some("list") => Reply::Array(visible().map(|spec| bulk(spec.name)).collect()),
        Some("info") => Reply::Array(
            named(&args[2..])
                .into_iter()
                .map(|spec| spec.map_or(Reply::Null, info))
                .collect(),
        ),
        Some("docs") => {
            let specs: Vec<&redis::Spec> = if args.len() > 2 {
                named(&args[2..]).into_iter().flatten().collect()
            } else {
                visible().collect()
            };
            Reply::Map(
                specs
                    .into_iter()
                    .map(|spec| {
                        let docs = Reply::Map(vec![
                            (
                                bulk("summary"),
                                bulk(format!("{} (served by paxkv)", spec.name)),
                            ),
                            (bulk("since"), bulk("1.0.0")),
                            (bulk("group"), bulk(group(spec))),
                        ]);
                        (bulk(spec.name), docs)
                    })
                    .collect(),
            )
        }
        Some(other) => Reply::err(format!("unknown subcommand '{other}'. Try COMMAND HELP.")),
    }
}

fn group(spec: &redis::Spec) -> &'static str {
    match spec.handler {
        Handler::Port => "connection",
        _ if spec.name.starts_with('h') && spec.name != "hello" => "hash",
        _ => "generic",
    }
}

/// One command's entry in COMMAND's answer (Redis 7's shape: name, arity, flags, first key,
/// last key, step, ACL categories, tips, key specs, subcommands).
fn info(spec: &redis::Spec) -> Reply {
    let flags = match spec.handler {
        Handler::Port => vec![Reply::Simple("fast".into())],
        Handler::Read(_) => vec![Reply::Simple("readonly".into())],
        Handler::Write(_) => vec![Reply::Simple("write".into())],
    };
    Reply::Array(vec![
        bulk(spec.name),
        Reply::Integer(spec.arity.into()),
        Reply::Set(flags),
        Reply::Integer(spec.first_key.into()),
        Reply::Integer(spec.last_key.into()),
        Reply::Integer(spec.step.into()),
        Reply::Set(Vec::new()),
        Reply::Array(Vec::new()),
        Reply::Array(Vec::new()),
        Reply::Array(Vec::new()),
    ])
}

/// CONFIG GET answers what paxkv has to say; CONFIG SET accepts only what is already so.
fn config(args: &[Vec<u8>]) -> Reply {
    let sub = String::from_utf8_lossy(&args[1]).to_ascii_lowercase();
    let known: &[(&str, &str)] = &[
        ("databases", "1"),
        ("notify-keyspace-events", "KEA"),
        ("appendonly", "yes"),
        ("appendfsync", "always"),
        ("save", ""),
    ];
    match sub.as_str() {
        "get" if args.len() >= 3 => {
            let mut pairs = Vec::new();
            for pattern in &args[2..] {
                for (name, value) in known {
                    if paxkv_core::kv::redis::glob::glob_match(pattern, name.as_bytes()) {
                        pairs.push((bulk(*name), bulk(*value)));
                    }
                }
            }
            Reply::Map(pairs)
        }
        "set" if args.len() == 4 && is(&args[2], "notify-keyspace-events") => Reply::ok(),
        "set" => Reply::err(
            "CONFIG SET is not supported by paxkv (configure kv-server with its flags); \
             keyspace notifications are always on",
        ),
        "resetstat" => Reply::ok(),
        _ => Reply::err(format!(
            "unknown subcommand '{}'. Try CONFIG HELP.",
            String::from_utf8_lossy(&args[1])
        )),
    }
}
