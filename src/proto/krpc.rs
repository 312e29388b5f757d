//! KRPC, the DHT's datagram protocol (BEP 5): bencoded queries, responses
//! and errors for `ping`, `find_node`, `get_peers` and `announce_peer`,
//! with compact node info (IPv4, 26 bytes) and compact peers (6 bytes).
//!
//! Owns: the message format. Does not own: what a node does with a
//! message (that is [`crate::net::dht`]). A datagram is at most 1500
//! bytes, so decoding refuses more than [`MAX_ITEMS`] bencode values.
//!
//! A response does not say which query it answers: the node matches it by
//! transaction id, so a [`Response`] carries every field any of the four
//! responses may have. IPv6 (`nodes6`, 18-byte `values`) is not spoken:
//! 18-byte peers are skipped, `nodes6` ignored.

use crate::proto::bencode::{self, Owned, Value};
use std::fmt;
use std::net::{Ipv4Addr, SocketAddrV4};

/// Bencode values in one datagram at most: a full 1500-byte datagram of
/// 6-byte peers holds under 200.
pub const MAX_ITEMS: usize = 512;
/// Transaction ids longer than this are refused (clients use 2–4 bytes).
pub const MAX_TID: usize = 16;
/// Tokens longer than this are refused (clients use 4–20 bytes).
pub const MAX_TOKEN: usize = 32;
/// One compact IPv4 node: id, address, port.
pub const NODE_INFO_LEN: usize = 26;

/// Error codes (BEP 5).
pub const GENERIC_ERROR: i64 = 201;
pub const PROTOCOL_ERROR: i64 = 203;
pub const METHOD_UNKNOWN: i64 = 204;

pub type NodeId = [u8; 20];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NodeInfo {
    pub id: NodeId,
    pub addr: SocketAddrV4,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The transaction id, echoed by the answer.
    pub tid: Vec<u8>,
    pub body: Body,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    Query { id: NodeId, method: Method },
    Response(Response),
    Error { code: i64, message: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Method {
    Ping,
    FindNode {
        target: NodeId,
    },
    GetPeers {
        info_hash: [u8; 20],
    },
    AnnouncePeer {
        info_hash: [u8; 20],
        port: u16,
        /// Use the datagram's source port instead of `port` (behind NAT).
        implied_port: bool,
        token: Vec<u8>,
    },
}

/// Any of the four responses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Response {
    pub id: NodeId,
    pub nodes: Vec<NodeInfo>,
    pub values: Vec<SocketAddrV4>,
    pub token: Option<Vec<u8>>,
}

/// Why a datagram is not a KRPC message we accept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KrpcError {
    /// Not bencode, or over [`MAX_ITEMS`] values.
    Bencode(bencode::Error),
    /// The top level, `a` or `r` is not a dictionary.
    NotADictionary(&'static str),
    /// A required key is absent.
    Missing(&'static str),
    /// A key holds the wrong type or an out-of-range value.
    Invalid(&'static str),
    /// A string key has the wrong length.
    BadLength {
        key: &'static str,
        expected: usize,
        actual: usize,
    },
    /// `y` is not `q`, `r` or `e`.
    UnknownType(Vec<u8>),
    /// A query for a method we do not serve.
    UnknownMethod(Vec<u8>),
}

impl KrpcError {
    /// The BEP 5 error code a query that failed this way is answered with.
    pub fn code(&self) -> i64 {
        match self {
            KrpcError::UnknownMethod(_) => METHOD_UNKNOWN,
            _ => PROTOCOL_ERROR,
        }
    }
}

impl fmt::Display for KrpcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = |b: &[u8]| String::from_utf8_lossy(&b[..b.len().min(32)]).into_owned();
        match self {
            KrpcError::Bencode(e) => write!(f, "not a KRPC message: {e}"),
            KrpcError::NotADictionary(key) => write!(f, "'{key}' is not a dictionary"),
            KrpcError::Missing(key) => write!(f, "missing '{key}'"),
            KrpcError::Invalid(key) => write!(f, "invalid '{key}'"),
            KrpcError::BadLength {
                key,
                expected,
                actual,
            } => write!(f, "'{key}' is {actual} bytes, expected {expected}"),
            KrpcError::UnknownType(y) => write!(f, "unknown message type '{}'", shown(y)),
            KrpcError::UnknownMethod(q) => write!(f, "unknown method '{}'", shown(q)),
        }
    }
}

impl std::error::Error for KrpcError {}

/// A rejected datagram: why, and the transaction id of the query it was,
/// if it was one and had an id (that query gets an error reply).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    pub error: KrpcError,
    pub query_tid: Option<Vec<u8>>,
}

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.error.fmt(f)
    }
}

