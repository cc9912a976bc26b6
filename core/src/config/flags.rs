//! The command line of a configuration: `--config FILE`, the declaration's common flags
//! (`#[key(flag = "…")]`), and `--set section.key=value` for every other key.

use super::{layer, ConfigError, Section, Source, Sources};
use clap::{Arg, ArgAction, ArgMatches, Args, Command, FromArgMatches};
use std::marker::PhantomData;
use std::path::PathBuf;

/// A binary's root configuration: a [`Section`] with relations between keys to check.
pub trait ConfigCommand: Section {
    /// The first lines of `print-config` output (what the file is, how to use it).
    const TITLE: &'static str;
    /// Checks what single-key ranges cannot (e.g. a window that is a multiple of the sample
    /// interval); the error names the key, its value and what is allowed.
    fn check(&self) -> Result<(), ConfigError>;
}

/// The configuration sources given on a command line; parsed by clap from the declaration.
#[derive(Debug, Clone)]
pub struct ConfigArgs<C> {
    /// `--config FILE`.
    pub file: Option<PathBuf>,
    /// `--watch-config`: reload when the file changes (besides SIGHUP; see [`super::reload`]).
    pub watch: bool,
    /// Common flags (in declaration order), then `--set` values (in command-line order).
    pub overrides: Vec<(String, String, Source)>,
    /// The control plane's remote configuration, layered over the file (live keys only).
    pub remote: Option<super::Remote>,
    config: PhantomData<fn() -> C>,
}

impl<C> Default for ConfigArgs<C> {
    fn default() -> Self {
        ConfigArgs {
            file: None,
            watch: false,
            overrides: Vec::new(),
            remote: None,
            config: PhantomData,
        }
    }
}

impl<C: ConfigCommand> ConfigArgs<C> {
    /// Args with `file` and `--set`-style `overrides` (for programs that build a command line).
    pub fn new(file: Option<PathBuf>, sets: &[(&str, &str)]) -> Self {
        ConfigArgs {
            file,
            watch: false,
            overrides: sets
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string(), Source::Set))
                .collect(),
            remote: None,
            config: PhantomData,
        }
    }

    /// The sources: the file, the remote configuration, the environment, then the command line.
    pub fn sources(&self) -> Sources {
        Sources {
            file: self.file.clone(),
            env: true,
            overrides: self.overrides.clone(),
            remote: self.remote.clone(),
        }
    }

    /// The effective, checked configuration (see [`layer::load`] and [`ConfigCommand::check`]).
    pub fn load(&self) -> Result<C, ConfigError> {
        let config: C = layer::load(&self.sources())?;
        config.check()?;
        Ok(config)
    }

    /// `validate`: `Ok` with a one-line summary, or the first error.
    pub fn validate(&self) -> Result<String, ConfigError> {
        self.load()?;
        Ok(match &self.file {
            Some(f) => format!("{}: configuration is valid", f.display()),
            None => "configuration (defaults, environment, flags) is valid".into(),
        })
    }

    /// `print-config`: the effective configuration as commented TOML.
    pub fn print_config(&self) -> Result<String, ConfigError> {
        Ok(super::render_toml(&self.load()?, C::TITLE))
    }
}

impl<C: Section> FromArgMatches for ConfigArgs<C> {
    fn from_arg_matches(m: &ArgMatches) -> Result<Self, clap::Error> {
        let mut args = ConfigArgs::default();
        args.update_from_arg_matches(m)?;
        Ok(args)
    }

    fn update_from_arg_matches(&mut self, m: &ArgMatches) -> Result<(), clap::Error> {
        self.file = m.get_one::<PathBuf>("config").cloned();
        self.watch = m.get_flag("watch-config");
        self.overrides.clear();
        for k in C::keys() {
            let Some(flag) = k.flag else { continue };
            for v in m.get_many::<String>(flag).into_iter().flatten() {
                self.overrides
                    .push((k.path.clone(), v.clone(), Source::Flag(flag)));
            }
        }
        for s in m.get_many::<String>("set").into_iter().flatten() {
            let (k, v) = s.split_once('=').ok_or_else(|| {
                clap::Error::raw(
                    clap::error::ErrorKind::InvalidValue,
                    format!("--set {s:?}: expected section.key=value\n"),
                )
            })?;
            self.overrides
                .push((k.trim().to_string(), v.to_string(), Source::Set));
        }
        Ok(())
    }
}

impl<C: Section> Args for ConfigArgs<C> {
    fn augment_args(cmd: Command) -> Command {
        let defaults = toml::Table::try_from(C::default()).unwrap_or_default();
        let mut cmd = cmd
            .arg(
                Arg::new("config")
                    .long("config")
                    .value_name("FILE")
                    .value_parser(clap::value_parser!(PathBuf))
                    .help("TOML configuration file (see `print-config` for every key)"),
            )
            .arg(
                Arg::new("watch-config")
                    .long("watch-config")
                    .action(ArgAction::SetTrue)
                    .help("Reload the configuration when the --config file changes (as on SIGHUP: invalid → the running configuration stays; `print-config` says which keys apply live)"),
            )
            .arg(
                Arg::new("set")
                    .long("set")
                    .value_name("KEY=VALUE")
                    .action(ArgAction::Append)
                    .help("Set any configuration key as `section.key=value` (repeatable; wins over flags, environment and file; `print-config` lists every key)"),
            );
        for k in C::keys() {
            let Some(flag) = k.flag else { continue };
            let default = (!k.secret)
                .then(|| super::render::lookup(&defaults, &k.path))
                .flatten();
            let help = match default {
                Some(d) if !d.as_table().is_some_and(|t| t.is_empty()) => {
                    format!("{} [key {}; default: {d}]", k.doc, k.path)
                }
                _ => format!("{} [key {}]", k.doc, k.path),
            };
            cmd = cmd.arg(
                Arg::new(flag)
                    .long(flag)
                    .value_name(match (k.map, k.unit) {
                        (true, _) => "KEY=VALUE",
                        (false, "duration") => "DURATION",
                        _ => "VALUE",
                    })
                    .action(if k.map {
                        ArgAction::Append
                    } else {
                        ArgAction::Set
                    })
                    .help(help),
            );
        }
        cmd
    }

    fn augment_args_for_update(cmd: Command) -> Command {
        Self::augment_args(cmd)
    }
}
