//! ECS's service metrics across a cluster's boxes (docs/cloudwatch.md, "In cluster mode").
//! At each of its samples, a serve asks every connected agent to sample the tasks of its
//! box (`POST /v1/metrics/sample` on the agent's endpoint, [`METRICS_CALL`]) and puts what they
//! answer into its own CloudWatch, beside its own box's samples, before its alarms are
//! evaluated. Each agent keeps its own sampler (the previous reading of each task, which
//! turns CPU time into a rate; one for each serve that asks), so the figures are the ones
//! a one-box serve computes. The
//! datapoints go from the box to the serve over the endpoint's mutual TLS (or the cluster
//! token's signature), never through etcd. With them comes what the box's load balancers'
//! listeners counted since that serve's last sample (`super::balancers::read_meters`),
//! which the serve sums with its own before it publishes the load balancers' metrics.

use super::endpoint::{Answer, METRICS_CALL, SampleRequest, Sampled, agent_endpoints, ask_agents};
use super::etcd::Etcd;
use crate::cloudwatch::metrics::{Datum, MetricId, Millis};
use crate::elb::meters::Traffic;
use std::collections::HashSet;
use std::time::Duration;

/// How long a serve waits for a box's sample: a box that answers later is left out of
/// that sample (and said once in serve's log).
const WAIT: Duration = Duration::from_secs(3);

/// In serve: the boxes' samples, and which boxes failed to answer (said when a box
/// starts or stops failing, not at every sample).
#[derive(Debug, Default)]
pub struct Gatherer {
    failing: HashSet<String>,
}

/// What the boxes that answered gave: their tasks' datums, and the sum of what their
/// load balancers' listeners counted.
#[derive(Debug, Default)]
pub struct Gathered {
    pub metrics: Vec<(MetricId, Vec<Datum>)>,
    pub elb: Traffic,
}

impl Gatherer {
    /// Asks every connected agent of every cluster for a sample at `at` (high resolution
    /// or not; with the Container Insights figures of the tasks of the clusters
    /// `insights` names); what those that answered in time gave.
    pub async fn gather(
        &mut self,
        etcd: &'static Etcd,
        at: Millis,
        high_resolution: bool,
        insights: &[String],
    ) -> Gathered {
        let endpoints = match agent_endpoints(etcd).await {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(error = %e, "ECS metrics: cannot list the boxes to sample");
                return Gathered::default();
            }
        };
        if endpoints.is_empty() {
            return Gathered::default();
        }
        let req = SampleRequest {
            at,
            high_resolution,
            insights: insights.to_vec(),
            serve: super::registries::this_serve(),
        };
        let body = serde_json::to_vec(&req).expect("a sample request encodes");
        let asks = endpoints.into_iter().map(|e| (e, body.clone())).collect();
        let answers = match ask_agents(etcd, METRICS_CALL, asks, WAIT).await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "ECS metrics: cannot ask the boxes for samples");
                return Gathered::default();
            }
        };
        let mut out = Gathered::default();
        for (endpoint, answer) in answers {
            let why = match answer {
                Ok(Answer { status: 200, body }) => match serde_json::from_value::<Sampled>(body) {
                    Ok(s) => {
                        out.metrics.extend(s.metrics);
                        if let Some(t) = &s.elb {
                            out.elb.add(t);
                        }
                        None
                    }
                    Err(e) => Some(format!("its answer does not decode: {e}")),
                },
                Ok(Answer { status, body }) => Some(format!("HTTP {status}: {body}")),
                Err(e) => Some(e),
            };
            match why {
                Some(why) => {
                    if self.failing.insert(endpoint.clone()) {
                        tracing::warn!(agent = %endpoint, error = %why, "ECS metrics: a box's tasks were not sampled");
                    }
                }
                None => {
                    if self.failing.remove(&endpoint) {
                        tracing::info!(agent = %endpoint, "ECS metrics: a box's tasks are sampled again");
                    }
                }
            }
        }
        out
    }
}
