//! An example for every verb's `--help` (clap's `after_help`), kept here in one table
//! so the verb definitions stay short; [`command`] is the CLI with them attached, used
//! by `main` to parse and by `completions`/`man` to generate. Also the exit statuses,
//! environment and files the help and the man pages document, and the man pages.

use clap::CommandFactory;

/// `(verb, example)`: shown after the options of `minifargate VERB --help`.
const EXAMPLES: &[(&str, &str)] = &[
    (
        "pull",
        "minifargate pull public.ecr.aws/docker/library/busybox:1.36\n  \
         minifargate pull --platform linux/arm64 123456789012.dkr.ecr.us-east-1.amazonaws.com/web:1.2",
    ),
    ("images", "minifargate images --output json"),
    (
        "rmi",
        "minifargate rmi public.ecr.aws/docker/library/busybox:1.36",
    ),
    (
        "load",
        "minifargate load --input busybox.tar --tag busybox:local",
    ),
    (
        "push",
        "minifargate push web.tar 000000000000.dkr.ecr.us-east-1.amazonaws.com/web:v1\n  \
         minifargate push --password-stdin --ca-cert ca.crt oci-archive:web.tar \
         10.0.0.5:8080/web:v1",
    ),
    ("prune", "minifargate prune"),
    ("serve", "minifargate serve --listen 127.0.0.1:8080"),
    (
        "agent",
        "minifargate agent --cluster https://10.0.0.1:2379 --etcd-certs \
         /etc/minifargate/cluster/boxes/box1 --attribute color=blue",
    ),
    (
        "cluster",
        "minifargate cluster init --etcd-host 10.0.0.1\n  \
         minifargate cluster add-box box1\n  \
         minifargate cluster enable-auth --cluster https://10.0.0.1:2379",
    ),
    (
        "exec",
        "minifargate exec 4f2c1e0d --container web -- sh -c 'id; hostname'\n  \
         minifargate exec 4f2c1e0d --container web --interactive --tty -- sh",
    ),
    (
        "inspect",
        "minifargate inspect 4f2c1e0d\n  \
         minifargate inspect 4f2c1e0d --output json",
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
        "minifargate list-tasks --cluster default --desired-status STOPPED --output text",
    ),
    (
        "stop-task",
        "minifargate stop-task --task 0f3c2a9b8e5d4c1a --reason deploying-v2",
    ),
    (
        "logs",
        "minifargate logs 0f3c2a9b8e5d4c1a --follow --since 10m",
    ),
    (
        "create-log-group",
        "minifargate create-log-group --log-group-name /ecs/web",
    ),
    (
        "describe-log-groups",
        "minifargate describe-log-groups --log-group-name-prefix /ecs/ --query 'logGroups[].logGroupName'",
    ),
    (
        "delete-log-group",
        "minifargate delete-log-group --log-group-name /ecs/web",
    ),
    (
        "put-retention-policy",
        "minifargate put-retention-policy --log-group-name /ecs/web --retention-in-days 7",
    ),
    (
        "tail",
        "minifargate tail /ecs/web --follow --since 1h --format short",
    ),
    ("timeline", "minifargate timeline 0f3c2a9b8e5d4c1a"),
    (
        "create-cluster",
        "minifargate create-cluster --cluster-name dev",
    ),
    ("list-clusters", "minifargate list-clusters"),
    (
        "elbv2",
        "minifargate elbv2 create-target-group --name web --protocol HTTP --port 80 --target-type ip\n  \
         minifargate elbv2 describe-load-balancers --query 'LoadBalancers[].DNSName' --output text\n  \
         minifargate elbv2 create-listener --help",
    ),
    (
        "servicediscovery",
        "minifargate servicediscovery create-private-dns-namespace --name local --vpc vpc-1\n  \
         minifargate servicediscovery discover-instances --namespace-name local --service-name web",
    ),
    (
        "describe-clusters",
        "minifargate describe-clusters --clusters default dev",
    ),
    ("delete-cluster", "minifargate delete-cluster --cluster dev"),
    (
        "create-service",
        "minifargate create-service --service-name web --task-definition web:3 --desired-count 2\n  \
         minifargate create-service --cli-input-json file://service.json",
    ),
    (
        "update-service",
        "minifargate update-service --service web --desired-count 0\n  \
         minifargate update-service --service web --task-definition web:4 \
         --deployment-configuration maximumPercent=200,minimumHealthyPercent=50",
    ),
    (
        "describe-services",
        "minifargate describe-services --services web --query 'services[].deployments[].rolloutState'",
    ),
    (
        "list-services",
        "minifargate list-services --cluster default --output text",
    ),
    (
        "delete-service",
        "minifargate delete-service --service web --force",
    ),
    (
        "tag-resource",
        "minifargate tag-resource --resource-arn arn:aws:ecs:us-east-1:000000000000:cluster/dev \
         --tags key=team,value=core",
    ),
    (
        "untag-resource",
        "minifargate untag-resource --resource-arn arn:aws:ecs:us-east-1:000000000000:cluster/dev \
         --tag-keys team",
    ),
    (
        "list-tags-for-resource",
        "minifargate list-tags-for-resource --resource-arn \
         arn:aws:ecs:us-east-1:000000000000:cluster/dev --output table",
    ),
    (
        "update-task-protection",
        "minifargate update-task-protection --cluster default --tasks 4f2c1e0d \
         --protection-enabled --expires-in-minutes 60",
    ),
    (
        "get-task-protection",
        "minifargate get-task-protection --tasks 4f2c1e0d --output table",
    ),
    (
        "list-account-settings",
        "minifargate list-account-settings --effective-settings",
    ),
    (
        "put-account-setting",
        "minifargate put-account-setting --name containerInsights --value enabled",
    ),
    (
        "put-account-setting-default",
        "minifargate put-account-setting-default --name containerInsights --value enabled",
    ),
    (
        "start-task",
        "minifargate start-task --cluster default --task-definition web:3 \
         --container-instances CONTAINER_INSTANCE_ARN",
    ),
    (
        "delete-task-definitions",
        "minifargate delete-task-definitions --task-definitions web:1 web:2",
    ),
    (
        "list-container-instances",
        "minifargate list-container-instances --cluster default",
    ),
    (
        "describe-container-instances",
        "minifargate describe-container-instances --cluster default --container-instances CONTAINER_INSTANCE_ARN \
         --query 'containerInstances[].remainingResources'",
    ),
    (
        "update-cluster",
        "minifargate update-cluster --cluster dev --settings name=containerInsights,value=enabled",
    ),
    (
        "update-cluster-settings",
        "minifargate update-cluster-settings --cluster dev --settings name=containerInsights,value=enabled",
    ),
    (
        "put-cluster-capacity-providers",
        "minifargate put-cluster-capacity-providers --cluster dev --capacity-providers FARGATE \
         FARGATE_SPOT --default-capacity-provider-strategy capacityProvider=FARGATE,weight=1",
    ),
    (
        "describe-capacity-providers",
        "minifargate describe-capacity-providers --capacity-providers FARGATE FARGATE_SPOT",
    ),
    (
        "list-services-by-namespace",
        "minifargate list-services-by-namespace --namespace my-namespace",
    ),
    (
        "list-service-deployments",
        "minifargate list-service-deployments --service web --status IN_PROGRESS",
    ),
    (
        "describe-service-deployments",
        "minifargate describe-service-deployments --service-deployment-arns \
         arn:aws:ecs:us-east-1:000000000000:service-deployment/default/web/r9i43YFjvgF_xlg7m2eJ1r",
    ),
    (
        "stop-service-deployment",
        "minifargate stop-service-deployment --stop-type ROLLBACK --service-deployment-arn \
         arn:aws:ecs:us-east-1:000000000000:service-deployment/default/web/r9i43YFjvgF_xlg7m2eJ1r",
    ),
    (
        "describe-service-revisions",
        "minifargate describe-service-revisions --service-revision-arns \
         arn:aws:ecs:us-east-1:000000000000:service-revision/default/web/4980306466373577095",
    ),
    (
        "execute-command",
        "minifargate execute-command --task 4f2c1e0d --container web --interactive \
         --command \"sh -c 'id; hostname'\"",
    ),
    (
        "system",
        "minifargate system info\n  minifargate system info --output json\n  \
         minifargate system reset --force",
    ),
    (
        "completions",
        "minifargate completions bash > /etc/bash_completion.d/minifargate",
    ),
    ("man", "minifargate man --dir /usr/local/share/man/man1"),
];

