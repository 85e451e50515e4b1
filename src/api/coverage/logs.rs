//! Amazon CloudWatch Logs: every input member of the operations serve routes.

use super::{Row, Service, ap, na, none, rf};
use crate::ecs::operations::{Op, Service as Svc};

pub static LOGS: Service = Service {
    slug: "logs",
    title: "Amazon CloudWatch Logs",
    model: ("logs", "2014-03-28"),
    operations: || Op::of(Svc::Logs).map(|o| o.name()).collect(),
    rows: ROWS,
    elsewhere: none,
};

pub static ROWS: &[Row] = &[
    ap("CreateLogGroup DeleteLogGroup CreateLogStream DeleteLogStream DescribeLogStreams GetLogEvents FilterLogEvents PutLogEvents PutRetentionPolicy DeleteRetentionPolicy", "logGroupName", "the log group in the box's log store (ResourceNotFoundException when it does not exist; CreateLogGroup: CloudWatch's name rules, ResourceAlreadyExistsException)"),
    rf("CreateLogGroup", "kmsKeyId", "InvalidParameterException naming it (crate::logs::refuse_others: not served by the local CloudWatch Logs, docs/logs.md)"),
    rf("CreateLogGroup", "tags", "InvalidParameterException naming it (crate::logs::refuse_others: not served by the local CloudWatch Logs, docs/logs.md)"),
    rf("CreateLogGroup", "logGroupClass", "InvalidParameterException naming it (crate::logs::refuse_others: not served by the local CloudWatch Logs, docs/logs.md)"),
    rf("CreateLogGroup", "deletionProtectionEnabled", "InvalidParameterException naming it (crate::logs::refuse_others: not served by the local CloudWatch Logs, docs/logs.md)"),
    ap("CreateLogStream DeleteLogStream GetLogEvents PutLogEvents", "logStreamName", "the log stream (CloudWatch's name rules; ResourceNotFoundException when it does not exist)"),
    rf("DescribeLogGroups", "accountIdentifiers", "InvalidParameterException naming it (crate::logs::refuse_others: not served by the local CloudWatch Logs, docs/logs.md)"),
    rf("DescribeLogGroups", "includeLinkedAccounts", "InvalidParameterException naming it (crate::logs::refuse_others: not served by the local CloudWatch Logs, docs/logs.md)"),
    rf("DescribeLogGroups", "logGroupClass", "InvalidParameterException naming it (crate::logs::refuse_others: not served by the local CloudWatch Logs, docs/logs.md)"),
    rf("DescribeLogGroups", "logGroupIdentifiers", "InvalidParameterException naming it (crate::logs::refuse_others: not served by the local CloudWatch Logs, docs/logs.md)"),
    ap("DescribeLogGroups", "logGroupNamePrefix", "only groups whose name starts with it"),
    ap("DescribeLogGroups", "logGroupNamePattern", "only groups whose name contains it (case-insensitive); with a prefix InvalidParameterException"),
    ap("DescribeLogGroups DescribeLogStreams GetLogEvents FilterLogEvents", "nextToken", "pagination (GetLogEvents: forward and backward tokens)"),
    ap("DescribeLogGroups DescribeLogStreams GetLogEvents FilterLogEvents", "limit", "a page's size (CloudWatch's bounds: InvalidParameterException outside)"),
    ap("DescribeLogStreams GetLogEvents FilterLogEvents", "logGroupIdentifier", "the group by name or ARN (with logGroupName: InvalidParameterException)"),
    ap("DescribeLogStreams FilterLogEvents", "logStreamNamePrefix", "only streams whose name starts with it"),
    ap("DescribeLogStreams", "orderBy", "LogStreamName or LastEventTime (else InvalidParameterException)"),
    ap("DescribeLogStreams", "descending", "the order reversed"),
    ap("GetLogEvents FilterLogEvents", "startTime", "events from then"),
    ap("GetLogEvents FilterLogEvents", "endTime", "events before then"),
    ap("GetLogEvents", "startFromHead", "the oldest events first"),
    na("GetLogEvents FilterLogEvents", "unmask", "no data protection policies here: nothing is masked, so there is nothing to unmask"),
    ap("FilterLogEvents", "logStreamNames", "only these streams"),
    ap("FilterLogEvents", "filterPattern", "CloudWatch's filter pattern syntax (terms, JSON and space-delimited: crate::logs::filter)"),
    ap("FilterLogEvents", "interleaved", "ignored, as CloudWatch ignores it (deprecated: the value is assumed to be true): events are always interleaved"),
    ap("PutLogEvents", "logEvents", "the events stored (CloudWatch's batch limits: InvalidParameterException)"),
    ap("PutLogEvents", "logEvents[].timestamp", "the event's time (too old, too new or past the retention: rejectedLogEventsInfo, as CloudWatch)"),
    ap("PutLogEvents", "logEvents[].message", "the event's message"),
    ap("PutLogEvents", "sequenceToken", "ignored, as CloudWatch has ignored it since 2023 (PutLogEvents: sequenceToken is now ignored)"),
    rf("PutLogEvents", "entity", "InvalidParameterException naming it (crate::logs::refuse_others: not served by the local CloudWatch Logs, docs/logs.md)").whole(),
    ap("PutRetentionPolicy", "retentionInDays", "events older are deleted (crate::store::logs); a value CloudWatch does not list is InvalidParameterException"),
];