/// Decodes one datagram. Never panics.
pub fn decode(datagram: &[u8]) -> Result<Message, Rejected> {
    let reject = |error| Rejected {
        error,
        query_tid: None,
    };
    let v =
        bencode::decode_limited(datagram, MAX_ITEMS).map_err(|e| reject(KrpcError::Bencode(e)))?;
    if v.as_dict().is_none() {
        return Err(reject(KrpcError::NotADictionary("message")));
    }
    let tid = bytes(&v, "t").map_err(reject)?;
    if tid.len() > MAX_TID {
        return Err(reject(KrpcError::Invalid("t")));
    }
    let tid = tid.to_vec();
    let body = match bytes(&v, "y").map_err(reject)? {
        b"q" => query(&v).map_err(|error| Rejected {
            error,
            query_tid: Some(tid.clone()),
        })?,
        b"r" => Body::Response(response(dict(&v, "r").map_err(reject)?).map_err(reject)?),
        b"e" => error(&v).map_err(reject)?,
        other => return Err(reject(KrpcError::UnknownType(other.to_vec()))),
    };
    Ok(Message { tid, body })
}

fn dict<'v, 'a>(v: &'v Value<'a>, key: &'static str) -> Result<&'v Value<'a>, KrpcError> {
    let d = v.get(key).ok_or(KrpcError::Missing(key))?;
    d.as_dict().map(|_| d).ok_or(KrpcError::NotADictionary(key))
}

fn bytes<'a>(v: &Value<'a>, key: &'static str) -> Result<&'a [u8], KrpcError> {
    v.get(key)
        .ok_or(KrpcError::Missing(key))?
        .as_bytes()
        .ok_or(KrpcError::Invalid(key))
}

fn id20(v: &Value<'_>, key: &'static str) -> Result<[u8; 20], KrpcError> {
    let b = bytes(v, key)?;
    b.try_into().map_err(|_| KrpcError::BadLength {
        key,
        expected: 20,
        actual: b.len(),
    })
}

fn query(v: &Value<'_>) -> Result<Body, KrpcError> {
    let q = bytes(v, "q")?;
    let a = dict(v, "a")?;
    let id = id20(a, "id")?;
    let method = match q {
        b"ping" => Method::Ping,
        b"find_node" => Method::FindNode {
            target: id20(a, "target")?,
        },
        b"get_peers" => Method::GetPeers {
            info_hash: id20(a, "info_hash")?,
        },
        b"announce_peer" => {
            let port = a
                .get("port")
                .ok_or(KrpcError::Missing("port"))?
                .as_int()
                .and_then(|p| u16::try_from(p).ok())
                .filter(|&p| p != 0);
            let implied_port = match a.get("implied_port") {
                None => false,
                Some(i) => i.as_int().ok_or(KrpcError::Invalid("implied_port"))? != 0,
            };
            // With implied_port the port key may be anything.
            let port = match (port, implied_port) {
                (Some(p), _) => p,
                (None, true) => 0,
                (None, false) => return Err(KrpcError::Invalid("port")),
            };
            let token = bytes(a, "token")?;
            if token.len() > MAX_TOKEN {
                return Err(KrpcError::Invalid("token"));
            }
            Method::AnnouncePeer {
                info_hash: id20(a, "info_hash")?,
                port,
                implied_port,
                token: token.to_vec(),
            }
        }
        other => return Err(KrpcError::UnknownMethod(other.to_vec())),
    };
    Ok(Body::Query { id, method })
}