/// What the exit status means: `minifargate --help`, every man page and docs/cli.md.
pub const EXIT_STATUS: &[(&str, &str)] = &[
    ("0", "Success."),
    (
        "1",
        "The verb failed: an ECS error (e.g. ClusterNotFoundException), a task\n\
         definition `validate` finds invalid, a registry, network or system failure.",
    ),
    (
        "2",
        "The command line is wrong: an unknown verb or option, a bad value,\n\
         invalid --cli-input-json, shorthand or --query, a member ECS does not\n\
         have, a required member missing.",
    ),
    (
        "other",
        "run-task and run (attached): the essential container's exit code;\n\
         exec, execute-command: the command's (126: could not run it, 127: not found).",
    ),
];

/// The files minifargate uses.
pub const FILES: &[(&str, &str)] = &[
    (
        "/var/lib/minifargate/state.db",
        "Tasks, task definitions, clusters, services (SQLite).",
    ),
    ("/var/lib/minifargate/blobs, layers", "The image cache."),
    (
        "/var/lib/minifargate/tasks/ID",
        "A task's overlay dirs and container logs.",
    ),
    ("/run/minifargate", "Sockets, locks, netns mounts."),
    (
        "/etc/minifargate/config.toml",
        "Registry mirrors and insecure registries (--config).",
    ),
    (
        "~/.docker/config.json",
        "Registry logins (as docker login writes them).",
    ),
];

