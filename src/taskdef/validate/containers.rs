//! The rules on each container definition: port mappings, links, dependsOn (and the
//! cycles of both graphs), start/stop timeouts, health checks, mount points, secrets and
//! environment, linuxParameters, the other container members, and proxyConfiguration.

use super::*;

impl Checker {
    pub(super) fn ports(
        &mut self,
        c: &ContainerDefinition,
        p: &JsonPath,
        mode: NetworkMode,
        seen: &mut HashMap<(i64, TransportProtocol), String>,
    ) {
        let name = c.name_str();
        let Some(mappings) = &c.port_mappings else {
            return;
        };
        // Ref: ecs.json `ContainerDefinition.portMappings`: "If the network mode of a task
        // definition is set to none, then you can't specify port mappings. If the network
        // mode of a task definition is set to host, then host ports must either be undefined
        // or they must match the container port"; `PortMapping.hostPort` says the same of
        // awsvpc, in ECS's words "When networkMode=awsvpc, the host ports and container ports
        // in port mappings must match."
        if mode == NetworkMode::None && !mappings.is_empty() {
            self.err(
                "network-mode-none-ports",
                p.key("portMappings"),
                "Port mappings are not allowed when networkMode=none.",
            );
            return;
        }
        let mut local_names: HashSet<&str> = HashSet::new();
        let ranges = mappings
            .iter()
            .filter(|m| m.container_port_range.is_some())
            .count();
        if ranges > 100 {
            self.err(
                "port-range",
                p.key("portMappings"),
                format!("{ranges} port ranges in container '{name}': ECS takes at most 100 per container."),
            );
        }
        for (j, m) in mappings.iter().enumerate() {
            let mp = p.key("portMappings").index(j);
            let protocol = m.protocol.unwrap_or(TransportProtocol::Tcp);
            if let Some(range) = m.container_port_range.as_deref() {
                self.port_range(m, &mp, (name, mode), range);
                continue;
            }
            let Some(cp) = self.container_port(m, &mp, (name, mode)) else {
                continue;
            };
            self.shared_port(&mp, (name, mode), (cp, protocol), seen);
            if let Some(pn) = m.name.as_deref() {
                self.port_name(&mp, pn, &mut local_names);
            }
        }
    }

    /// A mapping of a containerPortRange.
    fn port_range(
        &mut self,
        m: &PortMapping,
        mp: &JsonPath,
        (name, mode): (&str, NetworkMode),
        range: &str,
    ) {
        // Ref: ecs.json `PortMapping.containerPortRange`: bridge or awsvpc only, 1 to
        // 65535, first < last, no hostPortRange/hostPort, at most 100 per container.
        let parsed = range.split_once('-').and_then(|(a, b)| {
            Some((a.trim().parse::<i64>().ok()?, b.trim().parse::<i64>().ok()?))
        });
        match parsed {
            Some((a, b)) if (1..=65535).contains(&a) && (1..=65535).contains(&b) && a < b => {}
            _ => self.err(
                "port-range",
                mp.key("containerPortRange"),
                format!(
                    "Invalid containerPortRange '{range}' for container '{name}': use \
                     FIRST-LAST with 1 <= FIRST < LAST <= 65535."
                ),
            ),
        }
        if m.container_port.is_some() {
            self.err(
                "port-range",
                mp.key("containerPort"),
                "Specify either containerPort or containerPortRange, not both.",
            );
        }
        if m.host_port.is_some_and(|h| h != 0) {
            self.err(
                "port-range",
                mp.key("hostPort"),
                "Leave hostPort empty when containerPortRange is set.",
            );
        }
        if !matches!(mode, NetworkMode::Bridge | NetworkMode::Awsvpc) {
            self.err(
                "port-range",
                mp.key("containerPortRange"),
                format!("containerPortRange needs networkMode bridge or awsvpc, not {mode}."),
            );
        }
    }

