use std::ffi::{OsStr, OsString};

use clap::{CommandFactory, Parser, Subcommand};

use super::ValueOrigin;
use crate::cli::{clap_error_line, parse_rate};

/// Refuses anything but 8 hex digits, quoting the value, as a careless parser of a key would.
fn hex_key(s: &str) -> Result<String, String> {
    if s.len() == 8 && s.chars().all(|c| c.is_ascii_hexdigit()) {
        Ok(s.into())
    } else {
        Err(format!("{s:?} is not 8 hex digits"))
    }
}

#[derive(Parser, Debug)]
struct Cli {
    #[arg(long, short = 'r', env = "T_RATE", value_parser = parse_rate, allow_negative_numbers = true)]
    rate: Option<f64>,
    #[arg(long, env = "T_KEY", hide_env_values = true, value_parser = hex_key)]
    key: Option<String>,
    #[arg(long, env = "T_MODE", value_parser = ["fast", "slow"])]
    mode: Option<String>,
    #[command(subcommand)]
    sub: Option<Sub>,
}

#[derive(Subcommand, Debug)]
enum Sub {
    Watch {
        #[arg(long, env = "T_DEPTH", value_parser = crate::cli::whole::<u64>(1, 9), allow_negative_numbers = true)]
        depth: Option<u64>,
    },
}

/// The one line for `argv`'s error when the environment holds `vars`. Clap reads the real environment, which
/// a test cannot set safely beside other threads; but its error for a value is the same whichever the
/// source, so the error is made from `bad` (the value given on the command line) and the origin is worked
/// out for `argv` and `vars`.
fn line(bad: &[&str], argv: &[&str], vars: &[(&str, &str)]) -> String {
    let e = Cli::try_parse_from(bad).unwrap_err();
    let argv: Vec<OsString> = argv.iter().map(OsString::from).collect();
    let env = |var: &OsStr| {
        vars.iter()
            .find(|(k, _)| OsStr::new(k) == var)
            .map(|(_, v)| OsString::from(v))
    };
    clap_error_line(&e, &ValueOrigin::of(&Cli::command(), &e, &argv, &env))
}

#[test]
fn a_bad_value_from_the_environment_names_its_variable() {
    assert_eq!(
        line(&["t", "--rate", "-3"], &["t"], &[("T_RATE", "-3")]),
        "--rate (from T_RATE): must be a number of messages per second, 0 or more (got -3)"
    );
    assert_eq!(
        line(&["t", "--mode", "quick"], &["t"], &[("T_MODE", "quick")]),
        r#"--mode (from T_MODE): invalid value "quick"; expected one of: fast, slow"#
    );
    // A subcommand's flag, found under the subcommand the command line runs.
    assert_eq!(
        line(
            &["t", "watch", "--depth", "0"],
            &["t", "watch"],
            &[("T_DEPTH", "0")]
        ),
        "--depth (from T_DEPTH): must be from 1 to 9 (got 0)"
    );
}

#[test]
fn a_flag_on_the_command_line_wins_so_its_variable_is_not_blamed() {
    let plain = "--rate: must be a number of messages per second, 0 or more (got -3)";
    for argv in [
        &["t", "--rate", "-3"][..],
        &["t", "--rate=-3"],
        &["t", "-r", "-3"],
        &["t", "-r-3"],
    ] {
        assert_eq!(
            line(&["t", "--rate", "-3"], argv, &[("T_RATE", "-3")]),
            plain,
            "{argv:?}"
        );
    }
    // Unset, or set to another value than the one refused: not the variable's fault.
    assert_eq!(line(&["t", "--rate", "-3"], &["t"], &[]), plain);
    assert_eq!(
        line(&["t", "--rate", "-3"], &["t"], &[("T_RATE", "5")]),
        plain
    );
    // After `--` a word is an operand, not the flag.
    assert_eq!(
        line(
            &["t", "--rate", "-3"],
            &["t", "--", "--rate"],
            &[("T_RATE", "-3")]
        ),
        "--rate (from T_RATE): must be a number of messages per second, 0 or more (got -3)"
    );
}

#[test]
fn a_bad_value_of_a_secret_variable_is_never_printed() {
    // From the variable, from the command line, and padded (the parser saw it as given).
    for (bad, argv) in [
        (&["t", "--key", "s3cret-k3y"][..], &["t"][..]),
        (&["t", "--key", "s3cret-k3y"], &["t", "--key", "s3cret-k3y"]),
        (&["t", "--key", " s3cret-k3y "], &["t"]),
    ] {
        let value = bad[2];
        let l = line(bad, argv, &[("T_KEY", value)]);
        assert!(!l.contains("s3cret"), "{l}");
        assert!(l.contains("invalid value ***: "), "{l}");
        assert!(l.ends_with("is not 8 hex digits"), "{l}");
    }
    assert_eq!(
        line(
            &["t", "--key", "s3cret-k3y"],
            &["t"],
            &[("T_KEY", "s3cret-k3y")]
        ),
        r#"--key (from T_KEY): invalid value ***: "***" is not 8 hex digits"#
    );
}
