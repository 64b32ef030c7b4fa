//! Injection in every input of every operation (path and query parameters, headers, cookies,
//! form fields and every JSON body field, nested ones included), one input at a time while
//! the rest of the request stays valid: SQL (error, boolean, time), NoSQL operators, OS
//! commands (time), server-side templates, path traversal, reflected XSS, ReDoS; and
//! server-side request forgery through the fields that take URLs.

use std::time::Duration;

use palisade_audit::names;
use palisade_audit::Severity;
use serde_json::{json, Value};

use crate::build::build;
use crate::canary;
use crate::client::{Exchange, Refused};
use crate::graph::Who;
use crate::request::{Loc, Req};
use crate::{Finding, Scan, API4, API7, INJ};

fn sql_error(body: &str) -> bool {
    palisade_core::leaks::database_error(body)
}

/// Markers of `/etc/passwd`.
fn passwd(body: &str) -> bool {
    body.contains("root:x:0:0") || body.contains("root:*:0:0")
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        o => o.to_string(),
    }
}

/// An answer without the value the probe put in it (an echo is not a difference).
fn without(body: &str, value: &str) -> String {
    let escaped = serde_json::to_string(value).unwrap_or_default();
    let escaped = escaped.trim_matches('"');
    body.replace(escaped, "").replace(value, "")
}

/// Whether an answer took at least `over` more than the baseline (and 1.5 s in all).
fn slow(r: &Exchange, base: &Exchange, over: u64) -> bool {
    r.millis >= 1500 && r.millis > base.millis.saturating_add(over)
}

