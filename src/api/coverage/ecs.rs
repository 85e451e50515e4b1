//! Amazon ECS: every input member of the operations of `crate::ecs::table` (RunTask's,
//! StartTask's and RegisterTaskDefinition's in `taskdef::coverage`, docs/taskdefs.md).

use super::{Class, Elsewhere, Row, Service, ap, na, rf};
use crate::ecs::operations::{Op, Service as Svc};
use crate::taskdef::coverage as td;

pub static ECS: Service = Service {
    slug: "ecs",
    title: "Amazon ECS",
    model: ("ecs", "2014-11-13"),
    operations: || Op::of(Svc::Ecs).map(|o| o.name()).collect(),
    rows: ROWS,
    elsewhere,
};

fn class(c: td::Class) -> Class {
    match c {
        td::Class::Honoured | td::Class::LocalDifference | td::Class::ReadOnly => Class::Applied,
        td::Class::NotApplied => Class::NotApplied,
        td::Class::Refused => Class::Refused,
    }
}

fn rows_of(t: &'static [td::Row]) -> Vec<(&'static str, Class, &'static str)> {
    t.iter().map(|r| (r.path, class(r.class), r.note)).collect()
}

fn elsewhere() -> Vec<Elsewhere> {
    let mut start = rows_of(td::RUN_TASK);
    start.push((
        "containerInstances",
        Class::Applied,
        "one task on each (this host, or with `serve --cluster` each named box); another is a MISSING failure",
    ));
    vec![
        Elsewhere {
            op: "RegisterTaskDefinition",
            doc: "[taskdefs.md](../taskdefs.md#what-this-host-does-with-each-member) (task definition table)",
            rows: rows_of(td::TASK_DEFINITION),
            superset: true,
        },
        Elsewhere {
            op: "RunTask",
            doc: "[taskdefs.md](../taskdefs.md#what-this-host-does-with-each-member) (RunTask table)",
            rows: rows_of(td::RUN_TASK),
            superset: false,
        },
        Elsewhere {
            op: "StartTask",
            doc: "[taskdefs.md](../taskdefs.md#what-this-host-does-with-each-member) (RunTask table: StartTask runs RunTask's path with the EC2 launch type; `containerInstances` names the instances)",
            rows: start,
            superset: true,
        },
    ]
}

const CLUSTER: &str = "the cluster (name or ARN; `default` when absent); ClusterNotFoundException for one that is not ACTIVE";
const PAGE: &str = "pagination (crate::ecs::page): up to 100 a page; a token that is not ours is InvalidParameterException";
const TAGS: &str = "the resource's tags: kept, returned by ListTagsForResource and `include: [\"TAGS\"]`; ECS's limits (50 tags, key 1-128, value 0-256, no `aws:` prefix) refused with InvalidParameterException";
const CAPACITY: &str = "FARGATE and FARGATE_SPOT, resolved to the FARGATE launch type (capacityProviderName on each task); another provider, or one the cluster lacks, is InvalidParameterException";
const EXEC_CONFIG: &str = "kept and returned as given (DescribeClusters CONFIGURATIONS); exec sessions here are not logged to CloudWatch or S3 and use no KMS key";
const STORAGE_CONFIG: &str =
    "kept and returned as given; no KMS here: task storage is not encrypted with the key";
const SC_PROXY: &str = "kept and returned as given; the Service Connect gateway passes bytes through (docs/service-discovery.md, \"Not done\"): no per-request timeout, TLS, logs or header routing";
const EBS: &str = "kept and returned as given; no Amazon EBS here: the service's tasks whose definition has a volume configured at launch are refused when they start; a service event says so";

