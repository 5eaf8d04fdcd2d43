//! Which URLs a webhook may call (SSRF).
//!
//! Only `http` and `https` URLs without credentials, and only hosts whose addresses are all
//! public: loopback, private (RFC 1918, `fc00::/7`), link-local (`169.254.0.0/16` with the
//! cloud metadata address, `fe80::/10`), CGNAT (`100.64.0.0/10`), unspecified, broadcast,
//! multicast and reserved addresses are refused, also inside IPv4-mapped / NAT64 IPv6 addresses.
//! [`check_url`] runs at registration and before every delivery, on a fresh DNS answer, and the
//! sender's HTTP client resolves through [`GuardedResolver`], which applies the same rule to the
//! very addresses it connects to (a DNS answer changed between the check and the connection —
//! "DNS rebinding" — is refused too).
//!
//! An operator [`AllowList`] (`webhook_allow_hosts`) lifts the address rule for networks
//! (`127.0.0.0/8`, `10.1.2.3`) or host names (`hooks.internal`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use url::{Host, Url};

/// How long resolving a host may take.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a URL may not be called (the message is safe to show to the tenant).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GuardError {
    #[error("url is not valid: {0}")]
    Invalid(String),
    #[error("url must use http or https")]
    Scheme,
    #[error("url must not contain a user name or password")]
    Credentials,
    #[error("host {0} could not be resolved")]
    Resolve(String),
    #[error("host {host} resolves to {ip}, a {why} address, which webhooks may not call")]
    Forbidden {
        host: String,
        ip: IpAddr,
        why: &'static str,
    },
}

/// Networks and host names the operator allows whatever their addresses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowList {
    nets: Vec<(IpAddr, u8)>,
    hosts: Vec<String>,
}

impl AllowList {
    /// Parses entries: a CIDR (`10.0.0.0/8`, `fd00::/8`), one address, or a host name.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self, String> {
        let mut list = Self::default();
        for e in entries {
            let e = e.as_ref().trim();
            if e.is_empty() {
                continue;
            }
            if let Some((ip, bits)) = e.split_once('/') {
                let ip: IpAddr = ip
                    .parse()
                    .map_err(|_| format!("webhook allow-list entry {e:?}: not an address"))?;
                let max = if ip.is_ipv4() { 32 } else { 128 };
                let bits: u8 =
                    bits.parse().ok().filter(|b| *b <= max).ok_or_else(|| {
                        format!("webhook allow-list entry {e:?}: bad prefix length")
                    })?;
                list.nets.push((ip, bits));
            } else if let Ok(ip) = e.parse::<IpAddr>() {
                list.nets.push((ip, if ip.is_ipv4() { 32 } else { 128 }));
            } else if e
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
            {
                list.hosts.push(e.to_ascii_lowercase());
            } else {
                return Err(format!(
                    "webhook allow-list entry {e:?}: neither a network nor a host name"
                ));
            }
        }
        Ok(list)
    }

    pub fn is_empty(&self) -> bool {
        self.nets.is_empty() && self.hosts.is_empty()
    }

    fn allows_host(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.hosts.contains(&host)
    }

    fn allows_ip(&self, ip: IpAddr) -> bool {
        self.nets.iter().any(|(net, bits)| in_net(ip, *net, *bits))
    }
}

fn in_net(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
            u128::from(a) & mask == u128::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V4(_)) => a
            .to_ipv4_mapped()
            .is_some_and(|v4| in_net(IpAddr::V4(v4), net, bits)),
        (IpAddr::V4(_), IpAddr::V6(_)) => false,
    }
}

/// Why `ip` may not be called, or `None` for a public address.
pub fn forbidden(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => forbidden_v6(v6),
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = ip.octets();
    Some(if ip.is_loopback() {
        "loopback"
    } else if ip.is_private() {
        "private"
    } else if ip.is_link_local() {
        "link-local"
    } else if a == 0 {
        "unspecified"
    } else if a == 100 && (64..128).contains(&b) {
        "shared (CGNAT)"
    } else if ip.is_multicast() {
        "multicast"
    } else if ip.is_broadcast() || a >= 240 {
        "reserved"
    } else {
        return None;
    })
}

fn forbidden_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let seg = ip.segments();
    if let Some(v4) = ip.to_ipv4_mapped() {
        return forbidden_v4(v4);
    }
    // NAT64 (64:ff9b::/96) and the deprecated IPv4-compatible form (::a.b.c.d) embed an IPv4.
    let embedded = Ipv4Addr::from((u128::from(ip) & 0xffff_ffff) as u32);
    if (seg[0] == 0x64 && seg[1] == 0xff9b && seg[2..6] == [0; 4]) || seg[0..6] == [0; 6] {
        if ip.is_loopback() {
            return Some("loopback");
        }
        if ip.is_unspecified() {
            return Some("unspecified");
        }
        return forbidden_v4(embedded);
    }
    Some(if ip.is_multicast() {
        "multicast"
    } else if seg[0] & 0xfe00 == 0xfc00 {
        "private (unique local)"
    } else if seg[0] & 0xffc0 == 0xfe80 || seg[0] & 0xffc0 == 0xfec0 {
        "link-local"
    } else {
        return None;
    })
}

