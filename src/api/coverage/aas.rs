//! Application Auto Scaling: every input member of the operations serve routes.

use super::{Row, Service, ap, na, none, rf};

pub static AAS: Service = Service {
    slug: "application-autoscaling",
    title: "Application Auto Scaling",
    model: ("application-autoscaling", "2016-02-06"),
    operations: || crate::autoscaling::ops::OPERATIONS.to_vec(),
    rows: ROWS,
    elsewhere: none,
};

pub static ROWS: &[Row] = &[
    ap(
        "RegisterScalableTarget DescribeScalableTargets DeregisterScalableTarget PutScalingPolicy DescribeScalingPolicies DeleteScalingPolicy DescribeScalingActivities PutScheduledAction DescribeScheduledActions DeleteScheduledAction",
        "ServiceNamespace",
        "ecs: ECS services are the one resource scaled here; another namespace of the model is ValidationException (only ECS services), one it lacks ValidationException on its enum",
    ),
    ap(
        "RegisterScalableTarget DeregisterScalableTarget PutScalingPolicy DeleteScalingPolicy DescribeScalingPolicies DescribeScalingActivities PutScheduledAction DescribeScheduledActions DeleteScheduledAction",
        "ResourceId",
        "service/CLUSTER/SERVICE (else ValidationException); the Describe calls: a filter",
    ),
    ap(
        "RegisterScalableTarget DescribeScalableTargets DeregisterScalableTarget PutScalingPolicy DescribeScalingPolicies DeleteScalingPolicy DescribeScalingActivities PutScheduledAction DescribeScheduledActions DeleteScheduledAction",
        "ScalableDimension",
        "ecs:service:DesiredCount, what is scaled (the service's desiredCount); another is ValidationException; the Describe calls: a filter",
    ),
    ap(
        "RegisterScalableTarget",
        "MinCapacity",
        "the lowest desiredCount scaling sets (not negative, else ValidationException)",
    ),
    ap(
        "RegisterScalableTarget",
        "MaxCapacity",
        "the highest desiredCount scaling sets",
    ),
    na(
        "RegisterScalableTarget",
        "RoleARN",
        "no IAM here: serve scales the service itself; kept and returned as the target's RoleARN",
    ),
    ap(
        "RegisterScalableTarget",
        "SuspendedState",
        "what scaling is held back (crate::autoscaling::scaling)",
    ),
    ap(
        "RegisterScalableTarget",
        "SuspendedState.DynamicScalingInSuspended",
        "policies do not scale in",
    ),
    ap(
        "RegisterScalableTarget",
        "SuspendedState.DynamicScalingOutSuspended",
        "policies do not scale out",
    ),
    ap(
        "RegisterScalableTarget",
        "SuspendedState.ScheduledScalingSuspended",
        "scheduled actions do not run",
    ),
    rf(
        "RegisterScalableTarget",
        "Tags",
        "ValidationException here: tags on scalable targets are not kept yet (docs/scaling.md), so a target with tags is refused rather than registered without them",
    ),
    ap(
        "DescribeScalableTargets",
        "ResourceIds",
        "only these targets",
    ),
    ap(
        "DescribeScalableTargets DescribeScalingPolicies DescribeScalingActivities DescribeScheduledActions",
        "MaxResults",
        "a page's size (ValidationException outside the model's bounds)",
    ),
    ap(
        "DescribeScalableTargets DescribeScalingPolicies DescribeScalingActivities DescribeScheduledActions",
        "NextToken",
        "pagination (InvalidNextTokenException for a token that is not ours)",
    ),
    ap(
        "PutScalingPolicy DeleteScalingPolicy",
        "PolicyName",
        "the policy (1-256 characters)",
    ),
    ap(
        "PutScalingPolicy",
        "PolicyType",
        "StepScaling (the default) or TargetTrackingScaling; PredictiveScaling is ValidationException here (no forecasts)",
    ),
    ap(
        "PutScalingPolicy",
        "StepScalingPolicyConfiguration",
        "a step policy, run by the alarms that name its ARN (crate::autoscaling::scaling)",
    ),
    ap(
        "PutScalingPolicy",
        "StepScalingPolicyConfiguration.AdjustmentType",
        "ChangeInCapacity, PercentChangeInCapacity or ExactCapacity",
    ),
    ap(
        "PutScalingPolicy",
        "StepScalingPolicyConfiguration.StepAdjustments",
        "the steps, by the breach (overlaps and gaps are ValidationException)",
    ),
    ap(
        "PutScalingPolicy",
        "StepScalingPolicyConfiguration.StepAdjustments[].MetricIntervalLowerBound",
        "the step's lower bound above the threshold",
    ),
    ap(
        "PutScalingPolicy",
        "StepScalingPolicyConfiguration.StepAdjustments[].MetricIntervalUpperBound",
        "the step's upper bound",
    ),
    ap(
        "PutScalingPolicy",
        "StepScalingPolicyConfiguration.StepAdjustments[].ScalingAdjustment",
        "the step's change",
    ),
    ap(
        "PutScalingPolicy",
        "StepScalingPolicyConfiguration.MinAdjustmentMagnitude",
        "the least change of a PercentChangeInCapacity step",
    ),
    ap(
        "PutScalingPolicy",
        "StepScalingPolicyConfiguration.Cooldown",
        "seconds after a scaling before the policy scales again (300 by default)",
    ),
    ap(
        "PutScalingPolicy",
        "StepScalingPolicyConfiguration.MetricAggregationType",
        "Average, Minimum or Maximum: the alarm's datapoints aggregated before the step is chosen",
    ),
    ap(
        "PutScalingPolicy",
        "TargetTrackingScalingPolicyConfiguration",
        "a target-tracking policy: its AlarmHigh and AlarmLow alarms made in CloudWatch and run",
    ),
    ap(
        "PutScalingPolicy",
        "TargetTrackingScalingPolicyConfiguration.TargetValue",
        "the metric's target",
    ),
    ap(
        "PutScalingPolicy",
        "TargetTrackingScalingPolicyConfiguration.PredefinedMetricSpecification",
        "a predefined metric",
    ),
    ap(
        "PutScalingPolicy",
        "TargetTrackingScalingPolicyConfiguration.PredefinedMetricSpecification.PredefinedMetricType",
        "ECSServiceAverageCPUUtilization, ECSServiceAverageMemoryUtilization, ALBRequestCountPerTarget; another is ValidationException",
    ),
    ap(
        "PutScalingPolicy",
        "TargetTrackingScalingPolicyConfiguration.PredefinedMetricSpecification.ResourceLabel",
        "ALBRequestCountPerTarget's load balancer and target group",
    ),
    ap(
        "PutScalingPolicy",
        "TargetTrackingScalingPolicyConfiguration.CustomizedMetricSpecification",
        "a metric of CloudWatch, watched by the policy's alarms",
    ),
    ap(
        "PutScalingPolicy",
        "TargetTrackingScalingPolicyConfiguration.CustomizedMetricSpecification.MetricName",
        "the metric",
    ),
    ap(
        "PutScalingPolicy",
        "TargetTrackingScalingPolicyConfiguration.CustomizedMetricSpecification.Namespace",
        "its namespace",
    ),
    ap(
        "PutScalingPolicy",
        "TargetTrackingScalingPolicyConfiguration.CustomizedMetricSpecification.Dimensions",
        "its dimensions",
    ),
    ap(
        "PutScalingPolicy",
        "TargetTrackingScalingPolicyConfiguration.CustomizedMetricSpecification.Dimensions[].Name",
        "a dimension's name",
    ),
    ap(
        "PutScalingPolicy",
        "TargetTrackingScalingPolicyConfiguration.CustomizedMetricSpecification.Dimensions[].Value",
        "a dimension's value",
    ),
    ap(
        "PutScalingPolicy",
        "TargetTrackingScalingPolicyConfiguration.CustomizedMetricSpecification.Statistic",
        "the statistic the alarms evaluate",
    ),
    ap(
        "PutScalingPolicy",
        "TargetTrackingScalingPolicyConfiguration.CustomizedMetricSpecification.Unit",
        "only datapoints of the unit",
    ),
    ap(
        "PutScalingPolicy",
        "TargetTrackingScalingPolicyConfiguration.CustomizedMetricSpecification.Metrics",
        "metric math: the alarms' Metrics (CloudWatch's PutMetricAlarm rules)",
    ),
    ap(
        "PutScalingPolicy",
        "TargetTrackingScalingPolicyConfiguration.CustomizedMetricSpecification.Metrics[].Expression",
        "a math expression, as in the alarm's Metrics",
    ),
    ap(
        "PutScalingPolicy",
        "TargetTrackingScalingPolicyConfiguration.CustomizedMetricSpecification.Metrics[].Id",
        "the query's id, as in the alarm's Metrics",
    ),
    ap(
        "PutScalingPolicy",
        "TargetTrackingScalingPolicyConfiguration.CustomizedMetricSpecification.Metrics[].Label",
        "its label, as in the alarm's Metrics",
    ),
    ap(
        "PutScalingPolicy",
        "TargetTrackingScalingPolicyConfiguration.CustomizedMetricSpecification.Metrics[].MetricStat",
        "a metric's statistic, as in the alarm's Metrics",
    ),
    ap(
        "PutScalingPolicy",
        "TargetTrackingScalingPolicyConfiguration.CustomizedMetricSpecification.Metrics[].MetricStat.Metric",
        "the metric, as in the alarm's Metrics",
    ),
    ap(
        "PutScalingPolicy",
        "TargetTrackingScalingPolicyConfiguration.CustomizedMetricSpecification.Metrics[].MetricStat.Metric.Dimensions",
        "its dimensions, as in the alarm's Metrics",
    ),
    ap(
        "PutScalingPolicy",
        "TargetTrackingScalingPolicyConfiguration.CustomizedMetricSpecification.Metrics[].MetricStat.Metric.Dimensions[].Name",
        "a dimension's name, as in the alarm's Metrics",
    ),
    ap(
        "PutScalingPolicy",
        "TargetTrackingScalingPolicyConfiguration.CustomizedMetricSpecification.Metrics[].MetricStat.Metric.Dimensions[].Value",
        "a dimension's value, as in the alarm's Metrics",
    ),
    ap(
        "PutScalingPolicy",
        "TargetTrackingScalingPolicyConfiguration.CustomizedMetricSpecification.Metrics[].MetricStat.Metric.MetricName",
        "its name, as in the alarm's Metrics",
    ),
    ap(
        "PutScalingPolicy",
        "TargetTrackingScalingPolicyConfiguration.CustomizedMetricSpecification.Metrics[].MetricStat.Metric.Namespace",
        "its namespace, as in the alarm's Metrics",
    ),
    ap(
        "PutScalingPolicy",
        "TargetTrackingScalingPolicyConfiguration.CustomizedMetricSpecification.Metrics[].MetricStat.Stat",
        "the statistic, as in the alarm's Metrics",
    ),
    ap(
        "PutScalingPolicy",
        "TargetTrackingScalingPolicyConfiguration.CustomizedMetricSpecification.Metrics[].MetricStat.Unit",
        "only datapoints of the unit, as in the alarm's Metrics",
    ),
    ap(
        "PutScalingPolicy",
        "TargetTrackingScalingPolicyConfiguration.CustomizedMetricSpecification.Metrics[].ReturnData",
        "the series the alarms evaluate, as in the alarm's Metrics",
    ),
    ap(
        "PutScalingPolicy",
        "TargetTrackingScalingPolicyConfiguration.ScaleOutCooldown",
        "seconds after a scale-out before the next (300 by default)",
    ),
    ap(
        "PutScalingPolicy",
        "TargetTrackingScalingPolicyConfiguration.ScaleInCooldown",
        "seconds after a scale-in before the next (300 by default)",
    ),
    ap(
        "PutScalingPolicy",
        "TargetTrackingScalingPolicyConfiguration.DisableScaleIn",
        "no AlarmLow alarm: the policy never scales in",
    ),
    rf(
        "PutScalingPolicy",
        "PredictiveScalingPolicyConfiguration",
        "ValidationException here: predictive scaling is not served (no forecasts)",
    )
    .whole(),
    ap(
        "DescribeScalingPolicies",
        "PolicyNames",
        "only these policies",
    ),
    ap(
        "DescribeScalingActivities",
        "IncludeNotScaledActivities",
        "the activities that did not scale too, with their NotScaledReasons",
    ),
    ap(
        "PutScheduledAction",
        "Schedule",
        "at(…), rate(…) or cron(…) (crate::autoscaling::schedule); another is ValidationException; required on creation",
    ),
    ap(
        "PutScheduledAction",
        "Timezone",
        "the IANA time zone of at and cron (UTC by default); another is ValidationException",
    ),
    ap(
        "PutScheduledAction DeleteScheduledAction",
        "ScheduledActionName",
        "the scheduled action",
    ),
    ap("PutScheduledAction", "StartTime", "no run before it"),
    ap(
        "PutScheduledAction",
        "EndTime",
        "no run after it (before StartTime: ValidationException)",
    ),
    ap(
        "PutScheduledAction",
        "ScalableTargetAction",
        "the capacity set when it runs",
    ),
    ap(
        "PutScheduledAction",
        "ScalableTargetAction.MinCapacity",
        "the target's new minimum",
    ),
    ap(
        "PutScheduledAction",
        "ScalableTargetAction.MaxCapacity",
        "the target's new maximum",
    ),
    ap(
        "DescribeScheduledActions",
        "ScheduledActionNames",
        "only these actions",
    ),
];
