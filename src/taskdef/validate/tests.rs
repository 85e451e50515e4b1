use super::*;
use crate::taskdef::parse::parse_str;

fn run(json: &str, launch_type: Option<LaunchType>) -> Report {
    validate(
        &parse_str(json),
        &Options {
            launch_type,
            template: false,
        },
    )
}

fn rules(r: &Report) -> Vec<&'static str> {
    r.errors().map(|f| f.rule).collect()
}

const FARGATE_OK: &str = r#"{"family":"f","networkMode":"awsvpc","requiresCompatibilities":["FARGATE"],
    "cpu":"256","memory":"512","containerDefinitions":[{"name":"a","image":"busybox"}]}"#;

#[test]
fn a_placeholder_image_is_refused_in_ecs_words() {
    for img in ["<IMAGE1_NAME>", "{{image}}", "${IMAGE}"] {
        let r = run(
            &format!(
                r#"{{"family":"f","containerDefinitions":[{{"name":"a","image":"{img}","memory":64}}]}}"#
            ),
            None,
        );
        let f = r
            .errors()
            .find(|f| f.rule == "template-placeholder")
            .unwrap_or_else(|| panic!("{img}: {:?}", r.findings));
        assert_eq!(f.path.to_string(), "containerDefinitions[0].image");
        assert_eq!(f.code, Code::ClientException);
        assert!(
            f.message.starts_with(&format!(
                "Container.image repository contains invalid characters. {img:?} looks like"
            )),
            "{}",
            f.message
        );
    }
}

#[test]
fn at_most_ten_environment_files() {
    let files = |n: usize| vec![r#"{"value":"arn:aws:s3:::b/k.env","type":"s3"}"#; n].join(",");
    let def = |n| {
        format!(
            r#"{{"family":"f","containerDefinitions":[{{"name":"a","image":"b","memory":64,"environmentFiles":[{}]}}]}}"#,
            files(n)
        )
    };
    let r = run(&def(10), None);
    assert!(
        !rules(&r).contains(&"environment-file-count"),
        "{:?}",
        r.findings
    );
    let r = run(&def(11), None);
    assert!(
        !r.valid && rules(&r).contains(&"environment-file-count"),
        "{:?}",
        r.findings
    );
}

#[test]
fn minimal_fargate_definition_is_valid() {
    let r = run(FARGATE_OK, None);
    assert!(r.valid, "{:?}", r.findings);
    assert!(r.fargate);
}

#[test]
fn every_problem_is_reported_at_once() {
    let r = run(
        r#"{"family":"f","networkMode":"awsvpc","containerDefinitions":[
            {"name":"a","memory":64,"portMappings":[{"containerPort":80,"hostPort":81}]},
            {"name":"a","image":"x","memory":64,"hostname":"h","essential":false}]}"#,
        None,
    );
    let got = rules(&r);
    for want in [
        "image-required",
        "awsvpc-host-port",
        "container-name-unique",
        "awsvpc-hostname",
    ] {
        assert!(got.contains(&want), "{want} missing from {got:?}");
    }
}

#[test]
fn launch_type_fargate_uses_the_platform_exception() {
    let r = run(
        r#"{"family":"f","containerDefinitions":[{"name":"a","image":"b","memory":8,"privileged":true}]}"#,
        Some(LaunchType::Fargate),
    );
    let priv_f = r
        .errors()
        .find(|f| f.path.to_string().ends_with("privileged"))
        .unwrap();
    assert_eq!(
        priv_f.code,
        Code::PlatformTaskDefinitionIncompatibilityException
    );
    let r2 = run(
        r#"{"family":"f","containerDefinitions":[{"name":"a","image":"b","memory":8,"privileged":true}]}"#,
        Some(LaunchType::Ec2),
    );
    assert!(r2.valid, "{:?}", r2.findings);
}

#[test]
fn false_and_empty_fargate_parameters_are_fine() {
    let r = run(
        r#"{"family":"f","networkMode":"awsvpc","requiresCompatibilities":["FARGATE"],"cpu":"256","memory":"512",
           "containerDefinitions":[{"name":"a","image":"b","privileged":false,"links":[],
           "dnsServers":[],"disableNetworking":false,"extraHosts":null,"hostname":null}],
           "placementConstraints":[]}"#,
        None,
    );
    assert!(r.valid, "{:?}", r.findings);
}

