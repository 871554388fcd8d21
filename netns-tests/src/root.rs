//! The root check every namespace test starts with.

/// The variable that lets a developer without root skip the namespace tests.
pub const SKIP_VARIABLE: &str = "MESHD_SKIP_NETNS_TESTS";

/// Returns `true` when the caller may go on (running as root). Without root it panics with an
/// explanation, unless `MESHD_SKIP_NETNS_TESTS=1` is set, in which case it prints that the test is
/// skipped and returns `false`. CI runs as root, so a skip can never hide there as a pass.
pub fn require_root(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    if std::env::var(SKIP_VARIABLE).as_deref() == Ok("1") {
        eprintln!("SKIPPED {test}: needs root to create network namespaces ({SKIP_VARIABLE}=1)");
        return false;
    }
    panic!(
        "{test} needs root: it creates network namespaces, veth pairs and TUN devices. \
         Run the tests as root (CI does), or set {SKIP_VARIABLE}=1 to skip them locally."
    );
}
