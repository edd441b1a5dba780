//! Shared helpers: run a block under both engines and compare.

use rollup_executor::{
    Engine, InvalidTxPolicy, MemoryState,
    engine::{EngineOutput, ExecutionEnv},
    tx::RecoveredTx,
};

/// How many times each block runs under the parallel engine per thread
/// count (`EXECUTOR_RACE_REPS`, default 3): repetitions hunt races.
pub(crate) fn race_reps() -> usize {
    std::env::var("EXECUTOR_RACE_REPS").ok().and_then(|v| v.parse().ok()).unwrap_or(3)
}

/// Thread counts the parallel engine runs with.
pub(crate) const THREADS: [usize; 3] = [1, 2, 4];

/// Runs the block sequentially and in parallel (every thread count, several
/// times) and asserts identical results, diffs and post-state roots.
/// Returns the sequential output.
pub(crate) fn assert_engines_agree(
    env: &ExecutionEnv,
    state: &MemoryState,
    txs: &[RecoveredTx],
    policy: InvalidTxPolicy,
) -> Result<EngineOutput, String> {
    let reference = Engine::Sequential.execute(env, state, txs, policy);
    let root = |out: &EngineOutput| {
        let mut post = state.clone();
        post.apply(&out.diff);
        post.state_root()
    };
    let reference_root = reference.as_ref().ok().map(root);
    for threads in THREADS {
        for rep in 0..race_reps() {
            let parallel = Engine::parallel_forced(threads).execute(env, state, txs, policy);
            match (&reference, &parallel) {
                (Ok(seq), Ok(par)) => {
                    for (i, (s, p)) in seq.results.iter().zip(&par.results).enumerate() {
                        if s != p {
                            return Err(format!(
                                "threads {threads} rep {rep}: tx {i} differs:\n seq {s:?}\n par {p:?}"
                            ));
                        }
                    }
                    if seq.results.len() != par.results.len() {
                        return Err("result counts differ".into());
                    }
                    if seq.diff != par.diff {
                        let mut msg = format!("threads {threads} rep {rep}: diffs differ\n");
                        for (a, d) in &seq.diff.accounts {
                            if par.diff.accounts.get(a) != Some(d) {
                                msg += &format!(
                                    " {a}: seq {d:?}\n      par {:?}\n",
                                    par.diff.accounts.get(a)
                                );
                            }
                        }
                        for (a, d) in &par.diff.accounts {
                            if !seq.diff.accounts.contains_key(a) {
                                msg += &format!(" {a}: only in par {d:?}\n");
                            }
                        }
                        if seq.diff.code != par.diff.code {
                            msg += " code differs\n";
                        }
                        return Err(msg);
                    }
                    if Some(root(par)) != reference_root {
                        return Err(format!("threads {threads} rep {rep}: state roots differ"));
                    }
                }
                (Err(s), Err(p)) => {
                    if s.to_string() != p.to_string() {
                        return Err(format!("errors differ: seq {s} par {p}"));
                    }
                }
                (s, p) => {
                    return Err(format!(
                        "one engine failed: seq ok {} par ok {}: {:?} {:?}",
                        s.is_ok(),
                        p.is_ok(),
                        s.as_ref().err().map(ToString::to_string),
                        p.as_ref().err().map(ToString::to_string)
                    ));
                }
            }
        }
    }
    reference.map_err(|e| format!("sequential failed: {e}"))
}
