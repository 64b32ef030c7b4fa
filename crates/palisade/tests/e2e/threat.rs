//! Injection detection in every input location: path, query, headers, cookies, JSON and form
//! bodies; ordinary traffic untouched; refusals that never echo the payload.

use http::Method;
use palisade_testkit::{HttpClient, MockUpstream, Reply};

use crate::support::{assert_problem, simple, TestGateway};

async fn send(
    gw: &TestGateway,
    m: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Reply {
    HttpClient::h1()
        .send(m, &gw.url(path), headers, body.as_bytes())
        .await
        .unwrap()
}

#[tokio::test]
async fn attacks_in_every_location_are_refused_and_good_traffic_passes() {
    let up = MockUpstream::start("app").await;
    let gw = TestGateway::start(&simple(
        &up.url(),
        "[{type: threat, skip_fields: [bio]}]",
        "",
    ))
    .await;
    let json = ("content-type", "application/json");
    let form = ("content-type", "application/x-www-form-urlencoded");

    // ordinary traffic, including words that look like SQL or shell in prose
    let ok = [
        send(
            &gw,
            Method::GET,
            "/search?q=union+was+a+great+select&sort=name",
            &[],
            "",
        )
        .await,
        send(
            &gw,
            Method::GET,
            "/users/O'Brien",
            &[("user-agent", "Mozilla/5.0 (X11; Linux x86_64)")],
            "",
        )
        .await,
        send(
            &gw,
            Method::POST,
            "/notes",
            &[json],
            r#"{"text":"Rock & roll; cat lovers unite","tags":["a","b"]}"#,
        )
        .await,
        send(
            &gw,
            Method::POST,
            "/profile",
            &[json],
            r#"{"bio":"<script>alert(1)</script> (a skipped rich-text field)"}"#,
        )
        .await,
        send(
            &gw,
            Method::POST,
            "/login",
            &[form],
            "user=ada&note=I'd+like+2+apples",
        )
        .await,
    ];
    for r in &ok {
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let passed = up.requests().len();

    type Attack<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str)>, &'a str, &'a str);
    let attacks: [Attack; 8] = [
        (
            "GET",
            "/users/1%27%20OR%20%271%27%3D%271",
            vec![],
            "",
            "sqli detected in the path",
        ),
        (
            "GET",
            "/search?q=%3Cscript%3Ealert(1)%3C%2Fscript%3E",
            vec![],
            "",
            "xss detected in a query parameter",
        ),
        (
            "GET",
            "/files?name=..%2F..%2F..%2Fetc%2Fpasswd",
            vec![],
            "",
            "detected in a query parameter",
        ),
        (
            "GET",
            "/fetch",
            vec![("x-callback", "http://169.254.169.254/latest/meta-data/")],
            "",
            "ssrf detected in a header",
        ),
        (
            "GET",
            "/",
            vec![("cookie", "session=abc; pref=1;sleep(5)#")],
            "",
            "detected in a cookie",
        ),
        (
            "POST",
            "/notes",
            vec![json],
            r#"{"filter":{"owner":{"$ne":null}}}"#,
            "nosql detected in the JSON body",
        ),
        (
            "POST",
            "/render",
            vec![json],
            r#"{"template":"{{7*7}}"}"#,
            "template detected in the JSON body",
        ),
        (
            "POST",
            "/ping",
            vec![form],
            "host=127.0.0.1%3B+cat+%2Fetc%2Fshadow",
            "detected in a form field",
        ),
    ];
    for (m, path, headers, body, detail) in attacks {
        let r = send(&gw, m.parse().unwrap(), path, &headers, body).await;
        assert_problem(&r, 403, "threat.detected");
        assert!(r.text().contains(detail), "{path}: {}", r.text());
        for leak in ["etc/passwd", "169.254", "$ne", "7*7", "script"] {
            assert!(
                !r.text().contains(leak),
                "the payload is echoed: {}",
                r.text()
            );
        }
    }
    assert_eq!(
        up.requests().len(),
        passed,
        "no attack reached the upstream"
    );
}

