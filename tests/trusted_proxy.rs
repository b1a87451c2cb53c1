//! waitress's trusted proxy keys with a real nginx in front: the client
//! address, scheme, host and port nginx reports reach the app; the same
//! headers sent straight from an untrusted peer are ignored and cleared.

mod support;

use support::*;

/// nginx connects to plughost from 127.0.0.3 (`proxy_bind`), the one trusted
/// peer; the test's own connections come from 127.0.0.1.
const SERVER: &str = "[server:main]\nuse = egg:waitress#main\ntrusted_proxy = 127.0.0.3\n\
    trusted_proxy_count = 1\n\
    trusted_proxy_headers = x-forwarded-for x-forwarded-host x-forwarded-proto x-forwarded-port\n\
    clear_untrusted_proxy_headers = true\n";

fn nginx_conf(port: u16, upstream: u16) -> String {
    nginx::http_conf(&format!(
        "server {{\n\
           listen 127.0.0.1:{port};\n\
           location / {{\n\
             proxy_pass http://127.0.0.1:{upstream};\n\
             proxy_bind 127.0.0.3;\n\
             proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n\
             proxy_set_header X-Forwarded-Proto https;\n\
             proxy_set_header X-Forwarded-Host $host;\n\
             proxy_set_header X-Forwarded-Port 8443;\n\
           }}\n\
         }}"
    ))
}

#[test]
fn a_trusted_nginx_sets_the_client_scheme_and_host_and_spoofs_are_cleared() {
    let Some(bin) = nginx::binary() else {
        skip_unless_ci("nginx not installed");
        return;
    };
    let dir = tempdir();
    let host = Host::start_in(
        dir.path(),
        &format!("[app:main]\nuse = egg:echo\n\n{SERVER}"),
    );
    let port = nginx::free_port();
    let _nginx = nginx::Nginx::start(&bin, dir.path(), &nginx_conf(port, host.port), port);

    let spoof = [
        ("Host", "shop.example"),
        ("X-Forwarded-For", "6.6.6.6"),
        ("X-Forwarded-By", "evil"),
        ("Forwarded", "for=6.6.6.6;proto=http"),
    ];
    // Through nginx: the chain is "6.6.6.6, 127.0.0.1"; one proxy in front,
    // so the client is the entry nginx added.
    let via = request(port, "GET", "/x", &spoof[1..], b"").unwrap();
    assert_eq!(via.status, 200, "{}", via.text());
    let echo = via.json();
    assert_eq!(echo["remote_addr"], "127.0.0.1", "{echo}");
    assert_eq!(echo["scheme"], "https");
    assert_eq!(echo["server_name"], "localhost");
    assert_eq!(echo["server_port"], 8443);
    assert_eq!(echo["headers"]["x-forwarded-for"], "6.6.6.6, 127.0.0.1");
    assert!(echo["headers"].get("x-forwarded-by").is_none(), "{echo}");
    assert!(echo["headers"].get("forwarded").is_none(), "{echo}");

    // Straight from an untrusted peer: nothing is believed, all is removed.
    let direct = host.request(
        "GET",
        "/x",
        &[
            ("X-Forwarded-For", "6.6.6.6"),
            ("X-Forwarded-Proto", "https"),
            ("X-Forwarded-Host", "evil.example"),
            ("X-Forwarded-Port", "1"),
            ("Forwarded", "for=6.6.6.6"),
        ],
        b"",
    );
    let echo = direct.json();
    assert_eq!(echo["remote_addr"], "127.0.0.1");
    assert_eq!(echo["scheme"], "http");
    assert_eq!(echo["server_name"], "localhost");
    assert_eq!(echo["server_port"], host.port);
    for h in [
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
        "x-forwarded-port",
        "forwarded",
    ] {
        assert!(echo["headers"].get(h).is_none(), "{h} kept: {echo}");
    }
}

#[test]
fn forwarded_and_counts_from_a_trusted_peer() {
    let (host, _dir) = Host::start(
        "[app:main]\nuse = egg:echo\n\n[server:main]\nuse = egg:waitress#main\ntrusted_proxy = *\n\
         trusted_proxy_count = 2\ntrusted_proxy_headers = forwarded\n",
    );
    let echo = host
        .request(
            "GET",
            "/",
            &[(
                "Forwarded",
                "for=9.9.9.9, for=\"[2001:db8::7]:4711\";proto=https;host=\"ex.org:444\", for=10.0.0.1",
            )],
            b"",
        )
        .json();
    assert_eq!(echo["remote_addr"], "2001:db8::7");
    assert_eq!(echo["remote_port"], 4711);
    assert_eq!(echo["scheme"], "https");
    assert_eq!(echo["server_name"], "ex.org");
    assert_eq!(echo["server_port"], 444);
    // Not cleared by default.
    assert_eq!(
        host.request("GET", "/", &[("X-Forwarded-For", "1.2.3.4")], b"")
            .json()["headers"]["x-forwarded-for"],
        "1.2.3.4"
    );
    let bad = host.request("GET", "/", &[("Forwarded", "for")], b"");
    assert_eq!(bad.status, 400);
}

#[test]
fn trusted_proxy_settings_are_checked_with_their_key() {
    let dir = tempdir();
    for (server, key, why) in [
        (
            "trusted_proxy_count = 2\n",
            "trusted_proxy_count",
            "without trusted_proxy",
        ),
        (
            "trusted_proxy = *\ntrusted_proxy_headers = forwarded x-forwarded-for\n",
            "trusted_proxy_headers",
            "mutually exclusive",
        ),
        (
            "trusted_proxy = *\ntrusted_proxy_headers = x-real-ip\n",
            "trusted_proxy_headers",
            "unknown proxy header",
        ),
        (
            "clear_untrusted_proxy_headers = maybe\n",
            "clear_untrusted_proxy_headers",
            "expected true or false",
        ),
    ] {
        let err = Host::try_start_in(
            dir.path(),
            &format!(
                "[app:main]\nuse = egg:echo\n\n[server:main]\nuse = egg:waitress#main\n{server}"
            ),
            &[],
        )
        .err()
        .expect("refused");
        assert!(err.contains(&format!("[server:main] {key}")), "{err}");
        assert!(err.contains(why), "{err}");
    }
}