pub static ROWS: &[Row] = &[
    // Task definitions.
    ap("DescribeTaskDefinition DeregisterTaskDefinition", "taskDefinition", "FAMILY, FAMILY:REVISION or an ARN (Deregister: a revision); ClientException for one that is not registered"),
    ap("DescribeTaskDefinition", "include", "TAGS returns the revision's tags"),
    ap("ListTaskDefinitions ListTaskDefinitionFamilies", "familyPrefix", "only the families starting with it"),
    ap("ListTaskDefinitions ListTaskDefinitionFamilies", "status", "the revisions' or families' status filter; a value ECS does not define is InvalidParameterException"),
    ap("ListTaskDefinitions", "sort", "ASC or DESC by family and revision"),
    ap("ListTaskDefinitions ListTaskDefinitionFamilies ListTasks ListContainerInstances ListClusters DescribeCapacityProviders ListServices ListServicesByNamespace ListServiceDeployments ListAccountSettings", "nextToken", PAGE),
    ap("ListTaskDefinitions ListTaskDefinitionFamilies ListTasks ListContainerInstances ListClusters DescribeCapacityProviders ListServices ListServicesByNamespace ListServiceDeployments ListAccountSettings", "maxResults", PAGE),
    ap("DeleteTaskDefinitions", "taskDefinitions", "1 to 10 revisions: INACTIVE ones become DELETE_IN_PROGRESS and are removed once nothing uses them; an ACTIVE one is a failure"),
    // Tasks.
    ap("CreateService UpdateService StopTask DescribeTasks ListTasks UpdateTaskProtection GetTaskProtection ListContainerInstances DescribeContainerInstances DeleteCluster UpdateCluster UpdateClusterSettings PutClusterCapacityProviders DescribeServices ListServices DeleteService ListServiceDeployments", "cluster", CLUSTER),
    ap("StopTask", "task", "the task stopped (its containers get SIGTERM, SIGKILL after stopTimeout)"),
    ap("StopTask", "reason", "the task's stoppedReason"),
    ap("DescribeTasks", "tasks", "the tasks described; unknown ones are MISSING failures"),
    ap("DescribeTasks", "include", "TAGS returns the tasks' tags"),
    ap("ListTasks", "containerInstance", "this host, the cluster's container instance: its EC2 tasks; another is InvalidParameterException"),
    ap("ListTasks", "family", "only the tasks of the family"),
    ap("ListTasks", "startedBy", "only the tasks started by it"),
    ap("ListTasks", "serviceName", "only the service's tasks; ServiceNotFoundException for a service the cluster lacks"),
    ap("ListTasks", "desiredStatus", "RUNNING (default), PENDING or STOPPED; another is InvalidParameterException"),
    ap("ListTasks", "launchType", "only the tasks of the launch type; a value ECS does not define is InvalidParameterException"),
    rf("ListTasks", "daemonName", "InvalidParameterException: this host runs no daemons, so no daemon of that name exists"),
    ap("UpdateTaskProtection GetTaskProtection", "tasks", "the service's tasks protected or described (up to 10, GetTaskProtection 100); others are MISSING failures"),
    ap("UpdateTaskProtection", "protectionEnabled", "the protection the service scheduler honours (a protected task is not stopped by scale-in or a deployment)"),
    ap("UpdateTaskProtection", "expiresInMinutes", "1-2880 (120 when absent), else InvalidParameterException; the protection ends then"),
    // Container instances.
    ap("ListContainerInstances", "filter", "the cluster query language over this host's attributes, `task:group`, `runningTasksCount`, ...; one that does not parse is InvalidParameterException"),
    ap("ListContainerInstances", "status", "this host is ACTIVE: another status lists nothing; a value ECS does not define is InvalidParameterException"),
    ap("DescribeContainerInstances", "containerInstances", "1 to 100; this host (with `serve --cluster`, the boxes); others are MISSING failures"),
    ap("DescribeContainerInstances", "include", "TAGS or CONTAINER_INSTANCE_HEALTH; another is InvalidParameterException"),
    // Clusters.
    ap("CreateCluster", "clusterName", "the cluster's name (`default` when absent); ECS's name rules refused with InvalidParameterException"),
    ap("CreateCluster TagResource", "tags", TAGS),
    ap("CreateCluster TagResource", "tags[].key", TAGS),
    ap("CreateCluster TagResource", "tags[].value", TAGS),
    ap("CreateCluster UpdateCluster UpdateClusterSettings", "settings", "containerInsights (enabled, enhanced, disabled): the cluster's ECS/ContainerInsights metrics (docs/cloudwatch.md)"),
    ap("CreateCluster UpdateCluster UpdateClusterSettings", "settings[].name", "containerInsights; another name is InvalidParameterException"),
    ap("CreateCluster UpdateCluster UpdateClusterSettings", "settings[].value", "enabled, enhanced or disabled; another is InvalidParameterException"),
    ap("CreateCluster UpdateCluster", "configuration", "kept and returned (DescribeClusters CONFIGURATIONS); see its members"),
    na("CreateCluster UpdateCluster", "configuration.executeCommandConfiguration", EXEC_CONFIG).whole(),
    na("CreateCluster UpdateCluster", "configuration.managedStorageConfiguration", STORAGE_CONFIG).whole(),
    ap("CreateCluster PutClusterCapacityProviders", "capacityProviders", "FARGATE and FARGATE_SPOT, associated with the cluster; another is InvalidParameterException"),
    ap("CreateCluster PutClusterCapacityProviders", "defaultCapacityProviderStrategy", "the strategy a service or task given neither launch type nor strategy uses"),
    ap("CreateCluster PutClusterCapacityProviders", "defaultCapacityProviderStrategy[].capacityProvider", CAPACITY),
    ap("CreateCluster PutClusterCapacityProviders", "defaultCapacityProviderStrategy[].weight", "0-1000; with base, which provider each task records (both are Fargate here)"),
    ap("CreateCluster PutClusterCapacityProviders", "defaultCapacityProviderStrategy[].base", "0-100000; as weight"),
    ap("CreateCluster UpdateCluster", "serviceConnectDefaults", "the namespace of the cluster's Service Connect services"),
    ap("CreateCluster UpdateCluster", "serviceConnectDefaults.namespace", "an existing Cloud Map namespace (name or ARN), else a new HTTP one made in Cloud Map (docs/service-discovery.md)"),
    ap("DescribeClusters", "clusters", "names or ARNs (`default` when empty); unknown ones are MISSING failures"),
    ap("DescribeClusters", "include", "ATTACHMENTS, CONFIGURATIONS, SETTINGS, STATISTICS, TAGS: what is described beyond the counts; another is InvalidParameterException"),
    ap("DescribeCapacityProviders", "capacityProviders", "FARGATE and FARGATE_SPOT; others are MISSING failures"),
    ap("DescribeCapacityProviders", "cluster", "the cluster whose providers are described"),
    ap("DescribeCapacityProviders", "include", "TAGS (Fargate's providers have none); another is InvalidParameterException"),
    // Services.
    ap("CreateService", "serviceName", "the service's name; ECS's name rules refused with InvalidParameterException"),
    ap("CreateService UpdateService", "taskDefinition", "the revision the service's tasks run (UpdateService: a new deployment)"),
    ap("UpdateService DeleteService", "service", "the service (name or ARN); ServiceNotFoundException when the cluster lacks it"),
    ap("CreateService UpdateService", "desiredCount", "the tasks the service scheduler keeps running"),
    ap("CreateService", "clientToken", "idempotency: the same token and request return the first call's service"),
    ap("CreateService", "launchType", "FARGATE or EC2 (placed on this host); with capacityProviderStrategy, InvalidParameterException as ECS answers"),
    ap("CreateService UpdateService", "capacityProviderStrategy", "the providers the service's tasks record; UpdateService with an empty list goes back to the launch type"),
    ap("CreateService UpdateService", "capacityProviderStrategy[].capacityProvider", CAPACITY),
    ap("CreateService UpdateService", "capacityProviderStrategy[].weight", "as in RunTask: which provider each task records"),
    ap("CreateService UpdateService", "capacityProviderStrategy[].base", "as in RunTask: which provider each task records"),
    ap("CreateService UpdateService", "platformVersion", "recorded and given to the service's tasks (RunTask's rules: refused for EC2)"),
    na("CreateService", "role", "no IAM here: serve registers the targets itself; shown as roleArn (a role without loadBalancers is InvalidParameterException, as ECS answers)"),
    ap("CreateService UpdateService", "deploymentConfiguration", "see its members"),
    ap("CreateService UpdateService", "deploymentConfiguration.deploymentCircuitBreaker", "the circuit breaker of the service's deployments (src/scheduler/)"),
    ap("CreateService UpdateService", "deploymentConfiguration.deploymentCircuitBreaker.enable", "a deployment that fails its threshold of tasks is FAILED"),
    ap("CreateService UpdateService", "deploymentConfiguration.deploymentCircuitBreaker.rollback", "a failed deployment rolls back to the last completed one"),
    ap("CreateService UpdateService", "deploymentConfiguration.maximumPercent", "the rolling deployment's upper bound of tasks"),
    ap("CreateService UpdateService", "deploymentConfiguration.minimumHealthyPercent", "the rolling deployment's lower bound of healthy tasks"),
    ap("CreateService UpdateService", "deploymentConfiguration.alarms", "CloudWatch alarms watched during a deployment (crate::cloudwatch)"),
    ap("CreateService UpdateService", "deploymentConfiguration.alarms.alarmNames", "an alarm in ALARM fails the deployment"),
    ap("CreateService UpdateService", "deploymentConfiguration.alarms.rollback", "a failed deployment rolls back"),
    ap("CreateService UpdateService", "deploymentConfiguration.alarms.enable", "whether the alarms are watched"),
    ap("CreateService UpdateService", "deploymentConfiguration.strategy", "ROLLING, BLUE_GREEN, LINEAR or CANARY (traffic shifted between the target groups of loadBalancers[].advancedConfiguration: crate::ecs::deployments)"),
    ap("CreateService UpdateService", "deploymentConfiguration.bakeTimeInMinutes", "the bake time of BLUE_GREEN, LINEAR and CANARY; with ROLLING a service event says it is not applied"),
    na("CreateService UpdateService", "deploymentConfiguration.lifecycleHooks", "no AWS Lambda here: recorded and not invoked (a PAUSE hook does not pause); a service event says so").whole(),
    ap("CreateService UpdateService", "deploymentConfiguration.linearConfiguration", "the LINEAR strategy's steps; with another strategy a service event says it is not applied"),
    ap("CreateService UpdateService", "deploymentConfiguration.linearConfiguration.stepPercent", "the traffic shifted each step (3.0-100.0 in tenths, else InvalidParameterException)"),
    ap("CreateService UpdateService", "deploymentConfiguration.linearConfiguration.stepBakeTimeInMinutes", "the wait between steps (0-1440)"),
    ap("CreateService UpdateService", "deploymentConfiguration.canaryConfiguration", "the CANARY strategy's step; with another strategy a service event says it is not applied"),
    ap("CreateService UpdateService", "deploymentConfiguration.canaryConfiguration.canaryPercent", "the traffic shifted first (0.1-100.0 in tenths, else InvalidParameterException)"),
    ap("CreateService UpdateService", "deploymentConfiguration.canaryConfiguration.canaryBakeTimeInMinutes", "the wait before the rest (0-1440)"),
    ap("CreateService UpdateService", "availabilityZoneRebalancing", "ENABLED or DISABLED, recorded and returned (ENABLED by default on create); one host has one zone, so nothing is rebalanced; another value is InvalidParameterException"),
    ap("CreateService UpdateService", "networkConfiguration", "given to the service's tasks: RunTask's networkConfiguration (taskdefs.md)"),
    ap("CreateService UpdateService", "networkConfiguration.awsvpcConfiguration", "as RunTask's"),
    ap("CreateService UpdateService", "networkConfiguration.awsvpcConfiguration.subnets", "as RunTask's: recorded in the tasks' ENI attachment"),
    ap("CreateService UpdateService", "networkConfiguration.awsvpcConfiguration.securityGroups", "as RunTask's: recorded in the tasks' ENI attachment"),
    ap("CreateService UpdateService", "networkConfiguration.awsvpcConfiguration.assignPublicIp", "as RunTask's"),
    ap("CreateService UpdateService", "placementConstraints", "the service's EC2 tasks are placed on this host (or a box) only where they hold (RunTask's)"),
    ap("CreateService UpdateService", "placementConstraints[].type", "distinctInstance or memberOf; another is InvalidParameterException"),
    ap("CreateService UpdateService", "placementConstraints[].expression", "the memberOf expression, in the cluster query language"),
    ap("CreateService UpdateService", "placementStrategy", "checked and applied to placement (RunTask's)"),
    ap("CreateService UpdateService", "placementStrategy[].type", "random, spread or binpack; another is InvalidParameterException"),
    ap("CreateService UpdateService", "placementStrategy[].field", "spread's instanceId, host or attribute:NAME; binpack's cpu or memory"),
    ap("CreateService UpdateService", "healthCheckGracePeriodSeconds", "the scheduler ignores failing load-balancer health checks of a new task for this long"),
    ap("CreateService", "schedulingStrategy", "REPLICA; DAEMON is InvalidParameterException (one host)"),
    ap("CreateService UpdateService", "deploymentController", "see its member"),
    ap("CreateService UpdateService", "deploymentController.type", "ECS; CODE_DEPLOY and EXTERNAL are InvalidParameterException (no CodeDeploy here)"),
    ap("CreateService", "tags", TAGS),
    ap("CreateService", "tags[].key", TAGS),
    ap("CreateService", "tags[].value", TAGS),
    ap("CreateService UpdateService", "enableECSManagedTags", "the service's tasks get aws:ecs:clusterName and aws:ecs:serviceName"),
    ap("CreateService UpdateService", "propagateTags", "SERVICE or TASK_DEFINITION tags copied to the service's tasks"),
    ap("CreateService UpdateService", "enableExecuteCommand", "recorded on the service's tasks"),
    ap("UpdateService", "forceNewDeployment", "starts a new deployment of the same revision"),
    ap("CreateService UpdateService", "loadBalancers", "the service's tasks registered with the target groups (crate::scheduler); UpdateService starts a new deployment"),
    ap("CreateService UpdateService", "loadBalancers[].targetGroupArn", "the ELBv2 target group each task is registered with (deregistered with its delay before it stops)"),
    na("CreateService UpdateService", "loadBalancers[].loadBalancerName", "a Classic Load Balancer's name: there are none here (serve answers ELBv2 only); kept and returned"),
    ap("CreateService UpdateService", "loadBalancers[].containerName", "the container whose port is registered"),
    ap("CreateService UpdateService", "loadBalancers[].containerPort", "the port registered (the task's address and this port for ip targets)"),
    ap("CreateService UpdateService", "loadBalancers[].advancedConfiguration", "BLUE_GREEN, LINEAR, CANARY: the pair of target groups and listener rules traffic shifts between (crate::elb::bluegreen); with ROLLING a service event says it is not applied"),
    ap("CreateService UpdateService", "loadBalancers[].advancedConfiguration.alternateTargetGroupArn", "the green target group; a missing one is InvalidParameterException with BLUE_GREEN"),
    ap("CreateService UpdateService", "loadBalancers[].advancedConfiguration.productionListenerRule", "the rule whose forward weights shift (it must forward to the pair)"),
    ap("CreateService UpdateService", "loadBalancers[].advancedConfiguration.testListenerRule", "the rule that reaches the green tasks before the shift"),
    na("CreateService UpdateService", "loadBalancers[].advancedConfiguration.roleArn", "no IAM here: serve's scheduler changes its own rules; recorded and returned"),
    ap("CreateService UpdateService", "serviceRegistries", "each task registered in the Cloud Map service while it runs (crate::servicediscovery::ecs); more than one is InvalidParameterException"),
    ap("CreateService UpdateService", "serviceRegistries[].registryArn", "the Cloud Map service"),
    ap("CreateService UpdateService", "serviceRegistries[].port", "the port in the instance's attributes (SRV records)"),
    ap("CreateService UpdateService", "serviceRegistries[].containerName", "the container whose port is registered"),
    ap("CreateService UpdateService", "serviceRegistries[].containerPort", "the port registered when `port` is absent"),
    ap("CreateService UpdateService", "serviceConnectConfiguration", "Service Connect: the gateway's aliases and the namespace's Cloud Map services (crate::servicediscovery::connect)"),
    ap("CreateService UpdateService", "serviceConnectConfiguration.enabled", "whether the service takes part"),
    ap("CreateService UpdateService", "serviceConnectConfiguration.namespace", "the namespace (the cluster's default when absent); one that does not exist is NamespaceNotFoundException"),
    ap("CreateService UpdateService", "serviceConnectConfiguration.services", "each entry a Cloud Map service the tasks are registered in"),
    ap("CreateService UpdateService", "serviceConnectConfiguration.services[].portName", "the task definition's port mapping served"),
    ap("CreateService UpdateService", "serviceConnectConfiguration.services[].discoveryName", "the Cloud Map service's name (else portName)"),
    ap("CreateService UpdateService", "serviceConnectConfiguration.services[].clientAliases", "the names clients use (one at most, else InvalidParameterException)"),
    ap("CreateService UpdateService", "serviceConnectConfiguration.services[].clientAliases[].port", "the alias's port on the gateway"),
    ap("CreateService UpdateService", "serviceConnectConfiguration.services[].clientAliases[].dnsName", "the alias's name, resolved by the tasks' DNS server"),
    na("CreateService UpdateService", "serviceConnectConfiguration.services[].clientAliases[].testTrafficRules", SC_PROXY).whole(),
    na("CreateService UpdateService", "serviceConnectConfiguration.services[].ingressPortOverride", "no Service Connect proxy in the task: the gateway connects to the container's port; kept and returned"),
    na("CreateService UpdateService", "serviceConnectConfiguration.services[].timeout", SC_PROXY).whole(),
    na("CreateService UpdateService", "serviceConnectConfiguration.services[].tls", SC_PROXY).whole(),
    na("CreateService UpdateService", "serviceConnectConfiguration.logConfiguration", SC_PROXY).whole(),
    na("CreateService UpdateService", "serviceConnectConfiguration.accessLogConfiguration", SC_PROXY).whole(),
    na("CreateService UpdateService", "volumeConfigurations", EBS).whole(),
    na("CreateService UpdateService", "vpcLatticeConfigurations", "no VPC Lattice here: nothing routes traffic to the tasks; kept and returned; a service event says so").whole(),
    ap("DescribeServices", "services", "the services described; unknown ones are MISSING failures"),
    ap("DescribeServices", "include", "TAGS returns the services' tags"),
    ap("ListServices", "launchType", "only the services of the launch type"),
    ap("ListServices", "schedulingStrategy", "REPLICA lists the services; DAEMON none (there are none here)"),
    ap("ListServices", "resourceManagementType", "CUSTOMER lists the services (every one is); ECS lists none"),
    ap("DeleteService", "force", "deletes a service whose desiredCount is not 0 (else InvalidParameterException)"),
    ap("ListServicesByNamespace", "namespace", "a Cloud Map namespace or a cluster's serviceConnectDefaults namespace; another is NamespaceNotFoundException"),
    ap("ListServiceDeployments", "service", "the service whose deployments are listed"),
    ap("ListServiceDeployments", "status", "only the deployments in these states"),
    ap("ListServiceDeployments", "createdAt", "only the deployments created within it"),
    ap("ListServiceDeployments", "createdAt.before", "created at or before"),
    ap("ListServiceDeployments", "createdAt.after", "created at or after"),
    ap("DescribeServiceDeployments", "serviceDeploymentArns", "the deployments described; unknown ones are failures"),
    ap("StopServiceDeployment", "serviceDeploymentArn", "the deployment stopped; a finished one is ConflictException"),
    rf("StopServiceDeployment", "stopType", "ROLLBACK (the default) rolls back; ABORT is InvalidParameterException here"),
    ap("DescribeServiceRevisions", "serviceRevisionArns", "the revisions described; unknown ones are failures"),
    // Tags.
    ap("TagResource UntagResource ListTagsForResource", "resourceArn", "a cluster, task definition, task or service ARN (another string is InvalidParameterException); a cluster that does not exist is ClusterNotFoundException, another resource InvalidParameterException naming it"),
    ap("UntagResource", "tagKeys", "the keys removed"),
    // Account settings.
    ap("ListAccountSettings PutAccountSetting PutAccountSettingDefault", "name", "the setting (ECS's names; another is InvalidParameterException); containerInsights is what a new cluster starts with, the others are stored and answered"),
    ap("ListAccountSettings PutAccountSetting PutAccountSettingDefault", "value", "the setting's value (ListAccountSettings: a filter)"),
    ap("ListAccountSettings PutAccountSetting", "principalArn", "the principal whose setting it is (the account root when absent)"),
    ap("ListAccountSettings", "effectiveSettings", "every setting's effective value (the principal's, else the account's default)"),
];
