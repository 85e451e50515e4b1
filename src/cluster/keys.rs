//! The key layout in etcd (docs/cluster.md "Key layout"). Everything lives under one
//! versioned prefix, one subtree per ECS cluster:
//!
//! ```text
//! /minifargate/v1/clusters/<cluster>/instances/<id>           the agent's registration (JSON, written by the agent)
//! /minifargate/v1/clusters/<cluster>/alive/<id>               attached to the agent's lease: agentConnected
//! /minifargate/v1/clusters/<cluster>/status/<id>              ACTIVE, DRAINING or INACTIVE (written by serve only; by a plain etcd's agent once)
//! /minifargate/v1/clusters/<cluster>/attributes/<id>/<name>   a custom attribute's value (PutAttributes, --attribute)
//! /minifargate/v1/clusters/<cluster>/ledger/<id>              what is placed on the instance: its reservations (JSON)
//! /minifargate/v1/clusters/<cluster>/assignments/<id>/<task>  a task placed on the instance, with its desired status (JSON)
//! /minifargate/v1/clusters/<cluster>/tasks/<task>             the task as DescribeTasks shows it (JSON, written by serve)
//! /minifargate/v1/leader                                       the serves' leader (attached to its lease)
//! /minifargate/v1/registries/<serve>                          a serve's registry for the boxes' pulls (JSON, attached to its lease)
//! /minifargate/v1/ecr/id                                      the cluster's registry id (random; a serve that joined it has it in registry/cluster-id)
//! /minifargate/v1/ecr/rows/<table>/<primary key>               a registry row of the cluster's ECR (JSON of its columns; crate::ecr::shared)
//! /minifargate/v1/db/rows/<table>/<primary key>                a control-plane row (JSON of its columns; crate::store::replica)
//! /minifargate/v1/db/written                                   touched by every write of rows: a serve is caught up once it applied it
//! /minifargate/v1/db-lock                                      the control plane's write lock (attached to the holder's lease)
//! /minifargate/v1/subnets/<box>/<network>-<prefix>            box <box>'s task subnet: its holder and address (JSON, written by that agent)
//! /minifargate/v1/boxes/<name>/claims/<cluster>/<id>          box <name>'s agent claims instance <id> (written by the agent)
//! /minifargate/v1/boxes/<name>/bound/<cluster>/<id>           the leader bound it: the box's role writes the instance's keys
//! /minifargate/v1/boxes/<name>/reports/<cluster>/<task>       box <name>'s report of its task (JSON; folded into tasks/<task> by the leader)
//! /minifargate/v1/bindings/<id>                               the box instance <id> is bound to (written by the leader, once)
//! /minifargate/v1/join/tokens/<id>                            a join token: its secret's SHA-256, cluster, expiry, uses left (JSON; `cluster token create`)
//! /minifargate/v1/join/boxes/<name>                           box <name> joined with a token: when, the token, its certificate's SHA-256 (JSON, written by serve)
//! /minifargate/v1/join/revoked/<sha256>                       a removed box's certificate (`cluster remove-box`)
//! /minifargate/v1/join/leases/<lease>                         the joined box a lease was granted to through serve's port (attached to that lease)
//! ```
//!
//! Who writes what is split so that no two writers race on one key: the agent owns its
//! registration and its liveness key, serve owns the status (its leader creates it when
//! it binds the instance to its box; on a plain etcd the agent creates it) and the API the
//! custom attributes. The placer writes an assignment, the task's first
//! record and its reservation in one transaction that compares the ledger's revision, so
//! two placers never book the same resources; after that the API writes only the
//! assignment (a desired status) and the agent reports the task under its box's prefix;
//! serve's leader folds a report into the task's record only while the task is assigned
//! to an instance bound to that box, and takes the reservation out with the assignment
//! (one transaction again) once the report says STOPPED ([`super::reports`]). `<id>` is the container instance id (32 hex, the last
//! part of its ARN); `<cluster>` an ECS cluster name (letters, digits, `-`, `_`: no `/`).