fn exit_status_text() -> String {
    let mut t = String::from("Exit status:\n");
    for (code, what) in EXIT_STATUS {
        // Pre-wrapped lines, indented under the first (clap wraps without a hanging indent).
        t.push_str(&format!(
            "  {code:<6} {}\n",
            what.replace('\n', "\n         ")
        ));
    }
    t
}

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
    cmd.after_help(exit_status_text().trim_end().to_string())
}

/// `.SH NAME` with `.TP` items, escaped for roff.
fn roff_section(title: &str, items: &[(&str, &str)]) -> String {
    let esc = |s: &str| {
        s.replace('\\', "\\e")
            .replace('-', "\\-")
            .replace('\n', " ")
    };
    let mut t = format!(".SH \"{title}\"\n");
    for (k, v) in items {
        t.push_str(&format!(".TP\n\\fB{}\\fR\n{}\n", esc(k), esc(v)));
    }
    t
}

/// The CLI as shells complete it: without the internal `supervise` verb (the generators
/// offer hidden verbs too).
pub fn completion_command() -> clap::Command {
    let full = command();
    clap::Command::new("minifargate")
        .args(full.get_arguments().cloned())
        .subcommands(full.get_subcommands().filter(|s| !s.is_hide_set()).cloned())
}

/// Every man page: `minifargate.1` and one `minifargate-VERB.1` per visible verb (and
/// `minifargate-system-info.1` for nested ones), as `(file name, roff)`. Each has EXIT
/// STATUS, ENVIRONMENT and FILES, and names in SEE ALSO only pages in this list.
pub fn man_pages() -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let mut cmd = command().disable_help_subcommand(true);
    cmd.build();
    let mut pages = Vec::new();
    fn walk(
        cmd: &clap::Command,
        parent: Option<&str>,
        pages: &mut Vec<(String, Vec<u8>)>,
    ) -> anyhow::Result<()> {
        let name = cmd
            .get_display_name()
            .unwrap_or_else(|| cmd.get_name())
            .to_string();
        let man = clap_mangen::Man::new(cmd.clone());
        let mut out = Vec::new();
        man.render_title(&mut out)?;
        man.render_name_section(&mut out)?;
        man.render_synopsis_section(&mut out)?;
        man.render_description_section(&mut out)?;
        if cmd.get_arguments().any(|a| !a.is_hide_set()) {
            man.render_options_section(&mut out)?;
        }
        if cmd.get_subcommands().any(|s| !s.is_hide_set()) {
            man.render_subcommands_section(&mut out)?;
        }
        if cmd.get_after_help().is_some() {
            man.render_extra_section(&mut out)?;
        }
        out.extend(roff_section("EXIT STATUS", EXIT_STATUS).bytes());
        let env = crate::config::man_items();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        out.extend(roff_section("ENVIRONMENT", &env).bytes());
        out.extend(roff_section("FILES", FILES).bytes());
        if let Some(p) = parent {
            out.extend(format!(".SH \"SEE ALSO\"\n\\fB{}\\fR(1)\n", p.replace('-', "\\-")).bytes());
        }
        if parent.is_none() {
            man.render_version_section(&mut out)?;
        }
        pages.push((format!("{name}.1"), out));
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            walk(sub, Some(&name), pages)?;
        }
        Ok(())
    }
    walk(&cmd, None, &mut pages)?;
    Ok(pages)
}

