//! The production path's static and planned checks: infra/ (Terraform) is formatted, valid,
//! plans with both tfvars files and applies against moto's server, with the provider from the
//! machine's offline mirror; checkov finds nothing unjustified in infra/ and the Dockerfile;
//! hadolint passes the Dockerfile.
//!
//! moto stands in for AWS here (nothing real can be reached). It cannot create everything:
//! MSK configurations and bootstrap brokers, Redshift parameter values and RDS read replicas
//! are outside what it serves, so those resources are planned, not applied, and the rendered
//! pipeline takes labelled stand-ins for the values only they would give.

mod support;

use serde_json::Value as Json;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository's infra/, pipelines/ and deploy/, copied side by side (infra/ reads the other
/// two by relative path), so the test writes nothing into the repository.
struct Workspace {
    _dir: tempfile::TempDir,
    infra: PathBuf,
}

impl Workspace {
    fn new() -> Workspace {
        let dir = tempfile::tempdir().unwrap();
        for part in ["infra", "pipelines", "deploy"] {
            copy_tree(&support::repo().join(part), &dir.path().join(part));
        }
        let infra = dir.path().join("infra");
        Workspace { _dir: dir, infra }
    }

    fn terraform(&self, args: &[&str]) -> Output {
        self.terraform_input(args, "")
    }

    /// `terraform ARGS…` in the copy of infra/, offline, with `input` on its standard input.
    fn terraform_input(&self, args: &[&str], input: &str) -> Output {
        let config = std::env::var("FRESHET_TF_CLI_CONFIG").expect(
            "FRESHET_TF_CLI_CONFIG (scripts/env.sh) names Terraform's CLI config; \
             scripts/install.sh writes it",
        );
        assert!(
            Path::new(&config).is_file(),
            "{config} is missing: scripts/install.sh writes it when the machine has Terraform's \
             provider mirror"
        );
        let mut child = Command::new("terraform")
            .args(args)
            .arg("-no-color")
            .current_dir(&self.infra)
            .env("TF_CLI_CONFIG_FILE", config)
            .env("TF_IN_AUTOMATION", "1")
            .env("CHECKPOINT_DISABLE", "1")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("terraform (the machine image carries it)");
        {
            use std::io::Write;
            // Dropped at the end of this block: terraform sees the end of its input.
            let mut stdin = child.stdin.take().unwrap();
            stdin.write_all(input.as_bytes()).unwrap();
        }
        child.wait_with_output().unwrap()
    }

    fn terraform_ok(&self, args: &[&str]) -> String {
        let out = self.terraform(args);
        assert!(
            out.status.success(),
            "terraform {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// A provider override that sends every AWS call to moto (a `_override.tf` file is
    /// merged into the root module's provider block; it exists only in the test's copy).
    fn point_at(&self, moto: &Moto) {
        let services = [
            "ec2",
            "iam",
            "sts",
            "kms",
            "s3",
            "rds",
            "kafka",
            "redshift",
            "ecs",
            "ecr",
            "logs",
            "secretsmanager",
            "efs",
        ];
        let endpoints: String = services
            .iter()
            .map(|s| format!("    {s} = \"{}\"\n", moto.endpoint()))
            .collect();
        let text = format!(
            "provider \"aws\" {{\n  access_key = \"test\"\n  secret_key = \"test\"\n  \
             skip_credentials_validation = true\n  skip_metadata_api_check = true\n  \
             s3_use_path_style = true\n  endpoints {{\n{endpoints}  }}\n}}\n"
        );
        std::fs::write(self.infra.join("moto_override.tf"), text).unwrap();
    }
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        // A developer's own `terraform init` leaves these; the test makes its own.
        if name == ".terraform" || name.to_string_lossy().starts_with("terraform.tfstate") {
            continue;
        }
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &to.join(&name));
        } else {
            std::fs::copy(entry.path(), to.join(&name)).unwrap();
        }
    }
}

/// moto's server with every service, AWS's managed policies loaded (the roles attach them).
struct Moto(support::lake::MotoS3);

impl Moto {
    fn start() -> Moto {
        Moto(support::lake::MotoS3::start_env(&[(
            "MOTO_IAM_LOAD_MANAGED_POLICIES",
            "true",
        )]))
    }

    fn endpoint(&self) -> String {
        self.0.endpoint()
    }

