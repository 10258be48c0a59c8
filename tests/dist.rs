//! `make dist`, the binary tarball: its name, its layout, what it ships and that the binary in
//! it runs.
//!
//! The Makefile's recipe is run as it is, with one stand-in: `CARGO=true`, so its
//! `cargo build --release` is a no-op and `TARGET_DIR` points at a directory whose
//! `release/cete` is the binary this test run built. A release build takes minutes and belongs
//! to CI's own steps (`make build`), not to the test suite; everything `make dist` does after
//! it — the target and version in the name, stripping, copying, packing — runs for real here.
mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{cete_bin, temp_dir};

const REPO: &str = env!("CARGO_MANIFEST_DIR");
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// `make dist ARGS` in the repository, the release build stood in for as above.
fn make_dist(work: &Path, args: &[&str]) -> Output {
    let release = work.join("target/release");
    std::fs::create_dir_all(&release).expect("create the stand-in target dir");
    let binary = release.join("cete");
    if !binary.exists() {
        std::os::unix::fs::symlink(cete_bin(), &binary).expect("link the built binary");
    }
    let mut make = Command::new("make");
    // Nothing from an enclosing make (`make test`) or a Go developer's environment.
    for inherited in ["MAKEFLAGS", "MFLAGS", "MAKELEVEL", "GOOS", "GOARCH", "TARGET", "CARGO_TARGET_DIR"] {
        make.env_remove(inherited);
    }
    make.args(["-s", "-C", REPO, "dist", "CARGO=true"])
        .arg(format!("TARGET_DIR={}", work.join("target").display()))
        .arg(format!("DIST_DIR={}", work.join("dist").display()))
        .args(args)
        .output()
        .expect("run make")
}

fn host_triple() -> String {
    let output = Command::new("rustc").arg("-vV").output().expect("run rustc -vV");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.lines().find_map(|line| line.strip_prefix("host: ")).expect("a host line").to_string()
}

fn run(program: &str, args: &[&str]) -> String {
    let output = Command::new(program).args(args).output().unwrap_or_else(|e| panic!("run {program}: {e}"));
    assert!(output.status.success(), "{program} {args:?}: {output:?}");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn has_debug_info(binary: &Path) -> bool {
    run("readelf", &["-S", "-W", &binary.display().to_string()]).contains(".debug_info")
}

#[test]
fn make_dist_packs_the_stripped_binary_readme_license_and_config_under_one_directory() {
    let work = temp_dir();
    let made = make_dist(work.path(), &[]);
    assert!(made.status.success(), "make dist failed: {made:?}");

    let name = format!("cete-{VERSION}-{}", host_triple());
    let tarball = work.path().join("dist").join(format!("{name}.tar.gz"));
    assert_eq!(String::from_utf8_lossy(&made.stdout).trim(), tarball.display().to_string(), "what make dist printed");
    let left: Vec<String> = std::fs::read_dir(work.path().join("dist"))
        .expect("the dist dir")
        .map(|entry| entry.expect("an entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, [format!("{name}.tar.gz")], "dist/ holds the tarball and nothing else");

    // One top directory; every entry owned by root, by number.
    let tarball_arg = tarball.display().to_string();
    let listing = run("tar", &["-tvzf", &tarball_arg, "--numeric-owner"]);
    let mut entries: Vec<&str> = listing.lines().map(|line| line.rsplit(' ').next().unwrap_or_default()).collect();
    entries.sort_unstable();
    let expected = ["", "LICENSE", "README.md", "cete", "config/", "config/cete.yaml"].map(|e| format!("{name}/{e}"));
    assert_eq!(entries, expected, "the tarball's entries:\n{listing}");
    assert!(listing.lines().all(|line| line.contains(" 0/0 ")), "not all owned by 0/0:\n{listing}");

    let unpacked = temp_dir();
    run("tar", &["-xzf", &tarball_arg, "-C", &unpacked.path().display().to_string()]);
    let top = unpacked.path().join(&name);
    for shipped in ["README.md", "LICENSE", "config/cete.yaml"] {
        let packed = std::fs::read(top.join(shipped)).expect("a shipped file");
        assert!(packed == std::fs::read(Path::new(REPO).join(shipped)).expect("the source"), "{shipped} differs");
    }
    let binary = top.join("cete");
    assert!(has_debug_info(Path::new(cete_bin())), "the test binary has no debug info to strip");
    assert!(!has_debug_info(&binary), "the packed binary still carries debug info");
    let version = run(&binary.display().to_string(), &["version"]);
    assert!(version.contains(VERSION), "the packed binary's version: {version:?}");
}

#[test]
fn make_dist_refuses_targets_it_cannot_build_and_says_why() {
    let work = temp_dir();
    let installed = Command::new("rustup").args(["target", "list", "--installed"]).output();
    let installed = installed.map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default();

    // The Go Makefile's names map to a triple; one this toolchain lacks is refused, naming it.
    if !installed.lines().any(|triple| triple == "aarch64-unknown-linux-gnu") {
        let refused = make_dist(work.path(), &["GOOS=linux", "GOARCH=arm64"]);
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(!refused.status.success(), "make dist GOARCH=arm64 succeeded: {refused:?}");
        assert!(stderr.contains("cannot build aarch64-unknown-linux-gnu"), "{stderr}");
    }
    let unknown = make_dist(work.path(), &["GOOS=plan9"]);
    let stderr = String::from_utf8_lossy(&unknown.stderr);
    assert!(!unknown.status.success(), "make dist GOOS=plan9 succeeded: {unknown:?}");
    assert!(stderr.contains("no Rust target for GOOS=plan9"), "{stderr}");
    assert!(!work.path().join("dist").exists(), "a refused make dist left files behind");
}
