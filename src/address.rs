//! Address text: parsing ("127.0.0.1:8080", "[::1]:0", "localhost:80",
//! "unix:/path") into OS addresses for a socket's family, and formatting
//! OS addresses back into text.

use std::ffi::{CStr, CString};
use std::mem::MaybeUninit;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};
use std::os::unix::ffi::OsStrExt;

use socket2::SockAddr;

use crate::socket::{Family, Kind};
use crate::status::{
    Error, Result, SOCK_ADDRESS_FAMILY_NOT_SUPPORTED, SOCK_HOST_NOT_FOUND, SOCK_INVALID_ARGUMENT,
    SOCK_NO_BUFFER_SPACE, SOCK_NO_DATA, SOCK_SOCKET_ERROR, SOCK_TRY_AGAIN,
};

/// Size of a buffer that holds any address text and its NUL.
pub const SOCK_ADDRESS_MAX_LEN: usize = 128;

const UNIX_PREFIX: &str = "unix:";
/// `sizeof(sockaddr_un.sun_path)` on Linux, less the NUL.
const UNIX_PATH_MAX: usize = 107;

/// What address text says, before it is matched to a socket's family.
#[derive(Debug, PartialEq)]
enum Parsed<'a> {
    Ip(SocketAddr),
    Host(&'a str, u16),
    Unix(&'a [u8]),
}

fn invalid() -> Error {
    Error::new(SOCK_INVALID_ARGUMENT)
}

fn parse_text(text: &str) -> Result<Parsed<'_>> {
    if let Some(path) = text.strip_prefix(UNIX_PREFIX) {
        if path.is_empty() || path.len() > UNIX_PATH_MAX {
            return Err(invalid());
        }
        return Ok(Parsed::Unix(path.as_bytes()));
    }
    let (host, port) = text.rsplit_once(':').ok_or_else(invalid)?;
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid());
    }
    let port: u16 = port.parse().map_err(|_| invalid())?;
    if let Some(inner) = host.strip_prefix('[') {
        let inner = inner.strip_suffix(']').ok_or_else(invalid)?;
        let (ip, scope) = match inner.split_once('%') {
            Some((ip, scope)) => (ip, parse_scope(scope)?),
            None => (inner, 0),
        };
        let ip: Ipv6Addr = ip.parse().map_err(|_| invalid())?;
        return Ok(Parsed::Ip(SocketAddr::V6(SocketAddrV6::new(
            ip, port, 0, scope,
        ))));
    }
    if let Ok(ip) = host.parse::<Ipv4Addr>() {
        return Ok(Parsed::Ip(SocketAddr::new(IpAddr::V4(ip), port)));
    }
    let is_name_char = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_';
    if host.is_empty() || host.len() > 253 || !host.bytes().all(is_name_char) {
        return Err(invalid());
    }
    Ok(Parsed::Host(host, port))
}

/// An IPv6 scope: a number, or an interface name.
fn parse_scope(scope: &str) -> Result<u32> {
    if let Ok(n) = scope.parse::<u32>() {
        return Ok(n);
    }
    let name = CString::new(scope).map_err(|_| invalid())?;
    // SAFETY: `name` is a valid NUL-terminated string for the call's duration.
    match unsafe { libc::if_nametoindex(name.as_ptr()) } {
        0 => Err(invalid()),
        n => Ok(n),
    }
}

/// What address text names for a socket: its addresses, or a host name
/// still to be looked up.
pub enum Target {
    Addrs(Vec<SockAddr>),
    Lookup(String, u16),
}

/// Parses address text for a socket of `family` without resolving names.
pub fn target(text: &CStr, family: Family) -> Result<Target> {
    let text = text.to_str().map_err(|_| invalid())?;
    match (parse_text(text)?, family) {
        (Parsed::Host(host, port), Family::Inet | Family::Inet6) => {
            Ok(Target::Lookup(host.to_owned(), port))
        }
        (parsed, _) => Ok(Target::Addrs(vec![literal(parsed, family)?])),
    }
}

/// Parses address text into an OS address usable by a socket of `family`
/// and `kind`, resolving host names (the first answer wins).
pub fn parse(text: &CStr, family: Family, kind: Kind) -> Result<SockAddr> {
    let text = text.to_str().map_err(|_| invalid())?;
    match (parse_text(text)?, family) {
        (Parsed::Host(host, port), Family::Inet | Family::Inet6) => {
            let mut all = resolve_all(host, port, family, kind)?;
            Ok(all.swap_remove(0))
        }
        (parsed, _) => literal(parsed, family),
    }
}

