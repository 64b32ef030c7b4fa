//! SOAP requests get SOAP Faults: a refusal of a SOAP 1.1 or 1.2 request is a Fault of that
//! version carrying Palisade's code, status and request id, as zeep (a WSDL-driven SOAP
//! client from PyPI) reads it; other requests keep problem+json.

use palisade_testkit::{free_port, MockUpstream, TempDir};

use crate::support::{run_python, start_binary};

const WSDL: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<definitions name="Orders" targetNamespace="urn:orders" xmlns="http://schemas.xmlsoap.org/wsdl/"
    xmlns:tns="urn:orders" xmlns:soap="http://schemas.xmlsoap.org/wsdl/soap/"
    xmlns:soap12="http://schemas.xmlsoap.org/wsdl/soap12/" xmlns:xsd="http://www.w3.org/2001/XMLSchema">
  <types>
    <xsd:schema targetNamespace="urn:orders" elementFormDefault="qualified">
      <xsd:element name="GetOrder"><xsd:complexType><xsd:sequence>
        <xsd:element name="id" type="xsd:string"/></xsd:sequence></xsd:complexType></xsd:element>
      <xsd:element name="GetOrderResponse"><xsd:complexType><xsd:sequence>
        <xsd:element name="status" type="xsd:string"/></xsd:sequence></xsd:complexType></xsd:element>
    </xsd:schema>
  </types>
  <message name="GetOrderIn"><part name="parameters" element="tns:GetOrder"/></message>
  <message name="GetOrderOut"><part name="parameters" element="tns:GetOrderResponse"/></message>
  <portType name="OrdersPort">
    <operation name="GetOrder"><input message="tns:GetOrderIn"/><output message="tns:GetOrderOut"/></operation>
  </portType>
  <binding name="Orders11" type="tns:OrdersPort">
    <soap:binding style="document" transport="http://schemas.xmlsoap.org/soap/http"/>
    <operation name="GetOrder"><soap:operation soapAction="urn:orders#GetOrder"/>
      <input><soap:body use="literal"/></input><output><soap:body use="literal"/></output></operation>
  </binding>
  <binding name="Orders12" type="tns:OrdersPort">
    <soap12:binding style="document" transport="http://schemas.xmlsoap.org/soap/http"/>
    <operation name="GetOrder"><soap12:operation soapAction="urn:orders#GetOrder"/>
      <input><soap12:body use="literal"/></input><output><soap12:body use="literal"/></output></operation>
  </binding>
  <service name="Orders">
    <port name="Orders11" binding="tns:Orders11"><soap:address location="BASE/soap"/></port>
    <port name="Orders12" binding="tns:Orders12"><soap12:address location="BASE/soap"/></port>
  </service>
</definitions>
"#;

/// POSTs a SOAP 1.1 `body` to `url` with the `SOAPAction` `action`.
async fn post_soap(url: &str, action: &str, body: &str) -> palisade_testkit::Reply {
    palisade_testkit::HttpClient::h1()
        .send(
            http::Method::POST,
            url,
            &[
                ("content-type", "text/xml; charset=utf-8"),
                ("soapaction", action),
            ],
            body.as_bytes(),
        )
        .await
        .unwrap()
}