#[test]
fn type_errors_suppress_their_consequences() {
    // memory is a string: one type error, not also "memory is required".
    let r = run(
        r#"{"family":"f","containerDefinitions":[{"name":"a","image":"b","memory":"lots"}]}"#,
        None,
    );
    assert_eq!(rules(&r), ["json-type"]);
}

#[test]
fn bare_arrays_get_the_register_verdict() {
    // What register-task-definition would refuse, validate refuses: a bare array has no
    // task-level memory unless the flags give it one.
    let mut parsed = parse_str(r#"[{"name":"a","image":"b"}]"#);
    parsed.as_registered(None, Some("from-file-name".into()));
    let r = validate(&parsed, &Options::default());
    assert_eq!(rules(&r), ["container-memory-required"]);
    parsed.def.memory = Some(SizeValue("512".into()));
    assert!(validate(&parsed, &Options::default()).valid);
}

#[test]
fn blank_image_and_oversized_definitions_are_refused() {
    let r = run(
        r#"{"family":"f","containerDefinitions":[{"name":"a","image":"  ","memory":8}]}"#,
        None,
    );
    assert_eq!(rules(&r), ["image-required"]);
    // Variables of 57 bytes each: 1,200 are over ECS's 64 KiB, 1,000 are under it.
    let with_vars = |n: usize| {
        let env: Vec<String> = (0..n)
            .map(|i| format!(r#"{{"name":"VARIABLE_{i:05}","value":"{i:020}"}}"#))
            .collect();
        format!(
            r#"{{"family":"f","containerDefinitions":[{{"name":"a","image":"b","memory":8,"environment":[{}]}}]}}"#,
            env.join(",")
        )
    };
    let r = run(&with_vars(1200), None);
    assert_eq!(rules(&r), ["task-definition-size"]);
    let msg = &r.errors().next().unwrap().message;
    assert!(
        msg.starts_with("Actual length: '") && msg.contains("Max allowed length is '65536'"),
        "{msg}"
    );
    let r = run(&with_vars(1000), None);
    assert!(r.valid, "{:?}", rules(&r));
}

#[test]
fn s3_files_volumes_register_with_their_rules() {
    // ecs.json `S3FilesVolumeConfiguration`: accepted (ECS has it), refused only by
    // run-task here; an access point with a rootDirectory other than "/" is an error.
    let def = |cfg: &str| {
        format!(
            r#"{{"family":"f","taskRoleArn":"arn:aws:iam::1:role/t","containerDefinitions":[{{"name":"a","image":"b","memory":8,
                "mountPoints":[{{"sourceVolume":"s3","containerPath":"/data"}}]}}],
                "volumes":[{{"name":"s3","s3filesVolumeConfiguration":{cfg}}}]}}"#
        )
    };
    let r = run(
        &def(r#"{"fileSystemArn":"arn:aws:s3files:us-east-1:1:file-system/fs-1"}"#),
        None,
    );
    assert!(r.valid, "{:?}", r.findings);
    assert!(
        r.findings.iter().any(|f| f.rule == "refused-here"
            && f.path.to_string() == "volumes[0].s3filesVolumeConfiguration"),
        "{:?}",
        r.findings
    );
    let r = run(
        &def(r#"{"fileSystemArn":"arn:x","accessPointArn":"arn:y","rootDirectory":"/sub"}"#),
        None,
    );
    assert_eq!(rules(&r), ["volume-config"]);
}

#[test]
fn container_sums_are_refused_as_ecs_refuses_them() {
    // ECS: "The sum of all container 'cpu' values cannot be greater than the value of the
    // task 'cpu'." and the same for memoryReservation against task memory.
    let r = run(
        r#"{"family":"f","cpu":"256","memory":"512","containerDefinitions":[
            {"name":"a","image":"b","cpu":200,"memoryReservation":300},
            {"name":"c","image":"b","cpu":100,"memoryReservation":100,"essential":false}]}"#,
        None,
    );
    assert_eq!(rules(&r), ["container-cpu-sum"]);
    let r = run(
        r#"{"family":"f","memory":"512","containerDefinitions":[
            {"name":"a","image":"b","memory":400},
            {"name":"c","image":"b","memory":400,"essential":false}]}"#,
        None,
    );
    // memory (not memoryReservation) above the task's in sum: not refused by ECS.
    assert!(r.valid, "{:?}", rules(&r));
    assert!(
        r.findings
            .iter()
            .any(|f| f.rule == "container-memory-reserved")
    );
}

