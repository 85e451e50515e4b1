//! AddTags, RemoveTags and DescribeTags of load balancers, target groups, listeners and
//! rules.

use super::*;

/// The tags of the resource `arn` (a load balancer, target group or listener), for
/// changing; the error names the kind the ARN says.
pub(super) fn tags_of<'a>(s: &'a mut State, arn: &str) -> ElbResult<&'a mut Vec<Tag>> {
    if let Some(l) = s.lbs.get_mut(arn) {
        return Ok(&mut l.tags);
    }
    if let Some(g) = s.groups.get_mut(arn) {
        return Ok(&mut g.tags);
    }
    if let Some(l) = s.listeners.get_mut(arn) {
        return Ok(&mut l.tags);
    }
    if let Some(r) = s.rules.get_mut(arn) {
        return Ok(&mut r.tags);
    }
    Err(if arn.contains(":listener-rule/") {
        ElbError::RuleNotFound(format!("Rule '{arn}' not found"))
    } else if arn.contains(":targetgroup/") {
        ElbError::TargetGroupNotFound(format!("Target groups '{arn}' not found"))
    } else if arn.contains(":listener/") {
        ElbError::ListenerNotFound(format!("Listener '{arn}' not found"))
    } else {
        ElbError::LoadBalancerNotFound(format!("Load balancer '{arn}' not found"))
    })
}

/// ELB's limit of tags on one resource.
pub(super) const MAX_TAGS: usize = 50;

pub(super) fn add_tags(s: &mut State, p: &Params) -> ElbResult<Xml> {
    let arns = p.list("ResourceArns");
    let new = tags(p)?;
    if arns.is_empty() || new.is_empty() {
        return Err(validation("ResourceArns and Tags must not be empty"));
    }
    for arn in &arns {
        let have = tags_of(s, arn)?;
        let mut next = have.clone();
        for t in &new {
            match next.iter_mut().find(|o| o.key == t.key) {
                Some(o) => o.value = t.value.clone(),
                None => next.push(t.clone()),
            }
        }
        if next.len() > MAX_TAGS {
            return Err(ElbError::TooManyTags(format!(
                "The quota for the number of tags that can be assigned to a load balancer, target group or listener ({MAX_TAGS}) would be exceeded for '{arn}'"
            )));
        }
    }
    for arn in &arns {
        let have = tags_of(s, arn)?;
        for t in &new {
            match have.iter_mut().find(|o| o.key == t.key) {
                Some(o) => o.value = t.value.clone(),
                None => have.push(t.clone()),
            }
        }
        save_resource(s, arn)?;
    }
    Ok(Xml::new())
}

pub(super) fn remove_tags(s: &mut State, p: &Params) -> ElbResult<Xml> {
    let arns = p.list("ResourceArns");
    let keys = p.list("TagKeys");
    if arns.is_empty() {
        return Err(validation("ResourceArns must not be empty"));
    }
    for arn in &arns {
        tags_of(s, arn)?;
    }
    for arn in &arns {
        tags_of(s, arn)?.retain(|t| !keys.contains(&t.key));
        save_resource(s, arn)?;
    }
    Ok(Xml::new())
}

pub(super) fn describe_tags(s: &mut State, p: &Params) -> ElbResult<Xml> {
    let arns = p.list("ResourceArns");
    if arns.is_empty() || arns.len() > 20 {
        return Err(validation(
            "ResourceArns must have between 1 and 20 members",
        ));
    }
    let mut rows = Vec::new();
    for arn in arns {
        let tags = tags_of(s, &arn)?.clone();
        rows.push((arn, tags));
    }
    let mut x = Xml::new();
    x.list("TagDescriptions", &rows, |x, (arn, tags)| {
        x.leaf("ResourceArn", arn).list("Tags", tags, |x, t| {
            x.leaf("Key", &t.key).leaf("Value", &t.value);
        });
    });
    Ok(x)
}