    /// A mapping's containerPort and hostPort; the container port when it is valid.
    fn container_port(
        &mut self,
        m: &PortMapping,
        mp: &JsonPath,
        (name, mode): (&str, NetworkMode),
    ) -> Option<i64> {
        // Ref: ecs.json `PortMapping.containerPort` (required unless a containerPortRange;
        // 1 to 65535) and `.hostPort` (0 to 65535; 0 or absent picks one).
        let Some(cp) = m.container_port else {
            self.err(
                "port-range",
                mp.key("containerPort"),
                format!("Invalid 'containerPort' setting for container '{name}': containerPort is required."),
            );
            return None;
        };
        if !(1..=65535).contains(&cp) {
            self.err(
                "port-range",
                mp.key("containerPort"),
                format!("Invalid 'containerPort' setting for container '{name}': {cp} is outside 1 to 65535."),
            );
            return None;
        }
        if let Some(hp) = m.host_port {
            if !(0..=65535).contains(&hp) {
                self.err(
                    "port-range",
                    mp.key("hostPort"),
                    format!("Invalid 'hostPort' setting for container '{name}': {hp} is outside 1 to 65535."),
                );
            } else if hp != 0 && hp != cp {
                match mode {
                    NetworkMode::Awsvpc => self.err(
                        "awsvpc-host-port",
                        mp.key("hostPort"),
                        format!(
                            "When networkMode=awsvpc, the host ports and container ports in \
                             port mappings must match (hostPort {hp}, containerPort {cp})."
                        ),
                    ),
                    NetworkMode::Host => self.err(
                        "host-network-host-port",
                        mp.key("hostPort"),
                        format!(
                            "When networkMode=host, the host ports and container ports in port \
                             mappings must match (hostPort {hp}, containerPort {cp})."
                        ),
                    ),
                    _ => {}
                }
            }
        }
        Some(cp)
    }

    /// A port mapped twice in one network stack.
    fn shared_port(
        &mut self,
        mp: &JsonPath,
        (name, mode): (&str, NetworkMode),
        (cp, protocol): (i64, TransportProtocol),
        seen: &mut HashMap<(i64, TransportProtocol), String>,
    ) {
        // Containers of an awsvpc or host task share one network stack: one port, one owner.
        // ECS documents "A port can only be included in one port mapping per container"
        // (`containerPortRange`), not a refusal across containers: a warning.
        let here = format!("{name} ({mp})");
        if matches!(mode, NetworkMode::Awsvpc | NetworkMode::Host) {
            if let Some(prev) = seen.insert((cp, protocol), here) {
                self.warn(
                    "duplicate-port",
                    mp.key("containerPort"),
                    format!("Port {cp}/{protocol} is also mapped by {prev}: containers of a {mode} task share one network stack."),
                );
            }
        } else if mode == NetworkMode::Bridge
            && let Some(prev) = seen.insert((cp, protocol), here)
            && !prev.starts_with(&format!("{name} ("))
        {
            // On ECS each container of a bridge task has its own network namespace, so
            // two may listen on one port; here they share one (networkMode's
            // local-difference), and the second cannot bind it.
            self.warn(
                "duplicate-port",
                mp.key("containerPort"),
                format!("Port {cp}/{protocol} is also mapped by {prev}: on ECS each container of a bridge task has its own network namespace, but here the task's containers share one, so only one of them can listen on it."),
            );
        }
    }

