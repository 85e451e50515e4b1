//! How a request or connection is routed ([`super::Elb::route`]): the listener's rule,
//! its action, the forward's group, the group's targets (healthy, or all when it fails
//! open), stickiness, and the target the group's algorithm picks; each step a method of
//! the ELB's state, under the read lock (or the write lock, to make what a first request
//! needs: [`Miss`]).

use super::*;

/// What [`State::route`] found missing of what it keeps per listener and group.
pub(super) struct Miss {
    pub(super) listener: String,
    pub(super) group: Option<String>,
}

impl State {
    /// Makes what `miss` names; whether anything was missing.
    pub(super) fn make(&mut self, miss: &Miss) -> bool {
        let mut made = self.meters.find_listener(&miss.listener).is_none();
        self.meters.listener(&miss.listener);
        let Some(g) = miss.group.as_ref().and_then(|a| self.groups.get(a)) else {
            return made;
        };
        made |= self.meters.find_group(&miss.listener, &g.arn).is_none();
        self.meters.group(&miss.listener, &g.arn);
        if !self.next.contains_key(&g.arn) {
            self.next.insert(g.arn.clone(), AtomicUsize::new(0));
            made = true;
        }
        if !self.anomalies.contains_key(&g.arn) {
            self.anomalies.insert(g.arn.clone(), RwLock::default());
            made = true;
        }
        let loads = self.loads.entry(g.arn.clone()).or_default();
        for t in &g.targets {
            if !loads.contains_key(t) {
                loads.insert(t.clone(), Default::default());
                made = true;
            }
        }
        made
    }

    /// [`Elb::route`] on the resources as they are; what it needs made first (`make`).
    pub(super) fn route(
        &self,
        listener: &str,
        req: Option<&rules::Request>,
        client: std::net::IpAddr,
        meter: &mut meters::Meter,
    ) -> Result<Pick, Miss> {
        let s = self;
        let Some(l) = s.listeners.get(listener) else {
            return Ok(Pick::Gone);
        };
        let miss = |group: Option<&str>| Miss {
            listener: listener.to_string(),
            group: group.map(str::to_string),
        };
        meter.listener = Some(s.meters.find_listener(listener).ok_or_else(|| miss(None))?);
        // The action that ends the request: the last by order (the others would be
        // authenticate actions, which are refused here).
        let actions = s.actions_of(l, req);
        let Some(action) = actions.iter().max_by_key(|a| a.order.unwrap_or(0)) else {
            return Ok(Pick::NoTarget);
        };
        if let Some(f) = &action.fixed_response {
            return Ok(Pick::Fixed {
                status: f.status.parse().unwrap_or(503),
                content_type: f.content_type.clone(),
                body: f.body.clone().unwrap_or_default(),
            });
        }
        if let Some(rd) = &action.redirect {
            let (host, path, query) = match req {
                Some(r) => (r.host.unwrap_or(""), r.path, r.query),
                None => ("", "/", None),
            };
            let (status, location) = rd.location(host, l.port, path, query);
            return Ok(Pick::Redirect { status, location });
        }
        let cookies = req.map(|r| sticky::cookies(r.headers)).unwrap_or_default();
        let cookie = |name: &str| cookies.iter().find(|(n, _)| *n == name).map(|(_, v)| *v);
        let mut stick = Stick::default();
        let group = s.group_of(listener, l.port, action, &cookie, &mut stick);
        let Some(g) = group.and_then(|a| s.groups.get(&*a)) else {
            return Ok(Pick::NoTarget);
        };
        if g.targets.is_empty() {
            return Ok(Pick::NoTarget);
        }
        let (from, healthy_none) = s.routable(g);
        let stickiness = sticky::of(g);
        let by_source = sticky::source_ip(g);
        let kept = s.kept_target(g, &from, &stickiness, by_source, &cookie, client);
        let arn = g.arn.as_str();
        let miss = || miss(Some(arn));
        let algorithm = balance::of(g);
        let t = match kept {
            Some(t) => t,
            None => s
                .balanced_target(g, &from, healthy_none, algorithm)
                .ok_or_else(miss)?,
        };
        let hold = s
            .hold(g, t, &from, req, healthy_none, algorithm)
            .ok_or_else(miss)?;
        s.stick_to(g, t, client, by_source, &stickiness, &mut stick);
        let addr = target_addr(&s.instances, g, t, t.port);
        meter.group = Some(s.meters.find_group(listener, arn).ok_or_else(miss)?);
        let proxy_v2 = proxy_protocol_v2(g);
        Ok(Pick::Target(addr, stick, hold, proxy_v2))
    }

