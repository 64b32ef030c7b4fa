//! `soap_contract`: the WSDL (1.1 or 2.0) description of a SOAP service enforced on requests. Only
//! its operations are reachable: the first element of the request's `Body` must be the
//! input of an operation of a binding of the request's SOAP version, and a `SOAPAction`
//! (SOAP 1.1 header, SOAP 1.2 `action` parameter) must name that same operation, so the
//! action a router dispatches on and the body the service reads cannot disagree.
//! Envelopes are read with quick-xml under the bounds of `xml_protection` (depth, size);
//! a refusal is a SOAP Fault of the request's version (the renderer's).

use std::collections::HashMap;

use http::StatusCode;
use palisade_core::policies::SpecError;
use palisade_core::{
    Exchange, Mode, Outcome, Phase, PhaseSet, Policy, Rejection, RequestHead, Stage, Verdict,
};
use quick_xml::events::Event;
use quick_xml::Reader;
use serde::Deserialize;

/// Not a SOAP envelope of the version its media type says.
pub const MALFORMED: &str = "soap.malformed";
/// A SOAP version the service has no binding for.
pub const VERSION: &str = "soap.version";
/// A body element that is no operation's input.
pub const UNKNOWN: &str = "soap.unknown_operation";
/// A SOAPAction that names another operation than the body.
pub const MISMATCH: &str = "soap.action_mismatch";
/// A body that is not what the WSDL's schema declares.
pub const INVALID: &str = "soap.invalid_body";
/// An answer of the service that is not the operation's output as the WSDL declares it.
pub const INVALID_RESPONSE: &str = "soap.invalid_response";

const WSDL: &str = "http://schemas.xmlsoap.org/wsdl/";
const WSDL_SOAP11: &str = "http://schemas.xmlsoap.org/wsdl/soap/";
const WSDL_SOAP12: &str = "http://schemas.xmlsoap.org/wsdl/soap12/";
const ENV11: &str = "http://schemas.xmlsoap.org/soap/envelope/";
const ENV12: &str = "http://www.w3.org/2003/05/soap-envelope";
const MAX_DEPTH: usize = 128;

pub use palisade_core::xml::SoapVersion as Version;

/// One operation of one binding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    /// Its name.
    pub name: String,
    /// The binding's SOAP version.
    pub version: Version,
    /// Its `soapAction`, when the binding gives one.
    pub action: Option<String>,
    /// The element its request's `Body` starts with.
    pub body: QName,
    /// An rpc-style operation (the body element is the operation's wrapper, its parts typed
    /// by the message, not declared in the schema).
    pub rpc: bool,
    /// The element its response's `Body` starts with (document style), when declared.
    pub output: Option<QName>,
}

/// Config of the `soap_contract` policy.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SoapContractSpec {
    /// `enforce` (default) or `monitor`.
    #[serde(default)]
    pub mode: Mode,
    /// The WSDL file (1.1 or 2.0), relative to the config file.
    pub wsdl: String,
    /// Let bodies through that the WSDL's schema would refuse (operations are still
    /// checked). For a WSDL whose schemas this policy cannot read; never the default.
    #[serde(default)]
    pub dangerous_skip_body_schema: bool,
    /// Check the service's answers too: the operation's output element (or a Fault), valid
    /// against the schema; an answer that is not is replaced by a 502 Fault. Default false.
    #[serde(default)]
    pub validate_responses: bool,
}

/// The runtime policy.
#[derive(Debug)]
pub struct SoapContract {
    ops: Vec<Operation>,
    /// The WSDL's schemas, when bodies are validated.
    schema: Option<crate::xsd::Schema>,
    /// Document-style operations' body elements (validated); rpc ones are not.
    documents: Vec<QName>,
    /// Whether answers are checked.
    responses: bool,
}

use palisade_core::xml::{QName, Scope};

use palisade_core::xml::attr;

const WSDL2: &str = "http://www.w3.org/ns/wsdl";
const WSDL2_SOAP: &str = "http://www.w3.org/ns/wsdl/soap";

