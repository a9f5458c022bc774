//! The CI-light benchmark: `cipc bench --smoke` runs every row of the
//! benchmark table briefly on a memory and a durable broker, each beside a
//! floor measured in the same run, and fails only when a ratio is more than
//! twice its bound (docs/benchmarks.md). A 2x regression is noticed; a
//! loaded machine is not one, because it slows the floors too. The commits
//! a durable round trip costs and the sends one commit covers are counts,
//! held closer (a third sync per round trip, or no group commit, fails).

#[test]
fn no_row_of_the_benchmark_is_twice_as_far_from_its_floor_as_it_should_be() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cipc"))
        .args(["bench", "--smoke"])
        .env_remove("CIPC_URL")
        .env_remove("CIPC_TOKEN")
        .output()
        .expect("run cipc bench --smoke");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "cipc bench --smoke failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
}
