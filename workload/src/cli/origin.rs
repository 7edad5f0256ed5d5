//! Where the value a clap error is about came from: the user who set `PRODUCER_RATE=-3` and gave no --rate
//! was told only "--rate: must be …", and looked for a flag they never typed.

use std::ffi::{OsStr, OsString};

use clap::Command;
use clap::error::{ContextKind, ContextValue};

/// What the error line needs to know about the value a clap error is about.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct ValueOrigin {
    /// The environment variable the value was read from: the flag has one, it is set to that value, and the
    /// flag is not on the command line (a value there wins over the variable, so the variable was not used).
    pub(crate) var: Option<String>,
    /// The flag hides its variable's value from `--help` (`hide_env_values`: a key, a token, a URL that may
    /// carry a password), so the error must not print the value either.
    pub(crate) secret: bool,
}

impl ValueOrigin {
    /// The origin of the value `e` is about, for the command `cmd` run as `argv` (program name first) with
    /// the environment `env`. Nothing is known (the default) for an error about no flag's value.
    pub(crate) fn of(
        cmd: &Command,
        e: &clap::Error,
        argv: &[OsString],
        env: &dyn Fn(&OsStr) -> Option<OsString>,
    ) -> ValueOrigin {
        let (Some(flag), Some(value)) = (flag_of(e), context(e, ContextKind::InvalidValue)) else {
            return ValueOrigin::default();
        };
        let Some(arg) = find_arg(cmd, argv, &flag) else {
            return ValueOrigin::default();
        };
        let var = arg.get_env().filter(|var| {
            // Contains, not equals: a variable split at a value delimiter is reported one part at a time.
            !on_command_line(arg, argv)
                && env(var)
                    .is_some_and(|v| !value.is_empty() && v.to_string_lossy().contains(&value))
        });
        ValueOrigin {
            var: var.map(|v| v.to_string_lossy().into_owned()),
            secret: arg.is_hide_env_values_set(),
        }
    }
}

/// A string from the error's context.
pub(super) fn context(e: &clap::Error, kind: ContextKind) -> Option<String> {
    match e.get(kind) {
        Some(ContextValue::String(s)) => Some(s.clone()),
        _ => None,
    }
}

/// The flag the error is about as clap names it: "--rate <MSGS_PER_S>" names "--rate". A positional
/// argument ("<FILE>") keeps its whole name.
pub(super) fn flag_of(e: &clap::Error) -> Option<String> {
    context(e, ContextKind::InvalidArg).map(|a| match a.split_once(' ') {
        Some((flag, _)) if flag.starts_with('-') => flag.to_string(),
        _ => a,
    })
}

/// The argument `flag` (`--rate`, `-r`) names, in the subcommand `argv` runs (or a command above it, where
/// global flags live).
fn find_arg<'a>(cmd: &'a Command, argv: &[OsString], flag: &str) -> Option<&'a clap::Arg> {
    let mut path = vec![cmd];
    for word in argv.iter().skip(1).take_while(|w| *w != "--") {
        if let Some(sub) = path.last().and_then(|c| c.find_subcommand(word)) {
            path.push(sub);
        }
    }
    let names = |a: &clap::Arg| {
        if let Some(long) = flag.strip_prefix("--") {
            a.get_long() == Some(long) || a.get_all_aliases().unwrap_or_default().contains(&long)
        } else {
            let mut short = flag.strip_prefix('-').unwrap_or_default().chars();
            match (short.next(), short.next()) {
                (Some(c), None) => {
                    a.get_short() == Some(c)
                        || a.get_all_short_aliases().unwrap_or_default().contains(&c)
                }
                _ => false,
            }
        }
    };
    path.iter()
        .rev()
        .find_map(|c| c.get_arguments().find(|a| names(a)))
}

/// Whether `argv` gives `arg` itself: `--rate 5`, `--rate=5`, an alias, `-r5` or `-vr 5`. A word that merely
/// looks like one (a value such as `-rx`) counts too: then the variable is not blamed, as before.
fn on_command_line(arg: &clap::Arg, argv: &[OsString]) -> bool {
    let mut longs: Vec<&str> = arg.get_long().into_iter().collect();
    longs.extend(arg.get_all_aliases().unwrap_or_default());
    let mut shorts: Vec<char> = arg.get_short().into_iter().collect();
    shorts.extend(arg.get_all_short_aliases().unwrap_or_default());
    argv.iter()
        .skip(1)
        .take_while(|w| *w != "--")
        .map(|w| w.to_string_lossy())
        .any(|w| {
            if let Some(long) = w.strip_prefix("--") {
                let name = long.split_once('=').map_or(long, |(name, _)| name);
                longs.contains(&name)
            } else if let Some(cluster) = w.strip_prefix('-') {
                cluster.chars().any(|c| shorts.contains(&c))
            } else {
                false
            }
        })
}

#[cfg(test)]
mod tests;
