//! Flags, `LUCID_*` environment variables and `--config FILE` through one parser: the file's
//! keys are the flag names with `_` (`app_port = 8080`, `join = ["http://a:8500"]`), turned
//! into flags placed before the real ones, so every value gets clap's checks whichever way it
//! came. Precedence: flag, then environment, then the file, then the default. Unknown keys
//! are an error.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::{ArgAction, CommandFactory, FromArgMatches};

/// Why the configuration could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A flag, variable or file value clap refused (its message names the flag).
    #[error("{0}")]
    Args(#[from] clap::Error),
    #[error("--config {path}: {reason}")]
    File { path: String, reason: String },
}

/// Parse `args` (the program name first) into `C`, reading `--config FILE` (or the `config`
/// argument's environment variable) as defaults.
pub fn load<C: CommandFactory + FromArgMatches>(args: Vec<OsString>) -> Result<C, ConfigError> {
    let cmd = C::command();
    let env = cmd
        .get_arguments()
        .find(|a| a.get_long() == Some("config"))
        .and_then(|a| a.get_env().map(OsString::from));
    let mut all: Vec<OsString> = args.iter().take(1).cloned().collect();
    if let Some(path) = config_path(&args, env.as_deref()) {
        all.extend(file_args(&cmd, &path, &args)?);
    }
    all.extend(args.into_iter().skip(1));
    let matches = cmd.try_get_matches_from(all)?;
    Ok(C::from_arg_matches(&matches)?)
}

/// A clap value parser for counts that must be at least 1 (connection and query caps).
pub fn positive_count(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".to_owned()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

/// The value of `--config` / `--config=` in `args`, else the variable `env`.
fn config_path(args: &[OsString], env: Option<&std::ffi::OsStr>) -> Option<PathBuf> {
    let mut it = args.iter().skip(1);
    while let Some(a) = it.next() {
        let a = a.to_string_lossy();
        if a == "--config" {
            return it.next().map(PathBuf::from);
        }
        if let Some(v) = a.strip_prefix("--config=") {
            return Some(PathBuf::from(v));
        }
    }
    env.and_then(std::env::var_os).map(PathBuf::from)
}

/// The file's settings as flags. A key also given as a flag is left to the flag (lists too:
/// they would otherwise append), and a key whose environment variable is set is left to the
/// variable. `key = true` is the bare flag for switches, and `false` leaves it off.
fn file_args(
    cmd: &clap::Command,
    path: &Path,
    cli: &[OsString],
) -> Result<Vec<OsString>, ConfigError> {
    let bad = |reason: String| ConfigError::File {
        path: path.display().to_string(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    let table: toml::Table = toml::from_str(&text).map_err(|e| bad(e.to_string()))?;
    let mut out = Vec::new();
    for (key, value) in table {
        let long = key.replace('_', "-");
        let Some(arg) = cmd
            .get_arguments()
            .find(|a| a.get_long() == Some(long.as_str()))
            .filter(|_| long != "config")
        else {
            return Err(bad(format!(
                "unknown key {key:?} ({} --help lists them)",
                cmd.get_name()
            )));
        };
        let flag = format!("--{long}");
        let on_cli = cli.iter().any(|a| {
            let a = a.to_string_lossy();
            a == flag.as_str() || a.starts_with(&format!("{flag}="))
        });
        if on_cli || arg.get_env().is_some_and(|e| std::env::var_os(e).is_some()) {
            continue;
        }
        if matches!(arg.get_action(), ArgAction::SetTrue) {
            match value {
                toml::Value::Boolean(true) => out.push(OsString::from(&flag)),
                toml::Value::Boolean(false) => {}
                other => return Err(bad(format!("{key}: a {}, not a bool", other.type_str()))),
            }
            continue;
        }
        let scalar = |v: &toml::Value| match v {
            toml::Value::String(s) => Ok(s.clone()),
            toml::Value::Integer(i) => Ok(i.to_string()),
            toml::Value::Float(f) => Ok(f.to_string()),
            toml::Value::Boolean(b) => Ok(b.to_string()),
            other => Err(bad(format!(
                "{key}: a {} is not a string, number or bool",
                other.type_str()
            ))),
        };
        let values = match &value {
            toml::Value::Array(list) => list.iter().map(scalar).collect::<Result<Vec<_>, _>>()?,
            v => vec![scalar(v)?],
        };
        for v in values {
            out.push(OsString::from(&flag));
            out.push(OsString::from(v));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    #[command(name = "t")]
    struct T {
        #[arg(long)]
        name: String,
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=9))]
        n: u16,
        #[arg(long, value_delimiter = ',')]
        list: Vec<String>,
        #[arg(long)]
        on: bool,
        #[arg(long)]
        config: Option<PathBuf>,
    }

    fn args(a: &[&str]) -> Vec<OsString> {
        std::iter::once("t")
            .chain(a.iter().copied())
            .map(OsString::from)
            .collect()
    }

    #[test]
    fn the_file_gives_defaults_and_flags_win() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("t.toml");
        let path = f.to_str().expect("utf-8");
        std::fs::write(
            &f,
            "name = \"a\"\nn = 3\nlist = [\"x\", \"y\"]\non = true\n",
        )
        .expect("write");
        let t: T = load(args(&["--config", path])).expect("load");
        assert_eq!((t.name.as_str(), t.n, t.on), ("a", 3, true));
        assert_eq!(t.list, ["x", "y"]);
        let t: T = load(args(&["--config", path, "--n=4", "--list", "z"])).expect("load");
        assert_eq!(t.n, 4, "the flag wins");
        assert_eq!(t.list, ["z"], "a list flag replaces the file's list");
        std::fs::write(&f, "name = \"a\"\non = false\n").expect("write");
        let t: T = load(args(&[&format!("--config={path}")])).expect("load");
        assert!(!t.on);
    }

    #[test]
    fn file_values_get_the_flags_checks_and_unknown_keys_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("t.toml");
        let path = f.to_str().expect("utf-8");
        for (text, needle) in [
            ("name = \"a\"\nn = 10\n", "--n"),
            ("name = \"a\"\nnmae = 1\n", "nmae"),
            ("name = \"a\"\non = \"yes\"\n", "on"),
            ("name = \"a\"\nconfig = \"x\"\n", "config"),
            ("name = [\n", "--config"),
        ] {
            std::fs::write(&f, text).expect("write");
            let e = load::<T>(args(&["--config", path])).expect_err(text);
            assert!(e.to_string().contains(needle), "{text}: {e}");
        }
        let e = load::<T>(args(&["--config", "/nonexistent/t.toml"])).expect_err("missing");
        assert!(e.to_string().contains("/nonexistent/t.toml"), "{e}");
    }
}
