//! Puts the directory of the libpython pyo3 linked against on the library's
//! runpath, so the plugin loads the same libpython it was built for (a pyenv
//! or custom-prefix Python is not on the system loader path).

fn main() {
    let config = pyo3_build_config::get();
    if let Some(dir) = &config.lib_dir {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    }
    println!("cargo:rerun-if-env-changed=PYO3_PYTHON");
}
