//! RunTask's steps around the launch ([`super::run_task_with`]): the checks of the request
//! alone, the capacity provider strategy, the notes on what this host makes of the
//! request, the launcher's request, the placement on this box and the client token's record.

use super::*;

/// RunTask's checks of the request alone: the task count, the launch type and the network
/// configuration as they parse.
pub(super) fn checked_request(
    req: &RunTaskRequest,
    local: &Local,
) -> EcsResult<(u32, Option<LaunchType>, Option<String>)> {
    let count = req.count.unwrap_or(1);
    if !(1..=10).contains(&count) {
        return Err(EcsError::invalid(format!(
            "count {count}: must be between 1 and 10"
        )));
    }
    if !local.files {
        crate::ecs::no_files(&req.task_definition)?;
        no_local_environment_files(&req.overrides)?;
    }
    check_overrides_size(&req.overrides)?;
    let launch_type: Option<LaunchType> = enum_member("launchType", req.launch_type.as_deref())?;
    checked_tags(&req.tags)?;
    check_client_token(req.client_token.as_deref())?;
    check_placement(
        req.placement_constraints.as_deref(),
        req.placement_strategy.as_deref(),
    )?;
    crate::ecs::on_box::plan(
        req.placement_constraints.as_deref(),
        req.placement_strategy.as_deref(),
    )?;
    // Ref: ecs.json `RunTaskRequest.propagateTags`: "An error will be received if you
    // specify the SERVICE option when running a task."
    match req.propagate_tags.as_deref() {
        None | Some("NONE" | "TASK_DEFINITION") => {}
        Some("SERVICE") => {
            return Err(EcsError::invalid(
                "propagateTags SERVICE: a task run by RunTask has no service to propagate tags \
                 from (use TASK_DEFINITION or NONE)",
            ));
        }
        Some(other) => {
            return Err(EcsError::invalid(format!(
                "propagateTags {other:?}: must be TASK_DEFINITION, SERVICE or NONE"
            )));
        }
    }
    // Ref: ecs.json `RunTaskRequest.capacityProviderStrategy`: "If a
    // capacityProviderStrategy is specified, the launchType parameter must be omitted."
    if req.capacity_provider_strategy.is_some() && launch_type.is_some() {
        return Err(EcsError::invalid(
            "Specifying both a launch type and capacity provider strategy is not supported. \
             Remove one and try again.",
        ));
    }
    let network_configuration = req
        .network_configuration
        .as_ref()
        .map(|v| crate::supervisor::isolation::network::parse_network_configuration(&v.to_string()))
        .transpose()
        .map_err(|e| EcsError::invalid(format!("networkConfiguration: {e}")))?;
    Ok((count, launch_type, network_configuration))
}

/// The capacity provider strategy of the launch (the request's, else the cluster's
/// default when no launch type is asked for); a strategy makes the launch type FARGATE.
pub(super) fn launch_strategy(
    store: &Store,
    req: &RunTaskRequest,
    cluster: &str,
    launch_type: &mut Option<LaunchType>,
) -> EcsResult<Vec<CapacityProviderStrategyItem>> {
    // A strategy (the request's, else the cluster's default when no launch type is asked
    // for) resolves to the FARGATE launch type.
    let cluster_row = store.cluster(cluster).map_err(anyhow::Error::from)?;
    let strategy: Vec<CapacityProviderStrategyItem> =
        match (&req.capacity_provider_strategy, *launch_type) {
            (Some(s), _) => s.clone(),
            (None, None) => cluster_row
                .iter()
                .flat_map(|c| c.default_capacity_provider_strategy.iter())
                .filter_map(|v| serde_json::from_value(v.clone()).ok())
                .collect(),
            (None, Some(_)) => Vec::new(),
        };
    if !strategy.is_empty() {
        clusters::check_request_strategy(cluster_row.as_ref(), &strategy, cluster)?;
        *launch_type = Some(LaunchType::Fargate);
    }
    Ok(strategy)
}

/// What a request's members become on this host, said as warnings: a platform version
/// other than LATEST, placement asked of a FARGATE task.
pub(super) fn launch_notes(
    req: &RunTaskRequest,
    fargate: bool,
    platform_version: Option<&str>,
    request_warnings: &mut Vec<String>,
) {
    if let Some(v) = platform_version
        && v != shape::FARGATE_LATEST
    {
        request_warnings.push(format!(
            "platformVersion: honoured with a local difference: recorded as {v}; the task runs \
             with what this host does, which follows platform version {}",
            shape::FARGATE_LATEST
        ));
    }
    if fargate
        && req
            .placement_constraints
            .as_ref()
            .is_some_and(|c| !c.is_empty())
    {
        request_warnings.push(
            "placementConstraints: not applied here: a FARGATE task runs on no container \
             instance (ECS: task placement constraints are not supported with Fargate)"
                .into(),
        );
    }
    if fargate
        && req
            .placement_strategy
            .as_ref()
            .is_some_and(|s| !s.is_empty())
    {
        request_warnings.push(
            "placementStrategy: not applied here: a FARGATE task runs on no container \
             instance"
                .into(),
        );
    }
}

