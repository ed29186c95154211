//! Which client a request comes from: the peer address, or a forwarding header written by a
//! proxy you trust.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;

use axum::extract::ConnectInfo;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName};

/// A network, such as `10.0.0.0/8`, `2001:db8::/32` or a single address.
///
/// ```
/// let net: kvkit_http::Cidr = "10.0.0.0/8".parse().unwrap();
/// assert!(net.contains("10.1.2.3".parse().unwrap()));
/// assert!(!net.contains("11.0.0.1".parse().unwrap()));
/// assert!("10.0.0.0/33".parse::<kvkit_http::Cidr>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Whether `ip` is in this network (an IPv4-mapped IPv6 address counts as its IPv4 address).
    ///
    /// ```
    /// let net: kvkit_http::Cidr = "192.0.2.0/24".parse().unwrap();
    /// assert!(net.contains("::ffff:192.0.2.9".parse().unwrap()));
    /// ```
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// A malformed network in a [`TrustedProxies`] list.
///
/// ```
/// let err = "300.0.0.1".parse::<kvkit_http::Cidr>().unwrap_err();
/// assert!(err.to_string().contains("300.0.0.1"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidCidr(String);

impl fmt::Display for InvalidCidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "not an IP address or network: {:?}", self.0)
    }
}

impl std::error::Error for InvalidCidr {}

impl FromStr for Cidr {
    type Err = InvalidCidr;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = || InvalidCidr(s.to_owned());
        let (addr, prefix) = match s.trim().split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (s.trim(), None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| invalid())?;
        let addr = addr.to_canonical();
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(invalid)?,
            None => max,
        };
        Ok(Self { addr, prefix })
    }
}

/// The proxies whose forwarding headers are believed.
///
/// ```
/// let proxies = kvkit_http::TrustedProxies::parse("10.0.0.0/8, 127.0.0.1").unwrap();
/// assert!(proxies.trusts("127.0.0.1".parse().unwrap()));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    networks: Vec<Cidr>,
}

impl TrustedProxies {
    /// Trusts these networks.
    ///
    /// ```
    /// let proxies = kvkit_http::TrustedProxies::new(["10.0.0.0/8".parse().unwrap()]);
    /// assert!(proxies.trusts("10.9.9.9".parse().unwrap()));
    /// ```
    pub fn new(networks: impl IntoIterator<Item = Cidr>) -> Self {
        Self {
            networks: networks.into_iter().collect(),
        }
    }

    /// Parses a comma-separated list of addresses and networks.
    ///
    /// ```
    /// assert!(kvkit_http::TrustedProxies::parse("10.0.0.0/8,fd00::/8").is_ok());
    /// assert!(kvkit_http::TrustedProxies::parse("10.0.0.0/8,nonsense").is_err());
    /// ```
    pub fn parse(list: &str) -> Result<Self, InvalidCidr> {
        list.split(',')
            .filter(|s| !s.trim().is_empty())
            .map(str::parse::<Cidr>)
            .collect::<Result<Vec<_>, _>>()
            .map(Self::new)
    }

    /// Whether `ip` is one of the trusted proxies.
    ///
    /// ```
    /// let proxies = kvkit_http::TrustedProxies::default();
    /// assert!(!proxies.trusts("127.0.0.1".parse().unwrap()));
    /// ```
    pub fn trusts(&self, ip: IpAddr) -> bool {
        self.networks.iter().any(|net| net.contains(ip))
    }
}

type KeyFn = dyn Fn(&Parts) -> Option<String> + Send + Sync;

