//! ECR lifecycle policies: the policy text parsed and validated as ECR validates it, the
//! evaluator (a pure function of the images and the time, so the user guide's examples
//! are its tests), and the expiry that deletes what it selects and collects the garbage.
//! Ref: ECR user guide, "Lifecycle policy properties", "Lifecycle policy evaluation
//! rules", "Examples of lifecycle policies".

use super::names::wildcard_match;
use super::{Digest, Reference, Registry, RegistryResult, RepoName, meta};
use serde::Deserialize;
use std::collections::HashSet;

/// The model's bounds of `lifecyclePolicyText`.
pub const TEXT_MIN: usize = 100;
pub const TEXT_MAX: usize = 30720;
/// The guide's limit of wildcards in one `tagPatternList` string.
pub const MAX_WILDCARDS: usize = 4;

const DAY: f64 = 86400.0;

/// Why a policy text is refused (ECR answers InvalidParameterException with it).
#[derive(Debug, thiserror::Error)]
#[error(
    "Invalid parameter at 'LifecyclePolicyText' failed to satisfy constraint: 'Lifecycle policy validation failure: {0}'"
)]
pub struct PolicyInvalid(pub String);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyDoc {
    rules: Vec<RuleDoc>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RuleDoc {
    rule_priority: i64,
    #[serde(default)]
    description: Option<String>,
    selection: SelectionDoc,
    action: ActionDoc,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct SelectionDoc {
    tag_status: String,
    tag_pattern_list: Option<Vec<String>>,
    tag_prefix_list: Option<Vec<String>>,
    storage_class: Option<String>,
    count_type: String,
    count_unit: Option<String>,
    count_number: i64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ActionDoc {
    #[serde(rename = "type")]
    kind: String,
    #[serde(rename = "targetStorageClass")]
    target_storage_class: Option<String>,
}

/// Which images a rule selects by their tags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TagSelection {
    /// Images with a tag for each prefix, or a tag for each pattern (one list is empty).
    Tagged {
        prefixes: Vec<String>,
        patterns: Vec<String>,
    },
    Untagged,
    Any,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Count {
    /// Keep the newest N of the selected images.
    MoreThan(u64),
    /// Expire the selected images pushed more than N days ago.
    SincePushedDays(u64),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub priority: u32,
    pub description: Option<String>,
    pub selection: TagSelection,
    pub count: Count,
}

/// A validated policy: its rules, lowest `rulePriority` first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub rules: Vec<Rule>,
}

fn invalid(msg: impl Into<String>) -> PolicyInvalid {
    PolicyInvalid(msg.into())
}

impl Policy {
    /// Parses and validates `text` by ECR's rules (see the module's header).
    pub fn parse(text: &str) -> Result<Policy, PolicyInvalid> {
        if text.len() < TEXT_MIN || text.len() > TEXT_MAX {
            return Err(invalid(format!(
                "the policy text is {} characters; it must have {TEXT_MIN} to {TEXT_MAX}",
                text.len()
            )));
        }
        let de = &mut serde_json::Deserializer::from_str(text);
        let doc: PolicyDoc = serde_path_to_error::deserialize(de)
            .map_err(|e| invalid(format!("{}: {}", e.path(), e.inner())))?;
        if doc.rules.is_empty() {
            return Err(invalid("rules: at least one rule is required"));
        }
        let mut rules = Vec::new();
        for r in doc.rules {
            rules.push(rule(r)?);
        }
        rules.sort_by_key(|r| r.priority);
        for w in rules.windows(2) {
            if w[0].priority == w[1].priority {
                return Err(invalid(format!(
                    "rulePriority {} is used by more than one rule; each rule needs a unique \
                     rulePriority",
                    w[0].priority
                )));
            }
        }
        let last = rules.len() - 1;
        if let Some(i) = rules.iter().position(|r| r.selection == TagSelection::Any)
            && i != last
        {
            return Err(invalid(format!(
                "the rule with tagStatus 'any' (rulePriority {}) must have the highest \
                 rulePriority",
                rules[i].priority
            )));
        }
        let untagged = rules
            .iter()
            .filter(|r| r.selection == TagSelection::Untagged)
            .count();
        if untagged > 1 {
            return Err(invalid(
                "only one rule may select untagged images (tagStatus 'untagged')",
            ));
        }
        let mut seen = HashSet::new();
        for r in &rules {
            if let TagSelection::Tagged { prefixes, patterns } = &r.selection {
                let mut key: (Vec<&String>, Vec<&String>) =
                    (prefixes.iter().collect(), patterns.iter().collect());
                key.0.sort();
                key.1.sort();
                if !seen.insert(key) {
                    return Err(invalid(format!(
                        "rule {} selects the same tags as another rule; the set of rules must \
                         contain a unique set of tag prefixes",
                        r.priority
                    )));
                }
            }
        }
        Ok(Policy { rules })
    }
}

fn rule(r: RuleDoc) -> Result<Rule, PolicyInvalid> {
    let p = r.rule_priority;
    let priority = u32::try_from(p)
        .ok()
        .filter(|p| *p >= 1)
        .ok_or_else(|| invalid(format!("rulePriority {p}: must be a positive integer")))?;
    let s = r.selection;
    let lists = |l: Option<Vec<String>>| l.filter(|l| !l.is_empty());
    let (prefixes, patterns) = (lists(s.tag_prefix_list), lists(s.tag_pattern_list));
    let selection = match s.tag_status.as_str() {
        "tagged" => {
            if prefixes.is_none() && patterns.is_none() {
                return Err(invalid(format!(
                    "rule {priority}: tagStatus 'tagged' requires a tagPrefixList or a \
                     tagPatternList"
                )));
            }
            // Ref: ECR user guide, "Lifecycle policy properties": each list is required
            // "if tagStatus is set to tagged and" the other "isn't specified"; a rule
            // selects by one of them, and ECR refuses a rule that gives both.
            if prefixes.is_some() && patterns.is_some() {
                return Err(invalid(format!(
                    "rule {priority}: tagPrefixList and tagPatternList cannot be used together \
                     in one rule; use one of them (tagPatternList covers prefixes: \"prod*\")"
                )));
            }
            for t in prefixes.iter().chain(patterns.iter()).flatten() {
                if t.is_empty() {
                    return Err(invalid(format!(
                        "rule {priority}: an empty tag prefix or pattern"
                    )));
                }
            }
            for t in patterns.iter().flatten() {
                if t.matches('*').count() > MAX_WILDCARDS {
                    return Err(invalid(format!(
                        "rule {priority}: tag pattern {t:?} has more than {MAX_WILDCARDS} \
                         wildcards (*)"
                    )));
                }
            }
            TagSelection::Tagged {
                prefixes: prefixes.unwrap_or_default(),
                patterns: patterns.unwrap_or_default(),
            }
        }
        status @ ("untagged" | "any") => {
            if prefixes.is_some() || patterns.is_some() {
                return Err(invalid(format!(
                    "rule {priority}: tagPrefixList and tagPatternList are only for tagStatus \
                     'tagged', not '{status}'"
                )));
            }
            if status == "untagged" {
                TagSelection::Untagged
            } else {
                TagSelection::Any
            }
        }
        other => {
            return Err(invalid(format!(
                "rule {priority}: tagStatus {other:?} is not one of tagged, untagged, any"
            )));
        }
    };
    if s.count_number < 1 {
        return Err(invalid(format!(
            "rule {priority}: countNumber {} must be a positive integer (0 is not accepted)",
            s.count_number
        )));
    }
    let n = s.count_number as u64;
    let count = match (s.count_type.as_str(), s.count_unit.as_deref()) {
        ("imageCountMoreThan", None) => Count::MoreThan(n),
        ("imageCountMoreThan", Some(u)) => {
            return Err(invalid(format!(
                "rule {priority}: countUnit {u:?} is only for countType sinceImagePushed"
            )));
        }
        ("sinceImagePushed", Some("days")) => Count::SincePushedDays(n),
        ("sinceImagePushed", Some(u)) => {
            return Err(invalid(format!(
                "rule {priority}: countUnit {u:?}: the unit is 'days'"
            )));
        }
        ("sinceImagePushed", None) => {
            return Err(invalid(format!(
                "rule {priority}: countType sinceImagePushed requires countUnit 'days'"
            )));
        }
        (t @ ("sinceImagePulled" | "sinceImageTransitioned"), _) => {
            return Err(invalid(format!(
                "rule {priority}: countType {t} is for archived images, which this registry \
                 does not serve (docs/registry.md)"
            )));
        }
        (t, _) => {
            return Err(invalid(format!(
                "rule {priority}: countType {t:?} is not one of imageCountMoreThan, \
                 sinceImagePushed"
            )));
        }
    };
    match s.storage_class.as_deref() {
        None | Some("standard") => {}
        Some(c) => {
            return Err(invalid(format!(
                "rule {priority}: storageClass {c:?}: only 'standard' is served here (no \
                 archive storage class)"
            )));
        }
    }
    match (r.action.kind.as_str(), &r.action.target_storage_class) {
        ("expire", None) => {}
        ("transition", _) => {
            return Err(invalid(format!(
                "rule {priority}: action 'transition' moves images to the archive storage \
                 class, which this registry does not serve"
            )));
        }
        ("expire", Some(_)) => {
            return Err(invalid(format!(
                "rule {priority}: targetStorageClass is only for action 'transition'"
            )));
        }
        (k, _) => {
            return Err(invalid(format!(
                "rule {priority}: action type {k:?}: the supported value is 'expire'"
            )));
        }
    }
    Ok(Rule {
        priority,
        description: r.description,
        selection,
        count,
    })
}

/// An image as the evaluator sees it.
#[derive(Debug, Clone)]
pub struct Image {
    pub digest: String,
    pub tags: Vec<String>,
    /// Seconds since the epoch.
    pub pushed_at: f64,
}

impl TagSelection {
    fn selects(&self, i: &Image) -> bool {
        match self {
            TagSelection::Any => true,
            TagSelection::Untagged => i.tags.is_empty(),
            // Ref: "an image is successfully matched if all of the tags in the
            // tagPrefixList value are matched against any of the image's tags".
            TagSelection::Tagged { prefixes, patterns } => {
                prefixes
                    .iter()
                    .all(|p| i.tags.iter().any(|t| t.starts_with(p.as_str())))
                    && patterns
                        .iter()
                        .all(|p| i.tags.iter().any(|t| wildcard_match(p, t)))
            }
        }
    }
}

/// What the evaluator decided for one image.
#[derive(Debug, Clone, PartialEq)]
pub struct Expiry {
    pub digest: String,
    pub rule_priority: u32,
}

/// The images `policy` expires at time `now`, in rule order then oldest first. ECR's
/// evaluation rules: each rule identifies the images its tags select (also those an earlier
/// rule identified, "as if they haven't been expired") and marks, oldest first, those
/// beyond its count or age; a marked image is expired by this rule only if no earlier rule
/// identified it (an image is expired by at most one rule, and one a higher-priority
/// rule's tags select cannot be expired by a lower-priority rule).
pub fn evaluate(policy: &Policy, images: &[Image], now: f64) -> Vec<Expiry> {
    let mut identified: HashSet<&str> = HashSet::new();
    let mut out = Vec::new();
    for rule in &policy.rules {
        let mut selected: Vec<&Image> = images
            .iter()
            .filter(|i| rule.selection.selects(i))
            .collect();
        // Newest first; ties by digest so that the outcome does not depend on row order.
        selected.sort_by(|a, b| {
            b.pushed_at
                .total_cmp(&a.pushed_at)
                .then_with(|| a.digest.cmp(&b.digest))
        });
        let marked: Vec<&Image> = match rule.count {
            Count::MoreThan(n) => selected.iter().skip(n as usize).copied().collect(),
            Count::SincePushedDays(d) => selected
                .iter()
                .filter(|i| i.pushed_at < now - d as f64 * DAY)
                .copied()
                .collect(),
        };
        let mut expired: Vec<&Image> = marked
            .into_iter()
            .filter(|i| !identified.contains(i.digest.as_str()))
            .collect();
        expired.sort_by(|a, b| a.pushed_at.total_cmp(&b.pushed_at));
        for i in expired {
            out.push(Expiry {
                digest: i.digest.clone(),
                rule_priority: rule.priority,
            });
        }
        identified.extend(selected.iter().map(|i| i.digest.as_str()));
    }
    out
}

/// One repository's expiry: how many images went.
#[derive(Debug, Clone, Default)]
pub struct Expired {
    pub repository: String,
    pub images: usize,
}

impl Registry {
    /// The images lifecycle runs expired from repository `name` (the newest 100, newest
    /// first): digest, tags, push time, the rule, when. This serve's runs only.
    pub fn expired_images(&self, name: &str) -> RegistryResult<Vec<meta::ExpiredRow>> {
        let repo = RepoName::parse(name).map_err(super::RegistryError::NameInvalid)?;
        meta::expired(&self.db(), &repo)
    }

    /// The images of `repo` as lifecycle rules see them: every manifest but the children
    /// of an image index (they go with their index, as a multi-arch image is one image).
    pub(super) fn lifecycle_images(&self, repo: &RepoName) -> RegistryResult<Vec<Image>> {
        let db = self.db();
        let children = meta::child_manifests(&db, repo)?;
        Ok(meta::images(&db, repo)?
            .into_iter()
            .filter(|i| !children.contains(&i.digest))
            .map(|i| Image {
                digest: i.digest,
                tags: i.tags,
                pushed_at: i.pushed_at,
            })
            .collect())
    }

    /// Applies every repository's lifecycle policy at `now`: the images it selects are
    /// deleted (with their tags), then garbage is collected. A policy that no longer
    /// parses (it was valid when put) is skipped with a warning.
    pub fn expire_images(&self, now: f64) -> RegistryResult<Vec<Expired>> {
        let repos = meta::lifecycle_repos(&self.db())?;
        let mut out = Vec::new();
        for name in repos {
            let Ok(repo) = RepoName::parse(&name) else {
                continue;
            };
            let Some((text, _)) = meta::lifecycle_policy(&self.db(), &repo)? else {
                continue;
            };
            let policy = match Policy::parse(&text) {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(repository = %repo, error = %e, "lifecycle policy skipped");
                    continue;
                }
            };
            let images = self.lifecycle_images(&repo)?;
            let expired = evaluate(&policy, &images, now);
            for e in &expired {
                let Ok(d) = Digest::parse(&e.digest) else {
                    continue;
                };
                match self.delete_manifest(&repo, &Reference::Digest(d)) {
                    Ok(()) => {
                        // What expiry removed, for the console (docs/registry.md).
                        let image = images.iter().find(|i| i.digest == e.digest);
                        let row = meta::ExpiredRow {
                            digest: e.digest.clone(),
                            tags: serde_json::to_string(&image.map(|i| &i.tags))
                                .unwrap_or_else(|_| "[]".into()),
                            pushed_at: image.map(|i| i.pushed_at).unwrap_or_default(),
                            rule: e.rule_priority,
                            expired_at: now,
                        };
                        meta::record_expired(&self.db(), &repo, &row)?;
                    }
                    Err(super::RegistryError::ManifestUnknown(_)) => {}
                    Err(err) => return Err(err),
                }
                tracing::info!(repository = %repo, image = %e.digest, rule = e.rule_priority, "image expired by its lifecycle policy");
            }
            meta::lifecycle_evaluated(&self.db(), &repo, now)?;
            out.push(Expired {
                repository: name,
                images: expired.len(),
            });
        }
        self.collect_garbage()?;
        Ok(out)
    }
}

/// When serve applies lifecycle policies, and garbage collection's grace.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    /// Between two runs (`MINIFARGATE_ECR_LIFECYCLE_INTERVAL`, seconds; default an hour,
    /// inside ECR's "within 24 hours"). The first run is one interval after serve starts.
    pub interval: std::time::Duration,
    /// `MINIFARGATE_ECR_GC_GRACE`, seconds; default an hour.
    pub gc_grace_secs: f64,
}

