//! The `patches` section: policies added to a route, or to one operation of it, in answer to
//! a finding. A patch of an operation becomes a route of its own, placed before the route
//! that serves the operation (its parent) and built from it: the same upstream, limits and
//! policies, plus the patch's. A patch's `mode` applies to all its policies, so one line
//! turns a patch from `monitor` to `enforce` (`palisade patch promote`).

use http::Method;
use serde_json::Value;
use std::collections::HashMap;

use super::{build_policy, items, parse_path, Ctx, Env, HostMatch, IdentityEnv, PathMatch, Route};
use crate::model::PatchSpec;

/// Reads the section, item by item; each policy of a patch takes the patch's mode.
pub(super) fn read(cx: &mut Ctx<'_>, v: Value) -> Vec<PatchSpec> {
    let Value::Array(a) = v else {
        cx.err("patches", "must be a list");
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut at = Vec::new();
    for (i, mut p) in a.into_iter().enumerate() {
        let path = format!("patches[{i}]");
        let mode = match p.get("mode") {
            None => "monitor".to_string(),
            Some(Value::String(m)) if m == "monitor" || m == "enforce" => m.clone(),
            Some(other) => {
                cx.err(
                    format!("{path}.mode"),
                    format!(
                        "`{}`: use monitor or enforce",
                        other.as_str().unwrap_or("?")
                    ),
                );
                continue;
            }
        };
        let mut policies = match p.as_object_mut().and_then(|m| m.remove("policies")) {
            None => {
                cx.err(
                    format!("{path}.policies"),
                    "a patch adds at least one policy",
                );
                Value::Array(Vec::new())
            }
            Some(v) => v,
        };
        if let Value::Array(list) = &mut policies {
            for (j, item) in list.iter_mut().enumerate() {
                if let Value::Object(m) = item {
                    if m.contains_key("mode") {
                        cx.err(
                            format!("{path}.policies[{j}].mode"),
                            "a patch's policies take the patch's `mode`; set it on the patch",
                        );
                    }
                    m.insert("mode".into(), Value::String(mode.clone()));
                }
            }
        }
        let policies = items(cx, &format!("{path}.policies"), policies);
        if let Some(mut spec) = cx.section::<PatchSpec>(&path, p) {
            spec.policies = policies;
            out.push(spec);
            at.push(i);
        }
    }
    cx.positions.insert("patches".into(), at);
    out
}

/// A path that a template matches, to find which route serves it (`{id}` → `1`).
pub fn sample_path(path: &str) -> String {
    path.split('/')
        .map(|s| {
            if s.starts_with('{') && s.ends_with('}') {
                "1"
            } else {
                s
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// A host a matcher takes, to find which route serves an operation of a host's route.
fn sample_host(h: &Option<HostMatch>) -> Option<String> {
    match h {
        None => None,
        Some(HostMatch::Exact(h)) => Some(h.clone()),
        Some(HostMatch::Wildcard(suffix)) => Some(format!("x{suffix}")),
    }
}

/// The first route (in serving order) that takes `method path` (canonical) on `host`: the
/// route whose policies the request meets.
pub fn serving(routes: &[Route], host: Option<&str>, path: &str, method: &Method) -> Option<usize> {
    routes.iter().position(|r| {
        r.host
            .as_ref()
            .is_none_or(|hm| host.is_some_and(|h| hm.matches(h)))
            && r.path.matches(path)
            && r.methods.as_ref().is_none_or(|ms| ms.contains(method))
    })
}

/// The policies of patch `i`.
fn build(
    cx: &mut Ctx<'_>,
    at: &str,
    i: usize,
    p: &PatchSpec,
    env: &Env,
    ids: &IdentityEnv,
) -> Vec<super::PolicyEntry> {
    p.policies
        .iter()
        .enumerate()
        .filter_map(|(j, s)| {
            let env = Env {
                id: format!("patch:{}/{i}/{j}", p.route),
                ..env.clone()
            };
            let field = format!("{at}.policies[{}]", cx.at(&format!("{at}.policies"), j));
            build_policy(cx, &field, s, &env, ids)
        })
        .collect()
}

/// Adds the patches to the routes (already in serving order) and puts them back in order.
pub(super) fn apply(
    cx: &mut Ctx<'_>,
    patches: &[PatchSpec],
    routes: &mut Vec<Route>,
    env: &Env,
    ids: &IdentityEnv,
) {
    // patches of whole routes first: the routes of operations are built from them
    for (i, p) in patches.iter().enumerate() {
        if p.operation.is_some() {
            continue;
        }
        let at = format!("patches[{}]", cx.at("patches", i));
        let Some(parent) = routes.iter().position(|r| *r.name == *p.route) else {
            continue;
        };
        let policies = build(cx, &at, i, p, env, ids);
        if let Some(r) = routes.get_mut(parent) {
            r.policies.extend(policies);
            r.policies.sort_by_key(|e| e.policy.stage());
        }
    }
    let original = routes.clone();
    // derived routes by (parent, method, path), and the parent each goes before
    let mut derived: Vec<(usize, Route)> = Vec::new();
    let mut index: HashMap<(usize, String, String), usize> = HashMap::new();
    for (i, p) in patches.iter().enumerate() {
        let at = format!("patches[{}]", cx.at("patches", i));
        let Some((parent, parent_route)) = original
            .iter()
            .enumerate()
            .find(|(_, r)| *r.name == *p.route)
        else {
            let known: Vec<&str> = original.iter().map(|r| &*r.name).collect();
            cx.err(
                format!("{at}.route"),
                format!(
                    "no route named `{}`; defined: {}",
                    p.route,
                    known.join(", ")
                ),
            );
            continue;
        };
        let Some(op) = &p.operation else {
            continue;
        };
        let policies = build(cx, &at, i, p, env, ids);
        let Some((m, path)) = op.split_once(' ') else {
            cx.err(
                format!("{at}.operation"),
                format!("`{op}`: write the method and the path, e.g. GET /users/{{id}}"),
            );
            continue;
        };
        let Ok(method) = Method::from_bytes(m.trim().to_ascii_uppercase().as_bytes()) else {
            cx.err(
                format!("{at}.operation"),
                format!("`{m}` is not an HTTP method"),
            );
            continue;
        };
        let path = path.trim();
        let matcher = parse_path(cx, &format!("{at}.operation"), path);
        if matcher == PathMatch::Any {
            continue;
        }
        let host = sample_host(&parent_route.host);
        match serving(&original, host.as_deref(), &sample_path(path), &method) {
            Some(s) if s == parent => {}
            Some(s) => {
                let name = original.get(s).map_or("", |r| &*r.name);
                cx.err(
                    format!("{at}.route"),
                    format!(
                        "{method} {path} is served by route `{name}`, not `{}`: name that route",
                        p.route
                    ),
                );
                continue;
            }
            None => {
                cx.err(
                    format!("{at}.route"),
                    format!("route `{}` does not serve {method} {path}", p.route),
                );
                continue;
            }
        }
        let key = (parent, method.to_string(), path.to_ascii_lowercase());
        let slot = match index.get(&key) {
            Some(s) => *s,
            None => {
                let mut r = parent_route.clone();
                r.path = matcher;
                r.methods = Some(vec![method.clone()]);
                derived.push((parent, r));
                index.insert(key, derived.len() - 1);
                derived.len() - 1
            }
        };
        if let Some((_, r)) = derived.get_mut(slot) {
            r.policies.extend(policies);
            r.policies.sort_by_key(|e| e.policy.stage());
        }
    }
    if derived.is_empty() {
        return;
    }
    // each derived route goes just before its parent; the serving order is then restored
    // (a stable sort: a derived route stays before a parent of the same rank)
    let mut out: Vec<Route> = Vec::with_capacity(routes.len() + derived.len());
    let mut by_parent: Vec<Vec<Route>> = vec![Vec::new(); routes.len()];
    for (p, d) in derived {
        if let Some(slot) = by_parent.get_mut(p) {
            slot.push(d);
        }
    }
    for (r, before) in std::mem::take(routes).into_iter().zip(by_parent) {
        out.extend(before);
        out.push(r);
    }
    out.sort_by_key(|r| (r.host.is_none(), r.path.rank()));
    *routes = out;
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use palisade_core::Mode;

    use crate::runtime::{load_str, Config, ConfigErrors};

    fn load(patches: &str) -> Result<Config, ConfigErrors> {
        let text = format!(
            r#"
listeners:
  - {{name: public, listen: "127.0.0.1:8080"}}
upstreams:
  app: {{targets: ["http://127.0.0.1:3000"]}}
routes:
  - name: api
    match: {{path_prefix: /api}}
    upstream: app
    public: true
    policies:
      - type: headers
  - name: items
    match: {{path_prefix: /api/items}}
    upstream: app
    public: true
{patches}"#
        );
        load_str(Path::new("test.yaml"), &text)
    }

    fn errors(patches: &str) -> Vec<String> {
        load(patches)
            .unwrap_err()
            .0
            .into_iter()
            .map(|e| format!("{}: {}", e.path, e.message))
            .collect()
    }

    /// A route as the test sees it: name, methods, policies with their modes.
    type Shape<'a> = (&'a str, Option<String>, Vec<(&'static str, Mode)>);

    #[test]
    fn an_operation_patch_is_a_route_before_its_parent_with_the_parents_policies() {
        let c = load(
            r#"
patches:
  - answers: "bola.read GET /api/users/{id}"
    route: api
    operation: GET /api/users/{id}
    policies:
      - type: deny
        status: 404
  - answers: "headers.cache"
    route: api
    mode: enforce
    policies:
      - type: responses
        hide_5xx: true
"#,
        )
        .unwrap();
        let shape: Vec<Shape<'_>> = c
            .routes
            .iter()
            .map(|r| {
                (
                    &*r.name,
                    r.methods.as_ref().map(|m| format!("{m:?}")),
                    r.policies
                        .iter()
                        .map(|e| (e.policy.kind(), e.mode))
                        .collect(),
                )
            })
            .collect();
        assert_eq!(
            shape,
            vec![
                (
                    "api",
                    Some("[GET]".to_string()),
                    vec![
                        ("deny", Mode::Monitor),
                        ("headers", Mode::Enforce),
                        ("responses", Mode::Enforce)
                    ]
                ),
                ("items", None, vec![]),
                (
                    "api",
                    None,
                    vec![("headers", Mode::Enforce), ("responses", Mode::Enforce)]
                ),
            ]
        );
        assert!(c.routes[0].path.matches("/api/users/7"));
        assert!(!c.routes[0].path.matches("/api/users"));
    }

    #[test]
    fn problems_of_a_patch_name_its_field() {
        let cases: &[(&str, &str)] = &[
            (
                "patches:\n  - {answers: x, route: nope, policies: [{type: deny}]}\n",
                "patches[0].route: no route named `nope`",
            ),
            (
                "patches:\n  - {answers: x, route: api, operation: \"GET /api/items/{id}\", policies: [{type: deny}]}\n",
                "patches[0].route: GET /api/items/{id} is served by route `items`, not `api`",
            ),
            (
                "patches:\n  - {answers: x, route: api, operation: /api/x, policies: [{type: deny}]}\n",
                "patches[0].operation: `/api/x`: write the method and the path",
            ),
            (
                "patches:\n  - {answers: x, route: api, policies: [{type: deny, mode: enforce}]}\n",
                "patches[0].policies[0].mode: a patch's policies take the patch's `mode`",
            ),
            (
                "patches:\n  - {answers: x, route: api, policies: [{type: deny, status: 200}]}\n",
                "patches[0].policies[0].status: 200 is not a refusal",
            ),
            (
                "patches:\n  - {answers: x, route: api, mode: sometimes, policies: [{type: deny}]}\n",
                "patches[0].mode: `sometimes`: use monitor or enforce",
            ),
        ];
        for (patch, want) in cases {
            let got = errors(patch);
            assert!(got.iter().any(|e| e.starts_with(want)), "{want}\n{got:#?}");
        }
    }
}
