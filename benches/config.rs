//! How long resolving a large deploy.ini takes: 200 sections (a pipeline of 100
//! filters over an urlmap of 97 apps, with `[DEFAULT]` interpolation, `set`s and
//! `use = other` merges) through `plughost::config::load`. Resolution never loads
//! a plugin, so the libraries it names need not exist.
//!
//!     cargo bench --bench config

use std::fmt::Write as _;
use std::hint::black_box;
use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion};

const FILTERS: usize = 100;
const APPS: usize = 97;

/// `[DEFAULT]` + `[pipeline:main]` + 100 `[filter:]` + `[composite:site]` +
/// 97 `[app:]` + `[server:main]` = 200 sections (DEFAULT not counted).
fn generate() -> String {
    let mut ini = String::from(
        "[DEFAULT]\nsite_name = bench\ngreeting_prefix = Hello from %(site_name)s\n\n",
    );
    let filters: Vec<String> = (0..FILTERS).map(|i| format!("f{i}")).collect();
    let _ = writeln!(
        ini,
        "[pipeline:main]\npipeline = {} site\n",
        filters.join(" ")
    );
    for i in 0..FILTERS {
        if i % 10 == 0 {
            let _ = writeln!(
                ini,
                "[filter:f{i}]\nuse = egg:tag\ntag = t{i}\nset owner = team{i}\n"
            );
        } else {
            // `use = other`: merge with the section ten before.
            let _ = writeln!(ini, "[filter:f{i}]\nuse = f{}\ntag = t{i}\n", i - i % 10);
        }
    }
    ini.push_str("[composite:site]\nuse = egg:Paste#urlmap\n/ = a0\n");
    for i in 1..APPS {
        let _ = writeln!(ini, "/p{i} = a{i}");
    }
    ini.push('\n');
    for i in 0..APPS {
        let _ = writeln!(
            ini,
            "[app:a{i}]\nuse = egg:hello\ngreeting = %(greeting_prefix)s, app {i}\nlimit = {}\n",
            i * 10
        );
    }
    ini.push_str(
        "[server:main]\nuse = egg:plughost#http\nhost = 127.0.0.1\nport = 8080\nthreads = 8\n",
    );
    ini
}

fn sections(ini: &str) -> usize {
    ini.lines()
        .filter(|l| l.starts_with('[') && *l != "[DEFAULT]")
        .count()
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("deploy.ini");
    let ini = generate();
    assert_eq!(sections(&ini), 200);
    std::fs::write(&path, &ini).expect("writing the config");
    // Check once that it resolves to what we think.
    let d = plughost::load(&path, None, None, &[]).expect("the generated config resolves");
    assert_eq!(d.app.components().len(), FILTERS + 1 + APPS);

    c.bench_function("config::load 200 sections (100 filters, 97 apps)", |b| {
        b.iter(|| {
            let d = plughost::load(black_box(Path::new(&path)), None, None, &[]).expect("resolves");
            black_box(d)
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