/// The prefix of every key minifargate writes.
pub const ROOT: &str = "/minifargate/v1";

fn cluster(cluster: &str) -> String {
    format!("{ROOT}/clusters/{cluster}")
}

/// The prefix of cluster `c`'s registrations.
pub fn instances(c: &str) -> String {
    format!("{}/instances/", cluster(c))
}

/// Instance `id`'s registration.
pub fn instance(c: &str, id: &str) -> String {
    format!("{}{id}", instances(c))
}

/// The prefix of cluster `c`'s liveness keys.
pub fn alive_all(c: &str) -> String {
    format!("{}/alive/", cluster(c))
}

/// Instance `id`'s liveness key (exists while its agent's lease lives).
pub fn alive(c: &str, id: &str) -> String {
    format!("{}{id}", alive_all(c))
}

/// The prefix of cluster `c`'s statuses.
pub fn status_all(c: &str) -> String {
    format!("{}/status/", cluster(c))
}

/// Instance `id`'s status.
pub fn status(c: &str, id: &str) -> String {
    format!("{}{id}", status_all(c))
}

/// The prefix of cluster `c`'s custom attributes.
pub fn attributes_all(c: &str) -> String {
    format!("{}/attributes/", cluster(c))
}

/// The prefix of instance `id`'s custom attributes.
pub fn attributes(c: &str, id: &str) -> String {
    format!("{}{id}/", attributes_all(c))
}

/// Instance `id`'s custom attribute `name`.
pub fn attribute(c: &str, id: &str, name: &str) -> String {
    format!("{}{name}", attributes(c, id))
}

/// The prefix of every cluster's keys.
pub fn clusters() -> String {
    format!("{ROOT}/clusters/")
}

/// A key under [`clusters`] as (cluster, kind, rest): `("lab", "ledger", "<id>")`.
pub fn parse(key: &str) -> Option<(&str, &str, &str)> {
    let mut p = key.strip_prefix(&clusters())?.splitn(3, '/');
    Some((p.next()?, p.next()?, p.next()?))
}

/// The clusters that have keys of `kind` (`instances`, `tasks` …) among `keys`, each once.
pub fn cluster_names(keys: &[String], kind: &str) -> Vec<String> {
    let mut out: Vec<String> = keys
        .iter()
        .filter_map(|k| parse(k))
        .filter(|(_, k, _)| *k == kind)
        .map(|(c, _, _)| c.to_string())
        .collect();
    out.dedup();
    out
}

/// The cluster's token: agents' endpoints take requests signed with it.
pub fn token() -> String {
    format!("{ROOT}/token")
}

/// The prefix of the boxes' task subnets (one key a subnet, whatever the ECS cluster:
/// the boxes share one network).
pub fn subnets() -> String {
    format!("{ROOT}/subnets/")
}

/// The prefix of box `owner`'s task subnets (its etcd role writes there only): the box's
/// name, or its instance id on a plain etcd.
pub fn box_subnets(owner: &str) -> String {
    format!("{}{owner}/", subnets())
}

/// The key of box `owner`'s task subnet `network/prefix` (`10.94.3.0-24`: no `/` in a
/// key's last part).
pub fn subnet(owner: &str, s: netns::Subnet) -> String {
    format!("{}{}-{}", box_subnets(owner), s.network(), s.prefix())
}

/// The prefix box `name`'s etcd role may write (`cluster add-box`): its claims of
/// instances and the leader's word that it bound them.
pub fn box_prefix(name: &str) -> String {
    format!("{ROOT}/boxes/{name}/")
}

/// The prefix of every box's keys.
pub fn boxes() -> String {
    format!("{ROOT}/boxes/")
}

/// Box `name`'s claim of instance `id` of cluster `c` (written by its agent).
pub fn box_claim(name: &str, c: &str, id: &str) -> String {
    format!("{}claims/{c}/{id}", box_prefix(name))
}

