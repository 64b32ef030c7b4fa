//! The scan's phases: learning the API (crawl, identities, creates), the checks, and cleaning
//! up. Each check family has its own file.

pub(crate) mod access;
pub(crate) mod auth;
mod exposure;
mod inject;

use palisade_audit::spec::Operation;

use crate::build::build;
use crate::client::Refused;
use crate::graph::{path_kind, Who};
use crate::jwt::Jwt;
use crate::{Base, Scan};

/// Whether an operation requires credentials.
pub(crate) fn secured(op: &Operation) -> bool {
    op.secured()
}

pub(crate) fn has_path_params(op: &Operation) -> bool {
    op.params.iter().any(|p| p.location == "path")
}

/// Whether a method changes data.
pub(crate) fn unsafe_method(m: &str) -> bool {
    !matches!(m, "GET" | "HEAD" | "OPTIONS")
}

impl Scan<'_> {
    /// Sends a valid request of operation `op` as `who`, learns the answer's objects (made
    /// by this request when `created`) and keeps it as that identity's baseline.
    async fn record(
        &mut self,
        op: usize,
        who: Who,
        req: crate::request::Req,
        created: bool,
    ) -> Result<(), Refused> {
        let ex = self.send_as(&req, who).await?;
        self.learn(op, who, &ex, created);
        self.bases.push(Base { op, who, req, ex });
        Ok(())
    }

    /// Every GET, as every identity, with valid inputs: the answers fill the graph. Operations
    /// without path parameters first (lists, `/me`), then those whose parameters the graph
    /// can now fill.
    pub(crate) async fn crawl(&mut self) -> Result<(), Refused> {
        for who in self.who_all() {
            if let Some(sub) = self
                .identity(who)
                .and_then(|i| Jwt::parse(&i.authorization))
                .and_then(|t| {
                    t.claims
                        .get("sub")
                        .and_then(|s| s.as_str())
                        .map(str::to_string)
                })
            {
                self.graph.identify(who, &sub);
            }
        }
        // the caller's own account first, so that ownership is known when lists come
        let mut order: Vec<usize> = (0..self.spec.operations.len())
            .filter(|&i| {
                self.spec
                    .operations
                    .get(i)
                    .is_some_and(|o| o.method == "GET" && !has_path_params(o))
            })
            .collect();
        order.sort_by_key(|&i| {
            !self
                .spec
                .operations
                .get(i)
                .is_some_and(|o| crate::graph::is_self_path(&o.path))
        });
        for who in self.who_all() {
            for &i in &order {
                let op = self.op(i);
                let salt = self.next_salt();
                let b = build(&self.spec.doc, &op, &self.graph, who, None, salt);
                self.record(i, who, b.req, false).await?;
            }
        }
        // public operations as anyone would call them
        for &i in &order {
            let op = self.op(i);
            if !secured(&op) {
                let b = build(&self.spec.doc, &op, &self.graph, Who::A, None, 0);
                let ex = self.send(&b.req, None).await?;
                self.public.push((b.req.operation(), ex));
            }
        }
        self.crawl_bound().await
    }

    /// The GETs with path parameters, for every identity, bound to objects it owns.
    pub(crate) async fn crawl_bound(&mut self) -> Result<(), Refused> {
        for who in self.who_all() {
            for i in 0..self.spec.operations.len() {
                let op = self.op(i);
                if op.method != "GET" || !has_path_params(&op) {
                    continue;
                }
                let salt = self.next_salt();
                let b = build(&self.spec.doc, &op, &self.graph, who, None, salt);
                if !b.bound {
                    continue;
                }
                if self
                    .base(i, who)
                    .is_some_and(|x| x.req.target() == b.req.target())
                {
                    continue;
                }
                self.record(i, who, b.req, false).await?;
            }
        }
        Ok(())
    }

    /// Each identity must pass some operation that refuses a caller without credentials;
    /// otherwise nothing the scan reports about it could be trusted.
    pub(crate) async fn check_identities(&mut self) -> Result<(), Refused> {
        let creds: Vec<&str> = self
            .who_all()
            .into_iter()
            .filter_map(|w| self.identity(w).map(|i| i.authorization.as_str()))
            .collect();
        if creds
            .iter()
            .enumerate()
            .any(|(i, c)| creds.iter().take(i).any(|x| x == c))
        {
            return Err(Refused::Identity(
                "two identities have the same credential: A, B and admin must be different callers"
                    .into(),
            ));
        }
        if !self.spec.operations.iter().any(secured) {
            self.skipped.push(
                "identity check: the description has no operation that needs credentials".into(),
            );
            return Ok(());
        }
        for who in self.who_all() {
            let passed: Vec<Base> = self
                .bases
                .iter()
                .filter(|b| b.who == who && b.ex.ok() && secured(&self.op(b.op)))
                .cloned()
                .collect();
            if passed.is_empty() {
                let tried: Vec<String> = self
                    .bases
                    .iter()
                    .filter(|b| b.who == who && secured(&self.op(b.op)))
                    .take(6)
                    .map(|b| format!("{} answers {}", b.req.operation(), b.ex.status))
                    .collect();
                let flag = match who {
                    Who::A => "--auth-a",
                    Who::B => "--auth-b",
                    Who::Admin => "--auth-admin",
                };
                return Err(Refused::Identity(if tried.is_empty() {
                    format!("identity {} ({flag}) could not be checked: the description has no GET that needs credentials and can be called as it is", who.name())
                } else {
                    format!(
                        "identity {} ({flag}) is not accepted: {} (is the credential whole, current and for this API?)",
                        who.name(),
                        tried.join(", ")
                    )
                }));
            }
            let mut proven = false;
            for b in passed.iter().take(4) {
                let anon = self.send(&b.req, None).await?;
                if matches!(anon.status, 401 | 403) {
                    if who == Who::A && self.probe.is_none() {
                        self.probe = Some(b.clone());
                    }
                    proven = true;
                    break;
                }
            }
            if !proven {
                self.skipped.push(format!(
                    "identity {}: the operations it passes answer without credentials too",
                    who.name()
                ));
            }
        }
        Ok(())
    }

    /// A and B each create one object with every create operation they can call (POST on a
    /// collection): the graph then holds objects whose owner is certain.
    pub(crate) async fn create(&mut self) -> Result<(), Refused> {
        for i in 0..self.spec.operations.len() {
            let op = self.op(i);
            if op.method != "POST" || auth::is_login(&self.spec.doc, &op) || auth::is_logout(&op) {
                continue;
            }
            for who in [Who::A, Who::B] {
                if self.identity(who).is_none() {
                    continue;
                }
                let salt = self.next_salt();
                let b = build(&self.spec.doc, &op, &self.graph, who, None, salt);
                if !b.bound {
                    continue;
                }
                self.record(i, who, b.req, true).await?;
            }
        }
        Ok(())
    }

    /// Deletes what the scan created, as its creator, where a DELETE operation on its kind
    /// takes it.
    pub(crate) async fn clean_up(&mut self) -> Result<(), Refused> {
        for idx in 0..self.graph.objs.len() {
            let Some(o) = self.graph.obj(idx) else {
                continue;
            };
            let (Some(who), false) = (o.created_by, o.deleted) else {
                continue;
            };
            let kind = o.kind.clone();
            let what = format!(
                "{}'s {kind} (made with {})",
                who.name(),
                o.created_with.clone().unwrap_or_default()
            );
            let del = (0..self.spec.operations.len()).find(|&i| {
                let op = self.op(i);
                op.method == "DELETE" && has_path_params(&op) && path_kind(&op.path) == kind
            });
            let Some(d) = del else {
                self.cleanup.push(format!(
                    "{what}: left in place, the description has no DELETE for it"
                ));
                continue;
            };
            let op = self.op(d);
            let b = build(&self.spec.doc, &op, &self.graph, who, Some(idx), 0);
            if !b.objects.contains(&idx) {
                self.cleanup.push(format!(
                    "{what}: left in place, {} cannot name it",
                    b.req.operation()
                ));
                continue;
            }
            let ex = self.send_as(&b.req, who).await?;
            self.graph.mark_deleted(idx);
            self.cleanup.push(if ex.ok() || ex.status == 404 {
                format!("{what}: deleted with {} ({})", b.req.operation(), ex.status)
            } else {
                format!(
                    "{what}: left in place, {} answers {}",
                    b.req.operation(),
                    ex.status
                )
            });
        }
        // one line for many alike (the objects injection probes made)
        let mut lines: Vec<(String, usize)> = Vec::new();
        for l in self.cleanup.drain(..) {
            match lines.iter_mut().find(|(x, _)| *x == l) {
                Some(e) => e.1 += 1,
                None => lines.push((l, 1)),
            }
        }
        self.cleanup = lines
            .into_iter()
            .map(|(l, n)| if n > 1 { format!("{l} ×{n}") } else { l })
            .collect();
        Ok(())
    }
}
