//! The rules on the task's volumes: host, docker, EFS, FSx, S3 Files and ephemeral ones.

use super::*;

impl Checker {
    /// Ref: ecs.json `Volume.name` ("Up to 255 letters (uppercase and lowercase), numbers,
    /// underscores, and hyphens"; required "when a volume is using the
    /// efsVolumeConfiguration" or s3filesVolumeConfiguration, and for a volume configured at
    /// launch). Unique names: no ECS text found; mountPoints name volumes by name, so two of
    /// one name are ambiguous — kept as an error. One volume type per volume: the model's
    /// members are alternatives ("This parameter is specified when you use …"), no refusal
    /// text found — a warning.
    pub(super) fn volumes(&mut self, def: &TaskDefinition) {
        let mut seen = HashSet::new();
        for (k, v) in def.volumes.iter().flatten().enumerate() {
            let vp = root().key("volumes").index(k);
            match v.name.as_deref() {
                None | Some("") => {
                    if v.efs_volume_configuration.is_some()
                        || v.s3files_volume_configuration.is_some()
                        || v.configured_at_launch == Some(true)
                    {
                        self.err("volume-name", vp.key("name"), "The volume name is required for EFS and S3 Files volumes and volumes configured at launch.");
                    } else {
                        self.warn("volume-name", vp.key("name"), "A volume without a name cannot be mounted by any container.");
                    }
                }
                Some(n) if is_placeholder(n) => self.out.push(placeholder(&vp.key("name"), n)),
                Some(n) if !is_ecs_name(n) => self.err(
                    "volume-name",
                    vp.key("name"),
                    format!("Invalid volume name '{n}': up to 255 letters, numbers, underscores, and hyphens are allowed."),
                ),
                Some(n) => {
                    if !seen.insert(n) {
                        self.err("volume-name", vp.key("name"), format!("Volume names must be unique: '{n}' is defined twice."));
                    }
                }
            }
            let kinds = [
                v.host.is_some(),
                v.docker_volume_configuration.is_some(),
                v.efs_volume_configuration.is_some(),
                v.fsx_windows_file_server_volume_configuration.is_some(),
                v.s3files_volume_configuration.is_some(),
            ];
            if kinds.iter().filter(|b| **b).count() > 1 {
                self.warn(
                    "volume-config",
                    vp.clone(),
                    "A volume takes one of host, dockerVolumeConfiguration, \
                     efsVolumeConfiguration, fsxWindowsFileServerVolumeConfiguration and \
                     s3filesVolumeConfiguration; with several, which one applies is undefined.",
                );
            }
            if let Some(h) = &v.host
                && !blank(&h.source_path)
            {
                // Ref: ecs.json `HostVolumeProperties.sourcePath`.
                self.fargate_err(
                    "fargate-host-source-path",
                    vp.key("host").key("sourcePath"),
                    "Fargate does not support host volumes with a sourcePath (use a bind mount \
                     without one, or EFS).",
                );
            }
            if v.docker_volume_configuration.is_some() {
                self.fargate_unsupported(
                    vp.key("dockerVolumeConfiguration"),
                    "dockerVolumeConfiguration",
                );
            }
            // Ref: ecs.json `FSxWindowsFileServerVolumeConfiguration` (fileSystemId,
            // rootDirectory, authorizationConfig required) and its authorizationConfig
            // (credentialsParameter, domain required); ecs.json `Volume.dockerVolumeConfiguration`
            // ("Docker volumes aren't supported by tasks run on Fargate").
            if let Some(fsx) = &v.fsx_windows_file_server_volume_configuration {
                let fp = vp.key("fsxWindowsFileServerVolumeConfiguration");
                if blank(&fsx.file_system_id) {
                    self.required(fp.key("fileSystemId"), "fileSystemId");
                }
                if blank(&fsx.root_directory) {
                    self.required(fp.key("rootDirectory"), "rootDirectory");
                }
                match &fsx.authorization_config {
                    None => self.required(fp.key("authorizationConfig"), "authorizationConfig"),
                    Some(a) => {
                        if blank(&a.credentials_parameter) {
                            self.required(
                                fp.key("authorizationConfig").key("credentialsParameter"),
                                "credentialsParameter",
                            );
                        }
                        if blank(&a.domain) {
                            self.required(fp.key("authorizationConfig").key("domain"), "domain");
                        }
                    }
                }
                self.fargate_unsupported(fp, "fsxWindowsFileServerVolumeConfiguration");
            }
            if let Some(efs) = &v.efs_volume_configuration {
                self.efs(efs, &vp.key("efsVolumeConfiguration"));
            }
            if let Some(s3) = &v.s3files_volume_configuration {
                self.s3files(def, s3, &vp.key("s3filesVolumeConfiguration"));
            }
        }
    }

    /// Ref: ecs.json `S3FilesVolumeConfiguration` (fileSystemArn required; with an
    /// accessPointArn, rootDirectory "must either be omitted or set to /"; "Your task
    /// definition must include a Task IAM Role" — when ECS checks it is not documented, so a
    /// warning).
    pub(super) fn s3files(
        &mut self,
        def: &TaskDefinition,
        s3: &S3FilesVolumeConfiguration,
        sp: &JsonPath,
    ) {
        if blank(&s3.file_system_arn) {
            self.required(
                sp.key("fileSystemArn"),
                "s3filesVolumeConfiguration fileSystemArn",
            );
        }
        if !blank(&s3.access_point_arn) && s3.root_directory.as_deref().is_some_and(|r| r != "/") {
            self.err(
                "volume-config",
                sp.key("rootDirectory"),
                "With an S3 Files access point, rootDirectory must be omitted or \"/\".",
            );
        }
        if let Some(port) = s3.transit_encryption_port {
            self.range(
                sp.key("transitEncryptionPort"),
                port,
                1,
                65535,
                "transitEncryptionPort",
            );
        }
        if blank(&def.task_role_arn) {
            self.warn(
                "volume-config",
                sp.clone(),
                "An S3 Files volume needs a task IAM role (taskRoleArn) to attach the file system.",
            );
        }
    }

    pub(super) fn efs(&mut self, efs: &EfsVolumeConfiguration, ep: &JsonPath) {
        // Ref: ecs.json `EFSVolumeConfiguration` (fileSystemId required),
        // `EFSAuthorizationConfig.iam` ("If it is turned on, transit encryption must be turned
        // on") and `.accessPointId` ("the root directory value … must either be omitted or
        // set to /"; "transit encryption must be on").
        if blank(&efs.file_system_id) {
            self.required(
                ep.key("fileSystemId"),
                "efsVolumeConfiguration fileSystemId",
            );
        }
        let auth = efs.authorization_config.as_ref();
        let iam = auth.and_then(|a| a.iam) == Some(EnabledDisabled::Enabled);
        let access_point = auth.is_some_and(|a| !blank(&a.access_point_id));
        if (iam || access_point) && efs.transit_encryption != Some(EnabledDisabled::Enabled) {
            self.err(
                "volume-config",
                ep.key("transitEncryption"),
                "transitEncryption must be ENABLED when EFS IAM authorization or an access point is used.",
            );
        }
        if access_point && efs.root_directory.as_deref().is_some_and(|r| r != "/") {
            self.err(
                "volume-config",
                ep.key("rootDirectory"),
                "With an EFS access point, rootDirectory must be omitted or \"/\".",
            );
        }
        if let Some(port) = efs.transit_encryption_port {
            self.range(
                ep.key("transitEncryptionPort"),
                port,
                1,
                65535,
                "transitEncryptionPort",
            );
        }
    }
}
