//! The rule language and the authorizer against Consul's behaviour (acl/policy_test.go,
//! acl/policy_authorizer_test.go and the spec in notes/spec/consul-acl.md §1-2).

use super::builtin::{fnv1a_128, FNV128A_EMPTY};
use super::*;

fn policy(rules: &str) -> Policy {
    parse(rules).unwrap_or_else(|e| panic!("{rules:?}: {e}"))
}

fn authz(rules: &[&str], default: Default) -> Authorizer {
    let policies: Vec<Policy> = rules.iter().map(|r| policy(r)).collect();
    Authorizer::new(&policies, default)
}

fn error(rules: &str) -> RulesError {
    match parse(rules) {
        Ok(p) => panic!("{rules:?} parsed: {p:?}"),
        Err(e) => e,
    }
}

const ACCESSES: [Access; 3] = [Access::Read, Access::List, Access::Write];

/// Every check's answer on a few segments, to compare two authorizers.
fn answers(a: &Authorizer) -> Vec<bool> {
    let mut out = Vec::new();
    for r in Resource::ALL {
        for seg in ["", "foo", "foo/bar", "web", "*", "zzz"] {
            for acc in ACCESSES {
                out.push(a.allowed(r, seg, acc));
            }
        }
        out.push(a.read_all(r));
    }
    for p in ["", "foo/", "foo/bar", "x"] {
        out.push(a.key_write_prefix(p));
    }
    out.push(a.service_write_any());
    out.push(a.snapshot());
    out
}

#[test]
fn global_management_allows_everything_even_over_default_deny() {
    let p = policy(global_management_rules());
    assert_eq!(p.scalar(Resource::Acl), Some(Level::Write));
    assert_eq!(p.prefix(Resource::Intention, ""), Some(Level::Write));
    let a = Authorizer::new(&[p], Default::Deny);
    for r in Resource::ALL {
        for acc in ACCESSES {
            assert!(a.allowed(r, "anything/at/all", acc), "{r}:{acc}");
        }
        assert!(a.read_all(r), "{r}");
    }
    assert!(a.snapshot());
    assert!(a.key_write_prefix(""));
    assert!(a.service_write_any());
    assert!(a.allowed(Resource::Intention, "*", Access::Write));
    assert_eq!(answers(&a), answers(&Authorizer::manage_all()));
}

#[test]
fn global_read_only_reads_everything_and_writes_nothing() {
    assert_eq!(
        global_read_only_rules(),
        global_management_rules().replace("write", "read")
    );
    // Rules decide, so the default allow does not add writes.
    let a = authz(&[global_read_only_rules()], Default::Allow);
    for r in Resource::ALL {
        assert!(a.allowed(r, "x", Access::Read), "{r}");
        assert!(!a.allowed(r, "x", Access::Write), "{r}");
        assert!(a.read_all(r), "{r}");
    }
    assert!(
        !a.allowed(Resource::Key, "x", Access::List),
        "read does not grant list"
    );
    assert!(!a.snapshot());
    assert!(!a.key_write_prefix("x/"));
    assert!(!a.service_write_any());
    assert!(a.allowed(Resource::Intention, "*", Access::Read));
    assert!(!a.allowed(Resource::Intention, "*", Access::Write));
}