/// The operations of a WSDL 2.0 document: its interfaces' operations (their input element)
/// as each SOAP binding exposes them (`wsoap:version`, 1.2 by default; `wsoap:action`).
fn operations_wsdl2(root: &crate::xsd::Node) -> Result<Vec<Operation>, String> {
    let attr = |n: &crate::xsd::Node, ns: &str, local: &str| {
        n.attrs
            .iter()
            .find(|(q, _, _)| q.0 == ns && q.1 == local)
            .map(|(_, v, r)| (v.trim().to_string(), r.clone()))
    };
    fn children<'a>(n: &'a crate::xsd::Node, local: &str) -> Vec<&'a crate::xsd::Node> {
        n.children
            .iter()
            .filter(|c| c.name.0 == WSDL2 && c.name.1 == local)
            .collect()
    }
    // interface name -> operation name -> input element
    let mut interfaces: HashMap<String, Vec<(String, QName, Option<QName>)>> = HashMap::new();
    for i in children(root, "interface") {
        let name = attr(i, "", "name").map(|a| a.0).unwrap_or_default();
        let mut ops = Vec::new();
        for o in children(i, "operation") {
            let op = attr(o, "", "name").map(|a| a.0).unwrap_or_default();
            let element = |label: &str| {
                children(o, label)
                    .into_iter()
                    .next()
                    .and_then(|m| attr(m, "", "element"))
                    .and_then(|(_, q)| q)
            };
            let input = element("input")
                .ok_or_else(|| format!("the operation `{op}` has no input element"))?;
            ops.push((op, input, element("output")));
        }
        interfaces.insert(name, ops);
    }
    let mut out = Vec::new();
    for b in children(root, "binding") {
        if attr(b, "", "type").map(|a| a.0).as_deref() != Some(WSDL2_SOAP) {
            continue;
        }
        let version = match attr(b, WSDL2_SOAP, "version").map(|a| a.0).as_deref() {
            None | Some("1.2") => Version::V12,
            Some("1.1") => Version::V11,
            Some(other) => return Err(format!("a SOAP binding of version `{other}`")),
        };
        let iface = attr(b, "", "interface")
            .and_then(|(_, q)| q)
            .ok_or("a binding without an interface")?;
        let ops = interfaces
            .get(&iface.1)
            .ok_or_else(|| format!("the binding's interface `{}` is not in the WSDL", iface.1))?;
        let actions: HashMap<String, String> = children(b, "operation")
            .iter()
            .filter_map(|o| {
                let op = attr(o, "", "ref").and_then(|(_, q)| q)?.1;
                let action = attr(o, WSDL2_SOAP, "action")?.0;
                Some((op, action))
            })
            .collect();
        for (name, body, output) in ops {
            out.push(Operation {
                name: name.clone(),
                version,
                action: actions.get(name).cloned().filter(|a| !a.is_empty()),
                body: body.clone(),
                rpc: false,
                output: output.clone(),
            });
        }
    }
    if out.is_empty() {
        return Err("the WSDL 2.0 description has no SOAP binding with operations".into());
    }
    Ok(out)
}

/// The operations of a WSDL 1.1 document (document/literal and rpc/literal bindings) or a
/// WSDL 2.0 description (document style).
pub fn operations(wsdl: &str) -> Result<Vec<Operation>, String> {
    if let Some(root) =
        crate::xsd::tree(wsdl, &[(WSDL2, "description")]).map_err(|e| format!("the WSDL is {e}"))?
    {
        return operations_wsdl2(&root);
    }
    operations_wsdl11(wsdl)
}