    /// boto3 against moto: `script` runs with `client(service)` defined, prints JSON.
    fn query(&self, script: &str) -> Json {
        let program = format!(
            "import boto3, json\n\
             def client(s): return boto3.client(s, endpoint_url='{}', region_name='eu-west-1', \
             aws_access_key_id='test', aws_secret_access_key='test')\n{script}",
            self.endpoint()
        );
        let out = Command::new(support::lake::python())
            .args(["-c", &program])
            .output()
            .expect("python");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

/// The planned value of every resource at `address` (instances of a count or for_each too).
fn planned<'a>(plan: &'a Json, address: &str) -> Vec<&'a Json> {
    fn walk<'a>(module: &'a Json, address: &str, out: &mut Vec<&'a Json>) {
        for r in module["resources"].as_array().into_iter().flatten() {
            if r["address"].as_str().is_some_and(|a| {
                a == address || a.strip_prefix(address).is_some_and(|i| i.starts_with('['))
            }) {
                out.push(&r["values"]);
            }
        }
        for child in module["child_modules"].as_array().into_iter().flatten() {
            walk(child, address, out);
        }
    }
    let mut out = Vec::new();
    walk(&plan["planned_values"]["root_module"], address, &mut out);
    out
}

/// `kafka.topics.replication_factor` of pipelines/prod.yaml.
fn replication_factor() -> i64 {
    let text = std::fs::read_to_string(support::repo().join("pipelines/prod.yaml")).unwrap();
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("replication_factor:"))
        .unwrap();
    line.split(':')
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// Every resource type in a plan's module tree.
fn resource_types(module: &Json) -> std::collections::BTreeSet<String> {
    let mut out: std::collections::BTreeSet<String> = module["resources"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["type"].as_str().map(str::to_owned))
        .collect();
    for child in module["child_modules"].as_array().into_iter().flatten() {
        out.extend(resource_types(child));
    }
    out
}

fn one<'a>(plan: &'a Json, address: &str) -> &'a Json {
    let found = planned(plan, address);
    assert_eq!(found.len(), 1, "{address}: {} planned", found.len());
    found[0]
}

