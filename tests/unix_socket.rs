//! waitress's `unix_socket` and `unix_socket_perms`: a real nginx talks to
//! plughost over the socket (trusting it as `localhost`), the socket file
//! gets its mode, and a socket-only server opens no TCP port.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use support::*;

#[test]
fn nginx_serves_plughost_over_a_unix_socket() {
    let Some(bin) = nginx::binary() else {
        skip_unless_ci("nginx not installed");
        return;
    };
    let dir = tempdir();
    let sock = dir.path().join("plughost.sock");
    let host = Host::start_in(
        dir.path(),
        "[app:main]\nuse = egg:echo\n\n[server:main]\nuse = egg:waitress#main\n\
         unix_socket = plughost.sock\nunix_socket_perms = 660\n\
         trusted_proxy = localhost\ntrusted_proxy_headers = x-forwarded-for x-forwarded-proto\n",
    );
    let mode = std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o660);
    let port = nginx::free_port();
    let conf = nginx::http_conf(&format!(
        "server {{\n\
           listen 127.0.0.1:{port};\n\
           location / {{\n\
             proxy_pass http://unix:{}:;\n\
             proxy_set_header X-Forwarded-For 192.0.2.44;\n\
             proxy_set_header X-Forwarded-Proto https;\n\
           }}\n\
         }}",
        sock.display()
    ));
    let _nginx = nginx::Nginx::start(&bin, dir.path(), &conf, port);
    let reply = request(port, "GET", "/through/nginx?q=1", &[], b"").unwrap();
    assert_eq!(reply.status, 200, "{}\n{}", reply.text(), host.log());
    let echo = reply.json();
    assert_eq!(echo["path_info"], "/through/nginx");
    assert_eq!(echo["remote_addr"], "192.0.2.44", "{echo}");
    assert_eq!(echo["scheme"], "https");
    // The TCP listener (the tests' --port 0) does not trust its 127.0.0.1 peers.
    let direct = host.request("GET", "/", &[("X-Forwarded-For", "192.0.2.44")], b"");
    assert_eq!(direct.json()["remote_addr"], "127.0.0.1");
}

#[test]
fn a_socket_only_server_opens_no_tcp_port_and_refuses_to_clobber_a_file() {
    let dir = tempdir();
    let ini = dir.path().join("deploy.ini");
    std::fs::write(
        &ini,
        "[app:main]\nuse = egg:echo\n\n[server:main]\nuse = egg:waitress#main\nunix_socket = app.sock\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_plughost"))
        .arg("check")
        .arg(&ini)
        .env("PLUGHOST_PLUGIN_PATH", plugins())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sock = std::fs::canonicalize(dir.path()).unwrap().join("app.sock");
    let listen = text.lines().find(|l| l.starts_with("server:")).unwrap();
    assert!(
        listen.contains(&format!("listen unix:{} threads", sock.display()))
            || listen.contains(&format!(
                "listen unix:{} threads",
                dir.path().join("app.sock").display()
            )),
        "{listen}"
    );

    std::fs::write(dir.path().join("app.sock"), "not a socket").unwrap();
    let err = Host::serve_path(&ini, &[]).err().expect("refused");
    assert!(
        err.contains("a file that is not a socket is in the way"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("app.sock")).unwrap(),
        "not a socket"
    );
}

#[test]
fn bad_unix_socket_perms_name_the_key() {
    let dir = tempdir();
    let err = Host::try_start_in(
        dir.path(),
        "[app:main]\nuse = egg:echo\n\n[server:main]\nunix_socket = a.sock\nunix_socket_perms = rw-rw----\n",
        &[],
    )
    .err()
    .expect("refused");
    assert!(err.contains("[server:main] unix_socket_perms"), "{err}");
}