fn operations_wsdl11(wsdl: &str) -> Result<Vec<Operation>, String> {
    let mut r = Reader::from_str(wsdl);
    r.config_mut().check_end_names = true;
    let mut scope = Scope::default();
    let mut tns = String::new();
    let mut messages: HashMap<String, QName> = HashMap::new(); // message name -> part element
    let mut message: Option<String> = None;
    let mut port_types: HashMap<String, HashMap<String, String>> = HashMap::new(); // portType -> op -> input message
    let mut port_type: Option<String> = None;
    let mut pt_op: Option<String> = None;
    // (portType, operation) -> output message
    let mut outputs: HashMap<(String, String), String> = HashMap::new();
    struct Binding {
        port_type: String,
        version: Option<Version>,
        rpc: bool,
        ops: Vec<(String, Option<String>, Option<String>, bool)>, // name, action, rpc namespace, rpc style
    }
    let mut bindings: Vec<Binding> = Vec::new();
    let mut in_binding = false;
    let mut in_input = false;
    let mut depth = 0usize;
    loop {
        let ev = r
            .read_event()
            .map_err(|e| format!("the WSDL is not well-formed XML ({e})"))?;
        let (e, empty) = match &ev {
            Event::Start(e) => (e.clone(), false),
            Event::Empty(e) => (e.clone(), true),
            Event::End(_) => {
                depth = depth.saturating_sub(1);
                scope.pop();
                match depth {
                    1 => {
                        in_binding = false;
                        port_type = None;
                        message = None;
                    }
                    2 => {
                        pt_op = None;
                    }
                    3 => in_input = false,
                    _ => {}
                }
                continue;
            }
            Event::Eof => break,
            Event::DocType(_) => return Err("the WSDL has a DOCTYPE (not read)".into()),
            _ => continue,
        };
        let q = scope.enter(&e)?;
        let here = depth;
        if !empty {
            depth += 1;
            if depth > MAX_DEPTH {
                return Err("the WSDL nests too deep".into());
            }
        }
        let (ns, local) = (q.0.as_str(), q.1.as_str());
        match (here, ns, local) {
            (0, WSDL, "definitions") => tns = attr(&e, "targetNamespace").unwrap_or_default(),
            (1, WSDL, "message") => message = attr(&e, "name"),
            (2, WSDL, "part") => {
                if let (Some(m), Some(el)) = (&message, attr(&e, "element")) {
                    let qe = scope
                        .resolve(&el, false)
                        .ok_or("an undeclared prefix in a part's element")?;
                    messages.insert(m.clone(), qe);
                }
            }
            (1, WSDL, "portType") => {
                port_type = attr(&e, "name");
                if let Some(p) = &port_type {
                    port_types.entry(p.clone()).or_default();
                }
            }
            (2, WSDL, "operation") if port_type.is_some() => pt_op = attr(&e, "name"),
            (3, WSDL, "output") if !in_binding => {
                if let (Some(p), Some(o), Some(m)) = (&port_type, &pt_op, attr(&e, "message")) {
                    let m = m.split_once(':').map_or(m.as_str(), |(_, l)| l).to_string();
                    outputs.insert((p.clone(), o.clone()), m);
                }
            }
            (3, WSDL, "input") => {
                if let (Some(p), Some(o), Some(m)) = (&port_type, &pt_op, attr(&e, "message")) {
                    let m = m.split_once(':').map_or(m.as_str(), |(_, l)| l).to_string();
                    port_types
                        .entry(p.clone())
                        .or_default()
                        .insert(o.clone(), m);
                }
                if in_binding {
                    in_input = true;
                }
            }
            (1, WSDL, "binding") => {
                in_binding = true;
                let t = attr(&e, "type").unwrap_or_default();
                bindings.push(Binding {
                    port_type: t.split_once(':').map_or(t.as_str(), |(_, l)| l).to_string(),
                    version: None,
                    rpc: false,
                    ops: Vec::new(),
                });
            }
            (2, WSDL_SOAP11 | WSDL_SOAP12, "binding") if in_binding => {
                if let Some(b) = bindings.last_mut() {
                    b.version = Some(if ns == WSDL_SOAP11 {
                        Version::V11
                    } else {
                        Version::V12
                    });
                    b.rpc = attr(&e, "style").as_deref() == Some("rpc");
                }
            }
            (2, WSDL, "operation") if in_binding => {
                if let (Some(b), Some(n)) = (bindings.last_mut(), attr(&e, "name")) {
                    let rpc = b.rpc;
                    b.ops.push((n, None, None, rpc));
                }
            }
            (3, WSDL_SOAP11 | WSDL_SOAP12, "operation") if in_binding => {
                if let Some(op) = bindings.last_mut().and_then(|b| b.ops.last_mut()) {
                    op.1 = attr(&e, "soapAction").filter(|a| !a.is_empty());
                    if let Some(s) = attr(&e, "style") {
                        op.3 = s == "rpc";
                    }
                }
            }
            (4, WSDL_SOAP11 | WSDL_SOAP12, "body") if in_binding && in_input => {
                if let Some(op) = bindings.last_mut().and_then(|b| b.ops.last_mut()) {
                    op.2 = attr(&e, "namespace");
                }
            }
            _ => {}
        }
        if empty {
            scope.pop();
        }
    }
    let mut out = Vec::new();
    for b in bindings {
        let Some(version) = b.version else { continue };
        for (name, action, rpc_ns, rpc) in b.ops {
            let body = if rpc {
                (rpc_ns.unwrap_or_else(|| tns.clone()), name.clone())
            } else {
                let msg = port_types
                    .get(&b.port_type)
                    .and_then(|p| p.get(&name))
                    .ok_or_else(|| {
                        format!(
                            "the operation `{name}` has no input in portType `{}`",
                            b.port_type
                        )
                    })?;
                messages
                    .get(msg)
                    .cloned()
                    .ok_or_else(|| format!("the message `{msg}` of `{name}` has no element part"))?
            };
            let output = if rpc {
                None
            } else {
                outputs
                    .get(&(b.port_type.clone(), name.clone()))
                    .and_then(|m| messages.get(m))
                    .cloned()
            };
            out.push(Operation {
                name,
                version,
                action,
                body,
                rpc,
                output,
            });
        }
    }
    if out.is_empty() {
        return Err("the WSDL has no SOAP 1.1 or 1.2 binding with operations".into());
    }
    Ok(out)
}