/// A URL that passed [`check_url`], with the addresses its host resolved to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub url: Url,
    pub addrs: Vec<SocketAddr>,
}

/// Checks `url` (see the module docs), resolving its host now.
pub async fn check_url(url: &str, allow: &AllowList) -> Result<Target, GuardError> {
    let parsed = Url::parse(url).map_err(|e| GuardError::Invalid(e.to_string()))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(GuardError::Scheme);
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(GuardError::Credentials);
    }
    let port = parsed
        .port_or_known_default()
        .ok_or_else(|| GuardError::Invalid("no port".into()))?;
    let (name, addrs) = match parsed.host() {
        None => return Err(GuardError::Invalid("no host".into())),
        Some(Host::Ipv4(ip)) => (ip.to_string(), vec![SocketAddr::new(ip.into(), port)]),
        Some(Host::Ipv6(ip)) => (ip.to_string(), vec![SocketAddr::new(ip.into(), port)]),
        Some(Host::Domain(d)) => (d.to_owned(), resolve(d, port).await?),
    };
    vet(&name, &addrs, allow)?;
    Ok(Target { url: parsed, addrs })
}

async fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>, GuardError> {
    let err = || GuardError::Resolve(host.to_owned());
    let found = tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((host, port)))
        .await
        .map_err(|_| err())?
        .map_err(|_| err())?;
    let addrs: Vec<SocketAddr> = found.collect();
    if addrs.is_empty() {
        return Err(err());
    }
    Ok(addrs)
}

/// Refuses when any of `addrs` is forbidden and not allowed (all must pass: the connection may
/// use any of them).
fn vet(host: &str, addrs: &[SocketAddr], allow: &AllowList) -> Result<(), GuardError> {
    if allow.allows_host(host) {
        return Ok(());
    }
    for a in addrs {
        if allow.allows_ip(a.ip()) {
            continue;
        }
        if let Some(why) = forbidden(a.ip()) {
            return Err(GuardError::Forbidden {
                host: host.to_owned(),
                ip: a.ip(),
                why,
            });
        }
    }
    Ok(())
}

/// The sender's DNS resolver: resolves and applies [`check_url`]'s address rule to the answer
/// the connection will use.
#[derive(Debug, Clone)]
pub struct GuardedResolver {
    allow: Arc<AllowList>,
}

impl GuardedResolver {
    pub fn new(allow: Arc<AllowList>) -> Self {
        Self { allow }
    }
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow = self.allow.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addrs = resolve(&host, 0).await?;
            vet(&host, &addrs, &allow)?;
            let out: reqwest::dns::Addrs = Box::new(addrs.into_iter());
            Ok(out)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
    }

    #[test]
    fn the_address_rule() {
        for (a, bad) in [
            ("127.0.0.1", true),
            ("10.1.2.3", true),
            ("172.16.0.1", true),
            ("192.168.1.1", true),
            ("169.254.169.254", true),
            ("100.64.0.1", true),
            ("0.0.0.0", true),
            ("224.0.0.1", true),
            ("255.255.255.255", true),
            ("::1", true),
            ("::", true),
            ("fe80::1", true),
            ("fd00::1", true),
            ("ff02::1", true),
            ("::ffff:127.0.0.1", true),
            ("::ffff:169.254.169.254", true),
            ("64:ff9b::a9fe:a9fe", true),
            ("8.8.8.8", false),
            ("100.128.0.1", false),
            ("2606:4700::1111", false),
            ("::ffff:8.8.8.8", false),
        ] {
            assert_eq!(forbidden(ip(a)).is_some(), bad, "{a}");
        }
    }

    #[test]
    fn the_allow_list() -> Result<(), String> {
        let allow = AllowList::parse(&["127.0.0.0/8", "fd00::1", "Hooks.Internal"])?;
        assert!(allow.allows_ip(ip("127.0.0.2")));
        assert!(allow.allows_ip(ip("::ffff:127.0.0.2")));
        assert!(!allow.allows_ip(ip("10.0.0.1")));
        assert!(allow.allows_ip(ip("fd00::1")));
        assert!(allow.allows_host("hooks.internal."));
        assert!(AllowList::parse(&["10.0.0.0/33"]).is_err());
        assert!(AllowList::parse(&["a b"]).is_err());
        Ok(())
    }

    #[tokio::test]
    async fn check_url_refuses_loopback_names_and_metadata() -> Result<(), String> {
        let none = AllowList::default();
        for u in [
            "http://127.0.0.1/",
            "http://localhost:8080/",
            "http://169.254.169.254/latest/meta-data/",
            "http://[fe80::1]/",
            "http://0.0.0.0/",
            "http://[::ffff:10.0.0.1]/",
        ] {
            let r = check_url(u, &none).await;
            assert!(matches!(r, Err(GuardError::Forbidden { .. })), "{u}: {r:?}");
        }
        assert_eq!(
            check_url("gopher://8.8.8.8/", &none).await,
            Err(GuardError::Scheme)
        );
        assert!(check_url("https://8.8.8.8/hook", &none).await.is_ok());
        let allow = AllowList::parse(&["127.0.0.0/8", "localhost"])?;
        assert!(check_url("http://127.0.0.1:9/", &allow).await.is_ok());
        assert!(check_url("http://localhost:9/", &allow).await.is_ok());
        Ok(())
    }
}