#[tokio::test]
async fn monitor_mode_counts_without_refusing() {
    let up = MockUpstream::start("app").await;
    let gw = TestGateway::start(&simple(
        &up.url(),
        "[{type: threat, mode: monitor, classes: [sqli]}]",
        "",
    ))
    .await;
    let r = send(
        &gw,
        Method::GET,
        "/x?id=1%27%20OR%20%271%27%3D%271",
        &[],
        "",
    )
    .await;
    assert_eq!(r.status, 200);
    // only the configured classes
    let r = send(
        &gw,
        Method::GET,
        "/x?q=%3Cscript%3Ealert(1)%3C%2Fscript%3E",
        &[],
        "",
    )
    .await;
    assert_eq!(r.status, 200);
    let m = gw.metrics().await;
    assert!(
        m.contains("palisade_policy_decisions_total{kind=\"threat\",verdict=\"monitor_deny\",code=\"threat.detected\"} 1"),
        "{m}"
    );
}

#[tokio::test]
async fn with_a_contract_typed_fields_are_checked_by_type_not_scanned() {
    // the demo description: /users/{id} takes an integer id; a route with both policies
    let up = MockUpstream::start("app").await;
    let spec =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/demo-openapi.json");
    let yaml = simple(
        &up.url(),
        &format!(
            "[{{type: contract, spec: \"{}\"}}, {{type: threat}}]",
            spec.display()
        ),
        "",
    );
    let gw = TestGateway::start(&yaml).await;
    // an integer id passes both
    assert_eq!(
        send(&gw, Method::GET, "/users/7", &[], "").await.status,
        200
    );
    // an injection where an integer is expected is refused by type, before any scanning
    let r = send(&gw, Method::GET, "/users/1%20OR%201=1", &[], "").await;
    assert_problem(&r, 400, "contract.invalid_request");
    // a free-text field is still scanned
    let r = send(
        &gw,
        Method::POST,
        "/users",
        &[("content-type", "application/json")],
        r#"{"name":"<script>alert(1)</script>"}"#,
    )
    .await;
    assert_problem(&r, 403, "threat.detected");
    assert_eq!(
        send(
            &gw,
            Method::POST,
            "/users",
            &[("content-type", "application/json")],
            r#"{"name":"Ada"}"#
        )
        .await
        .status,
        200
    );
}