#[test]
fn cycles_are_found_without_hanging() {
    // A ring of 10 containers and a self-loop-free chain: one cycle reported.
    let mut cs = Vec::new();
    for i in 0..10 {
        cs.push(format!(
            r#"{{"name":"c{i}","image":"b","memory":8,"dependsOn":[{{"containerName":"c{}","condition":"START"}}]}}"#,
            (i + 1) % 10
        ));
    }
    let json = format!(
        r#"{{"family":"f","containerDefinitions":[{}]}}"#,
        cs.join(",")
    );
    let r = run(&json, None);
    let cyc: Vec<_> = r
        .errors()
        .filter(|f| f.rule == "depends-on-cycle")
        .collect();
    assert_eq!(cyc.len(), 1, "{:?}", r.findings);
    assert!(cyc[0].message.contains("c0 -> c1"), "{}", cyc[0].message);
    // A dense graph (every container depends on every other) finishes quickly too.
    let mut dense = Vec::new();
    for i in 0..10 {
        let deps: Vec<String> = (0..10)
            .filter(|j| *j != i)
            .map(|j| format!(r#"{{"containerName":"c{j}","condition":"START"}}"#))
            .collect();
        dense.push(format!(
            r#"{{"name":"c{i}","image":"b","memory":8,"dependsOn":[{}]}}"#,
            deps.join(",")
        ));
    }
    let r = run(
        &format!(
            r#"{{"family":"f","containerDefinitions":[{}]}}"#,
            dense.join(",")
        ),
        None,
    );
    assert!(r.errors().any(|f| f.rule == "depends-on-cycle"));
}

#[test]
fn private_ecr_detection() {
    assert!(is_private_ecr(
        "123456789012.dkr.ecr.us-east-1.amazonaws.com/app:1"
    ));
    assert!(is_private_ecr(
        "123456789012.dkr.ecr-fips.us-east-1.amazonaws.com/app"
    ));
    assert!(!is_private_ecr("public.ecr.aws/docker/library/busybox"));
    assert!(!is_private_ecr("busybox"));
}

#[test]
fn compatibility_with_fargate() {
    let def = parse_str(FARGATE_OK).def;
    assert!(fargate_compatible(&def));
    let bridge =
        parse_str(r#"{"family":"f","containerDefinitions":[{"name":"a","image":"b","memory":8}]}"#)
            .def;
    assert!(!fargate_compatible(&bridge));
}

#[test]
fn a_member_of_expression_outside_the_query_language_is_a_warning() {
    let def = |e: &str| {
        format!(
            r#"{{"family":"f","containerDefinitions":[{{"name":"a","image":"busybox","memory":64}}],
            "placementConstraints":[{{"type":"memberOf","expression":"{e}"}}]}}"#
        )
    };
    let r = run(&def("attribute:disk =="), None);
    assert!(rules(&r).is_empty(), "{:?}", r.findings);
    let w: Vec<_> = r
        .findings
        .iter()
        .filter(|f| f.rule == "placement-constraint-expression")
        .collect();
    assert_eq!(w.len(), 1, "{:?}", r.findings);
    assert_eq!(w[0].path.to_string(), "placementConstraints[0].expression");
    assert!(w[0].message.contains("serve --cluster"), "{}", w[0].message);
    let r = run(&def("attribute:disk == ssd"), None);
    assert!(
        !r.findings
            .iter()
            .any(|f| f.rule == "placement-constraint-expression"),
        "{:?}",
        r.findings
    );
}