/// What the launcher writes and starts: the checked request, with `local`'s choices.
pub(super) fn launch_request(
    req: &RunTaskRequest,
    local: Local,
    (cluster, launch_type, tags): (&str, Option<LaunchType>, Vec<Tag>),
    network_configuration: Option<String>,
    (request_warnings, platform_version): (Vec<String>, Option<String>),
) -> launch::Request {
    launch::Request {
        cluster: cluster.to_string(),
        launch_type: launch_type.map(|l| launch_type_str(l).to_string()),
        started_by: req.started_by.clone(),
        group: req.group.clone(),
        overrides: req.overrides.clone(),
        tags,
        enable_execute_command: req.enable_execute_command,
        env_file: local.env_file,
        volume_map: local.volume_map,
        network_configuration,
        secrets_file: local.secrets_file,
        host_credentials: local.host_credentials,
        warnings: request_warnings,
        image_scope: local.deployment,
        host_execution_credentials: local.host_execution_credentials,
        launch: LaunchRecord {
            capacity_provider_name: None,
            platform_version,
            reference_id: req.reference_id.clone(),
            placement_constraints: req
                .placement_constraints
                .as_ref()
                .and_then(|v| serde_json::to_value(v).ok()),
            placement_strategy: req
                .placement_strategy
                .as_ref()
                .and_then(|v| serde_json::to_value(v).ok()),
            client_token: req.client_token.clone(),
            container_instance_arn: None,
        },
    }
}

/// How many of `count` tasks this box takes now, the failures of the others, and the
/// placement lock held until their rows are written (none for FARGATE tasks, nor when the
/// launcher places on a cluster's instances).
#[allow(clippy::type_complexity)]
pub(super) fn place_here(
    ecs: &Ecs,
    store: &mut Store,
    (req, cluster, stored): (&RunTaskRequest, &str, &StoredTaskDefinition),
    (count, fargate, on_this_box): (u32, bool, bool),
) -> EcsResult<(u32, Vec<Failure>, Option<nix::fcntl::Flock<std::fs::File>>)> {
    // A task on this box's container instance is placed there first (resources,
    // constraints): the lock is held until its rows are written, so two RunTasks
    // (API or CLI) never both take the last memory. FARGATE tasks use no container
    // instance, as in ECS.
    // In cluster mode the launcher places on the cluster's instances itself.
    Ok(if fargate || !on_this_box {
        (count, Vec::new(), None)
    } else {
        let lock = crate::ecs::on_box::lock(&ecs.root)?;
        let asked = crate::ecs::on_box::Asked {
            overrides: &req.overrides,
            group: req.group.as_deref(),
            constraints: req.placement_constraints.as_deref().unwrap_or_default(),
            strategy: req.placement_strategy.as_deref().unwrap_or_default(),
            count,
        };
        let mut placed = crate::ecs::on_box::place(&*store, cluster, stored, &asked)?;
        if !placed.1.is_empty() {
            // Tasks whose supervisor died give their resources back, then placement
            // is tried again; only then, so a launch that fits does not walk every
            // task's supervisor (that walk grows with the number of tasks).
            ecs.reconcile(store);
            placed = crate::ecs::on_box::place(&*store, cluster, stored, &asked)?;
        }
        let (placed, failures) = placed;
        (placed, failures, Some(lock))
    })
}

/// The client token's record: the tasks a retry with it gets; given up when nothing was
/// placed, so that a retry places again.
pub(super) fn remember_token(
    started: &mut Started,
    cluster: &str,
    token: Option<String>,
    (digest, now): (String, i64),
) -> EcsResult<()> {
    if let Some(token) = &token
        && started.response.tasks.is_empty()
    {
        // Nothing was placed: a retry with the token places again.
        if let Err(err) = started.store.release_run_token(cluster, token) {
            tracing::warn!(error = %err, "failed to release a RunTask client token");
        }
    } else if let Some(token) = &token {
        let used = RunToken {
            request: digest,
            task_arns: started
                .response
                .tasks
                .iter()
                .map(|t| t.task_arn.clone())
                .collect(),
            created_at_ms: now,
        };
        started
            .store
            .save_run_token(cluster, token, &used, now - CLIENT_TOKEN_TTL_MS)
            .map_err(anyhow::Error::from)?;
    }
    Ok(())
}