/// The OS address of text that names no host.
fn literal(parsed: Parsed<'_>, family: Family) -> Result<SockAddr> {
    match (parsed, family) {
        (Parsed::Unix(path), Family::Unix) => {
            SockAddr::unix(std::ffi::OsStr::from_bytes(path)).map_err(|_| invalid())
        }
        (Parsed::Ip(SocketAddr::V4(a)), Family::Inet) => Ok(SockAddr::from(a)),
        (Parsed::Ip(SocketAddr::V6(a)), Family::Inet6) => Ok(SockAddr::from(a)),
        // IPv4 on an IPv6 socket: the v4-mapped address (dual stack).
        (Parsed::Ip(SocketAddr::V4(a)), Family::Inet6) => Ok(SockAddr::from(SocketAddrV6::new(
            a.ip().to_ipv6_mapped(),
            a.port(),
            0,
            0,
        ))),
        _ => Err(Error::new(SOCK_ADDRESS_FAMILY_NOT_SUPPORTED)),
    }
}

/// Resolves a host name with getaddrinfo, for the socket's family: every
/// answer, in getaddrinfo's order (at least one). It blocks for as long as
/// the lookup takes.
pub fn resolve_all(host: &str, port: u16, family: Family, kind: Kind) -> Result<Vec<SockAddr>> {
    let c_host = CString::new(host).map_err(|_| invalid())?;
    // SAFETY: addrinfo is plain old data; all-zero is a valid "no hints" value.
    let mut hints: libc::addrinfo = unsafe { std::mem::zeroed() };
    hints.ai_family = family.os_domain();
    hints.ai_socktype = kind.os_type();
    if family == Family::Inet6 {
        hints.ai_flags = libc::AI_V4MAPPED;
    }
    let mut list: *mut libc::addrinfo = std::ptr::null_mut();
    // SAFETY: host and hints are valid for the call; `list` receives a list
    // that we free below with freeaddrinfo.
    let rc = unsafe { libc::getaddrinfo(c_host.as_ptr(), std::ptr::null(), &hints, &mut list) };
    if rc != 0 {
        let errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
        return Err(match rc {
            libc::EAI_NONAME | libc::EAI_FAIL => Error::new(SOCK_HOST_NOT_FOUND),
            libc::EAI_AGAIN => Error::new(SOCK_TRY_AGAIN),
            libc::EAI_NODATA => Error::new(SOCK_NO_DATA),
            libc::EAI_FAMILY => Error::new(SOCK_ADDRESS_FAMILY_NOT_SUPPORTED),
            libc::EAI_MEMORY => Error::new(SOCK_NO_BUFFER_SPACE),
            libc::EAI_SYSTEM if errno != 0 => Error::from_errno(errno),
            _ => Error::new(SOCK_SOCKET_ERROR),
        });
    }
    let mut found = Vec::new();
    let mut entry = list;
    while !entry.is_null() {
        // SAFETY: getaddrinfo succeeded, so `entry` is an element of the
        // list it returned, whose ai_addr holds ai_addrlen bytes of the
        // entry's family; the list is freed only after the loop.
        let (addr, next) = unsafe {
            let e = &*entry;
            let addr = match e.ai_family {
                libc::AF_INET => {
                    let sin = &*(e.ai_addr as *const libc::sockaddr_in);
                    Some(SocketAddr::new(
                        IpAddr::V4(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr))),
                        port,
                    ))
                }
                libc::AF_INET6 => {
                    let sin6 = &*(e.ai_addr as *const libc::sockaddr_in6);
                    Some(SocketAddr::V6(SocketAddrV6::new(
                        Ipv6Addr::from(sin6.sin6_addr.s6_addr),
                        port,
                        0,
                        sin6.sin6_scope_id,
                    )))
                }
                _ => None,
            };
            (addr, e.ai_next)
        };
        if let Some(addr) = addr {
            let addr = SockAddr::from(addr);
            if !found.contains(&addr) {
                found.push(addr);
            }
        }
        entry = next;
    }
    // SAFETY: `list` came from a successful getaddrinfo and is freed once.
    unsafe { libc::freeaddrinfo(list) };
    if found.is_empty() {
        return Err(Error::new(SOCK_NO_DATA));
    }
    Ok(found)
}

/// The text of an OS address, without NUL.
pub fn format(addr: &SockAddr) -> Vec<u8> {
    if let Some(sa) = addr.as_socket() {
        return match sa {
            SocketAddr::V4(a) => a.to_string().into_bytes(),
            SocketAddr::V6(a) if a.scope_id() != 0 => {
                format!("[{}%{}]:{}", a.ip(), a.scope_id(), a.port()).into_bytes()
            }
            SocketAddr::V6(a) => format!("[{}]:{}", a.ip(), a.port()).into_bytes(),
        };
    }
    let mut text = UNIX_PREFIX.as_bytes().to_vec();
    if let Some(path) = addr.as_pathname() {
        text.extend_from_slice(path.as_os_str().as_bytes());
    } else if let Some(name) = addr.as_abstract_namespace() {
        text.push(b'@');
        text.extend_from_slice(name);
    }
    text
}

/// Longest address text (with NUL) a socket of `family` can produce.
pub fn max_text_len(family: Family) -> usize {
    match family {
        Family::Inet => "255.255.255.255:65535".len() + 1,
        Family::Inet6 => {
            "[ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255%4294967295]:65535".len() + 1
        }
        Family::Unix => UNIX_PREFIX.len() + 1 + UNIX_PATH_MAX + 1,
    }
}

