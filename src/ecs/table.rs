//! The one table of the ECS and CloudWatch Logs operations this host serves: each declared
//! once, as a row of [`rows!`] (wire name, service, request and response types, the call,
//! what it does here). This file turns the rows into [`Op`] and imports nothing, so any file
//! of the core can name an operation; `operations.rs` turns the same rows into types.

/// The table. Each row: `Name(Service): Request => Response, call <fn(&Context, Request)>,
/// "notes";` with `decode <fn>;` before `call` for a request that is not a plain serde
/// shape. Types and calls are resolved where the rows are expanded (`super::operations`);
/// `notes` say what the operation does here (rendered into docs/serve.md for ECS).
macro_rules! rows {
    ($then:ident) => {
        $then! {
            RegisterTaskDefinition(Ecs): crate::taskdef::Parsed => td::TaskDefinitionResponse,
                decode task_definition;
                call register,
                "the same validation as `minifargate register-task-definition`; `tags` kept";
            DescribeTaskDefinition(Ecs): td::DescribeTaskDefinitionRequest => td::TaskDefinitionResponse,
                call |cx, r| td::describe_task_definition(cx.ecs, &r),
                "`include: [\"TAGS\"]`";
            ListTaskDefinitions(Ecs): td::ListTaskDefinitionsRequest => td::ListTaskDefinitionsResponse,
                call |cx, r| td::list_task_definitions(cx.ecs, &r),
                "`familyPrefix`, `status`, `sort`";
            ListTaskDefinitionFamilies(Ecs):
                td::ListTaskDefinitionFamiliesRequest => td::ListTaskDefinitionFamiliesResponse,
                call |cx, r| td::list_task_definition_families(cx.ecs, &r),
                "`familyPrefix`, `status` (ACTIVE, INACTIVE or ALL, the default)";
            DeregisterTaskDefinition(Ecs):
                td::DeregisterTaskDefinitionRequest => td::TaskDefinitionResponse,
                call |cx, r| td::deregister_task_definition(cx.ecs, &r),
                "";
            DeleteTaskDefinitions(Ecs):
                td::DeleteTaskDefinitionsRequest => td::DeleteTaskDefinitionsResponse,
                call |cx, r| td::delete_task_definitions(cx.ecs, &r),
                "INACTIVE revisions become DELETE_IN_PROGRESS, and are removed once no task, service or deployment uses them (the family keeps counting revisions); an ACTIVE one is a failure";
            RunTask(Ecs): tasks::RunTaskRequest => tasks::RunTaskResponse,
                call |cx, r| Ok(detached(Op::RunTask, tasks::run_task_with(cx.ecs, r, local(cx), fleet::get().launcher())?)),
                "every member; what each does here is in [taskdefs.md](taskdefs.md#what-this-host-does-with-each-member) (RunTask table): capacity provider strategies resolve to FARGATE (`capacityProviderName`), `platformVersion`, `propagateTags`, ECS managed tags, `clientToken` idempotency (24 h, per cluster); an EC2 task is placed on the cluster's container instance (this host): one that does not fit (CPU, memory, host ports) or whose `memberOf`/`distinctInstance` it does not satisfy is a `failures[]` entry with ECS's reason ([cluster.md](cluster.md#placement))";
            StartTask(Ecs): st::StartTaskRequest => tasks::RunTaskResponse,
                call |cx, r| Ok(detached(Op::StartTask, st::start_task(cx.ecs, r, local(cx))?)),
                "one EC2 task on each named container instance (this host; any other is a MISSING failure), placed as RunTask's (a task that does not fit is a `RESOURCE:*` failure); with `serve --cluster`, on each named instance of the cluster, or a failure saying why not (`MISSING`, `INACTIVE`, `DRAINING`, `AGENT`, `RESOURCE:*`, the task definition's memberOf: [cluster.md](cluster.md#tasks))";
            StopTask(Ecs): tasks::StopTaskRequest => tasks::StopTaskResponse,
                call |cx, r| tasks::stop_task(cx.ecs, &r, tasks::Unset::DefaultCluster),
                "`reason` becomes `stoppedReason`; answers once `desiredStatus` is STOPPED";
            DescribeTasks(Ecs): tasks::DescribeTasksRequest => tasks::DescribeTasksResponse,
                call |cx, r| tasks::describe_tasks(cx.ecs, &r, tasks::Unset::DefaultCluster),
                "`include: [\"TAGS\"]`; unknown ids are MISSING failures; the task's warnings are `attributes` named `minifargate.warning`";
            ListTasks(Ecs): tasks::ListTasksRequest => tasks::ListTasksResponse,
                call |cx, r| tasks::list_tasks(cx.ecs, &r),
                "`family`, `desiredStatus`, `startedBy`, `serviceName`, `launchType`, `containerInstance`, ANDed (ECS's model says `startedBy` must be the only filter; what ECS answers otherwise is undocumented, so nothing is refused)";
            UpdateTaskProtection(Ecs):
                prot::UpdateTaskProtectionRequest => prot::TaskProtectionResponse,
                call |cx, r| prot::update_task_protection(cx.ecs, &r),
                "a service's tasks; `expiresInMinutes` 1-2880 (120 by default); honoured by the service scheduler";
            GetTaskProtection(Ecs): prot::GetTaskProtectionRequest => prot::TaskProtectionResponse,
                call |cx, r| prot::get_task_protection(cx.ecs, &r),
                "also served inside the task at `$ECS_AGENT_URI/task-protection/v1/state`";
            ListContainerInstances(Ecs):
                ci::ListContainerInstancesRequest => ci::ListContainerInstancesResponse,
                call |cx, r| ci::list_container_instances(cx.ecs, &r),
                "this host, the one container instance of each ACTIVE cluster; `filter` in the cluster query language (attributes, `task:group`, `runningTasksCount`, ...)";
            DescribeContainerInstances(Ecs):
                ci::DescribeContainerInstancesRequest => ci::DescribeContainerInstancesResponse,
                call |cx, r| ci::describe_container_instances(cx.ecs, &r),
                "registered and remaining CPU, memory and ports as the EC2 tasks use them; the agent's attributes and capabilities";
            CreateCluster(Ecs): clusters::CreateClusterRequest => clusters::ClusterResponse,
                call |cx, r| clusters::create_cluster(cx.ecs, &r),
                "`settings` (`containerInsights` enabled or enhanced: the cluster's `ECS/ContainerInsights` metrics, [cloudwatch.md](cloudwatch.md#container-insights)), `capacityProviders` (FARGATE, FARGATE_SPOT), `defaultCapacityProviderStrategy`, `configuration`, `serviceConnectDefaults` (its `namespace` an existing Cloud Map namespace, else a new HTTP one made, answered as its ARN: [service-discovery.md](service-discovery.md#service-connect-serviceconnectconfiguration)) and `tags` stored";
            DescribeClusters(Ecs): clusters::DescribeClustersRequest => clusters::DescribeClustersResponse,
                call |cx, r| fleet::with_counts(clusters::describe_clusters(cx.ecs, &r)?, &r),
                "task, service and container instance counts (with `serve --cluster`, the instances and tasks in etcd: [cluster.md](cluster.md#what-works-in-this-step)); `include` SETTINGS, CONFIGURATIONS, TAGS, STATISTICS (by launch type), ATTACHMENTS (none: Fargate's providers have none)";
            ListClusters(Ecs): clusters::ListClustersRequest => clusters::ListClustersResponse,
                call |cx, r| clusters::list_clusters(cx.ecs, &r),
                "";
            DeleteCluster(Ecs): clusters::DeleteClusterRequest => clusters::ClusterResponse,
                call |cx, r| clusters::delete_cluster(cx.ecs, &r),
                "refused while tasks are not STOPPED";
            UpdateCluster(Ecs): clusters::UpdateClusterRequest => clusters::ClusterResponse,
                call |cx, r| clusters::update_cluster(cx.ecs, &r),
                "`settings` (containerInsights: [cloudwatch.md](cloudwatch.md#container-insights)), `configuration`, `serviceConnectDefaults` (a new namespace name made in Cloud Map, as CreateCluster) stored and returned";
            UpdateClusterSettings(Ecs): clusters::UpdateClusterSettingsRequest => clusters::ClusterResponse,
                call |cx, r| clusters::update_cluster_settings(cx.ecs, &r),
                "containerInsights stored and returned; enabled or enhanced publishes the cluster's `ECS/ContainerInsights` metrics from the next period ([cloudwatch.md](cloudwatch.md#container-insights))";
            PutClusterCapacityProviders(Ecs):
                clusters::PutClusterCapacityProvidersRequest => clusters::ClusterResponse,
                call |cx, r| clusters::put_cluster_capacity_providers(cx.ecs, &r),
                "FARGATE and FARGATE_SPOT; the default strategy RunTask uses without a launch type";
            DescribeCapacityProviders(Ecs):
                clusters::DescribeCapacityProvidersRequest => clusters::DescribeCapacityProvidersResponse,
                call |cx, r| clusters::describe_capacity_providers(cx.ecs, &r),
                "FARGATE and FARGATE_SPOT; others are MISSING failures";
            CreateService(Ecs): services::CreateServiceRequest => services::ServiceResponse,
                call |cx, r| services::create_service(cx.ecs, r, cx.remote()),
                "see [Services](#services); the scheduler runs in `serve`";
            UpdateService(Ecs): services::UpdateServiceRequest => services::ServiceResponse,
                call |cx, r| services::update_service(cx.ecs, r, cx.remote()),
                "see [Services](#services)";
            DescribeServices(Ecs): services::DescribeServicesRequest => services::DescribeServicesResponse,
                call |cx, r| services::describe_services(cx.ecs, r),
                "";
            ListServices(Ecs): services::ListServicesRequest => services::ListServicesResponse,
                call |cx, r| services::list_services(cx.ecs, &r),
                "paginated; `launchType`, `schedulingStrategy`, `resourceManagementType` (every service is CUSTOMER)";
            DeleteService(Ecs): services::DeleteServiceRequest => services::ServiceResponse,
                call |cx, r| services::delete_service(cx.ecs, r),
                "DRAINING, then INACTIVE";
            ListServicesByNamespace(Ecs):
                services::ListServicesByNamespaceRequest => services::ListServicesByNamespaceResponse,
                call |cx, r| services::list_services_by_namespace(cx.ecs, &r),
                "the services of every cluster that use Service Connect in the namespace (by name or ARN; a service's own `namespace`, else its cluster's `serviceConnectDefaults.namespace`), ACTIVE and DRAINING; the namespaces are Cloud Map's and the clusters' defaults, others are NamespaceNotFoundException";
            ListServiceDeployments(Ecs):
                deps::ListServiceDeploymentsRequest => deps::ListServiceDeploymentsResponse,
                call |cx, r| deps::list_service_deployments(cx.ecs, &r),
                "newest first, 20 a page unless asked; `status`, `createdAt`; see [Deployments](#deployments)";
            DescribeServiceDeployments(Ecs):
                deps::DescribeServiceDeploymentsRequest => deps::DescribeServiceDeploymentsResponse,
                call |cx, r| deps::describe_service_deployments(cx.ecs, &r),
                "source and target revisions with their task counts, `rollback`, `deploymentCircuitBreaker` (status, failures, threshold); `alarms` (status DISABLED, MONITORING, TRIGGERED with `triggeredAlarmNames`, MONITORING_COMPLETE); a blue/green deployment's `lifecycleStage` (see [Deployments](#deployments))";
            StopServiceDeployment(Ecs):
                deps::StopServiceDeploymentRequest => deps::StopServiceDeploymentResponse,
                call |cx, r| deps::stop_service_deployment(cx.ecs, &r),
                "ROLLBACK (the default) to the last completed deployment (blue/green: traffic back to blue); ABORT is InvalidParameterException, a finished deployment ConflictException";
            DescribeServiceRevisions(Ecs):
                deps::DescribeServiceRevisionsRequest => deps::DescribeServiceRevisionsResponse,
                call |cx, r| deps::describe_service_revisions(cx.ecs, &r),
                "a revision per deployment (`service-revision/<cluster>/<service>/<the deployment's digits>`): task definition, launch type, network configuration, container images";
            TagResource(Ecs): tags::TagResourceRequest => tags::Empty,
                call |cx, r| tags::tag_resource(cx.ecs, r),
                "clusters, task definitions, tasks and services, by ARN";
            UntagResource(Ecs): tags::UntagResourceRequest => tags::Empty,
                call |cx, r| tags::untag_resource(cx.ecs, &r),
                "";
            ListTagsForResource(Ecs): tags::ListTagsForResourceRequest => tags::ListTagsForResourceResponse,
                call |cx, r| tags::list_tags_for_resource(cx.ecs, &r),
                "";
            ListAccountSettings(Ecs):
                acct::ListAccountSettingsRequest => acct::ListAccountSettingsResponse,
                call |cx, r| acct::list_account_settings(cx.ecs, &r),
                "the caller's (the account root) or, with `effectiveSettings`, every setting's effective value";
            PutAccountSetting(Ecs): acct::PutAccountSettingRequest => acct::SettingResponse,
                call |cx, r| acct::put_account_setting(cx.ecs, &r),
                "stored per principal";
            PutAccountSettingDefault(Ecs): acct::PutAccountSettingDefaultRequest => acct::SettingResponse,
                call |cx, r| acct::put_account_setting_default(cx.ecs, &r),
                "stored; `containerInsights` is what a new cluster starts with";

            CreateLogGroup(Logs): logs::CreateLogGroupRequest => serde_json::Value,
                call |cx, r| logs::create_log_group(cx.ecs, &r),
                "";
            DeleteLogGroup(Logs): logs::LogGroupRequest => serde_json::Value,
                call |cx, r| logs::delete_log_group(cx.ecs, &r),
                "";
            CreateLogStream(Logs): logs::LogStreamRequest => serde_json::Value,
                call |cx, r| logs::create_log_stream(cx.ecs, &r),
                "";
            DeleteLogStream(Logs): logs::LogStreamRequest => serde_json::Value,
                call |cx, r| logs::delete_log_stream(cx.ecs, &r),
                "";
            DescribeLogGroups(Logs): logs::DescribeLogGroupsRequest => serde_json::Value,
                call |cx, r| logs::describe_log_groups(cx.ecs, &r),
                "";
            DescribeLogStreams(Logs): logs::DescribeLogStreamsRequest => serde_json::Value,
                call |cx, r| logs::describe_log_streams(cx.ecs, &r),
                "";
            GetLogEvents(Logs): logs::GetLogEventsRequest => serde_json::Value,
                call |cx, r| logs::get_log_events(cx.ecs, &r),
                "";
            FilterLogEvents(Logs): logs::FilterLogEventsRequest => serde_json::Value,
                call |cx, r| logs::filter_log_events(cx.ecs, &r),
                "";
            PutLogEvents(Logs): logs::PutLogEventsRequest => serde_json::Value,
                call |cx, r| logs::put_log_events(cx.ecs, &r),
                "";
            PutRetentionPolicy(Logs): logs::PutRetentionPolicyRequest => serde_json::Value,
                call |cx, r| logs::put_retention_policy(cx.ecs, &r),
                "";
            DeleteRetentionPolicy(Logs): logs::LogGroupRequest => serde_json::Value,
                call |cx, r| logs::delete_retention_policy(cx.ecs, &r),
                "";
        }
    };
}
pub(crate) use rows;