/// The leader's word that instance `id` of cluster `c` is box `name`'s and its role may
/// write the instance's keys (written by serve, after the grant).
pub fn box_bound(name: &str, c: &str, id: &str) -> String {
    format!("{}bound/{c}/{id}", box_prefix(name))
}

/// The prefix of the leader's words that it bound instances to box `name`.
pub fn box_bound_all(name: &str) -> String {
    format!("{}bound/", box_prefix(name))
}

/// A bound key's (cluster, instance) under box `name`'s prefix; `None` for another key.
pub fn parse_box_bound<'a>(name: &str, key: &'a str) -> Option<(&'a str, &'a str)> {
    let rest = key.strip_prefix(&box_bound_all(name))?;
    let (c, id) = rest.split_once('/')?;
    (!id.contains('/') && !id.is_empty() && !c.is_empty()).then_some((c, id))
}

/// A claim's (box, cluster, instance) from its key; `None` for another key.
pub fn parse_box_claim(key: &str) -> Option<(&str, &str, &str)> {
    let rest = key.strip_prefix(&boxes())?;
    let (name, rest) = rest.split_once('/')?;
    let rest = rest.strip_prefix("claims/")?;
    let (c, id) = rest.split_once('/')?;
    (!id.contains('/')).then_some((name, c, id))
}

/// Box `name`'s report of task `task` of cluster `c` (written by its agent, folded and
/// deleted by serve's leader).
pub fn box_report(name: &str, c: &str, task: &str) -> String {
    format!("{}reports/{c}/{task}", box_prefix(name))
}

/// A report's (box, cluster, task) from its key; `None` for another key.
pub fn parse_box_report(key: &str) -> Option<(&str, &str, &str)> {
    let rest = key.strip_prefix(&boxes())?;
    let (name, rest) = rest.split_once('/')?;
    let rest = rest.strip_prefix("reports/")?;
    let (c, task) = rest.split_once('/')?;
    (!task.contains('/') && !task.is_empty()).then_some((name, c, task))
}

/// The box instance `id` is bound to (its name; written by serve only, once).
pub fn binding(id: &str) -> String {
    format!("{ROOT}/bindings/{id}")
}

/// The key the serves elect their leader with (attached to the leader's lease).
pub fn leader() -> String {
    format!("{ROOT}/leader")
}

/// The prefix of the names the boxes' DNS servers for tasks answer (every box reads
/// them; the leader's serve writes them: `crate::cluster::names`).
pub fn dns() -> String {
    format!("{ROOT}/dns/")
}

/// The Cloud Map DNS namespaces' names (`crate::dns::Source` as JSON).
pub fn dns_cloudmap() -> String {
    format!("{}cloudmap", dns())
}

/// Service Connect's aliases and their tasks (`crate::servicediscovery::connect::Alias`
/// by port, as JSON): each box's agent listens for them on its task bridge.
pub fn dns_serviceconnect() -> String {
    format!("{}serviceconnect", dns())
}

/// The prefix of what the leader's serve publishes of the load balancers (every box
/// reads it, only serves write it: [`elb_config`], [`elb_health`]).
pub fn elb() -> String {
    format!("{ROOT}/elb/")
}

/// The load balancers' target health as the leader's serve checks it (the other serves
/// answer DescribeTargetHealth from it; each box's listeners route by it).
pub fn elb_health() -> String {
    format!("{}health", elb())
}

/// The load balancers as a listener needs them (`crate::elb::snapshot::Config` as JSON),
/// put by the leader's serve when they change: each box's data plane runs their listeners.
pub fn elb_config() -> String {
    format!("{}config", elb())
}

/// The prefix of the serves' registry advertisements (every box reads them).
pub fn registries() -> String {
    format!("{ROOT}/registries/")
}

/// Serve `name`'s registry advertisement (`crate::cluster::registries`).
pub fn registry(name: &str) -> String {
    format!("{}{name}", registries())
}

/// The prefix of the cluster's registry rows (ECR: repositories, manifests, tags ...).
pub fn ecr_rows() -> String {
    format!("{ROOT}/ecr/rows/")
}