impl Scan<'_> {
    /// The requests to attack: A's baseline of every GET, and with `--allow-unsafe` a fresh
    /// valid request of every other operation.
    async fn attack_surface(&mut self) -> Result<Vec<(Req, Exchange)>, Refused> {
        let mut out: Vec<(Req, Exchange)> = Vec::new();
        for i in 0..self.spec.operations.len() {
            let op = self.op(i);
            if super::auth::is_logout(&op) {
                continue;
            }
            if op.method == "GET" {
                if let Some(b) = self.base(i, Who::A).cloned() {
                    out.push((b.req, b.ex));
                }
                continue;
            }
            if !self.opts.allow_unsafe || op.method == "DELETE" {
                continue;
            }
            let salt = self.next_salt();
            let b = build(&self.spec.doc, &op, &self.graph, Who::A, None, salt);
            if !b.bound {
                continue;
            }
            let mut req = b.req;
            if super::auth::is_login(&self.spec.doc, &op) {
                // a login is attacked for A's account: an operator in its password lets anyone in
                if let Some((_, Some(user))) = super::auth::password_field(&self.spec.doc, &op) {
                    if let Some(name) = self.login_name(Who::A, Some(&user)) {
                        req = req.with(&super::auth::loc(&req, &user), json!(name));
                    }
                }
            }
            let ex = self.attack(&req).await?;
            self.learn(i, Who::A, &ex, op.method == "POST");
            out.push((req, ex));
        }
        Ok(out)
    }

    pub(crate) async fn injection(&mut self) -> Result<(), Refused> {
        for (req, base) in self.attack_surface().await? {
            // a baseline the API refuses for a reason of its own (not found) says little
            if base.status == 404 || base.status >= 500 {
                continue;
            }
            // a read is compared with a fresh answer: data changes while the scan runs
            let base = if req.method == "GET" {
                self.attack(&req).await?
            } else {
                base
            };
            for (loc, v) in req.inputs().into_iter().take(16) {
                if v.is_boolean() {
                    continue;
                }
                self.probe_input(&req, &base, &loc, &v).await?;
            }
            if matches!(req.method.as_str(), "PUT" | "PATCH") {
                self.restore(&req).await?;
            }
        }
        Ok(())
    }

    /// After probes wrote to an object of A's (an update), its fields are put back as the
    /// scan first saw them.
    pub(crate) async fn restore(&mut self, req: &Req) -> Result<(), Refused> {
        let Some(i) = self.op_index(req) else {
            return Ok(());
        };
        let values: Vec<String> = req.path.iter().map(|(_, v)| v.clone()).collect();
        let Some(before) = self
            .graph
            .written(&req.template, &values, Who::A)
            .and_then(|x| self.graph.obj(x))
            .map(|o| o.original.clone())
        else {
            return Ok(());
        };
        let mut undo = req.clone();
        for (l, _) in req.inputs() {
            if let (Loc::Json(_) | Loc::Form(_), Some(v)) = (&l, before.get(&l.name())) {
                undo = undo.with(&l, v.clone());
            }
        }
        let r = self.send_as(&undo, Who::A).await?;
        self.learn(i, Who::A, &r, false);
        Ok(())
    }

    /// Sends an attack as A; a write to a public operation (a login) goes without
    /// credentials. Reads are attacked as their baselines were sent: as A.
    async fn attack(&mut self, r: &Req) -> Result<Exchange, Refused> {
        let public_write = r.method != "GET" && self.op_of(r).is_some_and(|o| !super::secured(o));
        if public_write {
            self.send(r, None).await
        } else {
            self.send_as(r, Who::A).await
        }
    }

    async fn try_value(&mut self, req: &Req, loc: &Loc, v: Value) -> Result<Exchange, Refused> {
        let r = req.with(loc, v);
        let ex = self.attack(&r).await?;
        if r.method == "POST" && ex.ok() {
            // an object made by a probe: cleaned up with the others
            if let Some(i) = self.op_index(&r) {
                self.learn(i, Who::A, &ex, true);
            }
        }
        Ok(ex)
    }

    #[allow(clippy::too_many_lines)]
    async fn probe_input(
        &mut self,
        req: &Req,
        base: &Exchange,
        loc: &Loc,
        v: &Value,
    ) -> Result<(), Refused> {
        let s = text(v);
        let operation = req.operation();
        let at = loc.describe();
        let numeric = v.is_number() || (s.parse::<i64>().is_ok() && !matches!(loc, Loc::Json(_)));
        let found = |check: &'static str, sev: Severity, what: String, ev: Vec<Exchange>| {
            Finding::new(check, sev, INJ, format!("{operation} {at}: {what}"))
                .at(operation.clone())
                .input(at.clone())
                .shown(ev)
        };
        // NoSQL: an operator where a value was
        let (r, control) = match loc {
            Loc::Json(_) => (
                Some(self.try_value(req, loc, json!({"$ne": null})).await?),
                None,
            ),
            Loc::Query(name) => {
                let mut q = req.clone();
                q.query.retain(|(k, _)| k != name);
                // without the parameter at all: what an ignored filter gives
                let control = self.attack(&q).await?;
                q.query
                    .push((format!("{name}[$ne]"), "palisade-scan".into()));
                (Some(self.attack(&q).await?), Some(control))
            }
            _ => (None, None),
        };
        if let Some(r) = r {
            let opened = !base.ok() && matches!(base.status, 400..=403) && r.ok();
            let longer = |x: &Exchange| {
                without(&r.body, "{\"$ne\":null}").len() > without(&x.body, &s).len() + 8
            };
            // more data only counts for reads, and beyond what dropping the filter gives
            let more = req.method == "GET"
                && base.ok()
                && r.ok()
                && longer(base)
                && control.as_ref().is_none_or(longer);
            if opened || more {
                let what = if opened {
                    format!(
                        "a {{\"$ne\": null}} operator turns a {} into a {}",
                        base.status, r.status
                    )
                } else {
                    "a {\"$ne\": null} operator returns more data".into()
                };
                self.find(found(
                    "injection.nosql",
                    Severity::Critical,
                    what,
                    vec![base.clone(), r],
                ));
            }
        }
        // SQL: an error
        let r = self.try_value(req, loc, json!(format!("{s}'\""))).await?;
        let mut sql = false;
        if sql_error(&r.body) && !sql_error(&base.body) {
            self.find(found(
                "injection.sql",
                Severity::Critical,
                "a quote brings back a database error".into(),
                vec![r],
            ));
            sql = true;
        }
        // SQL: true and false conditions
        if !sql {
            let (t, f) = if numeric {
                (format!("{s} OR 1=1"), format!("{s} AND 1=2"))
            } else {
                (format!("{s}' OR '1'='1"), format!("{s}' AND '1'='2"))
            };
            let rt = self.try_value(req, loc, json!(t.clone())).await?;
            let rf = self.try_value(req, loc, json!(f.clone())).await?;
            let (bt, bf, bb) = (
                without(&rt.body, &t),
                without(&rf.body, &f),
                without(&base.body, &s),
            );
            if rt.ok() && bt.len() > bf.len() + 8 && bt.len() > bb.len() + 8 {
                self.find(found(
                    "injection.sql_boolean",
                    Severity::Critical,
                    "a true SQL condition returns more than the plain value, a false one does not"
                        .into(),
                    vec![rt, rf],
                ));
                sql = true;
            }
        }
        // SQL: time
        if !sql {
            let probe = if numeric {
                format!("{s} AND SLEEP(2)")
            } else {
                format!("{s}' AND SLEEP(2)-- -")
            };
            let r = self.try_value(req, loc, json!(probe.clone())).await?;
            if slow(&r, base, 1500)
                && !slow(&self.try_value(req, loc, v.clone()).await?, base, 1500)
                && slow(&self.try_value(req, loc, json!(probe)).await?, base, 1500)
            {
                self.find(found(
                    "injection.sql_time",
                    Severity::Critical,
                    format!(
                        "`' AND SLEEP(2)` delays the answer by {} ms, twice",
                        r.millis
                    ),
                    vec![r],
                ));
            }
        }
        if numeric || v.is_number() {
            return Ok(());
        }
        // OS command: time
        let probe = format!("{s};sleep 2;#$(sleep 2)");
        let r = self.try_value(req, loc, json!(probe.clone())).await?;
        if slow(&r, base, 1500)
            && !slow(&self.try_value(req, loc, v.clone()).await?, base, 1500)
            && slow(&self.try_value(req, loc, json!(probe)).await?, base, 1500)
        {
            self.find(found(
                "injection.command",
                Severity::Critical,
                format!("`;sleep 2` delays the answer by {} ms, twice", r.millis),
                vec![r],
            ));
        }
        // server-side template
        let r = self
            .try_value(
                req,
                loc,
                json!(format!("{s}{{{{7*191}}}}${{7*191}}<%= 7*191 %>")),
            )
            .await?;
        if r.body.contains("1337") && !base.body.contains("1337") {
            self.find(found(
                "injection.template",
                Severity::Critical,
                "`{{7*191}}` comes back evaluated (1337)".into(),
                vec![r],
            ));
        }
        // path traversal
        let r = self
            .try_value(req, loc, json!("../../../../../../../../../../etc/passwd"))
            .await?;
        if passwd(&r.body) && !passwd(&base.body) {
            self.find(found(
                "injection.path_traversal",
                Severity::Critical,
                "`../../etc/passwd` returns the system's password file".into(),
                vec![r],
            ));
        }
        // reflected XSS: markup sent back unescaped in a page
        let r = self
            .try_value(req, loc, json!(format!("{s}<pscan-x9137 onmouseover=1>")))
            .await?;
        let html = r.header("content-type").is_some_and(|c| c.contains("html"));
        if html && r.body.contains("<pscan-x9137 onmouseover=1>") {
            self.find(found(
                "xss.reflected",
                Severity::High,
                "markup sent in it comes back unescaped in an HTML page".into(),
                vec![r],
            ));
        }
        // ReDoS: slow twice, and a short plain value sent in between is not (a stall of the
        // machine or the network is not a finding)
        let long = json!(format!("{}!", "a".repeat(3000)));
        let r = self.try_value(req, loc, long.clone()).await?;
        if slow(&r, base, 1200)
            && !slow(&self.try_value(req, loc, v.clone()).await?, base, 1200)
            && slow(&self.try_value(req, loc, long).await?, base, 1200)
        {
            self.find(
                Finding::new(
                    "redos",
                    Severity::Medium,
                    API4,
                    format!("{operation} {at}: a 3 KB input takes {} ms", r.millis),
                )
                .at(operation.clone())
                .input(at.clone())
                .shown(vec![r]),
            );
        }
        Ok(())
    }

    /// The canary hits that came after their answer.
    pub(crate) async fn late_ssrf(&mut self) {
        let pending = std::mem::take(&mut self.pending_ssrf);
        if pending.is_empty() {
            return;
        }
        let Some(c) = self.canary.as_ref() else {
            return;
        };
        tokio::time::sleep(Duration::from_millis(800)).await;
        let mut hits = Vec::new();
        for (token, f) in pending {
            if c.hit(&token, Duration::ZERO).await {
                hits.push(f);
            }
        }
        for f in hits {
            self.find(f);
        }
    }

    pub(crate) async fn ssrf(&mut self) -> Result<(), Refused> {
        let mut n = 0;
        for i in 0..self.spec.operations.len() {
            let op = self.op(i);
            if op.method == "DELETE"
                || super::auth::is_logout(&op)
                || (op.method != "GET" && !self.opts.allow_unsafe)
            {
                continue;
            }
            let salt = self.next_salt();
            let b = build(&self.spec.doc, &op, &self.graph, Who::A, None, salt);
            if !b.bound {
                continue;
            }
            for (loc, v) in b.req.inputs() {
                let name = loc.name();
                let url_like = names::takes_url(&name, &json!({"type": "string"}))
                    || text(&v).starts_with("http://")
                    || text(&v).starts_with("https://");
                if !url_like || !v.is_string() {
                    continue;
                }
                let Some(c) = self.canary.as_ref() else {
                    return Ok(());
                };
                n += 1;
                let token = format!("pscan-{n}");
                let url = c.url(&token);
                let r = self.try_value(&b.req, &loc, json!(url)).await?;
                let reached = match self.canary.as_ref() {
                    Some(c) => c.hit(&token, Duration::from_millis(100)).await,
                    None => false,
                };
                let reflected = r.body.contains(canary::BODY);
                let operation = b.req.operation();
                let at = loc.describe();
                let what = if reflected {
                    "the server fetches a URL it is given and returns what it got"
                } else {
                    "the server fetches a URL it is given (the scan's canary was called)"
                };
                let f = Finding::new(
                    "ssrf",
                    Severity::Critical,
                    API7,
                    format!("{operation} {at}: {what}"),
                )
                .at(operation.clone())
                .input(at)
                .shown(vec![r]);
                if reached || reflected {
                    self.find(f);
                } else {
                    // a fetch made later (a queue, a webhook): looked for at the end of the scan
                    self.pending_ssrf.push((token, f));
                }
            }
        }
        Ok(())
    }
}
