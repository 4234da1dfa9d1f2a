//! The committed header must equal a fresh cbindgen generation.

#[test]
fn committed_header_is_fresh() {
    let fresh = include_str!(concat!(env!("OUT_DIR"), "/sock.h"));
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/include/sock.h");
    let committed = std::fs::read_to_string(path).expect("include/sock.h exists");
    assert!(
        committed == fresh,
        "include/sock.h is stale: run `make header` and commit it"
    );
}

#[test]
fn header_names_do_not_clash_with_posix() {
    let fresh = include_str!(concat!(env!("OUT_DIR"), "/sock.h"));
    for line in fresh.lines().filter(|l| l.starts_with("#define ")) {
        let name = line.split_whitespace().nth(1).unwrap();
        assert!(
            name.starts_with("SOCK_") && !name.starts_with("SOCK_STREAM"),
            "header defines {name}, which is outside the SOCK_ namespace"
        );
        for posix in [
            "SOCK_STREAM",
            "SOCK_DGRAM",
            "SOCK_RAW",
            "SOCK_RDM",
            "SOCK_SEQPACKET",
            "SOCK_NONBLOCK",
            "SOCK_CLOEXEC",
            "SOCK_PACKET",
            "SOCK_DCCP",
        ] {
            assert_ne!(name, posix);
        }
    }
}