/// The cluster's registry id (a serve's `registry/cluster-id` says it joined it).
pub fn ecr_id() -> String {
    format!("{ROOT}/ecr/id")
}

/// Registry row `key` (its primary key as a JSON array) of table `table`.
pub fn ecr_row(table: &str, key: &str) -> String {
    format!("{}{table}/{key}", ecr_rows())
}

/// The (table, primary key) of a registry row's key; `None` for another key.
pub fn parse_ecr_row(key: &str) -> Option<(&str, &str)> {
    key.strip_prefix(ROOT)?
        .strip_prefix("/ecr/rows/")?
        .split_once('/')
}

/// The prefix of the control plane's rows and of [`db_written`].
pub fn db() -> String {
    format!("{ROOT}/db/")
}

/// The prefix of the control plane's rows.
pub fn db_rows() -> String {
    format!("{ROOT}/db/rows/")
}

/// Row `key` (its primary key as a JSON array) of table `table`.
pub fn db_row(table: &str, key: &str) -> String {
    format!("{}{table}/{key}", db_rows())
}

/// The (table, primary key) of a row's key; `None` for another key.
pub fn parse_db_row(key: &str) -> Option<(&str, &str)> {
    key.strip_prefix(ROOT)?
        .strip_prefix("/db/rows/")?
        .split_once('/')
}

/// Written with every publication of rows.
pub fn db_written() -> String {
    format!("{ROOT}/db/written")
}

/// The control plane's write lock.
pub fn db_lock() -> String {
    format!("{ROOT}/db-lock")
}

/// Instance `id`'s ledger: the resources its placed tasks reserve.
pub fn ledger(c: &str, id: &str) -> String {
    format!("{}/ledger/{id}", cluster(c))
}

/// The prefix of cluster `c`'s ledgers.
pub fn ledger_all(c: &str) -> String {
    format!("{}/ledger/", cluster(c))
}

/// The prefix of the tasks assigned to instance `id`.
pub fn assignments(c: &str, id: &str) -> String {
    format!("{}/assignments/{id}/", cluster(c))
}

/// Task `task`'s assignment to instance `id`.
pub fn assignment(c: &str, id: &str, task: &str) -> String {
    format!("{}{task}", assignments(c, id))
}

/// The prefix of cluster `c`'s task records.
pub fn tasks(c: &str) -> String {
    format!("{}/tasks/", cluster(c))
}

/// Task `task`'s record.
pub fn task(c: &str, task: &str) -> String {
    format!("{}{task}", tasks(c))
}

/// What instance `id`'s box may do with one of its keys once the leader bound it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    /// Read only: the status, which serve alone writes (a box cannot undo its own
    /// DRAINING or INACTIVE).
    Read,
    /// Read and write.
    Write,
}

/// The keys (`true`) and prefixes (`false`) of instance `id` its box is granted once the
/// leader bound it, and how: registration, liveness, attributes, ledger, assignments
/// (the agent deletes the assignment of a task that left it) to write; its status to read
/// (serve creates it when it binds the instance, and changes it for the API). Not the
/// cluster's task records: the agent reports under its box's prefix ([`box_report`]) and
/// serve writes the records.
pub fn instance_keys(c: &str, id: &str) -> Vec<(String, bool, Grant)> {
    vec![
        (instance(c, id), true, Grant::Write),
        (alive(c, id), true, Grant::Write),
        // A range: the agent watches it (a watch is a range; a key's own permission does
        // not cover it). Longer keys it covers name no instance.
        (status(c, id), false, Grant::Read),
        (attributes(c, id), false, Grant::Write),
        (ledger(c, id), true, Grant::Write),
        (assignments(c, id), false, Grant::Write),
    ]
}

/// The key saying which serve holds the tunnel of instance `id` of cluster `c` (a box that
/// joined dials it out: `crate::cluster::tunnel`), attached to that serve's lease. Only the
/// control plane's roles read it.
pub fn tunnel(c: &str, id: &str) -> String {
    format!("{ROOT}/tunnels/{c}/{id}")
}