#[tokio::test]
async fn refusals_of_soap_requests_are_soap_faults_a_real_client_reads() {
    let up = MockUpstream::start("app").await;
    let dir = TempDir::new("soap");
    let (port, admin) = (free_port(), free_port());
    let key = "pk_soap_fault_test_key";
    let hash = crate::support::api_key_hash(key);
    let yaml = format!(
        r#"admin: {{listen: "127.0.0.1:{admin}"}}
log: {{access: "off"}}
listeners: [{{name: public, listen: "127.0.0.1:{port}"}}]
upstreams: {{app: {{targets: ["{}"]}}}}
consumers: [{{name: erp, api_keys: [{{hash: "sha256:{hash}"}}]}}]
routes:
  - name: soap
    match: {{path_prefix: /}}
    upstream: app
    policies: [{{type: api_key}}, {{type: xml_protection}}, {{type: threat}}]
"#,
        up.url()
    );
    let cfg = dir.write("palisade.yaml", &yaml);
    let _gw = start_binary(&cfg, admin).await;
    let wsdl = dir.write(
        "orders.wsdl",
        &WSDL.replace("BASE", &format!("http://127.0.0.1:{port}")),
    );
    let results = run_python("soap_client.py", vec![wsdl.into(), key.into()]).await;
    assert_eq!(results.len(), 4, "{results:?}");
    for r in &results {
        let f = &r["fault"];
        assert!(f.is_object(), "zeep did not read a Fault: {r}");
        let (want_code, want_status) = match r["case"].as_str() {
            Some("no-key") => ("auth.missing_credential", "401"),
            _ => ("threat.detected", "403"),
        };
        assert_eq!(f["palisade_code"], want_code, "{r}");
        assert_eq!(f["status"], want_status, "{r}");
        assert!(
            f["request_id"].as_str().is_some_and(|s| !s.is_empty()),
            "{r}"
        );
        let code = f["code"].as_str().unwrap();
        if r["port"] == "Orders11" {
            assert!(code.ends_with("Client"), "SOAP 1.1 fault code: {r}");
        } else {
            assert!(code.ends_with("Sender"), "SOAP 1.2 fault code: {r}");
        }
        assert!(
            f["message"]
                .as_str()
                .unwrap()
                .contains(if want_status == "401" {
                    "Authentication required"
                } else {
                    "detected"
                }),
            "{r}"
        );
    }
    assert!(
        up.requests().is_empty(),
        "a refused call reached the upstream"
    );

    // zeep's own envelopes (the injection case, with a key) passed xml_protection: the threat
    // policy refused them. Attacks on the XML parser are refused as SOAP Faults of their
    // version, and a plain envelope goes through byte for byte.
    let c = palisade_testkit::HttpClient::h1();
    let soap11 = [
        ("content-type", "text/xml; charset=utf-8"),
        ("soapaction", "\"urn:orders#GetOrder\""),
        ("x-api-key", key),
    ];
    let soap12 = [
        ("content-type", "application/soap+xml; charset=utf-8"),
        ("x-api-key", key),
    ];
    let env = |ns: &str, inner: &str| {
        format!(
            r#"<s:Envelope xmlns:s="{ns}"><s:Body><GetOrder xmlns="urn:orders">{inner}</GetOrder></s:Body></s:Envelope>"#
        )
    };
    let v11 = "http://schemas.xmlsoap.org/soap/envelope/";
    let v12 = "http://www.w3.org/2003/05/soap-envelope";
    type Attack<'a> = (&'a [(&'a str, &'a str)], String, &'a str, &'a str);
    let attacks: [Attack; 4] = [
        (
            &soap11,
            format!(
                r#"<!DOCTYPE s [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>{}"#,
                env(v11, "<id>&xxe;</id>")
            ),
            "xml.dtd",
            "<faultcode>soap:Client</faultcode>",
        ),
        (
            &soap12,
            format!(
                r#"<!DOCTYPE s [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>{}"#,
                env(v12, "<id>&b;</id>")
            ),
            "xml.dtd",
            "<env:Value>env:Sender</env:Value>",
        ),
        (
            &soap11,
            env(
                v11,
                r#"<xi:include xmlns:xi="http://www.w3.org/2001/XInclude" href="file:///etc/passwd"/>"#,
            ),
            "xml.instruction",
            "soap:Client",
        ),
        (
            &soap12,
            env(v12, "<id>42</id></GetOrder>"),
            "xml.malformed",
            "env:Sender",
        ),
    ];
    for (headers, body, want, fault) in attacks {
        let r = c
            .send(
                http::Method::POST,
                &format!("http://127.0.0.1:{port}/soap"),
                headers,
                body.as_bytes(),
            )
            .await
            .unwrap();
        assert_eq!(r.status, 400, "{body}: {}", r.text());
        assert!(
            r.text().contains(&format!("<p:code>{want}</p:code>")) && r.text().contains(fault),
            "{body}: {}",
            r.text()
        );
    }
    assert!(up.requests().is_empty(), "an attack reached the upstream");
    let good = env(v11, "<id>42</id>");
    let r = c
        .send(
            http::Method::POST,
            &format!("http://127.0.0.1:{port}/soap"),
            &soap11,
            good.as_bytes(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(up.requests()[0].body, good.as_bytes());

    // the same refusal without SOAP is problem+json, with the HTTP status kept for both
    let r = c
        .send(
            http::Method::POST,
            &format!("http://127.0.0.1:{port}/soap"),
            &[("content-type", "application/json")],
            b"{}",
        )
        .await
        .unwrap();
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/problem+json")
    );
    let r = c
        .send(
            http::Method::POST,
            &format!("http://127.0.0.1:{port}/soap"),
            &[
                ("content-type", "text/xml; charset=utf-8"),
                ("soapaction", "\"urn:orders#GetOrder\""),
            ],
            b"<x/>",
        )
        .await
        .unwrap();
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("text/xml; charset=utf-8")
    );
    assert!(
        r.header("www-authenticate").is_some(),
        "the challenge is kept"
    );
    assert!(
        r.text().contains("<faultcode>soap:Client</faultcode>"),
        "{}",
        r.text()
    );
}

