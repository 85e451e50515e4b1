//! The rules on logConfiguration (each log driver and its options) and on FireLens.

use super::*;

impl Checker {
    pub(super) fn logging(
        &mut self,
        def: &TaskDefinition,
        c: &ContainerDefinition,
        p: &JsonPath,
        task_level: bool,
        has_router: bool,
    ) {
        // Ref: ecs.json `LogConfiguration` (logDriver required; `secretOptions` are
        // `Secret`s), `.logDriver` (Fargate: awslogs, splunk, awsfirelens), `.options`
        // ("awslogs-stream-prefix … is required when using the Fargate launch type" — not
        // known to be refused at register, so a warning), and `FirelensConfiguration`.
        if let Some(lc) = &c.log_configuration {
            let lp = p.key("logConfiguration");
            for (k, s) in lc.secret_options.iter().flatten().enumerate() {
                if blank(&s.name) {
                    self.required(
                        lp.key("secretOptions").index(k).key("name"),
                        "secretOptions name",
                    );
                }
                if blank(&s.value_from) {
                    self.required(
                        lp.key("secretOptions").index(k).key("valueFrom"),
                        "secretOptions valueFrom",
                    );
                }
            }
            match lc.log_driver {
                None => self.required(lp.key("logDriver"), "logConfiguration logDriver"),
                Some(driver) => {
                    // Ref: ecs.json `LogConfiguration.logDriver`: "For tasks on Fargate, the
                    // supported log drivers are awslogs, splunk, and awsfirelens."
                    if !matches!(
                        driver,
                        LogDriver::Awslogs | LogDriver::Splunk | LogDriver::Awsfirelens
                    ) {
                        self.fargate_err(
                            "fargate-log-driver",
                            lp.key("logDriver"),
                            format!("Fargate supports the awslogs, splunk and awsfirelens log drivers, not {driver}."),
                        );
                    }
                    if driver == LogDriver::Awslogs && self.fargate.is_some() {
                        if task_level && blank(&def.execution_role_arn) {
                            self.fargate_err(
                                "fargate-execution-role",
                                lp.key("logDriver"),
                                "Fargate requires task definition to have execution role ARN to \
                                 support log driver awslogs.",
                            );
                        }
                        let has_prefix = lc
                            .options
                            .as_ref()
                            .is_some_and(|o| o.contains_key("awslogs-stream-prefix"));
                        if !has_prefix {
                            self.warn(
                                "awslogs-stream-prefix",
                                lp.key("options"),
                                "awslogs-stream-prefix is required for the awslogs driver on Fargate.",
                            );
                        }
                    }
                    // Ref: RegisterTaskDefinition's ClientException, as users report it
                    // (turnerlabs/fargate#60, fabfuel/ecs-deploy#164, OctopusDeploy/Issues#7821).
                    if driver == LogDriver::Awsfirelens && !has_router {
                        self.err(
                            "firelens-router",
                            lp.key("logDriver"),
                            "When awsfirelens log driver is specified in log configuration, a \
                             firelens configuration object must be configured in one of the \
                             containers.",
                        );
                    }
                }
            }
        }
        if let Some(fc) = &c.firelens_configuration {
            let fp = p.key("firelensConfiguration");
            if fc.kind.is_none() {
                self.required(fp.key("type"), "firelensConfiguration type");
            }
            // The agent refuses these when it creates the task's FireLens resource (the
            // task fails to start); ECS is not known to refuse them at register: warnings.
            // Ref: amazon-ecs-agent agent/taskresource/firelens/firelens_unix.go parseOptions.
            let opt = |k: &str| fc.options.as_ref().and_then(|o| o.get(k));
            match opt("config-file-type").map(String::as_str) {
                Some(t) if t != "s3" && t != "file" => self.warn(
                    "firelens-config-file-type",
                    fp.key("options").key("config-file-type"),
                    format!(
                        "invalid value {t} is specified for option config-file-type (use file or \
                         s3): the task will fail to start."
                    ),
                ),
                Some(_) if opt("config-file-value").is_none_or(|v| v.is_empty()) => self.warn(
                    "firelens-config-file-value",
                    fp.key("options"),
                    "option config-file-type is specified but config-file-value is not \
                     specified: the task will fail to start.",
                ),
                _ => {}
            }
            // Ref: ecs.json `FirelensConfiguration.options`: "Tasks hosted on Fargate only
            // support the file configuration file type."
            if fc
                .options
                .as_ref()
                .and_then(|o| o.get("config-file-type"))
                .is_some_and(|t| t == "s3")
            {
                self.fargate_err(
                    "fargate-firelens-s3",
                    fp.key("options").key("config-file-type"),
                    "Tasks hosted on Fargate only support the file configuration file type for \
                     FireLens (not s3).",
                );
            }
        }
    }

    /// Task-wide FireLens rules: one log router, and a router only with a container that
    /// routes its logs through it.
    pub(super) fn firelens(&mut self, containers: &[ContainerDefinition]) {
        let routers: Vec<usize> = containers
            .iter()
            .enumerate()
            .filter(|(_, c)| c.firelens_configuration.is_some())
            .map(|(i, _)| i)
            .collect();
        let Some(&first) = routers.first() else {
            return;
        };
        // Ref: RegisterTaskDefinition's ClientException (aws/amazon-cloudwatch-logs-for-fluent-bit#20,
        // cloudposse/terraform-aws-ecs-container-definition#47).
        let routed = containers.iter().any(|c| {
            c.log_configuration
                .as_ref()
                .is_some_and(|l| l.log_driver == Some(LogDriver::Awsfirelens))
        });
        if !routed {
            self.err(
                "firelens-unused",
                cpath(first).key("firelensConfiguration"),
                "When a firelensConfiguration object is specified, at least one container has \
                 to be configured with the awsfirelens log driver.",
            );
        }
        // The agent builds one FireLens resource per task, for the first router it finds
        // (agent/api/task/task.go `initializeFirelensResource`), and ECS documents a single
        // log router container; ECS's exact words for a second one are not known here.
        for &i in &routers[1..] {
            self.err(
                "firelens-single-router",
                cpath(i).key("firelensConfiguration"),
                format!(
                    "Only one container in a task can have a firelensConfiguration (the log \
                     router); {} has one already.",
                    containers[first].name_str()
                ),
            );
        }
    }
}