#[tokio::test]
async fn multipart_fields_file_names_and_odd_content_types_are_inspected() {
    let up = MockUpstream::start("app").await;
    let gw = TestGateway::start(&simple(&up.url(), "[{type: threat}]", "")).await;
    let mp = (
        "content-type",
        "multipart/form-data; boundary=PalisadeB0undary",
    );
    let part = |disposition: &str, ctype: Option<&str>, data: &str| {
        let ct = ctype
            .map(|t| format!("Content-Type: {t}\r\n"))
            .unwrap_or_default();
        format!("--PalisadeB0undary\r\nContent-Disposition: form-data; {disposition}\r\n{ct}\r\n{data}\r\n")
    };
    let end = "--PalisadeB0undary--\r\n";

    // a good upload passes byte for byte; binary content is not read as text
    let good = format!(
        "{}{}{}{end}",
        part(
            "name=\"title\"",
            Some("text/plain; charset=utf-8"),
            "Quarterly report; draft 2"
        ),
        part(
            "name=\"meta\"",
            Some("application/json"),
            r#"{"tags":["q3","finance"]}"#
        ),
        part(
            "name=\"file\"; filename=\"report.bin\"",
            Some("application/octet-stream"),
            "' OR 1=1 -- <script>bytes that only look like text</script>"
        ),
    );
    let r = send(&gw, Method::POST, "/upload", &[mp], &good).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(up.requests().last().unwrap().body, good.as_bytes());
    let passed = up.requests().len();

    let attacks = [
        (
            vec![mp],
            format!("{}{end}", part("name=\"q\"", None, "1' UNION SELECT password FROM users--")),
            "sqli detected in a multipart field",
        ),
        (
            vec![mp],
            format!(
                "{}{end}",
                part("name=\"doc\"; filename=\"../../../../etc/passwd\"", Some("text/plain"), "x")
            ),
            "detected in a multipart field",
        ),
        (
            vec![mp],
            format!(
                "{}{end}",
                part("name=\"meta\"", Some("application/json"), r#"{"where":{"$where":"sleep(5000)"}}"#)
            ),
            "nosql detected in a multipart field",
        ),
        // a body the gateway cannot parse as its type says is scanned whole, not let through
        (
            vec![mp],
            "--PalisadeB0undary\r\nContent-Disposition: form-data; name=\"q\"\r\n\r\n<script>alert(1)</script>".to_string(),
            "xss detected in the body",
        ),
        (
            vec![("content-type", "application/json")],
            r#"{"name": "x' OR '1'='1" "#.to_string(),
            "sqli detected in the body",
        ),
        // JSON under another content type is still read as JSON
        (
            vec![("content-type", "text/plain")],
            r#"{"comment":"<img src=x onerror=alert(1)>"}"#.to_string(),
            "xss detected in the body",
        ),
        (vec![], "; cat /etc/passwd".to_string(), "detected in the body"),
        // the parts' own headers: parameters by their grammar, others whole
        (
            vec![mp],
            format!(
                "{}{end}",
                part("name=\"note\"", Some("text/plain; charset=\"x' UNION SELECT password FROM users--\""), "hello")
            ),
            "sqli detected in a multipart part header",
        ),
        (
            vec![mp],
            format!(
                "--PalisadeB0undary\r\nContent-Disposition: form-data; name=\"note\"\r\nX-Comment: <script>alert(1)</script>\r\n\r\nhello\r\n{end}"
            ),
            "xss detected in a multipart part header",
        ),
    ];
    for (headers, body, detail) in attacks {
        let r = send(&gw, Method::POST, "/upload", &headers, &body).await;
        assert_problem(&r, 403, "threat.detected");
        assert!(r.text().contains(detail), "{body}: {}", r.text());
    }
    assert_eq!(
        up.requests().len(),
        passed,
        "no attack reached the upstream"
    );
}

#[tokio::test]
async fn sensitivity_is_configured_per_route() {
    let up = MockUpstream::start("app").await;
    let markup = "/notes?text=%3Cb%3Ebold%3C%2Fb%3E";
    let gw = TestGateway::start(&simple(&up.url(), "[{type: threat}]", "")).await;
    assert_eq!(
        send(&gw, Method::GET, markup, &[], "").await.status,
        200,
        "medium: markup alone passes"
    );
    let gw = TestGateway::start(&simple(
        &up.url(),
        "[{type: threat, sensitivity: high}]",
        "",
    ))
    .await;
    let r = send(&gw, Method::GET, markup, &[], "").await;
    assert_problem(&r, 403, "threat.detected");
    let gw = TestGateway::start(&simple(&up.url(), "[{type: threat, sensitivity: low}]", "")).await;
    assert_eq!(
        send(
            &gw,
            Method::GET,
            "/logs?file=%2Fvar%2Flog%2Fapp.log",
            &[],
            ""
        )
        .await
        .status,
        200,
        "low: a path alone passes"
    );
    let r = send(
        &gw,
        Method::GET,
        "/logs?file=..%2F..%2Fetc%2Fshadow",
        &[],
        "",
    )
    .await;
    assert_problem(&r, 403, "threat.detected");
}

/// No JSON is passed uninspected for being deep: an injection at the deepest level the
/// bound allows is found, a body nested past it is refused (also past serde_json's own
/// recursion limit, and inside a multipart part and under a text content type).
#[tokio::test]
async fn deep_json_is_inspected_or_refused_never_passed() {
    let up = MockUpstream::start("app").await;
    let gw = TestGateway::start(&simple(&up.url(), "[{type: threat}]", "")).await;
    let nested = |depth: usize, leaf: &str| {
        format!(
            r#"{}"{leaf}"{}"#,
            r#"{"a":"#.repeat(depth),
            "}".repeat(depth)
        )
    };
    let sqli = "1' UNION SELECT password FROM users--";
    let json = ("content-type", "application/json");
    for depth in [1, 32, 63, 64] {
        let r = send(&gw, Method::POST, "/x", &[json], &nested(depth, sqli)).await;
        assert_problem(&r, 403, "threat.detected");
    }
    for depth in [65, 100, 200, 5000] {
        let r = send(&gw, Method::POST, "/x", &[json], &nested(depth, sqli)).await;
        assert_problem(&r, 400, "threat.uninspectable");
        // a clean body that deep is refused too: it cannot be inspected whole
        let r = send(&gw, Method::POST, "/x", &[json], &nested(depth, "fine")).await;
        assert_problem(&r, 400, "threat.uninspectable");
    }
    let r = send(
        &gw,
        Method::POST,
        "/x",
        &[("content-type", "text/plain")],
        &nested(80, "fine"),
    )
    .await;
    assert_problem(&r, 400, "threat.uninspectable");
    let part = format!(
        "--b\r\nContent-Disposition: form-data; name=\"doc\"\r\n\r\n{}\r\n--b--\r\n",
        nested(80, "fine")
    );
    let r = send(
        &gw,
        Method::POST,
        "/x",
        &[("content-type", "multipart/form-data; boundary=b")],
        &part,
    )
    .await;
    assert_problem(&r, 400, "threat.uninspectable");
    // ordinary nesting passes
    let r = send(&gw, Method::POST, "/x", &[json], &nested(10, "fine")).await;
    assert_eq!(r.status, 200);
    assert_eq!(up.requests().len(), 1);
}

/// A request of the cases below: path, headers, body.
type Case = (&'static str, Vec<(&'static str, &'static str)>, String);

/// Good traffic that earlier versions refused, through the real binary at every sensitivity:
/// XML and SOAP bodies (an element named `body` or `xml`, namespaces), a Referer or Origin of
/// an intranet or development page, real browser User-Agents with the locales `id`, `sh`,
/// `ps-AF`, `cat-ES`, a Referer with `&id=7`, prose with `; if`, `; delete`, `; begin`,
/// `; declare`, `; waitfor`. Beside each, the attack of the same shape is still refused.
#[tokio::test]
async fn markup_page_addresses_locales_and_prose_are_not_attacks() {
    let up = MockUpstream::start("app").await;
    for sens in ["low", "medium", "high"] {
        let gw = TestGateway::start(&simple(
            &up.url(),
            &format!("[{{type: threat, sensitivity: {sens}}}]"),
            "",
        ))
        .await;
        let xml = ("content-type", "application/xml");
        let soap = ("content-type", "application/soap+xml; charset=utf-8");
        let json = ("content-type", "application/json");
        let good: Vec<Case> = vec![
            ("/x", vec![xml], "<a xmlns=\"urn:x\">hi</a>".into()),
            ("/x", vec![xml], "<?xml version=\"1.0\"?><body><xml>an order</xml></body>".into()),
            ("/x", vec![soap], "<soap:Envelope xmlns:soap=\"http://www.w3.org/2003/05/soap-envelope\"><soap:Body><m:GetPrice xmlns:m=\"urn:shop\"><m:Item>Apples &amp; pears</m:Item></m:GetPrice></soap:Body></soap:Envelope>".into()),
            ("/x", vec![("referer", "http://localhost:3000/admin/page")], String::new()),
            ("/x", vec![("referer", "http://192.168.1.10/app/index.html")], String::new()),
            ("/x", vec![("origin", "http://127.0.0.1:8080")], String::new()),
            ("/x", vec![("referer", "https://shop.example.com/list?x=1&id=7")], String::new()),
            ("/x", vec![("user-agent", "Mozilla/5.0 (Linux; U; Android 4.0.3; id; GT-I9100 Build/IML74K) AppleWebKit/534.30 (KHTML, like Gecko) Version/4.0 Mobile Safari/534.30")], String::new()),
            ("/x", vec![("user-agent", "Mozilla/5.0 (X11; U; Linux i686; sh; rv:1.9.2.3) Gecko/20100401 Firefox/3.6.3")], String::new()),
            ("/x", vec![("user-agent", "Mozilla/5.0 (Windows; U; Windows NT 6.1; ps-AF) AppleWebKit/533.19.4 (KHTML, like Gecko) Version/5.0.3 Safari/533.19.4")], String::new()),
            ("/x", vec![("user-agent", "Mozilla/5.0 (Windows; U; Windows NT 5.1; cat-ES; rv:1.9.0.1) Gecko/2008070208 Firefox/3.0.1")], String::new()),
            ("/x", vec![json], r#"{"note":"Done; if needed I can resend."}"#.into()),
            ("/x", vec![json], r#"{"note":"Fine; delete the old one please; begin when ready"}"#.into()),
            ("/x", vec![json], r#"{"note":"Noted; declare it in the form; waitfor me"}"#.into()),
        ];
        for (path, headers, body) in &good {
            let m = if body.is_empty() {
                Method::GET
            } else {
                Method::POST
            };
            let r = send(&gw, m, path, headers, body).await;
            assert_eq!(r.status, 200, "{sens}: {headers:?} {body}: {}", r.text());
        }
        let bad: Vec<(Vec<(&str, &str)>, &str)> = vec![
            (vec![xml], "<a>&lt;script&gt;alert(1)&lt;/script&gt;</a>"),
            (vec![xml], "<a href=\"javascript:alert(1)\">x</a>"),
            (vec![xml], "<!DOCTYPE a [<!ENTITY x SYSTEM \"file:///etc/passwd\">]><a>&x;</a>"),
            (vec![soap], "<soap:Envelope xmlns:soap=\"urn:s\"><soap:Body><q>1' OR '1'='1</q></soap:Body></soap:Envelope>"),
            (vec![json], r#"{"q":"1; if (1=1) waitfor delay '0:0:5'--"}"#),
            (vec![json], r#"{"q":"1; begin declare @x varchar(99); exec(@x); end"}"#),
            (vec![json], r#"{"q":"1; delete users where 1=1"}"#),
            (vec![json], r#"{"q":"1;waitfor delay '0:0:5'"}"#),
        ];
        for (headers, body) in &bad {
            let r = send(&gw, Method::POST, "/x", headers, body).await;
            assert_eq!(r.status, 403, "{sens}: {body}");
            if headers.contains(&soap) {
                // a SOAP request's refusal is a SOAP Fault of its version (tests/e2e/soap.rs)
                assert!(
                    r.text().contains("<p:code>threat.detected</p:code>"),
                    "{}",
                    r.text()
                );
            } else {
                assert_problem(&r, 403, "threat.detected");
            }
        }
        for headers in [
            vec![("referer", "https://shop.example.com/list?q=1' or '1'='1")],
            vec![("user-agent", "() { :; }; /bin/bash -c 'cat /etc/passwd'")],
            vec![("user-agent", "Mozilla/5.0 <script>alert(1)</script>")],
        ] {
            let r = send(&gw, Method::GET, "/x", &headers, "").await;
            assert_eq!(r.status, 403, "{sens}: {headers:?}");
        }
    }
}

/// Standard headers are read by their grammar, no longer skipped: a real browser's headers
/// pass untouched, an injection in an `Accept`, a `Content-Type` parameter, an
/// `Authorization` or a cookie's name is refused.
#[tokio::test]
async fn standard_headers_are_read_by_their_grammar_and_cookie_names_too() {
    let up = MockUpstream::start("app").await;
    let gw = TestGateway::start(&simple(&up.url(), "[{type: threat}]", "")).await;
    let browser: Vec<(&str, &str)> = vec![
        ("accept", "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7"),
        ("accept-encoding", "gzip, deflate, br, zstd"),
        ("accept-language", "en-GB,en-US;q=0.9,en;q=0.8,fr;q=0.7"),
        ("cache-control", "max-age=0"),
        ("if-none-match", "W/\"5e3-18c2b1e0a40\""),
        ("if-modified-since", "Tue, 02 Dec 2025 10:00:00 GMT"),
        ("authorization", "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1MSJ9.c2lnbmF0dXJl"),
        ("cookie", "_ga=GA1.1.123456789.1700000000; theme=dark; session_id=8f14e45fceea167a"),
        ("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
    ];
    let r = send(&gw, Method::GET, "/page", &browser, "").await;
    assert_eq!(r.status, 200, "{}", r.text());
    for (name, value) in [
        ("accept", "text/html<script>alert(1)</script>"),
        ("accept-language", "en-US,en;q=0.9' and sleep(5)--"),
        ("content-type", "application/json; charset=\"' or '1'='1\""),
        ("authorization", "Bearer ' or 1=1--"),
        ("if-none-match", "\"<svg onload=alert(1)>\""),
        ("cookie", "theme=dark; <script>alert(1)</script>=1"),
        ("cookie", "a' or '1'='1=x"),
    ] {
        let r = send(&gw, Method::GET, "/page", &[(name, value)], "").await;
        assert_eq!(r.status, 403, "{name}: {value}: {}", r.text());
        assert_problem(&r, 403, "threat.detected");
    }
}

/// GraphQL over JSON: real queries (variables, fragments, aliases, directives, mutations)
/// pass; an injection in the variables, or inline in the query's arguments, is refused.
#[tokio::test]
async fn graphql_documents_pass_and_injections_in_their_variables_do_not() {
    let up = MockUpstream::start("app").await;
    let gw = TestGateway::start(&simple(&up.url(), "[{type: threat}]", "")).await;
    let json = [("content-type", "application/json")];
    let good = [
        r#"{"query":"query GetUser($id: ID!) { user(id: $id) { id name email posts(first: 10, orderBy: {field: CREATED_AT, direction: DESC}) { edges { node { id title } } } } }","variables":{"id":"VXNlcjo0Mg=="},"operationName":"GetUser"}"#,
        r#"{"query":"fragment UserParts on User { id name avatarUrl(size: 64) }\nquery Viewer { viewer { ...UserParts friends(first: 5) @include(if: true) { totalCount } } }"}"#,
        r#"{"query":"mutation AddComment($input: AddCommentInput!) { addComment(input: $input) { comment { id body createdAt } } }","variables":{"input":{"subjectId":"MDU6SXNzdWUx","body":"Looks good to me; merging after CI (2 of 3 checks passed)."}}}"#,
        r#"{"query":"{ search(query: \"rust async book\", type: REPOSITORY, first: 3) { repositoryCount nodes { ... on Repository { nameWithOwner stargazerCount } } } }"}"#,
    ];
    for body in good {
        let r = send(&gw, Method::POST, "/graphql", &json, body).await;
        assert_eq!(r.status, 200, "{body}: {}", r.text());
    }
    let attacks = [
        (
            r#"{"query":"query GetUser($id: ID!) { user(id: $id) { name } }","variables":{"id":"1' UNION SELECT password FROM users--"}}"#,
            "sqli",
        ),
        (
            r#"{"query":"mutation AddComment($input: AddCommentInput!) { addComment(input: $input) { comment { id } } }","variables":{"input":{"body":"<img src=x onerror=alert(document.cookie)>"}}}"#,
            "xss",
        ),
        (
            r#"{"query":"{ user(name: \"x' OR '1'='1\") { id } }"}"#,
            "sqli",
        ),
        (
            r#"{"query":"query($f: String) { file(path: $f) { content } }","variables":{"f":"../../../../etc/passwd"}}"#,
            "detected",
        ),
    ];
    let passed = up.requests().len();
    for (body, what) in attacks {
        let r = send(&gw, Method::POST, "/graphql", &json, body).await;
        assert_problem(&r, 403, "threat.detected");
        assert!(r.text().contains(what), "{body}: {}", r.text());
    }
    assert_eq!(up.requests().len(), passed);
}
