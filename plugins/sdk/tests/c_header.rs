//! The C header must describe exactly the same layout as `abi.rs`: compile a C
//! program that prints every size, offset and constant, and compare.

use std::mem::{offset_of, size_of};
use std::path::PathBuf;
use std::process::Command;

use plughost_sdk::abi::*;

macro_rules! layout {
    ($($c:literal => $rust:ty { $($cf:literal => $rf:ident),* $(,)? }),* $(,)?) => {{
        let mut c = String::new();
        let mut rust = Vec::new();
        $(
            c.push_str(&format!("  printf(\"{} %zu\\n\", sizeof({}));\n", $c, $c));
            rust.push(format!("{} {}", $c, size_of::<$rust>()));
            $(
                c.push_str(&format!("  printf(\"{}.{} %zu\\n\", offsetof({}, {}));\n", $c, $cf, $c, $cf));
                rust.push(format!("{}.{} {}", $c, $cf, offset_of!($rust, $rf)));
            )*
        )*
        (c, rust)
    }};
}

#[test]
fn c_header_matches_rust_layout() {
    let (c_lines, rust) = layout! {
        "ph_str" => PhStr { "ptr" => ptr, "len" => len },
        "ph_pair" => PhPair { "name" => name, "value" => value },
        "ph_body_vtbl" => PhBodyVtbl { "struct_size" => struct_size, "next" => next, "size_hint" => size_hint, "release" => release },
        "ph_body" => PhBody { "vtbl" => vtbl, "self" => this },
        "ph_request" => PhRequest {
            "struct_size" => struct_size, "method" => method, "scheme" => scheme, "script_name" => script_name,
            "path_info" => path_info, "raw_path" => raw_path, "query_string" => query_string, "protocol" => protocol,
            "server_name" => server_name, "remote_addr" => remote_addr, "server_port" => server_port,
            "remote_port" => remote_port, "headers" => headers, "header_count" => header_count, "extras" => extras,
            "extra_count" => extra_count, "content_length" => content_length,
        },
        "ph_response" => PhResponse {
            "status" => status, "reason" => reason, "headers" => headers, "header_count" => header_count,
            "body" => body, "owner" => owner, "release" => release,
        },
        "ph_error_sink" => PhErrorSink { "self" => this, "set" => set },
        "ph_next" => PhNext { "self" => this, "call" => call },
        "ph_host" => PhHost { "struct_size" => struct_size, "abi_major" => abi_major, "abi_minor" => abi_minor, "log" => log },
        "ph_handler_vtbl" => PhHandlerVtbl { "struct_size" => struct_size, "call" => call, "destroy" => destroy, "flags" => flags },
        "ph_entry" => PhEntry { "kind" => kind, "name" => name, "create" => create, "vtbl" => vtbl },
        "ph_plugin_desc" => PhPluginDesc {
            "magic" => magic, "abi_major" => abi_major, "abi_minor" => abi_minor, "struct_size" => struct_size,
            "flags" => flags, "plugin_name" => plugin_name, "plugin_version" => plugin_version,
            "build_info" => build_info, "entries" => entries, "entry_count" => entry_count,
        },
        "ph_handshake" => PhHandshake { "magic" => magic, "abi_major" => abi_major, "abi_minor" => abi_minor },
    };
    let mut rust = rust;
    let constants: &[(&str, i64)] = &[
        ("PH_MAGIC", PH_MAGIC as i64),
        ("PH_ABI_MAJOR", PH_ABI_MAJOR as i64),
        ("PH_ABI_MINOR", PH_ABI_MINOR as i64),
        ("PH_OK", PH_OK as i64),
        ("PH_EOF", PH_EOF as i64),
        ("PH_ERR", PH_ERR as i64),
        ("PH_ERR_PANIC", PH_ERR_PANIC as i64),
        ("PH_KIND_APP", PH_KIND_APP as i64),
        ("PH_KIND_FILTER", PH_KIND_FILTER as i64),
        ("PH_FLAG_PANIC_UNWIND", PH_FLAG_PANIC_UNWIND as i64),
        ("PH_HANDLER_NONBLOCKING", PH_HANDLER_NONBLOCKING as i64),
        ("PH_LOG_ERROR", PH_LOG_ERROR as i64),
        ("PH_LOG_WARN", PH_LOG_WARN as i64),
        ("PH_LOG_INFO", PH_LOG_INFO as i64),
        ("PH_LOG_DEBUG", PH_LOG_DEBUG as i64),
        ("PH_LOG_TRACE", PH_LOG_TRACE as i64),
    ];
    let mut c_consts = String::new();
    for (name, value) in constants {
        c_consts.push_str(&format!(
            "  printf(\"{name} %lld\\n\", (long long)({name}));\n"
        ));
        rust.push(format!("{name} {value}"));
    }
    let program = format!(
        "#include <stdio.h>\n#include <stddef.h>\n#include \"plughost.h\"\nint main(void) {{\n{c_lines}{c_consts}  return 0;\n}}\n"
    );

    let crate_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let out_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("c_header");
    std::fs::create_dir_all(&out_dir).unwrap();
    let src = out_dir.join("layout.c");
    let exe = out_dir.join("layout");
    std::fs::write(&src, program).unwrap();
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let status = Command::new(&cc)
        .args(["-std=c99", "-Wall", "-Werror", "-I"])
        .arg(crate_dir.join("include"))
        .arg("-o")
        .arg(&exe)
        .arg(&src)
        .status()
        .expect("a C compiler (cc) is needed for this test");
    assert!(status.success(), "the C header does not compile");
    let output = Command::new(&exe).output().unwrap();
    let c_out: Vec<String> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(c_out, rust, "plughost.h and abi.rs disagree");
}