#[test]
fn hcl_and_json_of_one_policy_agree() {
    let hcl = r#"
        acl = "read"
        key_prefix "foo/" { policy = "write" }
        key "foo/bar" { policy = "deny" }
        service "web" { policy = "write" intentions = "deny" }
        service_prefix "" { policy = "read" }
        node_prefix "" { policy = "list" }
        operator = "read"
    "#;
    let json = r#"{
        "acl": "read",
        "key_prefix": {"foo/": {"policy": "write"}},
        "key": {"foo/bar": {"policy": "deny"}},
        "service": {"web": {"policy": "write", "intentions": "deny"}},
        "service_prefix": {"": {"policy": "read"}},
        "node_prefix": {"": {"policy": "list"}},
        "operator": "read"
    }"#;
    let list_form = r#"{
        "acl": "read",
        "key_prefix": [{"foo/": [{"policy": "write"}]}],
        "key": [{"foo/bar": [{"policy": "deny"}]}],
        "service": [{"web": [{"policy": "write", "intentions": "deny"}]}],
        "service_prefix": [{"": [{"policy": "read"}]}],
        "node_prefix": [{"": [{"policy": "list"}]}],
        "operator": "read"
    }"#;
    // `list` on nodes is invalid; the three must fail alike, then agree once it is fixed.
    let texts = [hcl, json, list_form];
    for t in texts {
        assert_eq!(
            error(t).to_string(),
            r#"Invalid node_prefix policy: "" has policy "list""#
        );
    }
    let fixed: Vec<String> = texts.iter().map(|t| t.replace("list", "read")).collect();
    let ps: Vec<Policy> = fixed.iter().map(|t| policy(t)).collect();
    assert_eq!(ps[0], ps[1]);
    assert_eq!(ps[0], ps[2]);
    let hcl_answers = answers(&Authorizer::new(&ps[..1], Default::Deny));
    assert_eq!(
        hcl_answers,
        answers(&Authorizer::new(&ps[1..2], Default::Deny))
    );
    assert_eq!(
        hcl_answers,
        answers(&Authorizer::new(&ps[2..], Default::Deny))
    );
    let a = Authorizer::new(&ps[1..2], Default::Deny);
    assert!(a.allowed(Resource::Key, "foo/x", Access::Write));
    assert!(!a.allowed(Resource::Key, "foo/bar", Access::Read));
    assert!(!a.allowed(Resource::Intention, "web", Access::Read));
}