    /// The actions of the rule of `l` of highest priority whose conditions `req` meets
    /// all of, else `l`'s default actions (a TCP connection, `req` None, has no rules).
    fn actions_of<'a>(
        &'a self,
        l: &'a Listener,
        req: Option<&rules::Request>,
    ) -> &'a [model::Action] {
        let Some(r) = req else {
            return &l.default_actions;
        };
        let mut matched: Option<&model::Rule> = None;
        for rule in self.rules.values().filter(|x| x.listener_arn == l.arn) {
            if matched.is_none_or(|m| rule.priority < m.priority)
                && rule.conditions.iter().all(|c| c.matches(r))
            {
                matched = Some(rule);
            }
        }
        matched.map_or(&l.default_actions, |m| &m.actions)
    }

    /// The group a forward `action` of `listener` (on `port`) sends to: the one the
    /// request's target group stickiness cookie names while it keeps weight, else one by
    /// weight (the cookie to set in `stick`); None when every group weighs 0.
    fn group_of<'a, 'c>(
        &'a self,
        listener: &str,
        port: u16,
        action: &'a model::Action,
        cookie: &dyn Fn(&str) -> Option<&'c str>,
        stick: &mut Stick,
    ) -> Option<std::borrow::Cow<'a, str>> {
        let groups = match &action.forward {
            Some(groups) if groups.len() > 1 => groups,
            // One group: the action's own (no list made for it).
            _ => {
                return action
                    .target_group_arn
                    .as_deref()
                    .or_else(|| {
                        action
                            .forward
                            .iter()
                            .flatten()
                            .next()
                            .map(|g| g.arn.as_str())
                    })
                    .map(std::borrow::Cow::Borrowed);
            }
        };
        let weight = |g: &model::WeightedGroup| g.weight.unwrap_or(1).max(0);
        // Target group stickiness: the group the request's AWSALBTG names, while
        // it still has weight here.
        let sticky_group = action.stickiness.as_ref().filter(|st| st.enabled);
        let scope = format!("{listener}\n{port}");
        let kept = sticky_group
            .and_then(|_| cookie("AWSALBTG"))
            .and_then(|v| self.key.open(&scope, v))
            .filter(|arn| groups.iter().any(|g| &g.arn == arn && weight(g) > 0));
        let chosen = match kept {
            Some(arn) => Some(std::borrow::Cow::Owned(arn)),
            None => {
                let total: i64 = groups.iter().map(weight).sum();
                if total == 0 {
                    return None;
                }
                let mut r = (random_u32() as i64) % total;
                groups
                    .iter()
                    .find(|g| {
                        r -= weight(g);
                        r < 0
                    })
                    .map(|g| std::borrow::Cow::Borrowed(g.arn.as_str()))
            }
        };
        if let (Some(st), Some(arn)) = (sticky_group, &chosen) {
            let d = std::time::Duration::from_secs(st.duration.unwrap_or(3600).max(1) as u64);
            stick.set_cookies.extend(sticky::set_cookie(
                "AWSALBTG",
                &self.key.seal(&scope, arn),
                d,
                true,
            ));
        }
        chosen
    }

    /// The targets of `g` requests go to: its healthy ones, or all registered ones when
    /// fewer are healthy than the group's minimum (one by default: ELB's "fail open",
    /// `target_group_health.unhealthy_state_routing`), and whether it failed open.
    fn routable<'a>(&self, g: &'a TargetGroup) -> (Vec<&'a Target>, bool) {
        // Looked up without a key of its own (`GroupTarget`): no allocation a request.
        let mut from: Vec<&Target> = g
            .targets
            .iter()
            .filter(|t| {
                self.health
                    .get(&(g.arn.as_str(), *t) as &dyn GroupTarget)
                    .is_some_and(|h| h.state == "healthy")
            })
            .collect();
        let healthy_none = from.len() < balance::minimum_healthy(g);
        if healthy_none {
            from.clear();
            from.extend(g.targets.iter());
        }
        (from, healthy_none)
    }

    /// The target of `from` a request stays with: the one its sticky cookie names, else
    /// (`source_ip` stickiness) the one this client's address went to.
    fn kept_target<'a, 'c>(
        &self,
        g: &TargetGroup,
        from: &[&'a Target],
        stickiness: &sticky::Stickiness,
        by_source: bool,
        cookie: &dyn Fn(&str) -> Option<&'c str>,
        client: std::net::IpAddr,
    ) -> Option<&'a Target> {
        let named = match stickiness {
            sticky::Stickiness::Off => None,
            sticky::Stickiness::LbCookie(_) => cookie("AWSALB"),
            sticky::Stickiness::AppCookie { .. } => cookie("AWSALBAPP-0"),
        };
        let kept = named
            .and_then(|v| self.key.open(&g.arn, v))
            .and_then(|body| {
                from.iter()
                    .copied()
                    .find(|t| sticky::target_body(t) == body)
            });
        kept.or_else(|| {
            if !by_source {
                return None;
            }
            let by_source = self.by_source.lock().unwrap_or_else(|p| p.into_inner());
            let t = by_source.get(&g.arn)?.get(&client)?;
            from.iter().copied().find(|x| *x == t)
        })
    }

    /// The target of `from` the group's algorithm picks; None when a count it needs is
    /// not made yet (`make`).
    fn balanced_target<'a>(
        &self,
        g: &TargetGroup,
        from: &[&'a Target],
        healthy_none: bool,
        algorithm: balance::Algorithm,
    ) -> Option<&'a Target> {
        let arn = g.arn.as_str();
        let turn = || {
            self.next
                .get(arn)
                .map(|n| n.fetch_add(1, Ordering::Relaxed))
        };
        if algorithm == balance::Algorithm::LeastOutstanding {
            // The fewest requests in flight; among equals, the next in turn.
            let n = turn()?;
            let loads = loads_of(&self.loads, arn, from)?;
            let k = from.len();
            let i = (0..k)
                .map(|i| (n.wrapping_add(i)) % k)
                .min_by_key(|i| loads[*i].1.outstanding.load(Ordering::Relaxed))
                .unwrap_or(0);
            return Some(from[i]);
        }
        let now = Instant::now();
        let duration = sticky::slow_start(g);
        let mut weights: Vec<f64> = from
            .iter()
            .map(|t| {
                // (Without slow start, no target is in it.)
                let until =
                    duration.and_then(|_| self.slow.get(&(arn, *t) as &dyn GroupTarget).copied());
                sticky::weight(until, duration, now)
            })
            .collect();
        if let balance::Algorithm::WeightedRandom { mitigate: true } = algorithm
            && !healthy_none
        {
            let loads = loads_of(&self.loads, arn, from)?;
            let a = self.anomalies.get(arn)?;
            if let Ok(mut a) = a.try_write() {
                a.look(&loads, now, true);
            }
            let a = a.read().unwrap_or_else(|p| p.into_inner());
            for (w, t) in weights.iter_mut().zip(from) {
                *w *= a.weight(t);
            }
        }
        let random = matches!(algorithm, balance::Algorithm::WeightedRandom { .. });
        if !random && weights.iter().all(|w| *w >= 1.0) {
            return Some(from[turn()? % from.len()]);
        }
        // Targets in slow start, or weighted random: each picked in proportion to its
        // share.
        let total: f64 = weights.iter().sum();
        let mut r = f64::from(random_u32()) / f64::from(u32::MAX) * total;
        let mut pick = from[from.len() - 1];
        for (t, w) in from.iter().zip(&weights) {
            if r < *w {
                pick = t;
                break;
            }
            r -= w;
        }
        Some(pick)
    }

    /// What the request or connection to `t` holds of its load while it lasts, after
    /// anomaly detection looked at the group's outcomes when due; None when a count it
    /// needs is not made yet (`make`).
    fn hold(
        &self,
        g: &TargetGroup,
        t: &Target,
        from: &[&Target],
        req: Option<&rules::Request>,
        healthy_none: bool,
        algorithm: balance::Algorithm,
    ) -> Option<balance::Outstanding> {
        let arn = g.arn.as_str();
        let in_flight = algorithm == balance::Algorithm::LeastOutstanding;
        // Anomaly detection: every HTTP request's outcome counts (ALB detects on every
        // HTTP group; it mitigates on weighted random ones only, looked at when picked).
        let outcome = req.is_some();
        if outcome
            && !healthy_none
            && algorithm != (balance::Algorithm::WeightedRandom { mitigate: true })
        {
            let now = Instant::now();
            // The thread that finds it free looks; the others go on.
            if let Ok(mut a) = self.anomalies.get(arn)?.try_write()
                && a.due(now)
            {
                let loads = loads_of(&self.loads, arn, from)?;
                a.look(&loads, now, false);
            }
        }
        // A TCP connection holds its target's load for its life: it is cut through it.
        if in_flight || outcome || req.is_none() {
            let load = self.loads.get(arn).and_then(|m| m.get(t))?;
            return Some(balance::Outstanding::new(load.clone(), in_flight, outcome));
        }
        Some(balance::Outstanding::default())
    }

    /// Remembers `t` for what the group's stickiness keeps: this client's address
    /// (`source_ip`), or the cookie to set in `stick`.
    fn stick_to(
        &self,
        g: &TargetGroup,
        t: &Target,
        client: std::net::IpAddr,
        by_source: bool,
        stickiness: &sticky::Stickiness,
        stick: &mut Stick,
    ) {
        let arn = g.arn.as_str();
        if by_source {
            self.by_source
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .entry(arn.to_string())
                .or_default()
                .insert(client, t.clone());
        }
        match stickiness {
            sticky::Stickiness::Off => {}
            sticky::Stickiness::LbCookie(d) => stick.set_cookies.extend(sticky::set_cookie(
                "AWSALB",
                &self.key.seal(arn, &sticky::target_body(t)),
                *d,
                true,
            )),
            sticky::Stickiness::AppCookie { name, duration } => {
                stick.app = Some((
                    name.clone(),
                    sticky::set_cookie(
                        "AWSALBAPP-0",
                        &self.key.seal(arn, &sticky::target_body(t)),
                        *duration,
                        false,
                    ),
                ));
            }
        }
    }
}
