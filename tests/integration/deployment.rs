//! The deployment files, checked statically (no container engine runs here): every
//! command they start is one the binary accepts, and the image runs as non-root.

use std::process::Command;

fn read(path: &str) -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/").to_owned() + path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// `hookrelay ARGS --help` succeeds only if the subcommand and flags exist.
fn accepted(args: &[&str]) -> bool {
    Command::new(env!("CARGO_BIN_EXE_hookrelay"))
        .args(args)
        .arg("--help")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

fn json_list(line: &str) -> Vec<String> {
    let start = line.find('[').expect("a [..] list");
    serde_json::from_str(&line[start..]).expect("a JSON-style list")
}

#[test]
fn the_image_builds_the_binary_and_runs_unprivileged() {
    let dockerfile = read("Dockerfile");
    let final_stage = dockerfile.rsplit("\nFROM ").next().unwrap();
    let user = final_stage
        .lines()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("the final stage sets USER");
    assert!(!["root", "0"].contains(&user.trim()), "runs as {user}");
    assert!(dockerfile.contains("cargo build --release --locked --bin hookrelay"));
    let cmd = final_stage
        .lines()
        .find(|l| l.starts_with("CMD"))
        .expect("CMD");
    let args = json_list(cmd);
    assert!(
        accepted(&args.iter().map(String::as_str).collect::<Vec<_>>()),
        "{cmd}"
    );
}

#[test]
fn compose_commands_are_real_subcommands() {
    let compose = read("docker-compose.yml");
    let commands: Vec<Vec<String>> = compose
        .lines()
        .filter(|l| l.trim_start().starts_with("command:"))
        .map(json_list)
        .collect();
    assert!(commands.len() >= 6, "{commands:?}");
    for command in &commands {
        let args: Vec<&str> = command.iter().map(String::as_str).collect();
        assert!(
            accepted(&args),
            "compose runs {args:?}, which hookrelay refuses"
        );
    }
    // The seed's shape: migrate once, then api and worker.
    for service in ["migrate:", "api:", "worker:", "postgres:"] {
        assert!(
            compose.contains(&format!("\n  {service}")),
            "no {service} service"
        );
    }
}

#[test]
fn the_systemd_unit_starts_serve() {
    let unit = read("deploy/hookrelay.service");
    let exec = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("ExecStart");
    let mut parts = exec.split_whitespace();
    assert_eq!(parts.next(), Some("/usr/local/bin/hookrelay"));
    let args: Vec<&str> = parts.collect();
    assert!(accepted(&args), "{exec}");
    assert!(unit.contains("KillSignal=SIGTERM"));
}