/// Parses the process arguments like `Cli::parse`, with the examples in `--help`.
pub fn parse() -> super::Cli {
    use clap::FromArgMatches;
    if let Some(cli) = parse_supervisor(std::env::args_os()) {
        return cli;
    }
    if let Some(cli) = parse_launch(std::env::args_os()) {
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
    if !args
        .iter()
        .skip(1)
        .any(|a| a == crate::supervisor::protocol::VERB)
    {
        return None;
    }
    let SupervisorCli { global, command } = SupervisorCli::try_parse_from(args).ok()?;
    let SupervisorVerb::Supervise(a) = command;
    Some(super::Cli {
        global,
        command: super::Command::Supervise(a),
    })
}

/// `run-task` and `run`, parsed with only those two verbs: the whole CLI decodes the
/// ECS model (the AWS-named verbs' options come from it) and builds every verb's
/// arguments, ~2 ms of CPU before a task can start (docs/benchmarks.md, "Where the time
/// goes, 2026-11-25"). The result is the full parser's for any line this parser accepts:
/// the same global options and verb arguments, and the verb is the first positional
/// argument in both. Help, `--version`, the `help` verb and every error go to the full
/// parser (`None`), which prints them with the examples and the exit statuses.
fn parse_launch<I>(args: I) -> Option<super::Cli>
where
    I: IntoIterator<Item = std::ffi::OsString>,
{
    #[derive(clap::Parser)]
    #[command(
        name = "minifargate",
        disable_help_flag = true,
        disable_help_subcommand = true,
        disable_version_flag = true
    )]
    struct LaunchCli {
        #[command(flatten)]
        global: super::GlobalOpts,
        #[command(subcommand)]
        command: LaunchVerb,
    }
    #[derive(clap::Subcommand)]
    enum LaunchVerb {
        RunTask(Box<super::run_task::RunTaskArgs>),
        Run(Box<super::run_task::RunArgs>),
    }
    use clap::Parser;
    let args: Vec<std::ffi::OsString> = args.into_iter().collect();
    // Cheap pre-check: a line without either verb name never builds even this parser.
    if !args.iter().skip(1).any(|a| a == "run-task" || a == "run") {
        return None;
    }
    let LaunchCli { global, command } = LaunchCli::try_parse_from(args).ok()?;
    let command = match command {
        LaunchVerb::RunTask(a) => super::Command::RunTask(a),
        LaunchVerb::Run(a) => super::Command::Run(*a),
    };
    Some(super::Cli { global, command })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_supervisor_command_line_takes_the_short_path_and_nothing_else_does() {
        use clap::FromArgMatches;
        let os = |v: &[&str]| v.iter().map(std::ffi::OsString::from).collect::<Vec<_>>();
        // As launch::spawn_supervisor writes it.
        let a = crate::supervisor::SuperviseArgs {
            task_id: Some("abc".into()),
            wait_fd: None,
            pull: crate::task::PullPolicy::Never,
            secrets_file: None,
            task_credentials: crate::supervisor::TaskCredentialsFrom::Host,
            execution_credentials: crate::supervisor::ExecutionCredentialsFrom::Role,
            done_fd: None,
        };
        let mut line = os(&[
            "minifargate",
            "--root",
            "/r",
            "--run-root",
            "/rr",
            "--log-level",
            "info",
        ]);
        line.extend(a.argv());
        let fast = parse_supervisor(line.clone()).expect("the supervisor's own line");
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
    fn run_task_and_run_take_the_short_path_with_the_full_parsers_result() {
        use clap::FromArgMatches;
        let os = |v: &[&str]| v.iter().map(std::ffi::OsString::from).collect::<Vec<_>>();
        for line in [
            &["minifargate", "run-task", "--task-definition", "hello"][..],
            &[
                "minifargate",
                "--root",
                "/r",
                "--log-level",
                "debug",
                "run-task",
                "--task-definition",
                "file://td.json",
                "--count",
                "2",
                "--timeline",
                "--pull",
                "never",
                "--overrides",
                r#"{"containerOverrides":[{"name":"c","command":["true"]}]}"#,
            ],
            &[
                "minifargate",
                "run-task",
                "--task-definition",
                "run",
                "--root",
                "/x",
            ],
            &[
                "minifargate",
                "run",
                "busybox",
                "--",
                "echo",
                "run-task",
                "--help",
            ],
            &[
                "minifargate",
                "run",
                "--network",
                "none",
                "busybox",
                "--",
                "true",
            ],
        ] {
            let line = os(line);
            let fast = parse_launch(line.clone()).unwrap_or_else(|| panic!("{line:?}"));
            let full =
                crate::cli::Cli::from_arg_matches(&command().get_matches_from(line)).unwrap();
            assert_eq!(format!("{fast:?}"), format!("{full:?}"));
        }
        // Help, the version, the `help` verb, errors and other verbs: the full parser.
        for line in [
            &["minifargate", "run-task", "--help"][..],
            &["minifargate", "run", "-h"],
            &["minifargate", "--help", "run"],
            &["minifargate", "--version", "run"],
            &["minifargate", "-V", "run"],
            &["minifargate", "help", "run-task"],
            &["minifargate", "run"],
            &["minifargate", "run-task", "--bogus", "x"],
            &["minifargate", "list-tasks", "--cluster", "run"],
            &["minifargate", "--root", "run", "images"],
            &["minifargate", "images"],
        ] {
            assert!(parse_launch(os(line)).is_none(), "{line:?}");
        }
    }

    /// clap's `env` of every option, in every verb, is a `config::OPTIONS` entry with that
    /// option, and every entry is some option's `env` (docs/configuration.md).
    #[test]
    fn the_options_variables_are_the_config_tables() {
        fn walk(cmd: &clap::Command, seen: &mut Vec<(String, String)>) {
            for a in cmd.get_arguments() {
                if let (Some(env), Some(long)) = (a.get_env(), a.get_long()) {
                    seen.push((env.to_string_lossy().into_owned(), format!("--{long}")));
                }
            }
            for s in cmd.get_subcommands() {
                walk(s, seen);
            }
        }
        let mut seen = Vec::new();
        walk(&command(), &mut seen);
        seen.sort();
        seen.dedup();
        let mut want: Vec<(String, String)> = crate::config::OPTIONS
            .iter()
            .map(|(v, o)| (v.name.to_string(), o.to_string()))
            .collect();
        want.sort();
        assert_eq!(seen, want);
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
                let line = line.split(" > ").next().unwrap();
                let args = shlex::split(line).expect("an example is a shell command line");
                if let Err(e) = command().try_get_matches_from(&args) {
                    panic!("example of {verb} does not parse: {line}\n{e}");
                }
            }
        }
    }
}