/// Copies `text` and a NUL into a caller's buffer of `cap` bytes. Returns
/// the size written (text + NUL), or `SOCK_NO_BUFFER_SPACE` with the size
/// needed when it does not fit — nothing is cut.
pub fn copy_out(text: &[u8], buf: &mut [MaybeUninit<u8>]) -> std::result::Result<usize, usize> {
    let needed = text.len() + 1;
    if buf.len() < needed {
        return Err(needed);
    }
    for (dst, &src) in buf.iter_mut().zip(text.iter().chain(&[0])) {
        dst.write(src);
    }
    Ok(needed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Result<SockAddr> {
        let c = CString::new(text).unwrap();
        let family = if text.starts_with('[') {
            Family::Inet6
        } else if text.starts_with("unix:") {
            Family::Unix
        } else {
            Family::Inet
        };
        parse(&c, family, Kind::Stream)
    }

    #[test]
    fn parses_and_formats_ip_literals() {
        for text in [
            "127.0.0.1:8080",
            "[::1]:0",
            "0.0.0.0:65535",
            "[fe80::1%2]:80",
        ] {
            assert_eq!(format(&p(text).unwrap()), text.as_bytes(), "{text}");
        }
    }

    #[test]
    fn parses_unix_paths() {
        let a = p("unix:/tmp/x.sock").unwrap();
        assert_eq!(format(&a), b"unix:/tmp/x.sock");
        let long = format!("unix:/{}", "a".repeat(UNIX_PATH_MAX));
        assert_eq!(p(&long).unwrap_err().status, SOCK_INVALID_ARGUMENT);
    }

    #[test]
    fn rejects_malformed_text() {
        for text in [
            "",
            "127.0.0.1",
            "127.0.0.1:",
            "127.0.0.1:99999",
            "127.0.0.1:-1",
            "127.0.0.1:+80",
            "[::1",
            "[::1]",
            "::1:80",
            "[zz::1]:80",
            "unix:",
            ":80",
            "bad host:80",
            "[::1]:8o",
        ] {
            assert_eq!(
                p(text).unwrap_err().status,
                SOCK_INVALID_ARGUMENT,
                "{text:?}"
            );
        }
    }

    #[test]
    fn family_mismatch_is_not_supported() {
        let c = CString::new("[::1]:80").unwrap();
        let e = parse(&c, Family::Inet, Kind::Stream).unwrap_err();
        assert_eq!(e.status, SOCK_ADDRESS_FAMILY_NOT_SUPPORTED);
        let c = CString::new("unix:/x").unwrap();
        let e = parse(&c, Family::Inet, Kind::Stream).unwrap_err();
        assert_eq!(e.status, SOCK_ADDRESS_FAMILY_NOT_SUPPORTED);
        let c = CString::new("127.0.0.1:1").unwrap();
        let e = parse(&c, Family::Unix, Kind::Stream).unwrap_err();
        assert_eq!(e.status, SOCK_ADDRESS_FAMILY_NOT_SUPPORTED);
    }

    #[test]
    fn ipv4_on_ipv6_socket_is_v4_mapped() {
        let c = CString::new("127.0.0.1:9").unwrap();
        let a = parse(&c, Family::Inet6, Kind::Stream).unwrap();
        assert_eq!(format(&a), b"[::ffff:127.0.0.1]:9");
    }

    #[test]
    fn resolves_localhost() {
        let c = CString::new("localhost:80").unwrap();
        let a = parse(&c, Family::Inet, Kind::Stream).unwrap();
        assert_eq!(format(&a), b"127.0.0.1:80");
    }

    #[test]
    fn unresolvable_name_is_host_not_found() {
        let c = CString::new("no-such-host.invalid:80").unwrap();
        let e = parse(&c, Family::Inet, Kind::Stream).unwrap_err();
        assert!(
            [SOCK_HOST_NOT_FOUND, SOCK_TRY_AGAIN, SOCK_NO_DATA].contains(&e.status),
            "{e:?}"
        );
    }

    #[test]
    fn copy_out_never_cuts() {
        let mut buf = [MaybeUninit::new(0xffu8); 8];
        assert_eq!(copy_out(b"1234567", &mut buf), Ok(8));
        // SAFETY: copy_out initialised all 8 bytes.
        let bytes: [u8; 8] = unsafe { std::mem::transmute(buf) };
        assert_eq!(&bytes, b"1234567\0");
        let mut buf = [MaybeUninit::new(0xffu8); 8];
        assert_eq!(copy_out(b"12345678", &mut buf), Err(9));
        assert_eq!(copy_out(b"x", &mut []), Err(2));
    }

    #[test]
    fn max_lengths_hold_the_longest_texts() {
        for f in [Family::Inet, Family::Inet6, Family::Unix] {
            assert!(max_text_len(f) <= SOCK_ADDRESS_MAX_LEN);
        }
    }
}