fn response(r: &Value<'_>) -> Result<Response, KrpcError> {
    let id = id20(r, "id")?;
    let nodes = match r.get("nodes") {
        None => Vec::new(),
        Some(n) => decode_nodes(n.as_bytes().ok_or(KrpcError::Invalid("nodes"))?)?,
    };
    let mut values = Vec::new();
    if let Some(list) = r.get("values") {
        for peer in list.as_list().ok_or(KrpcError::Invalid("values"))? {
            match peer.as_bytes() {
                Some(b) if b.len() == 6 => values.push(compact_addr(b)),
                // An IPv6 peer (BEP 32): not ours to dial from here.
                Some(b) if b.len() == 18 => {}
                _ => return Err(KrpcError::Invalid("values")),
            }
        }
    }
    let token = match r.get("token") {
        None => None,
        Some(t) => Some(
            t.as_bytes()
                .filter(|t| t.len() <= MAX_TOKEN)
                .ok_or(KrpcError::Invalid("token"))?
                .to_vec(),
        ),
    };
    Ok(Response {
        id,
        nodes,
        values,
        token,
    })
}

fn error(v: &Value<'_>) -> Result<Body, KrpcError> {
    let e = v.get("e").ok_or(KrpcError::Missing("e"))?;
    let list = e.as_list().ok_or(KrpcError::Invalid("e"))?;
    match list {
        [code, message, ..] => Ok(Body::Error {
            code: code.as_int().ok_or(KrpcError::Invalid("e"))?,
            message: String::from_utf8_lossy(message.as_bytes().ok_or(KrpcError::Invalid("e"))?)
                .into_owned(),
        }),
        _ => Err(KrpcError::Invalid("e")),
    }
}

fn compact_addr(b: &[u8]) -> SocketAddrV4 {
    SocketAddrV4::new(
        Ipv4Addr::new(b[0], b[1], b[2], b[3]),
        u16::from_be_bytes([b[4], b[5]]),
    )
}

/// Compact node info: 26 bytes per node.
pub fn decode_nodes(b: &[u8]) -> Result<Vec<NodeInfo>, KrpcError> {
    if b.len() % NODE_INFO_LEN != 0 {
        return Err(KrpcError::BadLength {
            key: "nodes",
            expected: b.len() / NODE_INFO_LEN * NODE_INFO_LEN,
            actual: b.len(),
        });
    }
    Ok(b.chunks_exact(NODE_INFO_LEN)
        .map(|c| NodeInfo {
            id: c[..20].try_into().expect("26-byte chunk"),
            addr: compact_addr(&c[20..]),
        })
        .collect())
}

fn compact(addr: &SocketAddrV4) -> Vec<u8> {
    let mut b = addr.ip().octets().to_vec();
    b.extend_from_slice(&addr.port().to_be_bytes());
    b
}

pub fn encode_nodes(nodes: &[NodeInfo]) -> Vec<u8> {
    let mut b = Vec::with_capacity(nodes.len() * NODE_INFO_LEN);
    for n in nodes {
        b.extend_from_slice(&n.id);
        b.extend_from_slice(&compact(&n.addr));
    }
    b
}

impl Message {
    pub fn encode(&self) -> Vec<u8> {
        let m = Owned::dict().insert("t", self.tid.clone());
        match &self.body {
            Body::Query { id, method } => {
                let mut a = Owned::dict().insert("id", &id[..]);
                let name = match method {
                    Method::Ping => "ping",
                    Method::FindNode { target } => {
                        a = a.insert("target", &target[..]);
                        "find_node"
                    }
                    Method::GetPeers { info_hash } => {
                        a = a.insert("info_hash", &info_hash[..]);
                        "get_peers"
                    }
                    Method::AnnouncePeer {
                        info_hash,
                        port,
                        implied_port,
                        token,
                    } => {
                        a = a
                            .insert("info_hash", &info_hash[..])
                            .insert("port", i64::from(*port))
                            .insert("implied_port", i64::from(*implied_port))
                            .insert("token", token.clone());
                        "announce_peer"
                    }
                };
                m.insert("y", "q").insert("q", name).insert("a", a)
            }
            Body::Response(r) => {
                let mut d = Owned::dict().insert("id", &r.id[..]);
                if !r.nodes.is_empty() {
                    d = d.insert("nodes", encode_nodes(&r.nodes));
                }
                if !r.values.is_empty() {
                    let values: Vec<Owned> = r.values.iter().map(|v| compact(v).into()).collect();
                    d = d.insert("values", values);
                }
                if let Some(t) = &r.token {
                    d = d.insert("token", t.clone());
                }
                m.insert("y", "r").insert("r", d)
            }
            Body::Error { code, message } => m
                .insert("y", "e")
                .insert("e", vec![Owned::Int(*code), Owned::from(message.as_str())]),
        }
        .encode()
    }
}

#[cfg(test)]
mod tests;