#[cfg(test)]
mod conformance {
    use super::*;
    use crate::cli::model;
    use std::collections::BTreeSet;

    /// `run-task` → `RunTask`.
    fn operation_of(verb: &str) -> String {
        verb.split('-')
            .map(|w| {
                let mut c = w.chars();
                c.next()
                    .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                    .unwrap_or_default()
            })
            .collect()
    }

    /// The options `aws ecs VERB` takes: each input member in kebab-case (and `--no-X`
    /// for a boolean), the paginators' options in place of the token and limit members,
    /// and `--cli-input-json`, `--generate-cli-skeleton`.
    fn aws_options(verb: &str, op: &model::Operation) -> BTreeSet<String> {
        let mut out: BTreeSet<String> = ["cli-input-json", "generate-cli-skeleton"]
            .map(String::from)
            .into();
        let skip: Vec<&str> = op
            .paginator
            .iter()
            .flat_map(|p| [Some(p.input_token.as_str()), p.limit_key.as_deref()])
            .flatten()
            .collect();
        for m in op
            .members
            .iter()
            .filter(|m| !skip.contains(&m.name.as_str()))
        {
            out.insert(model::kebab(&m.name));
            if m.kind == "boolean" {
                out.insert(model::ECS.option_name(verb, &format!("no-{}", model::kebab(&m.name))));
            }
        }
        if op.paginator.is_some() {
            out.extend(["starting-token", "page-size", "max-items"].map(String::from));
        }
        out
    }