/// The first element of the envelope's `Body`, for a request of `version`.
pub fn body_element(doc: &str, version: Version) -> Result<QName, String> {
    let env_ns = if version == Version::V11 {
        ENV11
    } else {
        ENV12
    };
    let mut r = Reader::from_str(doc);
    r.config_mut().check_end_names = true;
    let mut scope = Scope::default();
    let mut depth = 0usize;
    let mut in_body = false;
    loop {
        let ev = r
            .read_event()
            .map_err(|e| format!("the envelope is not well-formed XML ({e})"))?;
        let (e, empty) = match ev {
            Event::Start(e) => (e, false),
            Event::Empty(e) => (e, true),
            Event::End(_) => {
                scope.pop();
                depth = depth.saturating_sub(1);
                if in_body && depth == 1 {
                    return Err("the Body is empty".into());
                }
                continue;
            }
            Event::Eof => return Err("the envelope has no Body".into()),
            _ => continue,
        };
        let q = scope.enter(&e)?;
        match depth {
            0 if q != (env_ns.to_string(), "Envelope".to_string()) => {
                return Err(format!(
                    "the root is not a SOAP {} Envelope",
                    if version == Version::V11 {
                        "1.1"
                    } else {
                        "1.2"
                    }
                ))
            }
            1 if q == (env_ns.to_string(), "Body".to_string()) => {
                if empty {
                    return Err("the Body is empty".into());
                }
                in_body = true;
            }
            2 if in_body => return Ok(q),
            _ => {}
        }
        if empty {
            scope.pop();
        } else {
            depth += 1;
            if depth > MAX_DEPTH {
                return Err("the envelope nests too deep".into());
            }
        }
    }
}

impl SoapContractSpec {
    /// Builds the policy from the WSDL's text.
    pub fn build(&self, wsdl_text: &str) -> Result<SoapContract, Vec<SpecError>> {
        let err = |e: String| vec![SpecError::new("wsdl", e)];
        let ops = operations(wsdl_text).map_err(err)?;
        let documents: Vec<QName> = ops
            .iter()
            .filter(|o| !o.rpc)
            .map(|o| o.body.clone())
            .collect();
        let schema = if self.dangerous_skip_body_schema {
            None
        } else {
            let s = crate::xsd::Schema::of_wsdl(wsdl_text).map_err(|e| {
                err(format!(
                    "{e} (bodies are validated against the WSDL's schema; dangerous_skip_body_schema: true checks operations only)"
                ))
            })?;
            // fail closed: an operation whose body the schema does not declare cannot be checked
            if let Some(o) = ops.iter().find(|o| !o.rpc && !s.declares(&o.body)) {
                return Err(err(format!(
                    "the schema does not declare `{}`, the input of the operation `{}`",
                    o.body.1, o.name
                )));
            }
            Some(s)
        };
        Ok(SoapContract {
            ops,
            schema,
            documents,
            responses: self.validate_responses,
        })
    }
}