/// The prefix of the join tokens (`cluster token create`: `crate::cluster::join`).
pub fn join_tokens() -> String {
    format!("{ROOT}/join/tokens/")
}

/// Join token `id`'s record: its secret's hash, cluster, expiry and uses left (JSON).
pub fn join_token(id: &str) -> String {
    format!("{}{id}", join_tokens())
}

/// The prefix of the boxes that joined with a token.
pub fn joined_boxes() -> String {
    format!("{ROOT}/join/boxes/")
}

/// Box `name`'s join record: when, with which token, its certificate's hash (JSON).
pub fn joined_box(name: &str) -> String {
    format!("{}{name}", joined_boxes())
}

/// The prefix of the certificates of boxes removed (`cluster remove-box`), by their
/// SHA-256: refused at serve's port for boxes from then on.
pub fn revoked_certificates() -> String {
    format!("{ROOT}/join/revoked/")
}

/// A removed box's certificate, by the SHA-256 of its DER (hex).
pub fn revoked_certificate(sha256: &str) -> String {
    format!("{}{sha256}", revoked_certificates())
}

/// The joined box lease `id` was granted to through serve's port for boxes (its name,
/// attached to that lease: it goes with the lease). Only the control plane reads it.
pub fn box_lease(id: i64) -> String {
    format!("{ROOT}/join/leases/{id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout() {
        assert_eq!(
            attribute("default", "ab12", "stack/color"),
            "/minifargate/v1/clusters/default/attributes/ab12/stack/color"
        );
        assert_eq!(
            alive("lab", "ab12"),
            "/minifargate/v1/clusters/lab/alive/ab12"
        );
        assert_eq!(
            parse(&ledger("lab", "ab12")),
            Some(("lab", "ledger", "ab12"))
        );
        assert_eq!(
            cluster_names(
                &[
                    task("a", "1"),
                    task("a", "2"),
                    instance("b", "x"),
                    task("c", "3")
                ],
                "tasks"
            ),
            ["a", "c"]
        );
        assert_eq!(
            parse_box_claim(&box_claim("b1", "lab", "ab12")),
            Some(("b1", "lab", "ab12"))
        );
        assert_eq!(parse_box_claim(&box_bound("b1", "lab", "ab12")), None);
        assert_eq!(
            parse_box_bound("b1", &box_bound("b1", "lab", "ab12")),
            Some(("lab", "ab12"))
        );
        assert_eq!(parse_box_bound("b2", &box_bound("b1", "lab", "ab12")), None);
        assert_eq!(
            parse_box_report(&box_report("b1", "lab", "t1")),
            Some(("b1", "lab", "t1"))
        );
        assert_eq!(parse_box_report(&box_claim("b1", "lab", "ab12")), None);
        // One cluster's prefix never covers another's keys.
        assert!(!instance("lab2", "x").starts_with(&instances("lab")));
    }

    /// issue 73: a box reads its own status and never writes it (it cannot undo its
    /// DRAINING or INACTIVE); it writes the rest of its instance's keys.
    #[test]
    fn a_box_is_granted_its_status_to_read_only() {
        let grants = instance_keys("lab", "ab12");
        let of = |k: &str| grants.iter().find(|(key, _, _)| key == k).map(|g| g.2);
        assert_eq!(of(&status("lab", "ab12")), Some(Grant::Read));
        assert_eq!(
            grants.iter().filter(|g| g.2 == Grant::Read).count(),
            1,
            "{grants:?}"
        );
        for k in [
            instance("lab", "ab12"),
            alive("lab", "ab12"),
            ledger("lab", "ab12"),
            assignments("lab", "ab12"),
            attributes("lab", "ab12"),
        ] {
            assert_eq!(of(&k), Some(Grant::Write), "{k}");
        }
        assert!(grants.iter().all(|(k, _, _)| !k.starts_with(&tasks("lab"))));
    }
}