    /// Options of ours that `aws ecs` does not have, or the other way round, with the
    /// reason each is accepted: `(verb, option, reason)`.
    const ACCEPTED: &[(&str, &str, &str)] = &[
        (
            "run-task",
            "env-file",
            "local: variables from a file on this host",
        ),
        (
            "run-task",
            "timeline",
            "local: the launch phases after an attached run",
        ),
        (
            "run-task",
            "detach",
            "local: run-task follows the task unless told not to",
        ),
        (
            "run-task",
            "pull",
            "local: when to pull images into this host's cache",
        ),
        (
            "run-task",
            "volume-map",
            "local: EFS/FSx volumes served from local directories",
        ),
        (
            "run-task",
            "secrets-file",
            "local: secrets from a file instead of SSM/Secrets Manager",
        ),
        (
            "run-task",
            "task-credentials",
            "local: what the task's credentials endpoint serves",
        ),
        (
            "run-task",
            "execution-credentials",
            "local: what start-up calls act as",
        ),
        (
            "register-task-definition",
            "lenient",
            "local: unknown members warned, not refused",
        ),
        (
            "execute-command",
            "etcd",
            "local: a task on another box of a cluster, through its agent",
        ),
        (
            "execute-command",
            "etcd-cacert",
            "local: TLS to etcd (--etcd)",
        ),
        (
            "execute-command",
            "etcd-cert",
            "local: TLS to etcd (--etcd)",
        ),
        ("execute-command", "etcd-key", "local: TLS to etcd (--etcd)"),
        (
            "execute-command",
            "etcd-certs",
            "local: TLS to etcd (--etcd), a `cluster init` bundle",
        ),
        (
            "execute-command",
            "etcd-insecure-plaintext",
            "local: plain http to etcd off loopback (--etcd)",
        ),
    ];

    /// The AWS CLI's options missing here, with the reason: `(verb, option, reason)`.
    const NOT_HERE: &[(&str, &str, &str)] = &[];

    /// Every verb named after an ECS operation takes the AWS CLI's options for it (from
    /// botocore's model, checked against the test venv's by `cli::model`).
    #[test]
    fn verbs_take_the_aws_clis_options() {
        let cmd = command();
        let global: BTreeSet<String> = cmd
            .get_arguments()
            .filter_map(|a| a.get_long().map(String::from))
            .collect();
        let mut differences = Vec::new();
        let mut verbs = 0;
        for sub in cmd.get_subcommands() {
            let verb = sub.get_name();
            let Some(op) = model::ECS.model().operations.get(&operation_of(verb)) else {
                continue;
            };
            verbs += 1;
            let ours: BTreeSet<String> = sub
                .get_arguments()
                .filter_map(|a| a.get_long().map(String::from))
                .filter(|l| {
                    !global.contains(l) && !["help", "output", "query"].contains(&l.as_str())
                })
                .collect();
            let theirs = aws_options(verb, op);
            let known = |list: &[(&str, &str, &str)], o: &str| {
                list.iter().any(|(v, opt, _)| *v == verb && *opt == o)
            };
            for o in ours.difference(&theirs) {
                if !known(ACCEPTED, o) {
                    differences.push(format!("{verb}: --{o} is not an `aws ecs {verb}` option"));
                }
            }
            for o in theirs.difference(&ours) {
                if !known(NOT_HERE, o) && !known(ACCEPTED, o) {
                    differences.push(format!(
                        "{verb}: `aws ecs {verb}` has --{o}, minifargate does not"
                    ));
                }
            }
        }
        assert!(
            verbs >= 20,
            "only {verbs} verbs are named after ECS operations"
        );
        assert!(
            differences.is_empty(),
            "option differences with the AWS CLI (add the option, or list it with a reason \
             in ACCEPTED / NOT_HERE):\n{}",
            differences.join("\n")
        );
    }