impl Schedule {
    /// The schedule the configuration sets (`crate::config`).
    pub fn from_config() -> Schedule {
        let c = crate::config::get();
        Schedule {
            interval: c
                .ecr_lifecycle_interval
                .max(std::time::Duration::from_millis(100)),
            gc_grace_secs: c.ecr_gc_grace.as_secs_f64(),
        }
    }
}

/// serve's expiry: every `interval`, each repository's lifecycle policy is applied and the
/// garbage collected.
pub async fn run(registry: std::sync::Arc<Registry>, interval: std::time::Duration) {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let r = registry.clone();
        match tokio::task::spawn_blocking(move || r.expire_images(meta::now())).await {
            Ok(Ok(runs)) => {
                for e in runs.iter().filter(|e| e.images > 0) {
                    tracing::info!(repository = %e.repository, images = e.images, "lifecycle policy applied");
                }
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %crate::errors::error_chain(&e), "lifecycle expiry failed")
            }
            Err(e) => tracing::warn!(error = %e, "lifecycle expiry stopped"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: f64 = DAY;
    const NOW: f64 = 1_800_000_000.0;

    fn img(name: &str, tags: &[&str], days_ago: f64) -> Image {
        Image {
            digest: name.to_string(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            pushed_at: NOW - days_ago * D,
        }
    }

    fn expired(policy: &str, images: &[Image]) -> Vec<String> {
        let p = Policy::parse(policy).unwrap_or_else(|e| panic!("{e}"));
        let mut v: Vec<String> = evaluate(&p, images, NOW)
            .into_iter()
            .map(|e| e.digest)
            .collect();
        v.sort();
        v
    }

    fn rule(priority: u32, selection: &str, count: &str) -> String {
        format!(
            r#"{{"rulePriority": {priority}, "description": "Rule {priority}",
                "selection": {{{selection}, {count}}}, "action": {{"type": "expire"}}}}"#
        )
    }

    fn policy(rules: &[String]) -> String {
        format!(r#"{{"rules": [{}]}}"#, rules.join(","))
    }

    // The user guide's "Examples of lifecycle policies", each with its stated result.

    #[test]
    fn filtering_on_image_age_and_count() {
        let images = [
            img("old", &[], 15.0),
            img("young", &[], 13.0),
            img("tagged-old", &["v1"], 30.0),
        ];
        let age = policy(&[rule(
            1,
            r#""tagStatus": "untagged""#,
            r#""countType": "sinceImagePushed", "countUnit": "days", "countNumber": 14"#,
        )]);
        assert_eq!(expired(&age, &images), ["old"]);
        let count = policy(&[rule(
            1,
            r#""tagStatus": "untagged""#,
            r#""countType": "imageCountMoreThan", "countNumber": 1"#,
        )]);
        assert_eq!(expired(&count, &images), ["old"]);
        // The guide's newer age example: tagPatternList prod* older than 14 days.
        let prod = policy(&[rule(
            1,
            r#""tagStatus": "tagged", "tagPatternList": ["prod*"]"#,
            r#""countType": "sinceImagePushed", "countUnit": "days", "countNumber": 14"#,
        )]);
        let images = [
            img("a", &["prod"], 20.0),
            img("b", &["prod-7"], 15.0),
            img("c", &["prod-8"], 3.0),
            img("d", &["beta"], 30.0),
        ];
        assert_eq!(expired(&prod, &images), ["a", "b"]);
    }

    fn multiple_rules_repo() -> [Image; 3] {
        [
            img("A", &["beta-1", "prod-1"], 10.0),
            img("B", &["beta-2", "prod-2"], 9.0),
            img("C", &["beta-3"], 8.0),
        ]
    }

    #[test]
    fn multiple_rules_example_a_expires_image_a() {
        let p = policy(&[
            rule(
                1,
                r#""tagStatus": "tagged", "tagPrefixList": ["prod"]"#,
                r#""countType": "imageCountMoreThan", "countNumber": 1"#,
            ),
            rule(
                2,
                r#""tagStatus": "tagged", "tagPrefixList": ["beta"]"#,
                r#""countType": "imageCountMoreThan", "countNumber": 1"#,
            ),
        ]);
        assert_eq!(expired(&p, &multiple_rules_repo()), ["A"]);
    }

    #[test]
    fn multiple_rules_example_b_expires_images_a_and_b() {
        let p = policy(&[
            rule(
                1,
                r#""tagStatus": "tagged", "tagPrefixList": ["beta"]"#,
                r#""countType": "imageCountMoreThan", "countNumber": 1"#,
            ),
            rule(
                2,
                r#""tagStatus": "tagged", "tagPrefixList": ["prod"]"#,
                r#""countType": "imageCountMoreThan", "countNumber": 1"#,
            ),
        ]);
        assert_eq!(expired(&p, &multiple_rules_repo()), ["A", "B"]);
    }

    #[test]
    fn multiple_tags_in_a_single_rule_examples() {
        // Example A: images must match all listed prefixes; C and F do, C is older than 5 days.
        let images = [
            img("A", &["alpha-1"], 12.0),
            img("B", &["beta-1"], 11.0),
            img("C", &["alpha-2", "beta-2"], 10.0),
            img("D", &["alpha-3"], 4.0),
            img("E", &["beta-3"], 3.0),
            img("F", &["alpha-4", "beta-4"], 2.0),
        ];
        let p = policy(&[rule(
            1,
            r#""tagStatus": "tagged", "tagPrefixList": ["alpha", "beta"]"#,
            r#""countType": "sinceImagePushed", "countNumber": 5, "countUnit": "days""#,
        )]);
        assert_eq!(expired(&p, &images), ["C"]);
        // Example B: tags are not exclusive; all three match, the newest stays.
        let images = [
            img("A", &["alpha-1", "beta-1", "gamma-1"], 10.0),
            img("B", &["alpha-2", "beta-2"], 9.0),
            img("C", &["alpha-3", "beta-3", "gamma-2"], 8.0),
        ];
        let p = policy(&[rule(
            1,
            r#""tagStatus": "tagged", "tagPrefixList": ["alpha", "beta"]"#,
            r#""countType": "imageCountMoreThan", "countNumber": 1"#,
        )]);
        assert_eq!(expired(&p, &images), ["A", "B"]);
    }

    #[test]
    fn filtering_on_all_images_examples() {
        // Example A: any, keep one.
        let images = [
            img("A", &["alpha-1"], 4.0),
            img("B", &["beta-1"], 3.0),
            img("C", &[], 2.0),
            img("D", &["alpha-2"], 1.0),
        ];
        let p = policy(&[rule(
            1,
            r#""tagStatus": "any""#,
            r#""countType": "imageCountMoreThan", "countNumber": 1"#,
        )]);
        assert_eq!(expired(&p, &images), ["A", "B", "C"]);
        // Example B: the three rule kinds together. D and E are both "1 day ago"; E is the
        // newest (rule 3 keeps it) and not yet older than one day (rule 2 keeps it).
        let images = [
            img("A", &["alpha-1", "beta-1"], 4.0),
            img("B", &[], 3.0),
            img("C", &["alpha-2"], 2.0),
            img("D", &["git hash"], 1.0 + 1.0 / 1440.0),
            img("E", &[], 1.0 - 1.0 / 1440.0),
        ];
        let p = policy(&[
            rule(
                1,
                r#""tagStatus": "tagged", "tagPrefixList": ["alpha"]"#,
                r#""countType": "imageCountMoreThan", "countNumber": 1"#,
            ),
            rule(
                2,
                r#""tagStatus": "untagged""#,
                r#""countType": "sinceImagePushed", "countUnit": "days", "countNumber": 1"#,
            ),
            rule(
                3,
                r#""tagStatus": "any""#,
                r#""countType": "imageCountMoreThan", "countNumber": 1"#,
            ),
        ]);
        let got = evaluate(&Policy::parse(&p).unwrap(), &images, NOW);
        let by: Vec<(&str, u32)> = got
            .iter()
            .map(|e| (e.digest.as_str(), e.rule_priority))
            .collect();
        assert_eq!(by, [("A", 1), ("B", 2), ("D", 3)]);
    }

    #[test]
    fn wildcards_match_as_the_guide_says() {
        for (p, s, ok) in [
            ("prod*", "prod", true),
            ("prod*", "prod1", true),
            ("prod*", "pro", false),
            ("*test*1*2*3", "a-test-1-2-3", true),
            ("*test*1*2*3", "a-test-1-2-3-x", false),
            ("test*1*2*3*", "test123", true),
            ("exact", "exact", true),
            ("exact", "exactly", false),
            ("a*a", "a", false),
            ("a*a", "aa", true),
        ] {
            assert_eq!(wildcard_match(p, s), ok, "{p} ~ {s}");
        }
    }

    #[test]
    fn invalid_policies_are_refused_with_the_reason() {
        let count = r#""countType": "imageCountMoreThan", "countNumber": 1"#;
        let tagged = |t: &str| format!(r#""tagStatus": "tagged", "tagPrefixList": ["{t}"]"#);
        for (text, why) in [
            (
                policy(&[rule(1, &tagged("a"), count), rule(1, &tagged("b"), count)]),
                "unique rulePriority",
            ),
            (
                policy(&[rule(1, r#""tagStatus": "any""#, count), rule(2, &tagged("b"), count)]),
                "highest rulePriority",
            ),
            (policy(&[rule(1, r#""tagStatus": "tagged""#, count)]), "requires a tagPrefixList"),
            (
                policy(&[rule(1, r#""tagStatus": "untagged", "tagPrefixList": ["x"]"#, count)]),
                "only for tagStatus 'tagged'",
            ),
            (
                policy(&[rule(
                    1,
                    r#""tagStatus": "tagged", "tagPrefixList": ["a"], "tagPatternList": ["b*"]"#,
                    count,
                )]),
                "cannot be used together",
            ),
            (
                policy(&[rule(
                    1,
                    r#""tagStatus": "tagged", "tagPatternList": ["test*1*2*3*4*5*6"]"#,
                    count,
                )]),
                "more than 4 wildcards",
            ),
            (
                policy(&[rule(1, r#""tagStatus": "untagged""#, r#""countType": "sinceImagePushed", "countNumber": 3"#)]),
                "requires countUnit",
            ),
            (
                policy(&[rule(1, r#""tagStatus": "untagged""#, r#""countType": "imageCountMoreThan", "countUnit": "days", "countNumber": 3"#)]),
                "only for countType sinceImagePushed",
            ),
            (
                policy(&[rule(1, r#""tagStatus": "untagged""#, r#""countType": "imageCountMoreThan", "countNumber": 0"#)]),
                "0 is not accepted",
            ),
            (
                policy(&[rule(1, r#""tagStatus": "untagged""#, count), rule(2, r#""tagStatus": "untagged""#, count)]),
                "only one rule may select untagged",
            ),
            (
                policy(&[rule(1, &tagged("a"), count), rule(2, &tagged("a"), count)]),
                "unique set of tag prefixes",
            ),
            (
                policy(&[rule(1, r#""tagStatus": "TAGGED", "tagPrefixList": ["a"]"#, count)]),
                "not one of tagged",
            ),
            (r#"{"rules": []}                                                                                                     "#.to_string(), "at least one rule"),
            (r#"{"rules": [1]}"#.to_string(), "must have 100"),
        ] {
            let e = Policy::parse(&text).expect_err(why).to_string();
            assert!(e.contains(why), "{why}: {e}");
            assert!(e.starts_with("Invalid parameter at 'LifecyclePolicyText'"), "{e}");
        }
        let unknown = policy(&[rule(1, r#""tagStatus": "untagged", "tagFilter": 1"#, count)]);
        let e = Policy::parse(&unknown).unwrap_err().to_string();
        assert!(e.contains("tagFilter"), "{e}");
    }
}