fn parameter(group: &Json, name: &str) -> String {
    group["parameter"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("parameter {name} missing"))["value"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Plans `tfvars` and returns the plan as `terraform show -json` prints it.
fn plan(ws: &Workspace, tfvars: &str) -> Json {
    let file = format!("{tfvars}.plan");
    ws.terraform_ok(&[
        "plan",
        "-input=false",
        "-lock=false",
        &format!("-var-file={tfvars}.tfvars"),
        &format!("-out={file}"),
    ]);
    serde_json::from_str(&ws.terraform_ok(&["show", "-json", &file])).unwrap()
}

/// `terraform fmt`, `init` from the offline mirror, `validate`; `plan` with dev.tfvars and
/// prod.tfvars against moto, each checked for what its environment promises; `apply` of dev
/// for what moto can create, checked against what moto then holds; the pipeline file rendered
/// from the outputs passes `freshet check`.
#[test]
fn terraform_plans_both_environments_and_applies_dev_against_moto() {
    let ws = Workspace::new();
    ws.terraform_ok(&["fmt", "-check", "-recursive", "-diff"]);
    let init = ws.terraform_ok(&["init", "-input=false", "-lockfile=readonly"]);
    assert!(init.contains("hashicorp/aws"), "{init}");
    ws.terraform_ok(&["validate"]);

    let moto = Moto::start();
    ws.point_at(&moto);

    let dev = plan(&ws, "dev");
    let prod = plan(&ws, "prod");
    for (env, plan, multi_az, brokers, nodes) in
        [("dev", &dev, false, 3, 1), ("prod", &prod, true, 3, 4)]
    {
        let primary = one(plan, "module.postgres.aws_db_instance.primary");
        assert_eq!(primary["multi_az"], multi_az, "{env}");
        assert_eq!(primary["storage_encrypted"], true, "{env}");
        assert_eq!(primary["publicly_accessible"], false, "{env}");
        assert_eq!(
            primary["iam_database_authentication_enabled"], true,
            "{env}"
        );
        assert_eq!(primary["performance_insights_enabled"], true, "{env}");
        assert_eq!(primary["manage_master_user_password"], true, "{env}");
        assert!(
            primary["backup_retention_period"].as_i64().unwrap() >= 1,
            "{env}"
        );
        let params = one(plan, "module.postgres.aws_db_parameter_group.this");
        assert_eq!(parameter(params, "rds.logical_replication"), "1", "{env}");
        assert_eq!(parameter(params, "rds.force_ssl"), "1", "{env}");
        for name in [
            "max_replication_slots",
            "max_wal_senders",
            "wal_sender_timeout",
            "max_slot_wal_keep_size",
        ] {
            assert!(
                parameter(params, name).parse::<u64>().unwrap() > 0,
                "{env}: {name}"
            );
        }
        assert_eq!(
            planned(plan, "module.postgres.aws_db_instance.replica").len(),
            1
        );

        let msk = one(plan, "module.kafka.aws_msk_cluster.this");
        assert_eq!(msk["number_of_broker_nodes"], brokers, "{env}");
        // Enough brokers for the replicas the pipeline file asks of each topic.
        assert!(brokers >= replication_factor(), "{env}: {brokers} brokers");
        let transit = &msk["encryption_info"][0]["encryption_in_transit"][0];
        assert_eq!(transit["client_broker"], "TLS", "{env}");
        // IAM only: Freshet signs tokens with its task role, no password exists to leak.
        let sasl = &msk["client_authentication"][0]["sasl"][0];
        assert_eq!(
            (sasl["iam"].clone(), sasl["scram"].clone()),
            (true.into(), false.into())
        );

        let redshift = one(plan, "module.warehouse.aws_redshift_cluster.this");
        assert_eq!(redshift["number_of_nodes"], nodes, "{env}");
        let kind = if nodes > 1 {
            "multi-node"
        } else {
            "single-node"
        };
        assert_eq!(redshift["cluster_type"], kind, "{env}");
        assert_eq!(redshift["encrypted"], true, "{env}");
        assert_eq!(redshift["publicly_accessible"], false, "{env}");
        assert!(
            redshift["automated_snapshot_retention_period"]
                .as_i64()
                .unwrap()
                >= 1
        );
        let logging = one(plan, "module.warehouse.aws_redshift_logging.this");
        assert_eq!(logging["log_destination_type"], "cloudwatch", "{env}");

        // Private subnets only, no internet route: nothing gets a public address.
        let subnets = planned(plan, "module.network.aws_subnet.private");
        assert!(subnets.len() >= 2, "{env}: {} subnets", subnets.len());
        assert!(subnets
            .iter()
            .all(|s| s["map_public_ip_on_launch"] == false));
        // No way out to the internet or in from it, whatever a resource is called.
        let types = resource_types(&plan["planned_values"]["root_module"]);
        for gateway in [
            "aws_internet_gateway",
            "aws_nat_gateway",
            "aws_eip",
            "aws_route",
        ] {
            assert!(!types.contains(gateway), "{env}: a {gateway} is planned");
        }
        // Inline routes show in the plan as a list; none configured leaves it unknown (null).
        let routes = &one(plan, "module.network.aws_route_table.private")["route"];
        assert!(
            routes.as_array().is_none_or(Vec::is_empty),
            "{env}: routes beyond the VPC: {routes}"
        );
        let s3 = one(plan, "module.network.aws_vpc_endpoint.s3");
        assert_eq!(s3["vpc_endpoint_type"], "Gateway", "{env}");

        let public = one(plan, "module.lake.aws_s3_bucket_public_access_block.lake");
        for key in [
            "block_public_acls",
            "block_public_policy",
            "ignore_public_acls",
            "restrict_public_buckets",
        ] {
            assert_eq!(public[key], true, "{env}: {key}");
        }
        let versioning = one(plan, "module.lake.aws_s3_bucket_versioning.lake");
        assert_eq!(
            versioning["versioning_configuration"][0]["status"],
            "Enabled"
        );

        let service = one(plan, "module.freshet.aws_ecs_service.freshet");
        // One slot, one reader: never two tasks at once.
        assert_eq!(service["desired_count"], 1, "{env}");
        assert_eq!(service["deployment_maximum_percent"], 100, "{env}");
        let task = one(plan, "module.freshet.aws_ecs_task_definition.freshet");
        assert_eq!(
            task["requires_compatibilities"],
            serde_json::json!(["FARGATE"])
        );
        // The state directory outlives the task, on an encrypted file system.
        let efs = &task["volume"][0]["efs_volume_configuration"][0];
        assert_eq!(efs["transit_encryption"], "ENABLED", "{env}");
        assert_eq!(
            one(plan, "module.freshet.aws_efs_file_system.state")["encrypted"],
            true
        );
        // IAM logins: no secret for ECS to inject, so no policy to read one.
        assert!(planned(plan, "module.freshet.aws_iam_role_policy.execution").is_empty());
    }

    // Apply dev, as far as moto can create it.
    let targets = [
        "aws_kms_alias.data",
        "module.network",
        "module.lake",
        "module.postgres.aws_db_instance.primary",
        "module.postgres.data.aws_secretsmanager_secret_version.master",
        "module.warehouse.aws_iam_role_policy.copy",
        "module.warehouse.aws_redshift_subnet_group.this",
        "module.freshet.aws_ecr_repository.freshet",
        "module.freshet.aws_ecs_cluster.this",
        "module.freshet.aws_iam_role_policy_attachment.execution",
        "module.freshet.aws_efs_mount_target.state",
        "module.freshet.aws_efs_access_point.state",
    ];
    let mut args = vec![
        "apply",
        "-input=false",
        "-lock=false",
        "-auto-approve",
        "-var-file=dev.tfvars",
    ];
    let target_args: Vec<String> = targets.iter().map(|t| format!("-target={t}")).collect();
    args.extend(target_args.iter().map(String::as_str));
    ws.terraform_ok(&args);

    let outputs: Json = serde_json::from_str(&ws.terraform_ok(&["output", "-json"])).unwrap();
    let endpoint = outputs["postgres_endpoint"]["value"]
        .as_str()
        .unwrap()
        .to_string();
    let password = outputs["postgres_password"]["value"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(outputs["postgres_password"]["sensitive"], true);
    let bucket = outputs["lake_bucket"]["value"]
        .as_str()
        .unwrap()
        .to_string();
    let held = moto.query(&(format!("bucket = '{bucket}'\n")
        + "rds = client('rds').describe_db_instances(DBInstanceIdentifier='atlasco-dev')['DBInstances'][0]\n\
         secret = client('secretsmanager').get_secret_value(SecretId=rds['MasterUserSecret']['SecretArn'])\n\
         s3 = client('s3')\n\
         print(json.dumps({'address': rds['Endpoint']['Address'], 'secret': json.loads(secret['SecretString']),\n\
           'encrypted': rds['StorageEncrypted'], 'iam': rds['IAMDatabaseAuthenticationEnabled'],\n\
           'buckets': [b['Name'] for b in s3.list_buckets()['Buckets']],\n\
           'versioning': s3.get_bucket_versioning(Bucket=bucket).get('Status'),\n\
           'public': s3.get_public_access_block(Bucket=bucket)['PublicAccessBlockConfiguration'],\n\
           'vpcs': len(client('ec2').describe_vpcs(Filters=[{'Name': 'tag:Name', 'Values': ['atlasco-dev']}])['Vpcs']),\n\
           'state': [f['Encrypted'] for f in client('efs').describe_file_systems()['FileSystems']]}))"));
    // Freshet logs in as its own role, with IAM: the role has no password at all.
    let role_sql = outputs["freshet_role_sql"]["value"].as_str().unwrap();
    assert!(
        role_sql.contains(&format!("login on {endpoint} and its replica"))
            && role_sql.contains("CREATE ROLE freshet LOGIN;")
            && role_sql.contains("GRANT rds_iam TO freshet")
            && role_sql.contains("GRANT rds_replication TO freshet")
            && !role_sql.contains("PASSWORD"),
        "{role_sql}"
    );
    assert_eq!(held["address"], endpoint.as_str());
    assert_eq!(
        held["secret"]["password"],
        password.as_str(),
        "the output is the managed secret's"
    );
    assert_eq!(
        (held["encrypted"].clone(), held["iam"].clone()),
        (true.into(), true.into())
    );
    assert!(held["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .any(|b| b == bucket.as_str()));
    assert_eq!(held["versioning"], "Enabled");
    assert!(held["public"]
        .as_object()
        .unwrap()
        .values()
        .all(|v| v == true));
    assert_eq!(held["vpcs"], 1);
    assert_eq!(
        held["state"],
        serde_json::json!([true]),
        "one encrypted state file system"
    );

    // The pipeline file rendered from the stack: what moto could not create (MSK's brokers,
    // the replica, the Redshift cluster and its managed secret) takes labelled stand-ins; the
    // rest is the applied stack's.
    let expression = "templatefile(local.pipeline_template, merge(local.pipeline_environment, \
         local.pipeline_secret_references, { ATLASCO_MSK_BROKERS = \"b-1.stand-in.example:9098\", \
         ATLASCO_PG_REPLICA_HOST = \"atlasco-dev-replica.stand-in.eu-west-1.rds.amazonaws.com\", ATLASCO_REDSHIFT_CLUSTER = \"stand-in\", \
         ATLASCO_REDSHIFT_SECRET_ARN = \"arn:aws:secretsmanager:eu-west-1:123456789012:secret:stand-in\" }))";
    let out = ws.terraform_input(
        &["console", "-var-file=dev.tfvars"],
        &format!("nonsensitive({expression})\n"),
    );
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{printed}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The console prints a heredoc: <<EOT … EOT.
    let rendered: String = printed
        .lines()
        .skip_while(|l| !l.starts_with("<<EOT"))
        .skip(1)
        .take_while(|l| *l != "EOT")
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(
        rendered.contains(&format!("@{endpoint}:5432/atlasco?sslmode=verify-full")),
        "{rendered}"
    );
    assert!(
        rendered.contains(&format!("store: s3://{bucket}/cdc")),
        "{rendered}"
    );
    // IAM logins everywhere: no password, and no reference to one.
    assert_eq!(
        rendered.matches("postgresql://freshet@").count(),
        2,
        "{rendered}"
    );
    assert_eq!(rendered.matches("&auth=rds-iam").count(), 2, "{rendered}");
    assert!(rendered.contains("mechanism: aws-msk-iam"), "{rendered}");
    assert!(
        !rendered.contains(&password) && !rendered.contains("PASSWORD}"),
        "a password was rendered into the pipeline file"
    );
    let file = ws.infra.join("freshet.yaml");
    std::fs::write(&file, &rendered).unwrap();
    let check = Command::new(env!("CARGO_BIN_EXE_freshet"))
        .args(["check", "--offline", "--pipeline"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}{}\n{rendered}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
}

fn iac_tool(name: &str) -> PathBuf {
    let venv = std::env::var("FRESHET_IAC_VENV").expect(
        "FRESHET_IAC_VENV (scripts/env.sh): scripts/install.sh installs checkov and hadolint there",
    );
    PathBuf::from(venv).join("bin").join(name)
}

/// checkov over infra/ (Terraform) and the Dockerfile: no failed check. A check the stack
/// does not follow is skipped inline, next to the resource, with the reason.
#[test]
fn checkov_passes_infra_and_the_dockerfile() {
    let repo = support::repo();
    // One run per target: checkov takes either a directory or files, not both.
    for (framework, target) in [
        ("terraform", ["-d", "infra"]),
        ("dockerfile", ["-f", "Dockerfile"]),
    ] {
        let out = Command::new(iac_tool("checkov"))
            .args([
                "--framework",
                framework,
                "--skip-download",
                "--output",
                "json",
            ])
            .args(target)
            .current_dir(&repo)
            .env("BC_SKIP_MAPPING", "TRUE")
            .output()
            .expect("checkov");
        let text = String::from_utf8_lossy(&out.stdout);
        let report: Json = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{e}: {text}{}", String::from_utf8_lossy(&out.stderr)));
        assert_eq!(report["check_type"], framework, "{text}");
        let summary = &report["summary"];
        let failed: Vec<&Json> = report["results"]["failed_checks"]
            .as_array()
            .into_iter()
            .flatten()
            .collect();
        assert_eq!(summary["failed"], 0, "{framework}: {failed:#?}");
        assert!(
            summary["passed"].as_u64().unwrap() > 10,
            "{framework}: {summary}"
        );
        assert!(out.status.success(), "{text}");
    }
    // Every inline skip says why.
    let mut skips = 0;
    for file in terraform_files(&repo.join("infra")) {
        for (n, line) in std::fs::read_to_string(&file).unwrap().lines().enumerate() {
            if let Some(rest) = line.trim().strip_prefix("#checkov:skip=") {
                skips += 1;
                let reason = rest.split_once(':').map(|(_, r)| r.trim()).unwrap_or("");
                assert!(
                    reason.len() > 20,
                    "{}:{}: a skip without its reason",
                    file.display(),
                    n + 1
                );
            }
        }
    }
    assert!(
        skips > 0,
        "the skips were not found: is the scan looking at the right files?"
    );
}

fn terraform_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(terraform_files(&path));
        } else if path.extension().is_some_and(|e| e == "tf") {
            out.push(path);
        }
    }
    out
}

/// hadolint passes the Dockerfile (every rule at its default severity, info included).
#[test]
fn hadolint_passes_the_dockerfile() {
    let out = Command::new(iac_tool("hadolint"))
        .args(["--failure-threshold", "info", "Dockerfile"])
        .current_dir(support::repo())
        .output()
        .expect("hadolint");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