/// How the rate limiter tells clients apart.
///
/// - [`ClientKey::Peer`] (the default): the TCP peer's address, from axum's
///   [`ConnectInfo`] (serve with `into_make_service_with_connect_info::<SocketAddr>()`).
/// - [`ClientKey::Forwarded`]: when the peer is a trusted proxy, the client that proxy saw:
///   the right-most address in `X-Forwarded-For` (or `Forwarded`) that is not itself a trusted
///   proxy; entries further left were written by the client and are never believed.
///   `CF-Connecting-IP` is used when the trusted proxy sent neither. A peer that is not a
///   trusted proxy is the client, whatever headers it sends. The proxies must append to (or
///   overwrite) `X-Forwarded-For`, as nginx, HAProxy, AWS load balancers and Cloudflare do: a
///   proxy that writes only `Forwarded` or `CF-Connecting-IP` and passes a client's own
///   `X-Forwarded-For` through lets that client choose its key.
/// - [`ClientKey::custom`]: any function of the request (a user id, an API key).
///
/// Header values are read as bytes, so a hop that is not UTF-8 (or not an address) never hides
/// the hops a proxy appended after it.
///
/// A request that has no key ([`resolve`](Self::resolve) gives `None`: no `ConnectInfo` for
/// `Peer` and `Forwarded`, or the custom function said `None`) is never counted in a bucket
/// shared with others by accident: the layer answers `500` and logs how to fix it, unless the
/// application chose a shared bucket with
/// [`RateLimitLayer::on_unidentified`](crate::RateLimitLayer::on_unidentified).
///
/// ```
/// use axum::http::Request;
/// let key = kvkit_http::ClientKey::custom(|parts| {
///     parts.headers.get("x-api-key").and_then(|v| v.to_str().ok()).map(str::to_owned)
/// });
/// let (parts, ()) = Request::builder().header("x-api-key", "k1").body(()).unwrap().into_parts();
/// assert_eq!(key.resolve(&parts).as_deref(), Some("k1"));
/// let (parts, ()) = Request::builder().body(()).unwrap().into_parts();
/// assert_eq!(key.resolve(&parts), None);
/// ```
#[derive(Clone, Default)]
pub enum ClientKey {
    /// The TCP peer's address.
    #[default]
    Peer,
    /// The client as seen by the outermost trusted proxy.
    Forwarded(TrustedProxies),
    /// A function of the request.
    Custom(Arc<KeyFn>),
}

impl fmt::Debug for ClientKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Peer => f.write_str("Peer"),
            Self::Forwarded(proxies) => f.debug_tuple("Forwarded").field(proxies).finish(),
            Self::Custom(_) => f.write_str("Custom(..)"),
        }
    }
}

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const FORWARDED: HeaderName = HeaderName::from_static("forwarded");
const CF_CONNECTING_IP: HeaderName = HeaderName::from_static("cf-connecting-ip");

impl ClientKey {
    /// A key computed by `f`; `None` means the request names no client (see
    /// [`RateLimitLayer::on_unidentified`](crate::RateLimitLayer::on_unidentified)).
    ///
    /// ```
    /// use axum::http::Request;
    /// let key = kvkit_http::ClientKey::custom(|_| Some("everyone".to_owned()));
    /// let (parts, ()) = Request::builder().body(()).unwrap().into_parts();
    /// assert_eq!(key.resolve(&parts).as_deref(), Some("everyone"));
    /// ```
    pub fn custom(f: impl Fn(&Parts) -> Option<String> + Send + Sync + 'static) -> Self {
        Self::Custom(Arc::new(f))
    }