/// The service an operation belongs to (its `X-Amz-Target` prefix and its exceptions).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Service {
    /// Amazon ECS (`AmazonEC2ContainerServiceV20141113.`).
    Ecs,
    /// CloudWatch Logs (`Logs_20140328.`).
    Logs,
    /// Amazon ECR (`AmazonEC2ContainerRegistry_V20150921.`): its operations are
    /// `crate::ecr::api`'s, none of them a row here.
    Ecr,
    /// Elastic Load Balancing v2 (awsQuery; its operations are `crate::elb::ops`, not rows
    /// of this table).
    Elb,
    /// Amazon CloudWatch metrics (RPC v2 CBOR and AWS JSON 1.0; its operations are
    /// `crate::cloudwatch::ops`, not rows of this table).
    CloudWatch,
    /// Application Auto Scaling (`AnyScaleFrontendService.`; its operations are
    /// `crate::autoscaling::ops`, not rows of this table).
    AutoScaling,
    /// AWS Cloud Map (`Route53AutoNaming_v20170314.`; its operations are
    /// `crate::servicediscovery::ops`, not rows of this table).
    CloudMap,
}

/// [`Op`] from the rows.
macro_rules! names {
    ($(
        $name:ident($svc:ident): $req:ty => $resp:ty,
        $(decode $dec:path;)?
        call $call:expr,
        $notes:literal;
    )*) => {
        /// Every operation this host serves, in the order the docs list them.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Op { $($name),* }

        impl Op {
            pub const ALL: &[Op] = &[$(Op::$name),*];

            /// The wire name (`RunTask`).
            pub fn name(self) -> &'static str {
                match self { $(Op::$name => stringify!($name)),* }
            }

            pub fn service(self) -> Service {
                match self { $(Op::$name => Service::$svc),* }
            }

            /// What the operation does here (members honoured, local differences).
            #[cfg_attr(not(test), allow(dead_code))]
            pub fn notes(self) -> &'static str {
                match self { $(Op::$name => $notes),* }
            }
        }
    };
}