#[test]
fn the_forms_py_consul_and_users_send() {
    let a = authz(
        &[r#"{"key_prefix": {"": {"policy": "read"}}}"#],
        Default::Deny,
    );
    assert!(a.allowed(Resource::Key, "any/key", Access::Read));
    assert!(!a.allowed(Resource::Key, "any/key", Access::Write));
    let op = policy(r#"  {"operator": "read"}"#);
    assert_eq!(op.scalar(Resource::Operator), Some(Level::Read));
    assert!(policy("{}").is_empty());
    assert!(policy("").is_empty());
    assert!(policy("  \n# nothing\n// at all\n/* here */").is_empty());
}

#[test]
fn hcl_v1_syntax_as_consul_users_write_it() {
    let p = policy(
        r#"
        # comment
        KEY_PREFIX "a/" { Policy = "WRITE" } // case-insensitive keys and levels
        key "q\"uo\\te" { policy = "read", }
        service "web" {
            policy = "write"
            intentions = "read"
            unknown_attr = ["x", 1, true, { nested = "ok" }]
        }
        service "web" { policy = "deny" } /* repeated label: deny wins */
        unknown_top = { anything = "goes" }
        key_prefix = { "b/" = { policy = "list" } }
        operator = "write"
        operator = "read"
        mesh = "write", mesh = ""
        "event" "quoted-key" { policy = "write" }
        node "\x41\u00e9\101\t" { policy = "read" }
        "#,
    );
    assert_eq!(p.prefix(Resource::Key, "a/"), Some(Level::Write));
    assert_eq!(p.exact(Resource::Key, "q\"uo\\te"), Some(Level::Read));
    assert_eq!(p.exact(Resource::Service, "web"), Some(Level::Deny));
    assert_eq!(p.exact(Resource::Intention, "web"), Some(Level::Read));
    assert_eq!(p.prefix(Resource::Key, "b/"), Some(Level::List));
    assert_eq!(p.scalar(Resource::Operator), Some(Level::Read), "last wins");
    assert_eq!(p.scalar(Resource::Mesh), None, "an empty value unsets");
    assert_eq!(p.exact(Resource::Event, "quoted-key"), Some(Level::Write));
    assert_eq!(p.exact(Resource::Key, "a/"), None, "prefix and exact apart");
    assert_eq!(
        p.exact(Resource::Node, "AéA\t"),
        Some(Level::Read),
        "Go escapes"
    );
}

#[test]
fn exact_rule_beats_prefix_and_there_is_no_cross_key_deny() {
    let a = authz(
        &[r#"key_prefix "" { policy = "deny" }
             key "foo" { policy = "read" }"#],
        Default::Allow,
    );
    assert!(a.allowed(Resource::Key, "foo", Access::Read));
    assert!(!a.allowed(Resource::Key, "foo", Access::Write));
    assert!(!a.allowed(Resource::Key, "bar", Access::Read));
    assert!(
        !a.allowed(Resource::Key, "foo/child", Access::Read),
        "an exact rule covers only its name"
    );
}

#[test]
fn longest_prefix_wins() {
    let a = authz(
        &[r#"key_prefix "" { policy = "read" }
             key_prefix "foo/" { policy = "deny" }
             key_prefix "foo/bar/" { policy = "write" }
             key_prefix "é" { policy = "write" }"#],
        Default::Deny,
    );
    assert!(a.allowed(Resource::Key, "foo/bar/baz", Access::Write));
    assert!(
        a.allowed(Resource::Key, "foo/bar/", Access::Write),
        "a prefix covers itself"
    );
    assert!(!a.allowed(Resource::Key, "foo/bar", Access::Read));
    assert!(!a.allowed(Resource::Key, "foo/", Access::Read));
    assert!(a.allowed(Resource::Key, "fo", Access::Read));
    assert!(!a.allowed(Resource::Key, "fo", Access::Write));
    assert!(a.allowed(Resource::Key, "éa", Access::Write));
    assert!(!a.allowed(Resource::Key, "e", Access::Write));
}

#[test]
fn merge_precedence_is_deny_write_list_read() {
    let read = r#"key "k" { policy = "read" } operator = "read""#;
    let list = r#"key "k" { policy = "list" }"#;
    let write = r#"key "k" { policy = "write" } operator = "write""#;
    let deny = r#"key "k" { policy = "deny" } operator = "deny""#;
    let k = |a: &Authorizer, acc| a.allowed(Resource::Key, "k", acc);

    let a = authz(&[read, list], Default::Deny);
    assert!(k(&a, Access::List) && !k(&a, Access::Write), "list > read");
    let a = authz(&[list, write], Default::Deny);
    assert!(k(&a, Access::Write), "write > list");
    let a = authz(&[write, read], Default::Deny);
    assert!(k(&a, Access::Write), "write > read, in any order");
    assert!(a.allowed(Resource::Operator, "", Access::Write));
    let a = authz(&[write, deny, read], Default::Allow);
    assert!(!k(&a, Access::Read), "deny > write");
    assert!(!a.allowed(Resource::Operator, "", Access::Read));

    // Within one policy, repeats merge the same way; services merge policy and
    // intentions apart.
    let a = authz(
        &[
            r#"key "k" { policy = "write" } key "k" { policy = "read" }"#,
            r#"service "web" { policy = "read" intentions = "write" }"#,
            r#"service "web" { policy = "write" }"#,
        ],
        Default::Deny,
    );
    assert!(k(&a, Access::Write));
    assert!(a.allowed(Resource::Service, "web", Access::Write));
    assert!(a.allowed(Resource::Intention, "web", Access::Write));
}

#[test]
fn list_is_a_key_level_only() {
    assert_eq!(
        error(r#"service "x" { policy = "list" }"#),
        RulesError::Invalid(r#"Invalid service policy: "x" has policy "list""#.into())
    );
    assert_eq!(
        error(r#"operator = "list""#).to_string(),
        r#"Invalid operator policy: "list""#
    );
    assert_eq!(
        error(r#"service "x" { policy = "read" intentions = "list" }"#).to_string(),
        r#"Invalid service intentions policy: "x" has intentions "list""#
    );
    let a = authz(&[r#"key "x" { policy = "list" }"#], Default::Deny);
    assert!(a.allowed(Resource::Key, "x", Access::List));
    assert!(a.allowed(Resource::Key, "x", Access::Read));
    assert!(!a.allowed(Resource::Key, "x", Access::Write));
    let a = authz(&[r#"key "x" { policy = "read" }"#], Default::Allow);
    assert!(
        !a.allowed(Resource::Key, "x", Access::List),
        "read is not list"
    );
}

#[test]
fn default_allow_never_grants_acl_nor_snapshot() {
    let a = Authorizer::new(&[], Default::Allow);
    for acc in ACCESSES {
        assert!(!a.allowed(Resource::Acl, "", acc), "acl:{acc}");
    }
    assert!(!a.snapshot());
    for r in Resource::ALL.into_iter().filter(|r| *r != Resource::Acl) {
        assert!(a.allowed(r, "x", Access::Write), "{r}");
        assert!(a.read_all(r), "{r}");
    }
    assert!(a.key_write_prefix(""));
    assert!(a.service_write_any());
    // A rule still decides over the default.
    let a = authz(&[r#"acl = "write""#], Default::Allow);
    assert!(a.allowed(Resource::Acl, "", Access::Write) && a.snapshot());
    let a = authz(&[r#"acl = "read""#], Default::Allow);
    assert!(a.allowed(Resource::Acl, "", Access::Read) && !a.snapshot());
}

#[test]
fn default_deny_grants_nothing() {
    let a = Authorizer::new(&[], Default::Deny);
    assert!(answers(&a).iter().all(|x| !x));
    let a = authz(&[""], Default::Deny);
    assert!(answers(&a).iter().all(|x| !x));
}

#[test]
fn mesh_and_peering_fall_back_to_operator() {
    let a = authz(&[r#"operator = "write""#], Default::Deny);
    assert!(a.allowed(Resource::Mesh, "", Access::Write));
    assert!(a.allowed(Resource::Peering, "", Access::Write));
    let a = authz(&[r#"operator = "write" mesh = "read""#], Default::Deny);
    assert!(a.allowed(Resource::Mesh, "", Access::Read));
    assert!(
        !a.allowed(Resource::Mesh, "", Access::Write),
        "mesh set: operator not used"
    );
    assert!(a.allowed(Resource::Peering, "", Access::Write));
    let a = authz(&[r#"operator = "deny""#], Default::Allow);
    assert!(!a.allowed(Resource::Mesh, "", Access::Read));
    assert!(!a.allowed(Resource::Peering, "", Access::Read));
    let a = authz(&[r#"key_prefix "" { policy = "read" }"#], Default::Allow);
    assert!(
        a.allowed(Resource::Mesh, "", Access::Write),
        "neither set: default"
    );
}

#[test]
fn intentions_come_from_service_rules() {
    let a = authz(
        &[r#"service "web" { policy = "write" }
             service "db" { policy = "deny" }
             service "api" { policy = "read" intentions = "write" }
             service_prefix "ro-" { policy = "read" }"#],
        Default::Allow,
    );
    let i = |seg, acc| a.allowed(Resource::Intention, seg, acc);
    assert!(i("web", Access::Read), "policy write, no intentions: read");
    assert!(!i("web", Access::Write));
    assert!(
        !i("db", Access::Read),
        "policy deny: deny, over the default allow"
    );
    assert!(i("api", Access::Write), "explicit intentions");
    assert!(i("ro-x", Access::Read) && !i("ro-x", Access::Write));
    assert!(i("other", Access::Write), "no service rule: the default");
    // "*": read if any destination is readable, write only if all are writable.
    assert!(i("*", Access::Read));
    assert!(!i("*", Access::Write));
    let all = authz(
        &[r#"service_prefix "" { policy = "write" intentions = "write" }"#],
        Default::Deny,
    );
    assert!(all.allowed(Resource::Intention, "*", Access::Write));
    let none = authz(
        &[r#"service_prefix "" { policy = "deny" }"#],
        Default::Allow,
    );
    assert!(!none.allowed(Resource::Intention, "*", Access::Read));
}

#[test]
fn key_write_prefix_needs_write_on_everything_under_it() {
    let a = authz(&[r#"key_prefix "" { policy = "write" }"#], Default::Deny);
    assert!(a.key_write_prefix("foo/"));
    let a = authz(
        &[r#"key_prefix "" { policy = "write" }
             key "foo/secret" { policy = "read" }"#],
        Default::Deny,
    );
    assert!(!a.key_write_prefix("foo/"), "a read-only key under it");
    assert!(!a.key_write_prefix("fo"), "prefixes are byte prefixes");
    assert!(a.key_write_prefix("bar/"));
    assert!(a.allowed(Resource::Key, "foo/other", Access::Write));
    let a = authz(
        &[r#"key_prefix "foo/" { policy = "read" }"#],
        Default::Allow,
    );
    assert!(!a.key_write_prefix("foo/"), "the covering prefix is read");
    assert!(!a.key_write_prefix("foo/bar/"));
    assert!(a.key_write_prefix("bar/"), "nothing covers it: the default");
    let a = authz(
        &[r#"key_prefix "foo/" { policy = "write" }
             key_prefix "foo/bar/" { policy = "deny" }"#],
        Default::Deny,
    );
    assert!(!a.key_write_prefix("foo/"));
    assert!(a.key_write_prefix("foo/baz/"));
    assert!(
        !a.key_write_prefix("bar/"),
        "nothing covers it: the default deny"
    );
    let a = authz(&[r#"key "x/y" { policy = "deny" }"#], Default::Allow);
    assert!(!a.key_write_prefix("x/"), "a deny under it, default allow");
    assert!(
        !a.key_write_prefix("x/y"),
        "an exact rule equal to the prefix counts"
    );
}

#[test]
fn read_all_fails_on_any_deny() {
    let base = r#"service_prefix "" { policy = "read" } node_prefix "" { policy = "write" }"#;
    let a = authz(&[base], Default::Deny);
    assert!(a.read_all(Resource::Service) && a.read_all(Resource::Node));
    let a = authz(
        &[base, r#"service "secret" { policy = "deny" }"#],
        Default::Allow,
    );
    assert!(!a.read_all(Resource::Service));
    assert!(a.read_all(Resource::Node));
    let a = authz(&[r#"node "n" { policy = "deny" }"#], Default::Allow);
    assert!(!a.read_all(Resource::Node), "a deny with no \"\" rule");
    let a = authz(&[r#"node "n" { policy = "read" }"#], Default::Deny);
    assert!(!a.read_all(Resource::Node), "no \"\" rule: the default");
    let a = authz(&[r#"node "n" { policy = "read" }"#], Default::Allow);
    assert!(a.read_all(Resource::Node));
}

#[test]
fn service_write_any_finds_any_write() {
    let a = authz(
        &[r#"service_prefix "" { policy = "deny" } service "x" { policy = "write" }"#],
        Default::Deny,
    );
    assert!(a.service_write_any());
    let a = authz(
        &[r#"service_prefix "" { policy = "read" }"#],
        Default::Allow,
    );
    assert!(
        !a.service_write_any(),
        "the \"\" rule decides when nothing writes"
    );
}

#[test]
fn service_identity_writes_itself_and_its_sidecar_and_reads_the_rest() {
    let rules = service_identity_rules("web");
    assert!(rules.starts_with("\nservice \"web\" {\n\tpolicy = \"write\"\n}"));
    let a = authz(&[&rules], Default::Deny);
    assert!(a.allowed(Resource::Service, "web", Access::Write));
    assert!(a.allowed(Resource::Service, "web-sidecar-proxy", Access::Write));
    assert!(!a.allowed(Resource::Service, "web2", Access::Write));
    assert!(a.allowed(Resource::Service, "db", Access::Read));
    assert!(a.allowed(Resource::Node, "any-node", Access::Read));
    assert!(!a.allowed(Resource::Node, "any-node", Access::Write));
    assert!(a.allowed(Resource::Intention, "web", Access::Read));
    assert!(!a.allowed(Resource::Intention, "web", Access::Write));
    assert!(!a.allowed(Resource::Key, "k", Access::Read));
    assert!(a.service_write_any() && a.read_all(Resource::Service));

    let a = authz(&[&node_identity_rules("n1")], Default::Deny);
    assert!(a.allowed(Resource::Node, "n1", Access::Write));
    assert!(!a.allowed(Resource::Node, "n2", Access::Read));
    assert!(a.allowed(Resource::Service, "any", Access::Read));
}

#[test]
fn templates_render_with_a_valid_name_only() {
    let names: Vec<&str> = templates().iter().map(|t| t.name).collect();
    assert_eq!(
        names,
        [
            "builtin/service",
            "builtin/node",
            "builtin/dns",
            "builtin/nomad-server",
            "builtin/api-gateway",
            "builtin/nomad-client"
        ]
    );
    let svc = template("builtin/service").unwrap_or_else(|| panic!("no builtin/service"));
    assert_eq!(svc.id, "00000000-0000-0000-0000-000000000003");
    let rules = render(svc, Some("api")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        rules,
        service_identity_rules("api"),
        "the same rules as the identity"
    );
    assert!(template("builtin/workload-identity").is_none());

    let invalid =
        "has an invalid name. Only lowercase alphanumeric characters, '-' and '_' are allowed";
    for bad in [None, Some(""), Some("Web"), Some("web-"), Some("a\"b")] {
        let e = render(svc, bad).err().map(|e| e.to_string());
        let want = format!("service identity {:?} {invalid}", bad.unwrap_or_default());
        assert_eq!(e, Some(want), "{bad:?}");
    }
    let node = template("builtin/node").unwrap_or_else(|| panic!("no builtin/node"));
    assert_eq!(render(node, Some("n1")), Ok(node_identity_rules("n1")));
    assert_eq!(
        render(node, Some("N1")).err().map(|e| e.to_string()),
        Some(format!("node identity \"N1\"  {invalid}"))
    );
    let gw = template("builtin/api-gateway").unwrap_or_else(|| panic!("no api-gateway"));
    assert_eq!(
        render(gw, None),
        Err(RulesError::Template("name is required".into()))
    );
    // Every template renders to rules that parse; those without variables ignore a name.
    for t in templates() {
        let rules = render(t, Some("x-1")).unwrap_or_else(|e| panic!("{}: {e}", t.name));
        assert!(!rules.contains("{{"), "{}", t.name);
        policy(&rules);
        assert_eq!(t.needs_name, !t.schema.is_empty(), "{}", t.name);
        if !t.needs_name {
            assert_eq!(render(t, None), Ok(rules));
        }
    }
    let dns = template("builtin/dns").unwrap_or_else(|| panic!("no builtin/dns"));
    let a = authz(&[dns.template], Default::Deny);
    assert!(a.allowed(Resource::Query, "q", Access::Read));
    assert!(!a.allowed(Resource::Key, "k", Access::Read));
}

#[test]
fn synthetic_policy_id_is_consuls_hex_of_rules_then_empty_fnv() {
    assert_eq!(format!("{:032x}", fnv1a_128(b"")), FNV128A_EMPTY);
    // Published FNV-1a 128 test vectors.
    assert_eq!(
        format!("{:032x}", fnv1a_128(b"a")),
        "d228cb696f1a8caf78912b704e4a8964"
    );
    assert_eq!(
        format!("{:032x}", fnv1a_128(b"foobar")),
        "343e1662793c64bf6f0d3597ba446f18"
    );
    assert_eq!(synthetic_policy_id(""), "6c62272e07bb014262b821756295c58d");
    assert_eq!(
        synthetic_policy_id("\nnode"),
        "0a6e6f64656c62272e07bb014262b821756295c58d"
    );
}

#[test]
fn name_rules() {
    for ok in ["a", "web", "web-1_x", "0", &"a".repeat(256)] {
        assert!(valid_identity_name(ok), "{ok}");
    }
    for bad in ["", "Web", "-web", "web_", "we b", "wéb", &"a".repeat(257)] {
        assert!(!valid_identity_name(bad), "{bad}");
    }
    assert!(valid_policy_name("My-Policy_1") && valid_policy_name(&"P".repeat(128)));
    assert!(!valid_policy_name("") && !valid_policy_name(&"P".repeat(129)));
    assert!(!valid_policy_name("a.b") && !valid_policy_name("a b"));
    assert!(valid_role_name(&"R".repeat(256)) && !valid_role_name(&"R".repeat(257)));
}

#[test]
fn bad_rules_are_refused_with_what_is_wrong() {
    let parse_err = |rules: &str, want: &str| match error(rules) {
        RulesError::Parse(msg) => assert!(msg.contains(want), "{rules:?}: {msg}"),
        other => panic!("{rules:?}: {other:?}"),
    };
    parse_err(
        r#"key "foo { policy = read }"#,
        "At 1:5: literal not terminated",
    );
    parse_err(
        "key \"foo\" {\n  policy = \"read\"\n",
        "At 3:1: object expected closing RBRACE got: EOF",
    );
    parse_err(
        r#"key_prefix { policy = "read" }"#,
        r#"key_prefix "policy": expected a { ... } block, got a string"#,
    );
    parse_err(
        r#"key "a" { policy = { x = "y" } }"#,
        r#"At 1:11: key "a": policy: expected a string, got an object"#,
    );
    parse_err(r#"acl = { }"#, "acl: expected a string, got an object");
    parse_err(
        r#"acl "x" { }"#,
        "acl: expected a string, got a labelled block",
    );
    parse_err(r#"key = "x""#, "key: expected labelled rules");
    parse_err(
        r#"key "a" "b" { policy = "write" }"#,
        r#"key "a" "b": a rule takes one label"#,
    );
    parse_err(
        r#"service "web" = { policy = "read" }"#,
        "nested object expected: LBRACE got: ASSIGN",
    );
    parse_err(
        r#"service "web" { policy }"#,
        "key 'policy' expected start of object",
    );
    parse_err(r#"key "a" { policy = "read" } }"#, "got: RBRACE");
    parse_err("/* open", "comment not terminated");
    parse_err(r#"key "\q" { }"#, "illegal char escape");
    parse_err(r#"acl = wri"#, "Unknown token: IDENT");
    parse_err(r#"{"key": {"a": {"policy": "read"}}"#, "EOF while parsing");
    parse_err(
        r#"{"key": {"a": {"policy": {}}}}"#,
        r#"key "a": policy: expected a string, got an object"#,
    );
    let full = error(r#"key "a" { policy = "read" } }"#).to_string();
    assert!(
        full.starts_with("Failed to parse ACL rules: At 1:29:"),
        "{full}"
    );

    let invalid = |rules: &str, want: &str| {
        assert_eq!(error(rules), RulesError::Invalid(want.into()), "{rules:?}");
    };
    invalid(
        r#"key_prefix "foo/" { policy = "wrte" }"#,
        r#"Invalid key_prefix policy: "foo/" has policy "wrte""#,
    );
    invalid(r#"acl = "x""#, r#"Invalid acl policy: "x""#);
    invalid(r#"key "a" { }"#, r#"Invalid key policy: "a" has policy """#);
    invalid(
        r#"agent "n" { policy = 1 }"#,
        r#"Invalid agent policy: "n" has policy "1""#,
    );
    invalid(
        r#"session_prefix "" { policy = true }"#,
        r#"Invalid session_prefix policy: "" has policy "true""#,
    );
    invalid(
        r#"service_prefix "" { policy = "read" intentions = "sometimes" }"#,
        r#"Invalid service_prefix intentions policy: "" has intentions "sometimes""#,
    );
    invalid(
        r#"{"query": {"q": {"policy": "nope"}}}"#,
        r#"Invalid query policy: "q" has policy "nope""#,
    );
    // Consul's order: acl first, then the blocks in struct order, then the other scalars.
    invalid(
        r#"peering = "no" key "k" { policy = "no" } acl = "no""#,
        r#"Invalid acl policy: "no""#,
    );
    invalid(
        r#"peering = "no" event "e" { policy = "no" }"#,
        r#"Invalid event policy: "e" has policy "no""#,
    );
    // A shape error anywhere wins over a bad level.
    assert!(matches!(
        error(r#"acl = "no" peering = {}"#),
        RulesError::Parse(_)
    ));
}

#[test]
fn truncated_and_mangled_rules_never_panic() {
    let docs = [
        global_management_rules().to_owned(),
        r#"key "a\"b\x41\u00e9\101" { policy = "read", }
           service "web" { policy = "write" intentions = "read" meta = [1, { a = "b" }, []] }
           # comment
           // comment
           /* comment */ key_prefix = { "x" = { policy = "list" } } op = -1.5e+3"#
            .to_owned(),
        r#"{"key_prefix": [{"foo/": [{"policy": "read"}]}], "operator": null, "x": [1, 2.5, true]}"#
            .to_owned(),
    ];
    let specials = [
        '{', '}', '"', '=', '[', ']', ',', '#', '/', '*', '\\', '\n', 'é',
    ];
    for doc in &docs {
        for (i, _) in doc.char_indices() {
            let _ = parse(&doc[..i]);
            for c in specials {
                let mut mangled = doc.clone();
                mangled.insert(i, c);
                let _ = parse(&mangled);
            }
        }
        assert!(parse(doc).is_ok(), "{doc}");
    }
}

#[test]
fn deep_nesting_is_refused_not_overflowed() {
    let deep_list = format!("a = {}", "[".repeat(100_000));
    assert!(matches!(parse(&deep_list), Err(RulesError::Parse(_))));
    let deep_blocks = "a { ".repeat(100_000);
    assert!(matches!(parse(&deep_blocks), Err(RulesError::Parse(_))));
    let deep_json = format!("{}{}", r#"{"a": "#.repeat(100_000), "1");
    assert!(matches!(parse(&deep_json), Err(RulesError::Parse(_))));
}

#[test]
fn names_round_trip_and_authorizer_is_shareable() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Authorizer>();
    send_sync::<Policy>();
    for r in Resource::ALL {
        assert_eq!(Resource::parse(r.as_str()), Some(r));
    }
    for a in ACCESSES {
        assert_eq!(Access::parse(&a.as_str().to_uppercase()), Some(a));
    }
    assert_eq!(Level::parse("DeNy"), Some(Level::Deny));
    assert_eq!(Level::parse("none"), None);
    assert_eq!(Default::Allow.as_str(), "allow");
    assert_eq!(
        "acl = \"read\""
            .parse::<Policy>()
            .map(|p| p.scalar(Resource::Acl)),
        Ok(Some(Level::Read))
    );
}