/// `soap_contract`: only the WSDL's operations pass, and their SOAPAction must name the
/// operation the body is. zeep's calls over both bindings reach the upstream; a body that
/// is no operation, an action naming another operation, and a SOAP version without a
/// binding are refused as Faults.
#[tokio::test]
async fn the_wsdl_is_the_contract() {
    let up = MockUpstream::start("app").await;
    let dir = TempDir::new("soap-contract");
    let (port, admin) = (free_port(), free_port());
    let wsdl_text = WSDL
        .replace("BASE", &format!("http://127.0.0.1:{port}"))
        .replace(
            r#"<operation name="GetOrder"><input message="tns:GetOrderIn"/><output message="tns:GetOrderOut"/></operation>"#,
            r#"<operation name="GetOrder"><input message="tns:GetOrderIn"/><output message="tns:GetOrderOut"/></operation>
    <operation name="CancelOrder"><input message="tns:CancelOrderIn"/><output message="tns:GetOrderOut"/></operation>"#,
        )
        .replace(
            r#"<message name="GetOrderOut">"#,
            r#"<message name="CancelOrderIn"><part name="parameters" element="tns:CancelOrder"/></message>
  <message name="GetOrderOut">"#,
        )
        .replace(
            r#"<xsd:element name="GetOrderResponse">"#,
            r#"<xsd:element name="CancelOrder"><xsd:complexType><xsd:sequence><xsd:element name="id" type="xsd:string"/></xsd:sequence></xsd:complexType></xsd:element>
      <xsd:element name="GetOrderResponse">"#,
        )
        .replace(
            r#"<input><soap:body use="literal"/></input><output><soap:body use="literal"/></output></operation>
  </binding>"#,
            r#"<input><soap:body use="literal"/></input><output><soap:body use="literal"/></output></operation>
    <operation name="CancelOrder"><soap:operation soapAction="urn:orders#CancelOrder"/>
      <input><soap:body use="literal"/></input><output><soap:body use="literal"/></output></operation>
  </binding>"#,
        );
    let wsdl = dir.write("orders.wsdl", &wsdl_text);
    let yaml = format!(
        r#"admin: {{listen: "127.0.0.1:{admin}"}}
log: {{access: "off"}}
listeners: [{{name: public, listen: "127.0.0.1:{port}"}}]
upstreams: {{app: {{targets: ["{}"]}}}}
routes:
  - name: soap
    match: {{path_prefix: /}}
    upstream: app
    public: true
    policies: [{{type: xml_protection}}, {{type: soap_contract, wsdl: orders.wsdl}}]
"#,
        up.url()
    );
    let cfg = dir.write("palisade.yaml", &yaml);
    let _gw = start_binary(&cfg, admin).await;
    // zeep's calls (its envelopes and actions, both versions) reach the upstream
    let results = run_python("soap_client.py", vec![wsdl.into(), "unused".into()]).await;
    let reached = up.requests();
    assert_eq!(
        reached.len(),
        4,
        "zeep's calls did not all pass: {results:?}"
    );
    assert!(reached
        .iter()
        .all(|r| String::from_utf8_lossy(&r.body).contains("GetOrder")));

    let c = palisade_testkit::HttpClient::h1();
    let env11 = |op: &str| {
        format!(
            r#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Header/><s:Body><o:{op} xmlns:o="urn:orders"><o:id>7</o:id></o:{op}></s:Body></s:Envelope>"#
        )
    };
    let post = |ct: &'static str, action: Option<&'static str>, body: String| {
        let c = &c;
        async move {
            let mut h = vec![("content-type", ct)];
            if let Some(a) = action {
                h.push(("soapaction", a));
            }
            c.send(
                http::Method::POST,
                &format!("http://127.0.0.1:{port}/soap"),
                &h,
                body.as_bytes(),
            )
            .await
            .unwrap()
        }
    };
    let ct11 = "text/xml; charset=utf-8";
    // the other declared operation, with its own action, passes
    let r = post(
        ct11,
        Some("\"urn:orders#CancelOrder\""),
        env11("CancelOrder"),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let refusals = [
        // the action a router dispatches on says Get, the body the service runs says Cancel
        (
            post(ct11, Some("\"urn:orders#GetOrder\""), env11("CancelOrder")).await,
            "soap.action_mismatch",
        ),
        (
            post(
                ct11,
                Some("\"urn:orders#CancelOrder\""),
                env11("DeleteAllOrders"),
            )
            .await,
            "soap.unknown_operation",
        ),
        (
            post(ct11, Some("\"\""), env11("CancelOrder")).await,
            "soap.action_mismatch",
        ),
        (
            post(
                ct11,
                Some("\"urn:orders#GetOrder\""),
                "<notsoap/>".to_string(),
            )
            .await,
            "soap.malformed",
        ),
        (
            post("application/json", None, "{}".to_string()).await,
            "soap.malformed",
        ),
    ];
    for (r, code) in refusals {
        assert_eq!(r.status, 400, "{code}: {}", r.text());
        assert!(r.text().contains(code), "{code}: {}", r.text());
    }
    assert_eq!(
        up.requests().len(),
        5,
        "a refused call reached the upstream"
    );
}

/// `ws_security` with zeep's own WS-Security (UsernameToken PasswordDigest with Nonce and
/// Created, a wsu:Timestamp), over both SOAP versions; a wrong password, an unknown user, a
/// replayed nonce, a stale token, no timestamp, a clear password over plain HTTP and no
/// header at all are refused as Faults with their codes.
#[tokio::test]
async fn ws_security_username_tokens_from_a_real_client() {
    let up = MockUpstream::start("app").await;
    let dir = TempDir::new("wssec");
    let (port, admin) = (free_port(), free_port());
    let pw = dir.write("erp.password", "correct horse battery staple\n");
    std::fs::set_permissions(&pw, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let yaml = format!(
        r#"admin: {{listen: "127.0.0.1:{admin}"}}
log: {{access: "off"}}
listeners: [{{name: public, listen: "127.0.0.1:{port}"}}]
upstreams: {{app: {{targets: ["{}"]}}}}
consumers:
  - name: erp
    ws_users: [{{username: erp-batch, password: "${{file:erp.password}}"}}]
routes:
  - name: soap
    match: {{path_prefix: /}}
    upstream: app
    policies: [{{type: xml_protection}}, {{type: ws_security}}]
"#,
        up.url()
    );
    let cfg = dir.write("palisade.yaml", &yaml);
    let _gw = start_binary(&cfg, admin).await;
    let wsdl = dir.write(
        "orders.wsdl",
        &WSDL.replace("BASE", &format!("http://127.0.0.1:{port}")),
    );
    let results = run_python(
        "wssec_client.py",
        vec![
            wsdl.into(),
            "erp-batch".into(),
            "correct horse battery staple".into(),
        ],
    )
    .await;
    let fault = |case: &str| {
        results
            .iter()
            .find(|r| r["case"] == case)
            .unwrap_or_else(|| panic!("no {case}: {results:?}"))["fault"]
            .clone()
    };
    for case in ["digest", "digest-soap12", "first"] {
        assert!(fault(case).is_null(), "{case} was refused: {results:?}");
    }
    for (case, code) in [
        ("wrong-password", "wssec.invalid"),
        ("unknown-user", "wssec.invalid"),
        ("replay", "wssec.replayed"),
        ("stale", "wssec.expired"),
        ("no-timestamp", "wssec.missing"),
        ("text-over-http", "wssec.insecure"),
        ("no-security", "wssec.missing"),
    ] {
        assert_eq!(fault(case), code, "{case}: {results:?}");
    }
    let seen = up.requests();
    assert_eq!(seen.len(), 3, "only the good calls reach the service");
    assert!(seen.iter().all(|r| r
        .headers
        .get("x-palisade-consumer")
        .is_some_and(|v| v == "erp")));
    // the identity travels in its headers; the Security header, its digest and nonce do not
    for r in &seen {
        let body = String::from_utf8_lossy(&r.body);
        assert!(
            !body.contains("Security")
                && !body.contains("UsernameToken")
                && !body.contains("Nonce"),
            "the Security header was forwarded: {body}"
        );
        assert!(body.contains("GetOrder") && body.contains("Body"), "{body}");
        assert_eq!(
            r.headers
                .get("content-length")
                .and_then(|v| v.to_str().ok()),
            Some(r.body.len().to_string().as_str()),
            "the length of the body forwarded"
        );
    }
}

/// The spyne shop of tests/python on a free port, with its process.
fn spyne_shop() -> (crate::support::Proc, u16) {
    let port = free_port();
    let (proc, first, _) = crate::support::python_server("spyne_service.py", &[port.to_string()]);
    assert_eq!(first["listening"], port, "spyne did not start");
    (proc, port)
}

async fn posts(spyne: u16) -> u64 {
    let r = palisade_testkit::get(&format!("http://127.0.0.1:{spyne}/count")).await;
    r.json()["posts"].as_u64().unwrap()
}

const SHOP_OK: &str = r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/" xmlns:s="urn:spyne:shop"><soap:Body><s:PlaceOrder><s:customer>ACME</s:customer><s:address><s:street>Main 1</s:street><s:city>Bern</s:city><s:zip>30110</s:zip></s:address><s:line><s:sku>ABC-1234</s:sku><s:quantity>2</s:quantity></s:line><s:priority>high</s:priority><s:tip>1.50</s:tip><s:gift>true</s:gift><s:deliver_on>2026-12-24</s:deliver_on></s:PlaceOrder></soap:Body></soap:Envelope>"#;

#[tokio::test]
async fn the_schema_of_a_wsdl_spyne_wrote_is_enforced_on_every_body() {
    let (_spyne, spy) = spyne_shop();
    let dir = TempDir::new("soap-xsd");
    let wsdl_text = palisade_testkit::get(&format!("http://127.0.0.1:{spy}/?wsdl"))
        .await
        .text();
    assert!(wsdl_text.contains("xs:schema"), "{wsdl_text}");
    let wsdl = dir.write("shop.wsdl", &wsdl_text);
    let (port, admin) = (free_port(), free_port());
    let cfg = dir.write(
        "palisade.yaml",
        &format!(
            r#"admin: {{listen: "127.0.0.1:{admin}"}}
log: {{access: "off"}}
listeners: [{{name: public, listen: "127.0.0.1:{port}"}}]
upstreams: {{shop: {{targets: ["http://127.0.0.1:{spy}"]}}}}
routes:
  - name: shop
    match: {{path_prefix: /}}
    upstream: shop
    public: true
    policies: [{{type: xml_protection}}, {{type: soap_contract, wsdl: shop.wsdl, validate_responses: true}}]
"#
        ),
    );
    let _gw = start_binary(&cfg, admin).await;

    // what a real client serializes from the WSDL passes, and reaches the service
    let results = run_python(
        "shop_client.py",
        vec![wsdl.into(), format!("http://127.0.0.1:{port}/").into()],
    )
    .await;
    assert_eq!(results.len(), 3, "{results:?}");
    for r in &results {
        assert!(r.get("fault").is_none(), "refused: {r}");
    }
    assert!(results[0]["result"]
        .as_str()
        .unwrap()
        .contains("accepted: 2 line(s)"));
    let url = format!("http://127.0.0.1:{port}/");
    let send = |action: &'static str, body: String| {
        let url = url.clone();
        async move { post_soap(&url, action, &body).await }
    };
    assert_eq!(send("PlaceOrder", SHOP_OK.to_string()).await.status, 200);
    let before = posts(spy).await;

    // each of the schema's rules, broken once: refused with its code, never forwarded
    let get_order = |id: &str| {
        format!(
            r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/" xmlns:s="urn:spyne:shop"><soap:Body><s:GetOrder><s:id>{id}</s:id></s:GetOrder></soap:Body></soap:Envelope>"#
        )
    };
    let line = "<s:line><s:sku>ABC-1234</s:sku><s:quantity>2</s:quantity></s:line>";
    let cases: Vec<(&str, &'static str, String)> = vec![
        ("quantity below its minimum", "PlaceOrder", SHOP_OK.replace("<s:quantity>2<", "<s:quantity>0<")),
        ("quantity not an integer", "PlaceOrder", SHOP_OK.replace("<s:quantity>2<", "<s:quantity>2 OR 1=1<")),
        ("sku off its pattern", "PlaceOrder", SHOP_OK.replace("ABC-1234", "abc-1234")),
        ("sku off its length", "PlaceOrder", SHOP_OK.replace("ABC-1234", "ABC-12345")),
        ("priority not in the enumeration", "PlaceOrder", SHOP_OK.replace(">high<", ">urgent<")),
        ("customer over its maxLength", "PlaceOrder", SHOP_OK.replace(">ACME<", &format!(">{}<", "A".repeat(41)))),
        ("an element the schema does not have", "PlaceOrder", SHOP_OK.replace("<s:priority>", "<s:admin>true</s:admin><s:priority>")),
        ("elements out of order", "PlaceOrder", SHOP_OK.replace("<s:street>Main 1</s:street><s:city>Bern</s:city>", "<s:city>Bern</s:city><s:street>Main 1</s:street>")),
        ("a required element missing", "PlaceOrder", SHOP_OK.replace("<s:address><s:street>Main 1</s:street><s:city>Bern</s:city><s:zip>30110</s:zip></s:address>", "")),
        ("more lines than maxOccurs", "PlaceOrder", SHOP_OK.replace(line, &line.repeat(6))),
        ("tip over its maximum", "PlaceOrder", SHOP_OK.replace(">1.50<", ">10000.01<")),
        ("gift not a boolean", "PlaceOrder", SHOP_OK.replace(">true<", ">yes<")),
        ("a date that is not one", "PlaceOrder", SHOP_OK.replace("2026-12-24", "2026-13-24")),
        ("markup where a value belongs", "PlaceOrder", SHOP_OK.replace(">Bern<", "><s:x>Bern</s:x><")),
        ("a negative id", "GetOrder", get_order("-1")),
        ("an unqualified element", "GetOrder", get_order("7").replace("<s:id>7</s:id>", "<id>7</id>")),
    ];
    for (what, action, body) in &cases {
        let r = send(action, body.clone()).await;
        assert_eq!(r.status, 400, "{what}: {}", r.text());
        let text = r.text();
        assert!(
            text.contains("soap:Fault") || text.contains(":Fault"),
            "{what}: not a SOAP Fault: {text}"
        );
        assert!(text.contains("soap.invalid_body"), "{what}: {text}");
    }
    assert_eq!(
        posts(spy).await,
        before,
        "a refused body reached the service"
    );
    // the counts for the record: every rule broken was refused, nothing good was
    palisade_testkit::report_figure(&format!(
        "soap_contract on a spyne-written WSDL: {} of {} schema violations refused, 3 of 3 zeep calls and the hand-written valid body passed",
        cases.len(),
        cases.len()
    ));
}

/// A SOAP 1.1 GetOrder with a UsernameToken PasswordDigest (OASIS UsernameToken Profile
/// 1.1: Base64(SHA-1(nonce + created + password))) and a Timestamp, made at `now`.
fn digest_envelope(user: &str, password: &str, nonce: &[u8], now: i64) -> String {
    use base64::Engine as _;
    let created = palisade_proxy::rfc3339_secs(now);
    let expires = palisade_proxy::rfc3339_secs(now + 300);
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY);
    ctx.update(nonce);
    ctx.update(created.as_bytes());
    ctx.update(password.as_bytes());
    let b64 = base64::engine::general_purpose::STANDARD;
    let digest = b64.encode(ctx.finish().as_ref());
    let nonce = b64.encode(nonce);
    format!(
        r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/" xmlns:wsse="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd" xmlns:wsu="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"><soap:Header><wsse:Security><wsu:Timestamp><wsu:Created>{created}</wsu:Created><wsu:Expires>{expires}</wsu:Expires></wsu:Timestamp><wsse:UsernameToken><wsse:Username>{user}</wsse:Username><wsse:Password Type="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0#PasswordDigest">{digest}</wsse:Password><wsse:Nonce EncodingType="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-soap-message-security-1.0#Base64Binary">{nonce}</wsse:Nonce><wsu:Created>{created}</wsu:Created></wsse:UsernameToken></wsse:Security></soap:Header><soap:Body><GetOrder xmlns="urn:orders"><id>1</id></GetOrder></soap:Body></soap:Envelope>"#
    )
}