    /// The CLI has a verb for every ECS operation `serve` answers (one table of them:
    /// `crate::ecs::operations`), named as the AWS CLI names it.
    #[test]
    fn every_operation_served_has_a_verb() {
        let cmd = command();
        use crate::ecs::operations::{Op, Service};
        let missing: Vec<&str> = Op::of(Service::Ecs)
            .map(Op::name)
            .filter(|op| {
                !cmd.get_subcommands()
                    .any(|s| operation_of(s.get_name()) == *op)
            })
            .collect();
        assert!(
            missing.is_empty(),
            "operations served without a CLI verb: {missing:?}"
        );
    }

    #[test]
    fn every_option_is_described() {
        fn walk(cmd: &clap::Command, path: &str, out: &mut Vec<String>) {
            for a in cmd.get_arguments() {
                if a.is_hide_set() || ["help", "version"].contains(&a.get_id().as_str()) {
                    continue;
                }
                if a.get_help().is_none() && a.get_long_help().is_none() {
                    out.push(format!(
                        "{path} {}",
                        a.get_long()
                            .map_or_else(|| a.get_id().to_string(), |l| format!("--{l}"))
                    ));
                }
            }
            for s in cmd.get_subcommands() {
                if s.is_hide_set() {
                    continue;
                }
                if s.get_about().is_none() {
                    out.push(format!("{path} {} (the verb)", s.get_name()));
                }
                walk(s, &format!("{path} {}", s.get_name()), out);
            }
        }
        let mut missing = Vec::new();
        let mut cmd = command();
        cmd.build();
        walk(&cmd, "minifargate", &mut missing);
        assert!(
            missing.is_empty(),
            "options without a description:\n{}",
            missing.join("\n")
        );
    }

    #[test]
    fn help_groups_global_options_and_shows_exit_status() {
        let help = command().render_help().to_string();
        let global = help
            .find("Global options:")
            .expect("a Global options heading");
        assert!(help[global..].contains("--root"), "{help}");
        assert!(help.contains("Exit status:\n  0      Success."), "{help}");
        for verb in ["completions", "man"] {
            assert!(
                help.contains(&format!("\n  {verb} ")),
                "{verb} not in --help"
            );
        }
        let mut cmd = command();
        cmd.build();
        let sub = cmd
            .find_subcommand_mut("create-service")
            .unwrap()
            .render_help()
            .to_string();
        let own = sub.find("--service-name").unwrap();
        let heading = sub.find("Global options:").unwrap();
        assert!(own < heading && sub[heading..].contains("--root"), "{sub}");
    }

    #[test]
    fn completion_leaves_out_supervise() {
        for shell in [
            clap_complete::Shell::Bash,
            clap_complete::Shell::Zsh,
            clap_complete::Shell::Fish,
        ] {
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut completion_command(), "minifargate", &mut out);
            let text = String::from_utf8(out).unwrap();
            assert!(!text.contains("supervise"), "{shell}: offers supervise");
            assert!(text.contains("create-service"), "{shell}");
        }
    }

    #[test]
    fn man_pages_have_exit_status_environment_files_and_only_written_cross_references() {
        let pages = man_pages().unwrap();
        let names: BTreeSet<String> = pages.iter().map(|(n, _)| n.clone()).collect();
        assert!(names.contains("minifargate.1") && names.contains("minifargate-create-service.1"));
        assert!(
            !names
                .iter()
                .any(|n| n.contains("supervise") || n.contains("-help"))
        );
        for (name, text) in &pages {
            let text = String::from_utf8_lossy(text);
            for section in [
                ".SH \"EXIT STATUS\"",
                ".SH \"ENVIRONMENT\"",
                ".SH \"FILES\"",
            ] {
                assert!(text.contains(section), "{name} lacks {section}");
            }
            // Every `minifargate-x(1)` it names is a page written.
            for (i, _) in text.match_indices("(1)") {
                let start = text[..i]
                    .rfind(|c: char| c.is_whitespace() || c == 'B')
                    .map_or(0, |s| s + 1);
                let page = text[start..i].replace("\\-", "-").replace("\\fR", "");
                if page.starts_with("minifargate") {
                    assert!(
                        names.contains(&format!("{page}.1")),
                        "{name} names {page}(1), not written"
                    );
                }
            }
        }
    }
}
