use serde_json::json;

use super::*;

fn service_schema() -> Fields {
    fields([
        ("ID", Kind::Str),
        ("Service", Kind::Str),
        ("Tags", Kind::StrList),
        ("Port", Kind::Int),
        ("EnableTagOverride", Kind::Bool),
        ("Meta", Kind::Map(Box::new(Kind::Str))),
        (
            "Weights",
            Kind::Struct(fields([("Passing", Kind::Int), ("Warning", Kind::Int)])),
        ),
        (
            "Checks",
            Kind::StructList(fields([("Status", Kind::Str), ("CheckID", Kind::Str)])),
        ),
    ])
}

fn web() -> Value {
    json!({"ID": "web-1", "Service": "web", "Tags": ["prod", "keep-me"], "Port": 8080,
        "EnableTagOverride": false, "Meta": {"env": "qa"}, "Weights": {"Passing": 1, "Warning": 1},
        "Checks": [{"Status": "passing", "CheckID": "a"}, {"Status": "critical", "CheckID": "b"}]})
}

fn m(expr: &str) -> bool {
    Filter::new(expr, &service_schema())
        .unwrap_or_else(|e| panic!("{expr}: {e}"))
        .matches(&web())
}

#[test]
fn operators_follow_go_bexpr() {
    assert!(m(r#""keep-me" in Tags"#));
    assert!(m(r#""nope" not in Tags"#));
    assert!(m(r#"Tags contains "prod""#));
    assert!(m("Service == `web`"));
    assert!(m(r#"Service != "db""#));
    assert!(
        m(r#""we" in Service"#),
        "in on a string is a substring test"
    );
    assert!(m(r#"Service matches "^w.b$""#));
    assert!(m(r#"Service not matches "db""#));
    assert!(m("Port == 8080"));
    assert!(m(r#"Port == "0x1F90""#), "base-0 integers, quoted");
    assert!(m("EnableTagOverride == false"));
    assert!(m(r#"Meta.env == "qa""#));
    assert!(m(r#"Meta["env"] == "qa""#));
    assert!(m(r#""env" in Meta"#), "in on a map is a key test");
    assert!(!m(r#"Meta.missing == "qa""#));
    assert!(
        m(r#"Meta.missing != "qa""#),
        "a missing key answers true to !="
    );
    assert!(m(r#"Meta.missing matches "x""#), "v0.1.2's quirk, kept");
    assert!(m("Tags is not empty"));
    assert!(m("Weights.Passing == 1"));
    assert!(m(r#"Checks.Status == "critical""#), "any element");
    assert!(
        m(r#"Checks.Status != "passing""#),
        "some check is not passing"
    );
    assert!(!m(r#"not Checks.Status == "passing""#));
    assert!(m(r#"Service == web and (Port == 1 or "prod" in Tags)"#));
    assert!(m(r#"not Service == db"#));
    assert!(m(r#"(Service == "web")"#));
    let no_checks = json!({"Service": "x", "Checks": []});
    let f = Filter::new(r#"Checks.Status != "passing""#, &service_schema()).unwrap();
    assert!(
        !f.matches(&no_checks),
        "no element: false, whatever the operator"
    );
}

#[test]
fn precedence_is_not_then_and_then_or() {
    // a and not b or c == (a and (not b)) or c
    assert!(m(r#"Service == "db" and not Port == 1 or Port == 8080"#));
    assert!(!m(r#"Service == "db" and (not Port == 1 or Port == 8080)"#));
}

fn err(expr: &str) -> String {
    Filter::new(expr, &service_schema())
        .unwrap_err()
        .to_string()
}

#[test]
fn parse_errors_read_as_go_bexprs() {
    let p = "Failed to create boolean expression evaluator: ";
    for (input, want) in [
        (
            r#"foo == "12x"#,
            r#"1:12 (11): rule "string": Unterminated string literal"#,
        ),
        (
            "foo == 3x",
            r#"1:9 (8): rule "number": Invalid number literal"#,
        ),
        ("foo[3] == abc", r#"1:5 (4): rule "index": Invalid index"#),
        (
            r#"x in foo["abc""#,
            r#"1:15 (14): rule "index": Unclosed index expression"#,
        ),
        ("x in 32", r#"1:6 (5): rule "match": Invalid selector"#),
        (
            "32 == 32",
            r#"1:4 (3): no match found, expected: "in", "not" or [ \t\r\n]"#,
        ),
        (
            "x in foo abc",
            r#"1:10 (9): no match found, expected: "and", "or", [ \t\r\n] or EOF"#,
        ),
        (
            "(foo == 4",
            r#"1:10 (9): rule "grouping": Unmatched parentheses"#,
        ),
    ] {
        assert_eq!(err(input), format!("{p}{want}"), "{input}");
    }
    assert!(err("not a valid expression((").starts_with(p));
    assert!(err("").starts_with(p));
}

#[test]
fn selectors_operators_and_values_are_checked_before_anything_is_read() {
    let p = "Failed to create boolean expression evaluator: ";
    assert_eq!(
        err("Foo == 1"),
        format!(r#"{p}Selector "Foo" is not valid"#)
    );
    assert_eq!(
        err("Weights.Heavy == 1"),
        format!(r#"{p}Selector "Weights.Heavy" is not valid"#)
    );
    assert_eq!(
        err(r#"Port matches "1""#),
        format!(r#"{p}Invalid match operator "Matches" for selector "Port""#)
    );
    assert_eq!(
        err("Service is empty"),
        format!(r#"{p}Invalid match operator "Is Empty" for selector "Service""#)
    );
    assert!(err("Port == 80.5").contains("Failed to coerce value \"80.5\" for selector \"Port\""));
    assert!(err("EnableTagOverride == maybe").contains("Failed to coerce"));
    assert!(err(r#"Service matches "(""#).contains("Failed to compile regular expression"));
    assert!(
        err("service == web").contains(r#"Selector "service" is not valid"#),
        "selectors are case-sensitive"
    );
}

#[test]
fn go_integer_and_string_literals() {
    assert_eq!(parse_int("017"), Some(15), "a leading 0 is octal");
    assert_eq!(parse_int("0b101"), Some(5));
    assert_eq!(parse_int("1_000"), Some(1000));
    assert_eq!(parse_int("-0x10"), Some(-16));
    assert_eq!(parse_int("80.0"), None);
    assert_eq!(unquote(r"a\tb\x41\u00e9").as_deref(), Some("a\tbAé"));
    assert_eq!(unquote(r"bad\q"), None);
    assert!(m("Service == \"w\\x65b\""));
}
