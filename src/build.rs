//! Build script: has the linker lay out the functions that a start and an idle daemon run
//! next to each other, and those serving requests runs after them (docs/architecture.md,
//! "Code layout"). The kernel maps code in 64 KiB windows around each page touched, so ~1.8
//! MB of start-up code spread over 17 MB of text kept ~9 MiB of the binary resident at idle;
//! laid out together, about 2.

use std::env;
use std::path::PathBuf;

/// The list `make startup-symbols` writes. A stale one still links: LLD skips names the build
/// no longer has, and only less of the start sits together.
const STARTUP_SYMBOLS: &str = "src/startup_symbols.txt";

fn main() {
    println!("cargo:rerun-if-changed={STARTUP_SYMBOLS}");
    println!("cargo:rerun-if-changed=src/build.rs");
    // `--symbol-ordering-file` is LLD's, the default linker of this target since Rust 1.90
    // (hence the crate's rust-version). The list holds release builds' names; a debug build
    // would match few of them, and its memory at idle is not what anyone runs.
    let lld_target = env::var("TARGET").as_deref() == Ok("x86_64-unknown-linux-gnu");
    let release = env::var("PROFILE").as_deref() == Ok("release");
    let Some(manifest) = env::var_os("CARGO_MANIFEST_DIR") else {
        return;
    };
    let symbols = PathBuf::from(manifest).join(STARTUP_SYMBOLS);
    if lld_target && release && symbols.exists() {
        println!(
            "cargo:rustc-link-arg-bin=sluice=-Wl,--symbol-ordering-file={}",
            symbols.display()
        );
        println!("cargo:rustc-link-arg-bin=sluice=-Wl,--no-warn-symbol-ordering");
    }
}