fn refuse(code: &'static str, why: String) -> Verdict {
    Verdict::Reject(
        Rejection::new(StatusCode::BAD_REQUEST, code, "SOAP request refused").with_detail(why),
    )
}

impl SoapContract {
    /// Decides one request: `Ok(operation name)` or the refusal's code and why.
    pub fn decide(&self, req: &RequestHead, body: &[u8]) -> Result<String, (&'static str, String)> {
        let Some((version, action)) = palisade_core::xml::soap_request(&req.headers) else {
            return Err((
                MALFORMED,
                "a SOAP request is text/xml with SOAPAction (1.1) or application/soap+xml (1.2)"
                    .into(),
            ));
        };
        if !self.ops.iter().any(|o| o.version == version) {
            return Err((
                VERSION,
                format!(
                    "the service has no SOAP {} binding",
                    if version == Version::V11 {
                        "1.1"
                    } else {
                        "1.2"
                    }
                ),
            ));
        }
        let text = std::str::from_utf8(body)
            .map_err(|_| (MALFORMED, "the envelope is not UTF-8".to_string()))?;
        let el = body_element(text, version).map_err(|e| (MALFORMED, e))?;
        let candidates: Vec<&Operation> = self
            .ops
            .iter()
            .filter(|o| o.version == version && o.body == el)
            .collect();
        let Some(first) = candidates.first() else {
            return Err((
                UNKNOWN,
                format!("`{}` is not an operation of the service", el.1),
            ));
        };
        let name = Self::choose(&candidates, first, action)?;
        if let (Some(schema), true) = (&self.schema, self.documents.contains(&el)) {
            let env = if version == Version::V11 {
                ENV11
            } else {
                ENV12
            };
            let node = crate::xsd::tree(text, &[(env, "Envelope"), (env, "Body"), ("", "*")])
                .map_err(|e| (MALFORMED, format!("the envelope is {e}")))?
                .ok_or_else(|| (MALFORMED, "the Body is empty".to_string()))?;
            schema.check(&node).map_err(|e| (INVALID, e))?;
        }
        Ok(name)
    }

    /// Whether an answer is the operation's output (or a Fault), valid against the schema.
    fn check_response(&self, op: &Operation, version: Version, body: &[u8]) -> Result<(), String> {
        let text = std::str::from_utf8(body).map_err(|_| "not UTF-8".to_string())?;
        let el = body_element(text, version)?;
        let env = if version == Version::V11 {
            ENV11
        } else {
            ENV12
        };
        if el == (env.to_string(), "Fault".to_string()) {
            return Ok(());
        }
        let Some(output) = &op.output else {
            return Ok(());
        };
        if el != *output {
            return Err(format!("`{}` where the WSDL says `{}`", el.1, output.1));
        }
        if let Some(schema) = &self.schema {
            let node = crate::xsd::tree(text, &[(env, "Envelope"), (env, "Body"), ("", "*")])?
                .ok_or("an empty Body")?;
            schema.check(&node)?;
        }
        Ok(())
    }

    /// The operation the action (or its absence) and the body agree on.
    fn choose(
        candidates: &[&Operation],
        first: &Operation,
        action: Option<String>,
    ) -> Result<String, (&'static str, String)> {
        match action {
            // the action must name the operation the body is
            Some(a) => candidates
                .iter()
                .find(|o| o.action.as_deref() == Some(a.as_str()))
                .map(|o| o.name.clone())
                .ok_or_else(|| {
                    (
                        MISMATCH,
                        format!(
                            "the SOAPAction does not name the operation `{}` the body is",
                            first.name
                        ),
                    )
                }),
            None if candidates.iter().any(|o| o.action.is_none()) => Ok(first.name.clone()),
            None => Err((
                MISMATCH,
                format!("the operation `{}` needs its SOAPAction", first.name),
            )),
        }
    }
}