    /// The client the request whose head is `parts` comes from, or `None` when this key cannot
    /// tell (no [`ConnectInfo`] for [`Peer`](Self::Peer) and [`Forwarded`](Self::Forwarded), or
    /// the custom function said `None`).
    ///
    /// ```
    /// use std::net::SocketAddr;
    /// use axum::extract::ConnectInfo;
    /// use axum::http::Request;
    /// let proxies = kvkit_http::TrustedProxies::parse("10.0.0.0/8").unwrap();
    /// let key = kvkit_http::ClientKey::Forwarded(proxies);
    /// let mut request = Request::builder()
    ///     .header("x-forwarded-for", "6.6.6.6, 203.0.113.7, 10.0.0.2")
    ///     .body(()).unwrap();
    /// request.extensions_mut().insert(ConnectInfo("10.0.0.1:4000".parse::<SocketAddr>().unwrap()));
    /// let (parts, ()) = request.into_parts();
    /// assert_eq!(key.resolve(&parts).as_deref(), Some("203.0.113.7"));
    ///
    /// // Served without `into_make_service_with_connect_info`: no peer, no client.
    /// let (parts, ()) = Request::builder().body(()).unwrap().into_parts();
    /// assert_eq!(kvkit_http::ClientKey::Peer.resolve(&parts), None);
    /// ```
    pub fn resolve(&self, parts: &Parts) -> Option<String> {
        match self {
            Self::Peer => peer(parts).map(|ip| ip.to_string()),
            Self::Forwarded(proxies) => {
                peer(parts).map(|ip| forwarded_client(ip, &parts.headers, proxies))
            }
            Self::Custom(f) => f(parts),
        }
    }
}

fn peer(parts: &Parts) -> Option<IpAddr> {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip().to_canonical())
}

/// The right-most hop that is not a trusted proxy.
fn forwarded_client(peer: IpAddr, headers: &HeaderMap, proxies: &TrustedProxies) -> String {
    if !proxies.trusts(peer) {
        return peer.to_string();
    }
    let mut hops = x_forwarded_for(headers);
    if hops.is_empty() {
        hops = forwarded_for(headers);
    }
    if hops.is_empty() {
        return headers
            .get(CF_CONNECTING_IP)
            .and_then(|v| parse_hop(v.as_bytes()))
            .map_or_else(|| peer.to_string(), |ip| ip.to_string());
    }
    for hop in hops.iter().rev() {
        match parse_hop(hop) {
            Some(ip) if proxies.trusts(ip) => continue,
            Some(ip) => return ip.to_string(),
            // Not an address (`unknown`, an RFC 7239 obfuscated identifier): written by the
            // trusted proxy to its right, so it names the client as well as anything can.
            None => return String::from_utf8_lossy(hop).into_owned(),
        }
    }
    // Every hop is a trusted proxy: the left-most is the closest to the client.
    hops.first()
        .and_then(|hop| parse_hop(hop))
        .map_or_else(|| peer.to_string(), |ip| ip.to_string())
}

/// The hops of every `X-Forwarded-For` header, in order, as bytes: a value that is not ASCII
/// still splits, so the hops a proxy appended after a client's bytes are kept.
fn x_forwarded_for(headers: &HeaderMap) -> Vec<&[u8]> {
    headers
        .get_all(X_FORWARDED_FOR)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|hop| !hop.is_empty())
        .collect()
}

/// The `for=` parameters of RFC 7239 `Forwarded` headers, in order.
fn forwarded_for(headers: &HeaderMap) -> Vec<&[u8]> {
    headers
        .get_all(FORWARDED)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .filter_map(|element| {
            element.split(|&b| b == b';').find_map(|pair| {
                let pair = pair.trim_ascii();
                let at = pair.iter().position(|&b| b == b'=')?;
                let (name, value) = pair.split_at(at);
                name.trim_ascii()
                    .eq_ignore_ascii_case(b"for")
                    .then(|| trim_quotes(value[1..].trim_ascii()))
            })
        })
        .collect()
}

fn trim_quotes(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|&b| b != b'"').unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|&b| b != b'"')
        .map_or(start, |i| i + 1);
    &bytes[start..end]
}

/// An address from a forwarding header: `1.2.3.4`, `1.2.3.4:80`, `[2001:db8::1]:80` or `2001:db8::1`.
fn parse_hop(hop: &[u8]) -> Option<IpAddr> {
    let hop = std::str::from_utf8(hop).ok()?.trim();
    hop.parse::<IpAddr>()
        .or_else(|_| hop.parse::<SocketAddr>().map(|s| s.ip()))
        .or_else(|_| {
            hop.trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<IpAddr>()
        })
        .ok()
        .map(|ip| ip.to_canonical())
}
