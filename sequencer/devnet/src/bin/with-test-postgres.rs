//! Runs a command with one throwaway Postgres cluster for the whole test run:
//! `with-test-postgres -- cargo test --workspace`. The cluster's admin URL is
//! exported as `ROLLUP_TEST_PG_URL`; tests create one database each. The
//! cluster is stopped and deleted when the command ends.

use rollup_devnet::{Postgres, PostgresOptions, free_port};
use std::process::{Command, ExitCode};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).skip_while(|a| a == "--").collect();
    let Some((program, rest)) = args.split_first() else {
        eprintln!("usage: with-test-postgres -- <command> [args...]");
        return ExitCode::from(2);
    };
    let cluster =
        match free_port().and_then(|port| Postgres::start(PostgresOptions::throwaway(port))) {
            Ok(cluster) => cluster,
            Err(error) => {
                eprintln!("with-test-postgres: cannot start Postgres: {error}");
                return ExitCode::from(2);
            }
        };
    eprintln!("with-test-postgres: cluster on port {}", cluster.port());
    let status = Command::new(program)
        .args(rest)
        .env("ROLLUP_TEST_PG_URL", cluster.url("postgres"))
        .status();
    drop(cluster);
    match status {
        Ok(status) if status.success() => ExitCode::SUCCESS,
        Ok(status) => ExitCode::from(status.code().unwrap_or(1).clamp(1, 255) as u8),
        Err(error) => {
            eprintln!("with-test-postgres: cannot run {program}: {error}");
            ExitCode::from(2)
        }
    }
}