#[async_trait::async_trait]
impl Policy for SoapContract {
    fn kind(&self) -> &'static str {
        "soap_contract"
    }
    fn stage(&self) -> Stage {
        Stage::Validate
    }
    fn phases(&self) -> PhaseSet {
        let p = PhaseSet::EMPTY.with(Phase::RequestBody);
        if self.responses {
            p.with(Phase::ResponseBody)
        } else {
            p
        }
    }

    async fn on_response_body(
        &self,
        _res: &mut palisade_core::ResponseHead,
        body: &mut bytes::Bytes,
        x: &mut Exchange,
    ) -> Outcome {
        let Some(name) = x.annotations.get("soap_operation") else {
            return Ok(Verdict::Continue);
        };
        let version = match x.annotations.get("soap_version").map(String::as_str) {
            Some("1.1") => Version::V11,
            _ => Version::V12,
        };
        let Some(op) = self
            .ops
            .iter()
            .find(|o| o.name == *name && o.version == version)
        else {
            return Ok(Verdict::Continue);
        };
        Ok(match self.check_response(op, version, body) {
            Ok(()) => Verdict::Continue,
            Err(why) => {
                // the operators' log says what failed; the client gets a Fault of its own
                tracing::warn!(code = INVALID_RESPONSE, detail = %why, request_id = %x.request_id, route = %x.route, "the service's answer breaks the WSDL");
                Verdict::Reject(
                    Rejection::new(
                        StatusCode::BAD_GATEWAY,
                        INVALID_RESPONSE,
                        "Service response does not match the WSDL",
                    )
                    .with_detail("the service's answer is not what the WSDL declares"),
                )
            }
        })
    }

    async fn on_request_body(
        &self,
        req: &RequestHead,
        body: &bytes::Bytes,
        x: &mut Exchange,
    ) -> Outcome {
        Ok(match self.decide(req, body) {
            Ok(op) => {
                if let Some((v, _)) = palisade_core::xml::soap_request(&req.headers) {
                    let v = if v == Version::V11 { "1.1" } else { "1.2" };
                    x.annotations.insert("soap_version", v.to_string());
                }
                x.annotations.insert("soap_operation", op);
                Verdict::Continue
            }
            Err((code, why)) => refuse(code, why),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RPC_11: &str = r#"<definitions xmlns="http://schemas.xmlsoap.org/wsdl/" xmlns:w="http://schemas.xmlsoap.org/wsdl/soap/" xmlns:t="urn:calc" targetNamespace="urn:calc">
  <message name="AddIn"><part name="a" type="xsd:int"/><part name="b" type="xsd:int"/></message>
  <portType name="Calc"><operation name="Add"><input message="t:AddIn"/></operation></portType>
  <binding name="CalcB" type="t:Calc"><w:binding style="rpc" transport="http://schemas.xmlsoap.org/soap/http"/>
    <operation name="Add"><w:operation soapAction=""/><input><w:body use="literal" namespace="urn:calc:ops"/></input></operation>
  </binding>
</definitions>"#;

    fn head(ct: &str, action: Option<&str>) -> RequestHead {
        let mut b = http::Request::builder()
            .method("POST")
            .uri("/")
            .header("content-type", ct);
        if let Some(a) = action {
            b = b.header("soapaction", a);
        }
        b.body(())
            .map(|r| r.into_parts().0)
            .unwrap_or_else(|_| unreachable!())
    }

    #[test]
    fn rpc_bindings_name_the_operation_and_versions_without_a_binding_are_refused() {
        let ops = operations(RPC_11).unwrap_or_default();
        assert_eq!(
            ops,
            vec![Operation {
                name: "Add".into(),
                version: Version::V11,
                action: None,
                body: ("urn:calc:ops".into(), "Add".into()),
                rpc: true,
                output: None,
            }]
        );
        // rpc bodies are typed by their message parts, not the schema: not validated
        let spec = SoapContractSpec {
            mode: Mode::Enforce,
            wsdl: String::new(),
            dangerous_skip_body_schema: false,
            validate_responses: false,
        };
        let c = spec.build(RPC_11).expect("builds");
        let env = r#"<e:Envelope xmlns:e="http://schemas.xmlsoap.org/soap/envelope/"><e:Body><Add xmlns="urn:calc:ops"><a>1</a><b>2</b></Add></e:Body></e:Envelope>"#;
        assert_eq!(
            c.decide(&head("text/xml", Some("\"\"")), env.as_bytes()),
            Ok("Add".into())
        );
        let v12 = env.replace(
            "http://schemas.xmlsoap.org/soap/envelope/",
            "http://www.w3.org/2003/05/soap-envelope",
        );
        assert_eq!(
            c.decide(&head("application/soap+xml", None), v12.as_bytes())
                .map_err(|e| e.0),
            Err(VERSION)
        );
        // a 1.2 envelope sent as 1.1 is not the envelope its media type says
        assert_eq!(
            c.decide(&head("text/xml", Some("\"\"")), v12.as_bytes())
                .map_err(|e| e.0),
            Err(MALFORMED)
        );
        let empty = r#"<e:Envelope xmlns:e="http://schemas.xmlsoap.org/soap/envelope/"><e:Body/></e:Envelope>"#;
        assert_eq!(
            c.decide(&head("text/xml", Some("\"\"")), empty.as_bytes())
                .map_err(|e| e.0),
            Err(MALFORMED)
        );
        assert!(operations("<definitions xmlns=\"http://schemas.xmlsoap.org/wsdl/\"/>").is_err());
        assert!(operations("<not-closed>").is_err());
    }

    const WSDL20: &str = r#"<description xmlns="http://www.w3.org/ns/wsdl" targetNamespace="urn:hotel"
    xmlns:tns="urn:hotel" xmlns:wsoap="http://www.w3.org/ns/wsdl/soap" xmlns:xs="http://www.w3.org/2001/XMLSchema">
  <types><xs:schema targetNamespace="urn:hotel" elementFormDefault="qualified">
    <xs:element name="checkAvailability"><xs:complexType><xs:sequence>
      <xs:element name="checkInDate" type="xs:date"/><xs:element name="checkOutDate" type="xs:date"/>
      <xs:element name="roomType"><xs:simpleType><xs:restriction base="xs:string">
        <xs:enumeration value="Single"/><xs:enumeration value="Double"/></xs:restriction></xs:simpleType></xs:element>
    </xs:sequence></xs:complexType></xs:element>
    <xs:element name="checkAvailabilityResponse" type="xs:double"/>
  </xs:schema></types>
  <interface name="reservationInterface">
    <operation name="opCheckAvailability" pattern="http://www.w3.org/ns/wsdl/in-out">
      <input messageLabel="In" element="tns:checkAvailability"/>
      <output messageLabel="Out" element="tns:checkAvailabilityResponse"/>
    </operation>
  </interface>
  <binding name="reservationSOAPBinding" interface="tns:reservationInterface" type="http://www.w3.org/ns/wsdl/soap"
      wsoap:protocol="http://www.w3.org/2003/05/soap/bindings/HTTP/">
    <operation ref="tns:opCheckAvailability" wsoap:action="urn:hotel#check"/>
  </binding>
</description>"#;

    #[test]
    fn wsdl_2_descriptions_name_operations_versions_actions_and_schemas() {
        let spec = SoapContractSpec {
            mode: Mode::Enforce,
            wsdl: String::new(),
            dangerous_skip_body_schema: false,
            validate_responses: false,
        };
        let c = spec.build(WSDL20).expect("a WSDL 2.0 contract");
        let env = |room: &str| {
            format!(
                r#"<e:Envelope xmlns:e="http://www.w3.org/2003/05/soap-envelope"><e:Body><checkAvailability xmlns="urn:hotel"><checkInDate>2026-12-24</checkInDate><checkOutDate>2026-12-27</checkOutDate><roomType>{room}</roomType></checkAvailability></e:Body></e:Envelope>"#
            )
        };
        let soap12 =
            |action: &str| head(&format!("application/soap+xml; action=\"{action}\""), None);
        assert_eq!(
            c.decide(&soap12("urn:hotel#check"), env("Double").as_bytes()),
            Ok("opCheckAvailability".into())
        );
        assert_eq!(
            c.decide(&soap12("urn:hotel#cancel"), env("Double").as_bytes())
                .map_err(|e| e.0),
            Err(MISMATCH)
        );
        assert_eq!(
            c.decide(&soap12("urn:hotel#check"), env("Suite").as_bytes())
                .map_err(|e| e.0),
            Err(INVALID)
        );
        // the binding is SOAP 1.2 (the default): a SOAP 1.1 request is refused
        assert_eq!(
            c.decide(
                &head("text/xml", Some("urn:hotel#check")),
                env("Double").as_bytes()
            )
            .map_err(|e| e.0),
            Err(VERSION)
        );
    }
}
