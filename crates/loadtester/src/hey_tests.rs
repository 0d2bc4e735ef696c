use std::time::Duration;

use super::*;

fn built_in(cmd: &str) -> LoadSpec {
    match plan(cmd) {
        Ok(Plan::BuiltIn(spec)) => *spec,
        other => panic!("{cmd}: expected a built-in load, got {other:?}"),
    }
}

fn header_value<'a>(spec: &'a LoadSpec, name: &str) -> Option<&'a str> {
    spec.headers
        .iter()
        .find(|(n, _)| n.as_str() == name)
        .and_then(|(_, v)| v.to_str().ok())
}

#[test]
fn parses_flagger_docs_commands() {
    struct Row {
        cmd: &'static str,
        stop: Stop,
        concurrency: usize,
        rate: Option<f64>,
        method: &'static str,
        url: &'static str,
    }
    let rows = [
        Row {
            cmd: "hey -z 1m -q 10 -c 2 http://podinfo-canary.test:9898/",
            stop: Stop::After(Duration::from_secs(60)),
            concurrency: 2,
            rate: Some(10.0),
            method: "GET",
            url: "http://podinfo-canary.test:9898/",
        },
        Row {
            cmd: "hey -n 50 -c 5 http://127.0.0.1:8080/",
            stop: Stop::Count(50),
            concurrency: 5,
            rate: None,
            method: "GET",
            url: "http://127.0.0.1:8080/",
        },
        Row {
            cmd: "hey http://a.b/",
            stop: Stop::Count(200),
            concurrency: 50,
            rate: None,
            method: "GET",
            url: "http://a.b/",
        },
        Row {
            cmd: "/usr/local/bin/hey -z=30s --c=4 -q=0 -m post https://x.y/api?a=1",
            stop: Stop::After(Duration::from_secs(30)),
            concurrency: 4,
            rate: None,
            method: "POST",
            url: "https://x.y/api?a=1",
        },
        Row {
            cmd: "hey -z 1m30s -q 2.5 -c 1 -- http://a.b/",
            stop: Stop::After(Duration::from_secs(90)),
            concurrency: 1,
            rate: Some(2.5),
            method: "GET",
            url: "http://a.b/",
        },
    ];
    for row in rows {
        let spec = built_in(row.cmd);
        assert_eq!(spec.stop, row.stop, "{}", row.cmd);
        assert_eq!(spec.concurrency, row.concurrency, "{}", row.cmd);
        assert_eq!(spec.rate_per_worker, row.rate, "{}", row.cmd);
        assert_eq!(spec.method.as_str(), row.method, "{}", row.cmd);
        assert_eq!(spec.url.as_str(), row.url, "{}", row.cmd);
    }
}