/// With `store: redis`, a nonce one instance took is refused by every other; while Redis is
/// down the policy fails closed (503, a SOAP Fault), never accepting a nonce it cannot check.
#[tokio::test]
async fn ws_security_nonces_are_shared_by_a_cluster_and_fail_closed_without_redis() {
    let mut redis = palisade_testkit::RedisServer::start();
    let up = MockUpstream::start("app").await;
    let yaml = |dir: &TempDir| {
        let pw = dir.write("erp.password", "correct horse battery staple\n");
        std::fs::set_permissions(&pw, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        format!(
            r#"admin: {{listen: "127.0.0.1:0"}}
log: {{access: "off"}}
redis: {{url: "{redis}", timeout: 300ms}}
listeners: [{{name: public, listen: "127.0.0.1:0"}}]
upstreams: {{app: {{targets: ["{up}"]}}}}
consumers:
  - name: erp
    ws_users: [{{username: erp-batch, password: "${{file:erp.password}}"}}]
routes:
  - name: soap
    match: {{path_prefix: /}}
    upstream: app
    policies: [{{type: xml_protection}}, {{type: ws_security, store: redis, keep_security_header: true}}]
"#,
            redis = redis.url(),
            up = up.url()
        )
    };
    let (da, db) = (TempDir::new("wssec-a"), TempDir::new("wssec-b"));
    let (ya, yb) = (yaml(&da), yaml(&db));
    let a = crate::support::TestGateway::start_in(da, &ya).await;
    let b = crate::support::TestGateway::start_in(db, &yb).await;
    let send = |url: String, body: String| async move {
        post_soap(&url, "\"urn:orders#GetOrder\"", &body).await
    };
    let now = palisade_testkit::jwt::now_secs();
    let env = digest_envelope(
        "erp-batch",
        "correct horse battery staple",
        b"nonce-shared-0001",
        now,
    );
    assert_eq!(send(a.url("/soap"), env.clone()).await.status, 200);
    let replayed = send(b.url("/soap"), env.clone()).await;
    assert_eq!(replayed.status, 401, "{}", replayed.text());
    assert!(
        replayed.text().contains("wssec.replayed"),
        "{}",
        replayed.text()
    );
    let fresh = digest_envelope(
        "erp-batch",
        "correct horse battery staple",
        b"nonce-shared-0002",
        now,
    );
    assert_eq!(send(b.url("/soap"), fresh).await.status, 200);

    redis.kill();
    let later = digest_envelope(
        "erp-batch",
        "correct horse battery staple",
        b"nonce-shared-0003",
        now,
    );
    let r = send(a.url("/soap"), later).await;
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(
        r.text().contains("wssec.unavailable") && r.text().contains("Fault"),
        "{}",
        r.text()
    );
    assert_eq!(
        up.requests().len(),
        2,
        "only the two accepted calls reached the service"
    );
    // keep_security_header: the service gets the envelope as sent
    assert!(up
        .requests()
        .iter()
        .all(|r| String::from_utf8_lossy(&r.body).contains("wsse:UsernameToken")));
}

/// A signed envelope of `body` by the key and certificate files, made by zeep's
/// BinarySignature (xmlsec).
async fn zeep_signed(key: &std::path::Path, cert: &std::path::Path, body: &str) -> String {
    let out = run_python("wssec_sign.py", vec![key.into(), cert.into(), body.into()]).await;
    out[0]["envelope"].as_str().unwrap().to_string()
}

/// The element `<prefix:Body …>…</prefix:Body>` of an envelope, as written.
fn body_of(env: &str) -> String {
    let start = env.find(":Body").and_then(|i| env[..i].rfind('<')).unwrap();
    let end = env.rfind(":Body>").unwrap() + ":Body>".len();
    env[start..end].to_string()
}

/// `ws_security` with X.509: messages signed by zeep (xmlsec) with a certificate of a
/// trusted CA pass as the consumer holding it, with the Security header cut; tampering,
/// signature wrapping (the signed Body moved aside for another), a duplicated Id, an
/// untrusted or expired certificate, a stranger's certificate and an unsigned message are
/// refused with their codes, and none reaches the service.
#[tokio::test]
async fn x509_signatures_from_a_real_client_and_wrapping_attacks() {
    use palisade_testkit::{ClientCertSpec, TestCa};
    let up = MockUpstream::start("app").await;
    let dir = TempDir::new("wssec-x509");
    let (ca, other) = (TestCa::new(), TestCa::new());
    ca.write_ca(dir.path());
    let spec = |cn: &'static str, expired: bool| ClientCertSpec {
        cn,
        uris: &[],
        dns: &[],
        serial: 7,
        expired,
    };
    let write = |name: &str, (cert, key): (String, String)| {
        let c = dir.write(&format!("{name}.pem"), &cert);
        let k = dir.write(&format!("{name}.key"), &key);
        (k, c)
    };
    let good = write("erp", ca.client_cert(&spec("erp-signer", false)));
    let foreign = write("foreign", other.client_cert(&spec("erp-signer", false)));
    let stale = write("stale", ca.client_cert(&spec("erp-signer", true)));
    let stranger = write("stranger", ca.client_cert(&spec("stranger", false)));
    let (port, admin) = (free_port(), free_port());
    let cfg = dir.write(
        "palisade.yaml",
        &format!(
            r#"admin: {{listen: "127.0.0.1:{admin}"}}
log: {{access: "off"}}
listeners: [{{name: public, listen: "127.0.0.1:{port}"}}]
upstreams: {{app: {{targets: ["{up}"]}}}}
consumers:
  - {{name: erp, certificates: [erp-signer]}}
  - {{name: other, certificates: [nobody]}}
routes:
  - name: soap
    match: {{path_prefix: /}}
    upstream: app
    policies: [{{type: xml_protection}}, {{type: ws_security, x509: {{ca: ca.pem}}}}]
"#,
            up = up.url()
        ),
    );
    let _gw = start_binary(&cfg, admin).await;
    let url = format!("http://127.0.0.1:{port}/soap");
    let send = |body: String| {
        let url = url.clone();
        async move { post_soap(&url, "\"urn:orders#GetOrder\"", &body).await }
    };
    let order = |id: u32| format!(r#"<GetOrder xmlns="urn:orders"><id>{id}</id></GetOrder>"#);

    let signed = zeep_signed(&good.0, &good.1, &order(1)).await;
    let r = send(signed.clone()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = up.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].headers.get("x-palisade-consumer").unwrap(), "erp");
    let forwarded = String::from_utf8_lossy(&seen[0].body).into_owned();
    assert!(
        !forwarded.contains("BinarySecurityToken") && forwarded.contains("<id>1</id>"),
        "{forwarded}"
    );

    // and as a zeep service call with zeep's own WS-Security signature plugin
    let wsdl = dir.write(
        "orders.wsdl",
        &WSDL.replace("BASE", &format!("http://127.0.0.1:{port}")),
    );
    let called = run_python(
        "wssec_x509_client.py",
        vec![wsdl.into(), good.0.clone().into(), good.1.clone().into()],
    )
    .await;
    assert!(called[0]["fault"].is_null(), "{called:?}");
    assert_eq!(up.requests().len(), 2, "the zeep call reached the service");
    assert_eq!(
        up.requests()[1].headers.get("x-palisade-consumer").unwrap(),
        "erp"
    );

    // the refusals, each with its code
    let original_body = body_of(&signed);
    let evil_body = original_body
        .replace("<id>1</id>", "<id>666</id>")
        .replace("wsu:Id=", "data-x=")
        .replace("ns1:Id=", "data-x=");
    let wrapped = signed.replacen(&original_body, &evil_body, 1).replacen(
        "<soap:Header>",
        &format!("<soap:Header><Wrapper xmlns=\"urn:x\">{original_body}</Wrapper>"),
        1,
    );
    // the signed Body's Id, given to a decoy as well
    let id = {
        let at = original_body.find(":Id=\"").unwrap() + ":Id=\"".len();
        let rest = &original_body[at..];
        rest[..rest.find('"').unwrap()].to_string()
    };
    let duplicated = signed.replacen(
        "<soap:Header>",
        &format!("<soap:Header><Decoy xmlns=\"urn:x\" xmlns:wsu=\"http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd\" wsu:Id=\"{id}\"/>"),
        1,
    );
    let unsigned = format!(
        r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Header><wsse:Security xmlns:wsse="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"/></soap:Header><soap:Body>{}</soap:Body></soap:Envelope>"#,
        order(1)
    );
    let cases: Vec<(&str, String, u16, &str)> = vec![
        (
            "a changed Body",
            signed.replace("<id>1</id>", "<id>2</id>"),
            401,
            "wssec.bad_signature",
        ),
        (
            "the signed Body moved aside for another",
            wrapped,
            401,
            "wssec.bad_signature",
        ),
        (
            "a second element with the signed Id",
            duplicated,
            401,
            "wssec.bad_signature",
        ),
        (
            "another CA's certificate",
            zeep_signed(&foreign.0, &foreign.1, &order(1)).await,
            401,
            "wssec.untrusted",
        ),
        (
            "an expired certificate",
            zeep_signed(&stale.0, &stale.1, &order(1)).await,
            401,
            "wssec.untrusted",
        ),
        (
            "no consumer's certificate",
            zeep_signed(&stranger.0, &stranger.1, &order(1)).await,
            401,
            "wssec.invalid",
        ),
        ("no signature", unsigned, 401, "wssec.missing"),
    ];
    for (what, body, status, code) in &cases {
        let r = send(body.clone()).await;
        assert_eq!(r.status.as_u16(), *status, "{what}: {}", r.text());
        assert!(
            r.text().contains(code) && r.text().contains("Fault"),
            "{what}: {}",
            r.text()
        );
    }
    assert_eq!(
        up.requests().len(),
        2,
        "a refused message reached the service"
    );
}

