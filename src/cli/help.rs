//! An example for every verb's `--help` (clap's `after_help`), kept here in one table
//! so the verb definitions stay short; [`command`] is the CLI with them attached, used
//! by `main` to parse and by `completions`/`man` to generate.

use clap::CommandFactory;

/// `(verb, example)`: shown after the options of `minifargate VERB --help`.
const EXAMPLES: &[(&str, &str)] = &[
    (
        "pull",
        "minifargate pull public.ecr.aws/docker/library/busybox:1.36\n  \
         minifargate pull --platform linux/arm64 123456789012.dkr.ecr.us-east-1.amazonaws.com/web:1.2",
    ),
    ("images", "minifargate images --format json"),
    (
        "rmi",
        "minifargate rmi public.ecr.aws/docker/library/busybox:1.36",
    ),
    (
        "load",
        "minifargate load --input busybox.tar --tag busybox:local",
    ),
    ("prune", "minifargate prune"),
    ("serve", "minifargate serve --listen 127.0.0.1:8080"),
    (
        "exec",
        "minifargate exec 4f2c1e0d --container web -- sh -c 'id; hostname'\n  \
         minifargate exec 4f2c1e0d --container web --interactive --tty -- sh",
    ),
    (
        "inspect",
        "minifargate inspect 4f2c1e0d\n  \
         minifargate inspect 4f2c1e0d --format json",
    ),
    (
        "rootfs",
        "minifargate rootfs mount busybox:1.36 /mnt/c1 --state /tmp/c1\n  \
         minifargate rootfs umount /mnt/c1",
    ),
    (
        "validate",
        "minifargate validate examples/web.json --launch-type FARGATE",
    ),
    (
        "register-task-definition",
        "minifargate register-task-definition --cli-input-json file://examples/hello.json",
    ),
    (
        "describe-task-definition",
        "minifargate describe-task-definition --task-definition hello:1 --include TAGS",
    ),
    (
        "list-task-definitions",
        "minifargate list-task-definitions --family-prefix hello --sort DESC",
    ),
    (
        "list-task-definition-families",
        "minifargate list-task-definition-families --status ACTIVE",
    ),
    (
        "deregister-task-definition",
        "minifargate deregister-task-definition --task-definition hello:1",
    ),
    (
        "run-task",
        "minifargate run-task --task-definition hello\n  \
         minifargate run-task --task-definition file://examples/limits.json --timeline",
    ),
    (
        "run",
        "minifargate run public.ecr.aws/docker/library/busybox:1.36 -- echo hello",
    ),
    (
        "describe-tasks",
        "minifargate describe-tasks --tasks 0f3c2a9b8e5d4c1a --include TAGS",
    ),
    (
        "list-tasks",
        "minifargate list-tasks --cluster default --desired-status STOPPED",
    ),
    (
        "stop-task",
        "minifargate stop-task --task 0f3c2a9b8e5d4c1a --reason deploying-v2",
    ),
    (
        "logs",
        "minifargate logs 0f3c2a9b8e5d4c1a --follow --since 10m",
    ),
    ("timeline", "minifargate timeline 0f3c2a9b8e5d4c1a"),
    (
        "create-cluster",
        "minifargate create-cluster --cluster-name dev",
    ),
    ("list-clusters", "minifargate list-clusters"),
    (
        "describe-clusters",
        "minifargate describe-clusters --clusters default dev",
    ),
    ("delete-cluster", "minifargate delete-cluster --cluster dev"),
    (
        "system",
        "minifargate system info\n  minifargate system info --format json\n  \
         minifargate system reset --force",
    ),
    (
        "completions",
        "minifargate completions bash > /etc/bash_completion.d/minifargate",
    ),
    ("man", "minifargate man --dir /usr/local/share/man/man1"),
];

/// The example for `verb`, if it has one.
pub fn example(verb: &str) -> Option<&'static str> {
    EXAMPLES.iter().find(|(v, _)| *v == verb).map(|(_, e)| *e)
}

/// The whole CLI (`clap::Command`) with every verb's example attached.
pub fn command() -> clap::Command {
    let mut cmd = super::Cli::command();
    let verbs: Vec<String> = cmd
        .get_subcommands()
        .map(|s| s.get_name().to_string())
        .collect();
    for verb in verbs {
        if let Some(ex) = example(&verb) {
            cmd = cmd.mut_subcommand(verb, |s| s.after_help(format!("Example:\n  {ex}")));
        }
    }
    cmd
}