#[test]
fn parses_headers_body_and_options() {
    let spec = built_in(
        r#"hey -n 10 -c 1 -m POST -T application/json -d '{"a": 1}' -H "X-Canary: insider" -H 'Cookie: a=b' -host podinfo.local -t 5 -A text/plain -U probe -a user:pw -disable-keepalive -disable-redirects -h2 -disable-compression -cpus 2 -o csv http://a.b/"#,
    );
    assert_eq!(spec.body, Some(Body::Inline(r#"{"a": 1}"#.to_owned())));
    assert_eq!(
        header_value(&spec, "content-type"),
        Some("application/json")
    );
    assert_eq!(header_value(&spec, "x-canary"), Some("insider"));
    assert_eq!(header_value(&spec, "cookie"), Some("a=b"));
    assert_eq!(header_value(&spec, "host"), Some("podinfo.local"));
    assert_eq!(header_value(&spec, "accept"), Some("text/plain"));
    assert_eq!(header_value(&spec, "user-agent"), Some("probe"));
    assert_eq!(spec.basic_auth, Some(("user".to_owned(), "pw".to_owned())));
    assert_eq!(spec.request_timeout, Some(Duration::from_secs(5)));
    assert!(spec.disable_keepalive && spec.disable_redirects && spec.http2);
}

#[test]
fn applies_hey_defaults() {
    let spec = built_in("hey -n 1 -c 1 http://a.b/");
    assert_eq!(header_value(&spec, "content-type"), Some("text/html"));
    assert_eq!(header_value(&spec, "user-agent"), Some("hey/0.0.1"));
    assert_eq!(spec.request_timeout, Some(Duration::from_secs(20)));
    assert!(
        built_in("hey -t 0 -n 1 -c 1 http://a.b/")
            .request_timeout
            .is_none()
    );
    assert_eq!(
        built_in("hey -n 1 -c 1 -D /tmp/body.json http://a.b/").body,
        Some(Body::File("/tmp/body.json".to_owned()))
    );
}

#[test]
fn leaves_other_commands_to_the_shell() {
    for cmd in [
        "curl -sd 'test' http://podinfo-canary.test:9898/token | grep token",
        "hey -z 1m http://a/ && echo done",
        "ghz -z 1m --insecure podinfo:9999",
        "hey $TARGET",
        "heyy http://a.b/",
        "",
        "echo 'unterminated",
    ] {
        assert_eq!(plan(cmd), Ok(Plan::Shell), "{cmd}");
    }
}

#[test]
fn refuses_invalid_hey_commands_with_clear_errors() {
    let rows: &[(&str, &str)] = &[
        ("hey", "hey: missing URL"),
        ("hey -n 10 -c 1", "hey: missing URL"),
        (
            "hey -bogus http://a/",
            "hey: flag provided but not defined: -bogus",
        ),
        ("hey -n", "hey: flag needs an argument: -n"),
        (
            "hey -n ten http://a/",
            "hey: invalid value \"ten\" for flag -n: expected a number",
        ),
        ("hey -n 2 -c 5 http://a/", "hey: -n cannot be lower than -c"),
        (
            "hey -c 0 http://a/",
            "hey: invalid value \"0\" for flag -c: must be between 1 and 1000",
        ),
        (
            "hey -c 5000 -z 1s http://a/",
            "hey: invalid value \"5000\" for flag -c: must be between 1 and 1000",
        ),
        (
            "hey -z 1y http://a/",
            "hey: invalid value \"1y\" for flag -z: invalid duration \"1y\": expected a number followed by a unit (ns, us, ms, s, m, h), e.g. 30s or 1m30s",
        ),
        (
            "hey -z 0s http://a/",
            "hey: invalid value \"0s\" for flag -z: must be positive",
        ),
        (
            "hey -q -1 http://a/",
            "hey: invalid value \"-1\" for flag -q: must be a non-negative number",
        ),
        (
            "hey -H NoColon http://a/",
            "hey: invalid value \"NoColon\" for flag -H: expected \"Name: value\"",
        ),
        (
            "hey -m 'GE T' http://a/",
            "hey: invalid value \"GE T\" for flag -m: not an HTTP method",
        ),
        (
            "hey -o json http://a/",
            "hey: invalid value \"json\" for flag -o: the only supported output is csv",
        ),
        (
            "hey -disable-keepalive=maybe http://a/",
            "hey: invalid value \"maybe\" for flag -disable-keepalive: expected a boolean",
        ),
        (
            "hey ftp://a/",
            "hey: invalid URL \"ftp://a/\": only http and https are supported",
        ),
        (
            "hey not-a-url",
            "hey: invalid URL \"not-a-url\": relative URL without a base",
        ),
        (
            "hey http://a/ -n 5",
            "hey: unexpected argument \"-n\" after the URL (flags go before the URL)",
        ),
    ];
    for (cmd, want) in rows {
        match plan(cmd) {
            Err(e) => assert_eq!(e.to_string(), *want, "{cmd}"),
            other => panic!("{cmd}: expected an error, got {other:?}"),
        }
    }
}