/// A SAML envelope from the identity provider's key and certificate files (python3-saml's
/// signer); `window`: NotBefore and NotOnOrAfter in seconds from now.
async fn saml_envelope(
    idp: &(String, String),
    issuer: &str,
    audience: &str,
    subject: &str,
    window: (i64, i64),
) -> String {
    let out = run_python(
        "saml_assertion.py",
        vec![
            idp.0.clone().into(),
            idp.1.clone().into(),
            issuer.into(),
            audience.into(),
            subject.into(),
            window.0.to_string().into(),
            window.1.to_string().into(),
        ],
    )
    .await;
    out[0]["envelope"].as_str().unwrap().to_string()
}

/// `ws_security` with SAML 2.0: an assertion python3-saml signed as the configured identity
/// provider makes its NameID the principal and its groups the groups; another provider's
/// signature, another issuer or audience, an expired or early assertion, a changed subject
/// and a second, unsigned assertion are refused, and none reaches the service.
#[tokio::test]
async fn saml_assertions_signed_by_an_identity_provider() {
    let up = MockUpstream::start("app").await;
    let dir = TempDir::new("wssec-saml");
    let keygen = |name: &'static str| {
        let folder = dir.path().display().to_string();
        async move {
            let out = run_python(
                "saml_assertion.py",
                vec!["keygen".into(), folder.into(), name.into()],
            )
            .await;
            (
                out[0]["key"].as_str().unwrap().to_string(),
                out[0]["cert"].as_str().unwrap().to_string(),
            )
        }
    };
    let idp = keygen("idp").await;
    let rogue = keygen("rogue").await;
    let (port, admin) = (free_port(), free_port());
    let cfg = dir.write(
        "palisade.yaml",
        &format!(
            r#"admin: {{listen: "127.0.0.1:{admin}"}}
log: {{access: "off"}}
listeners: [{{name: public, listen: "127.0.0.1:{port}"}}]
upstreams: {{app: {{targets: ["{up}"]}}}}
routes:
  - name: soap
    match: {{path_prefix: /}}
    upstream: app
    policies:
      - {{type: xml_protection}}
      - {{type: ws_security, saml: {{issuer: "https://idp.example", audience: "urn:orders", certificate: idp.pem}}}}
"#,
            up = up.url()
        ),
    );
    let _gw = start_binary(&cfg, admin).await;
    let url = format!("http://127.0.0.1:{port}/soap");
    let send = |body: String| {
        let url = url.clone();
        async move { post_soap(&url, "\"urn:orders#GetOrder\"", &body).await }
    };
    let (iss, aud) = ("https://idp.example", "urn:orders");
    let good = saml_envelope(&idp, iss, aud, "ada", (-5, 300)).await;
    let r = send(good.clone()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = up.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].headers.get("x-palisade-subject").unwrap(), "ada");
    let groups = seen[0]
        .headers
        .get("x-palisade-groups")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        groups.contains("clerks") && groups.contains("emea"),
        "{groups}"
    );
    assert!(
        !String::from_utf8_lossy(&seen[0].body).contains("Assertion"),
        "the Security header is cut"
    );

    let assertion_start = good.find("<saml2:Assertion").unwrap();
    let unsigned_twin = "<saml2:Assertion xmlns:saml2=\"urn:oasis:names:tc:SAML:2.0:assertion\" ID=\"_twin\" Version=\"2.0\"><saml2:Issuer>https://idp.example</saml2:Issuer></saml2:Assertion>";
    let cases: Vec<(&str, String)> = vec![
        (
            "another provider's signature",
            saml_envelope(&rogue, iss, aud, "ada", (-5, 300)).await,
        ),
        (
            "another issuer",
            saml_envelope(&idp, "https://evil.example", aud, "ada", (-5, 300)).await,
        ),
        (
            "another audience",
            saml_envelope(&idp, iss, "urn:payroll", "ada", (-5, 300)).await,
        ),
        (
            "expired",
            saml_envelope(&idp, iss, aud, "ada", (-600, -120)).await,
        ),
        (
            "not valid yet",
            saml_envelope(&idp, iss, aud, "ada", (120, 600)).await,
        ),
        (
            "a changed subject",
            good.replace(">ada</saml2:NameID>", ">root</saml2:NameID>"),
        ),
        (
            "a second, unsigned assertion",
            format!(
                "{}{unsigned_twin}{}",
                &good[..assertion_start],
                &good[assertion_start..]
            ),
        ),
    ];
    for (what, body) in &cases {
        let r = send(body.clone()).await;
        assert_eq!(r.status, 401, "{what}: {}", r.text());
        assert!(
            r.text().contains("wssec.saml_invalid") && r.text().contains("Fault"),
            "{what}: {}",
            r.text()
        );
    }
    assert_eq!(
        up.requests().len(),
        1,
        "a refused assertion reached the service"
    );
}