    /// A port mapping's name (Service Connect): of its characters, once per container.
    fn port_name<'c>(&mut self, mp: &JsonPath, pn: &'c str, local_names: &mut HashSet<&'c str>) {
        // Ref: ecs.json `PortMapping.name` (Service Connect): lowercase letters,
        // numbers, underscores and hyphens, at most 64, not starting with a hyphen.
        let ok = !pn.is_empty()
            && pn.len() <= 64
            && !pn.starts_with('-')
            && pn
                .chars()
                .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '_' || ch == '-');
        if !ok {
            self.err(
                "port-mapping-name",
                mp.key("name"),
                format!(
                    "Invalid port mapping name '{pn}': up to 64 lowercase letters, \
                 numbers, underscores and hyphens, not starting with a hyphen."
                ),
            );
        } else if !local_names.insert(pn) {
            self.warn(
                "port-mapping-name",
                mp.key("name"),
                format!("Port mapping name '{pn}' is used twice."),
            );
        }
    }

    pub(super) fn links(
        &mut self,
        c: &ContainerDefinition,
        p: &JsonPath,
        mode: NetworkMode,
        index_of: &HashMap<&str, usize>,
    ) {
        let Some(links) = &c.links else { return };
        if links.is_empty() {
            return;
        }
        // Ref: ecs.json `ContainerDefinition.links`: "only supported if the network mode of a
        // task definition is bridge".
        if self.fargate.is_some() {
            self.fargate_unsupported(p.key("links"), "links");
        } else if mode != NetworkMode::Bridge {
            self.err(
                "links-network-mode",
                p.key("links"),
                format!(
                    "Links are only supported when networkMode=bridge (this task uses {mode})."
                ),
            );
        }
        // A link to itself or to no container: no ECS text found; Docker refuses both at
        // container create ("could not get container for …"), so the task could never
        // start — kept as errors.
        for (k, l) in links.iter().enumerate() {
            let target = l.split(':').next().unwrap_or("");
            if target == c.name_str() {
                self.err(
                    "link-target",
                    p.key("links").index(k),
                    format!("Container '{target}' cannot link to itself."),
                );
            } else if !index_of.contains_key(target) {
                self.err(
                    "link-target",
                    p.key("links").index(k),
                    format!("Cannot link to container '{target}' because it does not exist."),
                );
            }
        }
    }

    pub(super) fn depends_on(
        &mut self,
        c: &ContainerDefinition,
        p: &JsonPath,
        containers: &[ContainerDefinition],
        index_of: &HashMap<&str, usize>,
    ) {
        // Ref: ecs.json `ContainerDependency` (containerName and condition required;
        // COMPLETE and SUCCESS "can't be set on an essential container", in ECS's words "A
        // dependency container with SUCCESS or COMPLETE condition cannot be an essential
        // container"; HEALTHY "requires that the dependent container has health checks
        // configured" — not known to be refused at register, a warning). A target that is not
        // a container of the task: the agent's graph could never resolve it (amazon-ecs-agent
        // agent/engine/dependencygraph/graph.go, "dependency will never start"), kept as an
        // error.
        for (k, d) in c.depends_on.iter().flatten().enumerate() {
            let dp = p.key("dependsOn").index(k);
            let Some(target) = d.container_name.as_deref().filter(|t| !t.is_empty()) else {
                self.required(dp.key("containerName"), "dependsOn containerName");
                continue;
            };
            let Some(cond) = d.condition else {
                self.err(
                    "depends-on-condition",
                    dp.key("condition"),
                    "dependsOn condition is required: START, COMPLETE, SUCCESS or HEALTHY.",
                );
                continue;
            };
            if target == c.name_str() {
                self.err(
                    "depends-on-target",
                    dp.key("containerName"),
                    format!("Container '{target}' cannot depend on itself."),
                );
                continue;
            }
            let Some(&ti) = index_of.get(target) else {
                self.err(
                    "depends-on-target",
                    dp.key("containerName"),
                    format!("Cannot depend on container '{target}' because it does not exist."),
                );
                continue;
            };
            let t = &containers[ti];
            match cond {
                ContainerCondition::Complete | ContainerCondition::Success if t.is_essential() => self.err(
                    "depends-on-essential",
                    dp.key("condition"),
                    format!(
                        "A dependency container with SUCCESS or COMPLETE condition cannot be an \
                         essential container ('{target}' is essential; set \"essential\": false on it)."
                    ),
                ),
                ContainerCondition::Healthy if t.health_check.is_none() => self.warn(
                    "depends-on-healthy",
                    dp.key("condition"),
                    format!("Container '{target}' has no healthCheck, so the HEALTHY condition on it can never be met."),
                ),
                _ => {}
            }
        }
    }

    pub(super) fn timeouts(&mut self, c: &ContainerDefinition, p: &JsonPath) {
        // Ref: ecs.json `startTimeout` / `stopTimeout`: "The valid values for Fargate are
        // 2-120 seconds." EC2 documents no bound, so outside Fargate it is a warning.
        for (field, v) in [
            ("startTimeout", c.start_timeout),
            ("stopTimeout", c.stop_timeout),
        ] {
            let Some(v) = v else { continue };
            if (2..=120).contains(&v) {
                continue;
            }
            let msg = format!("Invalid {field} {v}: must be between 2 and 120 seconds.");
            if self.fargate.is_some() {
                self.fargate_err("container-timeout", p.key(field), msg);
            } else if v < 0 {
                self.err("container-timeout", p.key(field), msg);
            } else {
                self.warn(
                    "container-timeout",
                    p.key(field),
                    format!("{field} {v} is outside 2 to 120 seconds, the range Fargate accepts."),
                );
            }
        }
    }

    pub(super) fn health_check(&mut self, c: &ContainerDefinition, p: &JsonPath) {
        let Some(hc) = &c.health_check else { return };
        let hp = p.key("healthCheck");
        // Ref: ecs.json `HealthCheck` (command required; interval 5-300, timeout 2-60,
        // retries 1-10, startPeriod 0-300).
        match hc.command.as_deref() {
            None | Some([]) => self.err(
                "health-check-command",
                hp.key("command"),
                "healthCheck.command is required.",
            ),
            Some([first, rest @ ..]) => {
                if first != "CMD" && first != "CMD-SHELL" {
                    // ECS registers such a command and Fargate runs the whole list as an
                    // exec-form command, which is what ADOT's scratch images rely on
                    // (`["/healthcheck"]`). Ref: aws-observability/aws-otel-community#1320,
                    // aws/aws-cdk#34389.
                    self.warn(
                        "health-check-exec-form",
                        hp.key("command").index(0),
                        format!(
                            "healthCheck.command starts with '{first}', not CMD or CMD-SHELL: ECS \
                             accepts it and runs the whole list as one command (exec form), as \
                             this host does; write [\"CMD\", \"{first}\", …] to say so."
                        ),
                    );
                } else if rest.is_empty() {
                    // Not known to be refused at register; Docker's health check fails on
                    // it at run time, so a warning.
                    self.warn(
                        "health-check-command",
                        hp.key("command"),
                        format!("healthCheck.command has nothing to run after {first}: the check will fail every time."),
                    );
                }
            }
        }
        let bounds = [
            ("interval", hc.interval, 5, 300),
            ("timeout", hc.timeout, 2, 60),
            ("retries", hc.retries, 1, 10),
            ("startPeriod", hc.start_period, 0, 300),
        ];
        for (field, v, lo, hi) in bounds {
            if let Some(v) = v
                && !(lo..=hi).contains(&v)
            {
                self.err(
                    "health-check-range",
                    hp.key(field),
                    format!("Invalid healthCheck {field} {v}: must be between {lo} and {hi}."),
                );
            }
        }
    }

    pub(super) fn mounts(
        &mut self,
        c: &ContainerDefinition,
        p: &JsonPath,
        task_level: bool,
        volume_names: &HashSet<&str>,
        index_of: &HashMap<&str, usize>,
    ) {
        let name = c.name_str();
        // Ref: ecs.json `MountPoint.sourceVolume` ("Must be a volume name referenced in the
        // name parameter of task definition volume"); ECS answers a missing or unknown one
        // with "ClientException: Unknown volume 'null'." / "Unknown volume 'x'."
        // (blinkist/terraform-aws-airship-ecs-service#46). containerPath is not required by
        // the model and no refusal is documented: a warning (Docker fails the mount).
        for (k, m) in c.mount_points.iter().flatten().enumerate() {
            let mp = p.key("mountPoints").index(k);
            match m.source_volume.as_deref() {
                None | Some("") => self.err(
                    "mount-point-volume",
                    mp.key("sourceVolume"),
                    format!("Unknown volume 'null': container '{name}' has a mountPoint without a sourceVolume."),
                ),
                Some(v) if task_level && !volume_names.contains(v) => self.err(
                    "mount-point-volume",
                    mp.key("sourceVolume"),
                    format!(
                        "Unknown volume '{v}': container '{name}' mounts a volume that is not \
                         defined in the task definition's volumes."
                    ),
                ),
                Some(_) => {}
            }
            if blank(&m.container_path) {
                self.warn(
                    "mount-point-path",
                    mp.key("containerPath"),
                    format!("Container '{name}' has a mountPoint without a containerPath: the container will fail to start."),
                );
            }
        }
        // Ref: ecs.json `VolumeFrom.sourceContainer` ("The name of another container within
        // the same task definition"); no ECS text found for a refusal, but Docker refuses
        // `--volumes-from` of a container that does not exist at create, so the task could
        // never start — kept as errors.
        for (k, v) in c.volumes_from.iter().flatten().enumerate() {
            let vp = p.key("volumesFrom").index(k).key("sourceContainer");
            match v.source_container.as_deref() {
                None | Some("") => self.err(
                    "volumes-from-container",
                    vp,
                    "volumesFrom without a sourceContainer names no container.",
                ),
                Some(s) if s == name => self.err(
                    "volumes-from-container",
                    vp,
                    format!("Container '{s}' cannot take volumes from itself."),
                ),
                Some(s) if !index_of.contains_key(s) => self.err(
                    "volumes-from-container",
                    vp,
                    format!("Cannot take volumes from container '{s}' because it does not exist."),
                ),
                Some(_) => {}
            }
        }
    }

    pub(super) fn secrets_and_env(
        &mut self,
        def: &TaskDefinition,
        c: &ContainerDefinition,
        p: &JsonPath,
        task_level: bool,
    ) {
        // Ref: ecs.json `Secret` requires name and valueFrom; `EnvironmentFile` requires type
        // and value; `RepositoryCredentials` requires credentialsParameter. Environment
        // names: unnamed or repeated ones are Docker's business, not refused by ECS (a
        // warning); the `.env` extension is documented ("must have a .env file extension",
        // developer guide, use-environment-file.html) but its enforcement at register is not,
        // so a warning.
        // Ref: RegisterTaskDefinition's ClientException as users quote it (fabfuel/ecs-deploy
        // #87): "When you are specifying container secrets, you must also specify a value for
        // 'executionRoleArn'." The developer guide's task execution IAM role page: the role is
        // what fetches secrets from Secrets Manager or Parameter Store, on every launch type.
        // A bare container array takes its role from register's flags: not checked there.
        if task_level
            && c.secrets.as_ref().is_some_and(|s| !s.is_empty())
            && blank(&def.execution_role_arn)
        {
            self.err(
                "secrets-execution-role",
                p.key("secrets"),
                "When you are specifying container secrets, you must also specify a value for \
                 'executionRoleArn'.",
            );
        }
        for (k, s) in c.secrets.iter().flatten().enumerate() {
            let sp = p.key("secrets").index(k);
            if blank(&s.name) {
                self.required(sp.key("name"), "secrets name");
            }
            if blank(&s.value_from) {
                self.required(sp.key("valueFrom"), "secrets valueFrom");
            }
        }
        let mut env_names = HashSet::new();
        for (k, e) in c.environment.iter().flatten().enumerate() {
            match e.name.as_deref() {
                None | Some("") => self.warn(
                    "environment-name",
                    p.key("environment").index(k).key("name"),
                    "Environment variable without a name: it is ignored.",
                ),
                Some(n) => {
                    if !env_names.insert(n) {
                        self.warn(
                            "environment-name",
                            p.key("environment").index(k).key("name"),
                            format!("Environment variable '{n}' is set twice; the last one wins."),
                        );
                    }
                }
            }
        }
        // Ref: ecs.json `ContainerDefinition.environmentFiles`: "You can specify up to ten
        // environment files."
        let files = c.environment_files.as_deref().unwrap_or_default();
        if files.len() > 10 {
            self.err(
                "environment-file-count",
                p.key("environmentFiles"),
                format!("{} environment files; ECS takes at most 10.", files.len()),
            );
        }
        for (k, f) in c.environment_files.iter().flatten().enumerate() {
            let fp = p.key("environmentFiles").index(k);
            if f.kind.is_none() {
                self.required(fp.key("type"), "environmentFiles type");
            }
            match f.value.as_deref() {
                None | Some("") => self.required(fp.key("value"), "environmentFiles value"),
                Some(v) if !v.ends_with(".env") => self.warn(
                    "environment-file",
                    fp.key("value"),
                    format!(
                        "Environment file '{v}' does not have the .env extension ECS requires."
                    ),
                ),
                Some(_) => {}
            }
        }
        if let Some(rc) = &c.repository_credentials
            && blank(&rc.credentials_parameter)
        {
            self.required(
                p.key("repositoryCredentials").key("credentialsParameter"),
                "repositoryCredentials credentialsParameter",
            );
        }
    }

    pub(super) fn linux_parameters(&mut self, c: &ContainerDefinition, p: &JsonPath) {
        let Some(lp) = &c.linux_parameters else {
            return;
        };
        let pp = p.key("linuxParameters");
        // Ref: ecs.json `KernelCapabilities.add` (the valid values; Fargate: SYS_PTRACE
        // only), `Device` (hostPath required), `LinuxParameters.sharedMemorySize`, `.tmpfs`
        // (`Tmpfs` requires containerPath and size), `.maxSwap` ("0 or any positive
        // integer"), `.swappiness` ("whole numbers between 0 and 100"); each "isn't supported"
        // on Fargate.
        if let Some(caps) = &lp.capabilities {
            for (field, list) in [("add", &caps.add), ("drop", &caps.drop)] {
                for (k, cap) in list.iter().flatten().enumerate() {
                    let bare = cap.strip_prefix("CAP_").unwrap_or(cap);
                    let cp = pp.key("capabilities").key(field).index(k);
                    if !CAPABILITIES.contains(&bare) {
                        self.err(
                            "capability-name",
                            cp,
                            format!("Unknown Linux capability '{cap}'."),
                        );
                    } else if field == "add" && bare != "SYS_PTRACE" {
                        // Ref: ecs.json `KernelCapabilities.add`: "Tasks launched on Fargate
                        // only support adding the SYS_PTRACE kernel capability."
                        self.fargate_err(
                            "fargate-capabilities",
                            cp,
                            format!("Tasks launched on Fargate only support adding the SYS_PTRACE kernel capability, not {cap}."),
                        );
                    }
                }
            }
        }
        for (k, d) in lp.devices.iter().flatten().enumerate() {
            if blank(&d.host_path) {
                self.required(
                    pp.key("devices").index(k).key("hostPath"),
                    "devices hostPath",
                );
            }
        }
        if non_empty(&lp.devices) {
            self.fargate_unsupported(pp.key("devices"), "devices");
        }
        if let Some(s) = lp.shared_memory_size {
            if s <= 0 {
                self.err(
                    "out-of-range",
                    pp.key("sharedMemorySize"),
                    format!("Invalid sharedMemorySize {s}: must be a positive number of MiB."),
                );
            }
            self.fargate_unsupported(pp.key("sharedMemorySize"), "sharedMemorySize");
        }
        for (k, t) in lp.tmpfs.iter().flatten().enumerate() {
            let tp = pp.key("tmpfs").index(k);
            if blank(&t.container_path) {
                self.required(tp.key("containerPath"), "tmpfs containerPath");
            }
            match t.size {
                None => self.required(tp.key("size"), "tmpfs size"),
                Some(s) if s <= 0 => self.err(
                    "out-of-range",
                    tp.key("size"),
                    format!("Invalid tmpfs size {s}: must be a positive number of MiB."),
                ),
                Some(_) => {}
            }
        }
        if non_empty(&lp.tmpfs) {
            self.fargate_unsupported(pp.key("tmpfs"), "tmpfs");
        }
        if let Some(s) = lp.max_swap {
            if s < 0 {
                self.err(
                    "out-of-range",
                    pp.key("maxSwap"),
                    format!("Invalid maxSwap {s}: must be 0 or more MiB."),
                );
            }
            self.fargate_unsupported(pp.key("maxSwap"), "maxSwap");
        }
        if let Some(s) = lp.swappiness {
            self.range(pp.key("swappiness"), s, 0, 100, "swappiness");
            self.fargate_unsupported(pp.key("swappiness"), "swappiness");
        }
    }

    pub(super) fn misc_container(
        &mut self,
        c: &ContainerDefinition,
        p: &JsonPath,
        mode: NetworkMode,
        ipc: Option<IpcMode>,
        accelerators: &HashSet<&str>,
    ) {
        self.security(c, p);
        self.ulimits(c, p);
        self.system_controls(c, p, mode, ipc);
        self.resource_requirements(c, p, accelerators);
        self.credentials_and_restart(c, p);
    }

    /// privileged, disableNetworking, DNS and dockerSecurityOptions.
    fn security(&mut self, c: &ContainerDefinition, p: &JsonPath) {
        // Ref: developer guide, Fargate differences: privileged, disableNetworking,
        // dnsServers, dnsSearchDomains and dockerSecurityOptions are not valid on Fargate
        // (ecs.json `privileged`, `dockerSecurityOptions` say so too).
        if c.privileged == Some(true) {
            self.fargate_unsupported(p.key("privileged"), "privileged");
        }
        if c.disable_networking == Some(true) {
            self.fargate_unsupported(p.key("disableNetworking"), "disableNetworking");
        }
        for (field, v) in [
            ("dnsServers", &c.dns_servers),
            ("dnsSearchDomains", &c.dns_search_domains),
            ("dockerSecurityOptions", &c.docker_security_options),
        ] {
            if non_empty(v) {
                self.fargate_unsupported(p.key(field), field);
            }
        }
        // What this host does not apply is the coverage table's (`not-applied`); what Docker
        // refuses at container create registers on ECS and fails the container later.
        for (k, o) in c.docker_security_options.iter().flatten().enumerate() {
            let o = crate::taskdef::security_options::SecurityOption::parse(o);
            if let crate::taskdef::security_options::SecurityOption::Invalid(_) = o
                && let Some(why) = o.not_applied()
            {
                self.warn(
                    "docker-security-options",
                    p.key("dockerSecurityOptions").index(k),
                    why,
                );
            }
        }
    }

    fn ulimits(&mut self, c: &ContainerDefinition, p: &JsonPath) {
        // Ref: ecs.json `Ulimit` requires name, softLimit, hardLimit; soft above hard is
        // Docker's refusal at create, not ECS's at register (a warning).
        for (k, u) in c.ulimits.iter().flatten().enumerate() {
            let up = p.key("ulimits").index(k);
            if u.name.is_none() {
                self.required(up.key("name"), "ulimits name");
            }
            match (u.soft_limit, u.hard_limit) {
                (None, _) => self.required(up.key("softLimit"), "ulimits softLimit"),
                (_, None) => self.required(up.key("hardLimit"), "ulimits hardLimit"),
                (Some(s), Some(h)) if s > h => self.warn(
                    "ulimit",
                    up.key("softLimit"),
                    format!("ulimit softLimit {s} is above hardLimit {h}: the container will fail to start."),
                ),
                _ => {}
            }
        }
    }

    fn system_controls(
        &mut self,
        c: &ContainerDefinition,
        p: &JsonPath,
        mode: NetworkMode,
        ipc: Option<IpcMode>,
    ) {
        for (k, sc) in c.system_controls.iter().flatten().enumerate() {
            // `SystemControl` has no required member in ecs.json; an entry without a
            // namespace sets nothing (a warning).
            let Some(ns) = sc.namespace.as_deref() else {
                self.warn(
                    "system-controls",
                    p.key("systemControls").index(k).key("namespace"),
                    "systemControls entry without a namespace: it sets nothing.",
                );
                continue;
            };
            // Ref: ecs.json `TaskDefinition.ipcMode` ("For tasks that use the host IPC mode,
            // IPC namespace related systemControls are not supported") and the developer
            // guide's systemControls notes for the host network mode.
            if ipc == Some(IpcMode::Host) && is_ipc_sysctl(ns) {
                self.err(
                    "system-controls",
                    p.key("systemControls").index(k).key("namespace"),
                    format!(
                        "IPC namespace systemControls ('{ns}') are not supported with ipcMode=host."
                    ),
                );
            }
            if mode == NetworkMode::Host && ns.starts_with("net.") {
                self.err(
                    "system-controls",
                    p.key("systemControls").index(k).key("namespace"),
                    format!("Network namespace systemControls ('{ns}') are not supported with networkMode=host."),
                );
            }
        }
    }

    fn resource_requirements(
        &mut self,
        c: &ContainerDefinition,
        p: &JsonPath,
        accelerators: &HashSet<&str>,
    ) {
        let name = c.name_str();
        // Ref: ecs.json `ResourceRequirement` (type and value required; for GPU "the number
        // of physical GPUs"; for InferenceAccelerator "should match the deviceName for an
        // InferenceAccelerator specified in a task definition"); GPUs are not valid on
        // Fargate (developer guide, Fargate differences).
        for (k, r) in c.resource_requirements.iter().flatten().enumerate() {
            let rp = p.key("resourceRequirements").index(k);
            let value = r.value.as_deref().unwrap_or("");
            match r.kind {
                None => self.required(rp.key("type"), "resourceRequirements type"),
                Some(ResourceType::Gpu) => {
                    if !value.parse::<u32>().is_ok_and(|n| n > 0) {
                        self.err(
                            "resource-requirement",
                            rp.key("value"),
                            format!("Invalid GPU count '{value}' for container '{name}': must be a positive integer."),
                        );
                    }
                    self.fargate_unsupported(rp, "gpu");
                }
                Some(ResourceType::InferenceAccelerator) => {
                    if !accelerators.contains(value) {
                        self.err(
                            "resource-requirement",
                            rp.key("value"),
                            format!("InferenceAccelerator '{value}' is not a deviceName in the task's inferenceAccelerators."),
                        );
                    }
                }
            }
        }
    }

    /// credentialSpecs and restartPolicy.
    fn credentials_and_restart(&mut self, c: &ContainerDefinition, p: &JsonPath) {
        // Ref: ecs.json `ContainerDefinition.credentialSpecs`: "The maximum number of ARNs is 1."
        if let Some(specs) = &c.credential_specs
            && specs.len() > 1
        {
            self.err(
                "credential-specs",
                p.key("credentialSpecs"),
                "At most one credentialSpecs ARN is allowed.",
            );
        }
        // Ref: ecs.json `ContainerRestartPolicy` (enabled required; at most 50
        // ignoredExitCodes; restartAttemptPeriod 60-1800).
        if let Some(rp) = &c.restart_policy {
            let pp = p.key("restartPolicy");
            if rp.enabled.is_none() {
                self.required(pp.key("enabled"), "restartPolicy enabled");
            }
            if rp.ignored_exit_codes.as_ref().is_some_and(|v| v.len() > 50) {
                self.err(
                    "out-of-range",
                    pp.key("ignoredExitCodes"),
                    "At most 50 ignoredExitCodes are allowed.",
                );
            }
            if let Some(period) = rp.restart_attempt_period {
                self.range(
                    pp.key("restartAttemptPeriod"),
                    period,
                    60,
                    1800,
                    "restartAttemptPeriod",
                );
            }
        }
    }

    pub(super) fn proxy(&mut self, def: &TaskDefinition, index_of: &HashMap<&str, usize>) {
        let Some(pc) = &def.proxy_configuration else {
            return;
        };
        // Ref: ecs.json `ProxyConfiguration.containerName` (required; "The name of the
        // container that will serve as the App Mesh proxy" — a container of the task).
        let pp = root().key("proxyConfiguration").key("containerName");
        match pc.container_name.as_deref() {
            None | Some("") => self.required(pp, "proxyConfiguration containerName"),
            Some(n) if !index_of.contains_key(n) => self.err(
                "proxy-container",
                pp,
                format!("proxyConfiguration names container '{n}', which does not exist."),
            ),
            Some(_) => {}
        }
    }

    /// Reports every cycle of `dependsOn` (or `links`) edges, with an iterative depth-first
    /// search so that no input can recurse deeply or loop forever.
    /// Ref: no ECS text found for a refusal at register; a dependsOn cycle can never start
    /// (the agent's graph waits for a dependency that "will never start",
    /// amazon-ecs-agent agent/engine/dependencygraph/graph.go) and Docker refuses circular
    /// links ("Cannot link to …, as it does not belong to …") — kept as errors.
    pub(super) fn cycles(
        &mut self,
        containers: &[ContainerDefinition],
        index_of: &HashMap<&str, usize>,
        graph: Graph,
    ) {
        let n = containers.len();
        let edges: Vec<Vec<usize>> = containers
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let targets: Vec<&str> = match graph {
                    Graph::DependsOn => c
                        .depends_on
                        .iter()
                        .flatten()
                        .filter_map(|d| d.container_name.as_deref())
                        .collect(),
                    Graph::Links => c
                        .links
                        .iter()
                        .flatten()
                        .map(|l| l.split(':').next().unwrap_or(""))
                        .collect(),
                };
                targets
                    .into_iter()
                    .filter_map(|t| index_of.get(t).copied())
                    // Self-references are reported by their own rule.
                    .filter(|&t| t != i && index_of.get(c.name_str()) == Some(&i))
                    .collect()
            })
            .collect();
        #[derive(Clone, Copy, PartialEq)]
        enum Color {
            White,
            Gray,
            Black,
        }
        let mut color = vec![Color::White; n];
        for start in 0..n {
            if color[start] != Color::White {
                continue;
            }
            let mut stack: Vec<(usize, usize)> = vec![(start, 0)];
            color[start] = Color::Gray;
            while let Some(top) = stack.last_mut() {
                let node = top.0;
                if let Some(&to) = edges[node].get(top.1) {
                    top.1 += 1;
                    match color[to] {
                        Color::White => {
                            color[to] = Color::Gray;
                            stack.push((to, 0));
                        }
                        Color::Gray => {
                            let from = stack.iter().position(|(v, _)| *v == to).unwrap_or(0);
                            let mut names: Vec<&str> = stack[from..]
                                .iter()
                                .map(|(v, _)| containers[*v].name_str())
                                .collect();
                            names.push(containers[to].name_str());
                            let chain = names.join(" -> ");
                            let (rule, field, what) = match graph {
                                Graph::DependsOn => {
                                    ("depends-on-cycle", "dependsOn", "Container dependencies")
                                }
                                Graph::Links => ("links-cycle", "links", "Container links"),
                            };
                            self.err(
                                rule,
                                cpath(to).key(field),
                                format!("{what} should not have a cycle: {chain}."),
                            );
                        }
                        Color::Black => {}
                    }
                } else {
                    color[node] = Color::Black;
                    stack.pop();
                }
            }
        }
    }
}
