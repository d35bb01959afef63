//! Side-by-side benchmark: Sluice (`sluiced`) against Debian's spiped 1.6.2 on loopback, same
//! workloads in the same run, alternated repetitions, medians and ratios (docs/PERFORMANCE.md).
//! `cargo bench -p sluice-engine --bench sidebyside [-- --quick] [--only a,b] [--no-mixed]`
//! Unix only (`sidebyside/unix.rs`): elsewhere it says so and exits.

#[cfg(unix)]
#[path = "sidebyside/unix.rs"]
mod unix;

#[cfg(target_os = "linux")]
#[path = "sidebyside/uring.rs"]
mod uring;

fn main() {
    #[cfg(unix)]
    unix::main();
    #[cfg(not(unix))]
    eprintln!("sidebyside: runs on Unix only (it drives Debian's spiped as processes)");
}