/// `ws_security` with XML Encryption: a Body xmlsec encrypted for the gateway (AES-256-GCM,
/// the key wrapped with RSA-OAEP) is decrypted before the token is checked and forwarded in
/// plaintext; changed ciphertext, a Body encrypted for another key and, with `require`, a
/// Body in clear are refused.
#[tokio::test]
async fn encrypted_bodies_are_decrypted_for_the_service() {
    let up = MockUpstream::start("app").await;
    let dir = TempDir::new("wssec-enc");
    let folder = dir.path().display().to_string();
    let mut keys = Vec::new();
    for name in ["gateway", "stranger"] {
        let out = run_python(
            "saml_assertion.py",
            vec!["keygen".into(), folder.clone().into(), name.into()],
        )
        .await;
        let key = std::path::PathBuf::from(out[0]["key"].as_str().unwrap());
        std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        keys.push(out[0]["cert"].as_str().unwrap().to_string());
    }
    let pw = dir.write("erp.password", "correct horse battery staple\n");
    std::fs::set_permissions(&pw, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let (port, admin) = (free_port(), free_port());
    let cfg = dir.write(
        "palisade.yaml",
        &format!(
            r#"admin: {{listen: "127.0.0.1:{admin}"}}
log: {{access: "off"}}
listeners: [{{name: public, listen: "127.0.0.1:{port}"}}]
upstreams: {{app: {{targets: ["{up}"]}}}}
consumers:
  - name: erp
    ws_users: [{{username: erp-batch, password: "${{file:erp.password}}"}}]
routes:
  - name: soap
    match: {{path_prefix: /}}
    upstream: app
    policies:
      - {{type: xml_protection}}
      - {{type: ws_security, decrypt: {{key: "${{file:gateway.key}}", require: true}}}}
      - {{type: threat}}
"#,
            up = up.url()
        ),
    );
    let _gw = start_binary(&cfg, admin).await;
    let url = format!("http://127.0.0.1:{port}/soap");
    let send = |body: String| {
        let url = url.clone();
        async move { post_soap(&url, "\"urn:orders#GetOrder\"", &body).await }
    };
    let now = palisade_testkit::jwt::now_secs();
    let clear = |nonce: &[u8]| {
        digest_envelope("erp-batch", "correct horse battery staple", nonce, now)
            .replace("<id>1</id>", "<id>42</id>")
    };
    let encrypt = |cert: String, envelope: String| async move {
        let out = run_python("xmlenc_encrypt.py", vec![cert.into(), envelope.into()]).await;
        out[0]["envelope"].as_str().unwrap().to_string()
    };
    let sealed = encrypt(keys[0].clone(), clear(b"nonce-enc-0001")).await;
    assert!(sealed.contains("EncryptedData") && !sealed.contains("<id>42</id>"));
    let r = send(sealed.clone()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = up.requests();
    let forwarded = String::from_utf8_lossy(&seen[0].body).into_owned();
    assert!(
        forwarded.contains("<id>42</id>") && !forwarded.contains("EncryptedData"),
        "{forwarded}"
    );
    assert_eq!(seen[0].headers.get("x-palisade-consumer").unwrap(), "erp");

    // an injection inside the encrypted Body is seen by the detector after decryption
    let attack = clear(b"nonce-enc-0002").replace("<id>42</id>", "<id>1' OR '1'='1</id>");
    let r = send(encrypt(keys[0].clone(), attack).await).await;
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(r.text().contains("threat.detected"), "{}", r.text());

    let other = encrypt(keys[1].clone(), clear(b"nonce-enc-0003")).await;
    let cipher_start = sealed.rfind("<xenc:CipherValue>").unwrap() + "<xenc:CipherValue>".len();
    let mut changed = sealed.clone().into_bytes();
    changed[cipher_start + 5] = if changed[cipher_start + 5] == b'A' {
        b'B'
    } else {
        b'A'
    };
    let changed = String::from_utf8(changed).unwrap();
    for (what, body, code) in [
        ("changed ciphertext", changed, "wssec.decrypt_failed"),
        ("encrypted for another key", other, "wssec.decrypt_failed"),
        ("a Body in clear", clear(b"nonce-enc-0004"), "wssec.missing"),
    ] {
        let r = send(body).await;
        assert_eq!(r.status, 400, "{what}: {}", r.text());
        assert!(r.text().contains(code), "{what}: {}", r.text());
    }
    assert_eq!(
        up.requests().len(),
        1,
        "a refused message reached the service"
    );
}

/// `validate_responses`: the service's answer must be the operation's output element, valid
/// against the schema (or a Fault); anything else becomes a 502 Fault for the client.
#[tokio::test]
async fn answers_are_checked_against_the_wsdl_when_asked() {
    let service = palisade_testkit::DocServer::start().await;
    let dir = TempDir::new("soap-responses");
    dir.write("orders.wsdl", &WSDL.replace("BASE", "http://127.0.0.1"));
    let gw = crate::support::TestGateway::start_in(
        dir,
        &format!(
            r#"admin: {{listen: "127.0.0.1:0"}}
log: {{access: "off"}}
listeners: [{{name: public, listen: "127.0.0.1:0"}}]
upstreams: {{app: {{targets: ["{}"]}}}}
routes:
  - name: soap
    match: {{path_prefix: /}}
    upstream: app
    public: true
    policies: [{{type: soap_contract, wsdl: orders.wsdl, validate_responses: true}}]
"#,
            service.url()
        ),
    )
    .await;
    let request = r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><GetOrder xmlns="urn:orders"><id>1</id></GetOrder></soap:Body></soap:Envelope>"#;
    let answer = |body: &str| {
        format!(
            r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body>{body}</soap:Body></soap:Envelope>"#
        )
    };
    let url = gw.url("/soap");
    let call = || post_soap(&url, "\"urn:orders#GetOrder\"", request);
    for (what, body, status) in [
        (
            "the output element",
            r#"<GetOrderResponse xmlns="urn:orders"><status>shipped</status></GetOrderResponse>"#,
            200,
        ),
        (
            "a Fault",
            r#"<soap:Fault><faultcode>soap:Server</faultcode><faultstring>down</faultstring></soap:Fault>"#,
            200,
        ),
        (
            "another element",
            r#"<GetOrder xmlns="urn:orders"><id>1</id></GetOrder>"#,
            502,
        ),
        (
            "an element the schema does not have",
            r#"<GetOrderResponse xmlns="urn:orders"><status>shipped</status><debug>stack</debug></GetOrderResponse>"#,
            502,
        ),
    ] {
        service.set("/soap", &answer(body));
        let r = call().await;
        assert_eq!(r.status.as_u16(), status, "{what}: {}", r.text());
        if status == 502 {
            assert!(
                r.text().contains("soap.invalid_response") && r.text().contains("Fault"),
                "{what}: {}",
                r.text()
            );
            assert!(
                !r.text().contains("stack"),
                "the service's answer is withheld"
            );
        }
    }
}