/// Parses the process arguments like `Cli::parse`, with the examples in `--help`.
pub fn parse() -> super::Cli {
    use clap::FromArgMatches;
    if let Some(cli) = parse_supervisor(std::env::args_os()) {
        return cli;
    }
    let matches = command().get_matches();
    super::Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

/// The command line of a task's supervisor (`launch::spawn_supervisor` writes it), parsed
/// with only the arguments it can have: building the whole CLI first (every verb, its
/// arguments and help text) costs a start of every task ~1 ms of CPU and leaves that
/// heap, fragmented, in a process that lives as long as the task. `None` for anything
/// else, which the full parser then takes (and reports errors for).
fn parse_supervisor<I>(args: I) -> Option<super::Cli>
where
    I: IntoIterator<Item = std::ffi::OsString>,
{
    #[derive(clap::Parser)]
    #[command(name = "minifargate")]
    struct SupervisorCli {
        #[command(flatten)]
        global: super::GlobalOpts,
        #[command(subcommand)]
        command: SupervisorVerb,
    }
    #[derive(clap::Subcommand)]
    enum SupervisorVerb {
        Supervise(crate::supervisor::SuperviseArgs),
    }
    use clap::Parser;
    let args: Vec<std::ffi::OsString> = args.into_iter().collect();
    if !args.iter().skip(1).any(|a| a == "supervise") {
        return None;
    }
    let SupervisorCli { global, command } = SupervisorCli::try_parse_from(args).ok()?;
    let SupervisorVerb::Supervise(a) = command;
    Some(super::Cli {
        global,
        command: super::Command::Supervise(a),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_supervisor_command_line_takes_the_short_path_and_nothing_else_does() {
        use clap::FromArgMatches;
        let os = |v: &[&str]| v.iter().map(std::ffi::OsString::from).collect::<Vec<_>>();
        // As launch::spawn_supervisor writes it.
        let line = [
            "minifargate",
            "--root",
            "/r",
            "--run-root",
            "/rr",
            "--log-level",
            "info",
            "supervise",
            "--task-id",
            "abc",
            "--pull",
            "never",
        ];
        let fast = parse_supervisor(os(&line)).expect("the supervisor's own line");
        let full = crate::cli::Cli::from_arg_matches(&command().get_matches_from(line)).unwrap();
        assert_eq!(format!("{fast:?}"), format!("{full:?}"));
        // A command that merely has the word in it goes to the full parser.
        assert!(
            parse_supervisor(os(&["minifargate", "run", "busybox", "--", "supervise"])).is_none()
        );
        assert!(parse_supervisor(os(&["minifargate", "supervise", "--bogus"])).is_none());
        assert!(parse_supervisor(os(&["minifargate", "images"])).is_none());
    }

    #[test]
    fn every_visible_verb_has_an_example_in_its_help() {
        let mut cmd = command();
        let missing: Vec<String> = cmd
            .get_subcommands()
            .filter(|s| !s.is_hide_set() || example(s.get_name()).is_some())
            .filter(|s| s.get_after_help().is_none())
            .map(|s| s.get_name().to_string())
            .collect();
        assert!(
            missing.is_empty(),
            "verbs without an example in src/cli/help.rs: {missing:?}"
        );
        let help = cmd
            .find_subcommand_mut("run-task")
            .unwrap()
            .render_long_help()
            .to_string();
        assert!(help.contains("Example:\n  minifargate run-task --task-definition hello"));
    }

    #[test]
    fn examples_name_existing_verbs() {
        let cmd = command();
        for (verb, ex) in EXAMPLES {
            assert!(cmd.find_subcommand(verb).is_some(), "{verb} is not a verb");
            assert!(
                ex.starts_with(&format!("minifargate {verb}")),
                "{verb}: {ex}"
            );
        }
    }

    #[test]
    fn every_example_parses() {
        for (verb, ex) in EXAMPLES {
            for line in ex.lines() {
                let line = line.split('>').next().unwrap();
                let args: Vec<&str> = line.split_whitespace().collect();
                if let Err(e) = command().try_get_matches_from(&args) {
                    panic!("example of {verb} does not parse: {line}\n{e}");
                }
            }
        }
    }
}