rows!(names);

impl Op {
    /// The operation of `service` named `name` on the wire.
    pub fn named(service: Service, name: &str) -> Option<Op> {
        Op::ALL
            .iter()
            .copied()
            .find(|o| o.service() == service && o.name() == name)
    }

    /// The operations of `service`, in table order.
    pub fn of(service: Service) -> impl Iterator<Item = Op> {
        Op::ALL
            .iter()
            .copied()
            .filter(move |o| o.service() == service)
    }
}

/// The ECS operations' names as one line (README.md, and the answer to an unknown one).
pub fn ecs_names() -> String {
    Op::of(Service::Ecs)
        .map(Op::name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The ECS operations as a Markdown table (docs/serve.md).
#[cfg(test)]
pub fn ecs_markdown() -> String {
    let mut s = String::from("| Operation | Notes |\n|---|---|\n");
    for o in Op::of(Service::Ecs) {
        s.push_str(&format!("| {} | {} |\n", o.name(), o.notes()));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readme_and_serve_md_list_the_table() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        for (file, body) in [
            ("README.md", format!("{}.\n", ecs_names())),
            ("docs/serve.md", ecs_markdown()),
        ] {
            let path = root.join(file);
            let text = std::fs::read_to_string(&path).unwrap();
            let (begin, end) = ("<!-- operations:begin -->\n", "<!-- operations:end -->");
            let (Some(b), Some(e)) = (text.find(begin), text.find(end)) else {
                panic!("{file} lacks the markers {begin:?} and {end:?}");
            };
            let mut want = text.clone();
            want.replace_range(b + begin.len()..e, &body);
            if want != text {
                if std::env::var_os("UPDATE_DOCS").is_some() {
                    std::fs::write(&path, &want).unwrap();
                } else {
                    panic!(
                        "{file}'s operations differ from ecs::table; run `UPDATE_DOCS=1 \
                         cargo test --bin minifargate ecs::table` to rewrite them"
                    );
                }
            }
        }
    }
}
