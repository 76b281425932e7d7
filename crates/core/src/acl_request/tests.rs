//! ACL bodies as py-consul, the consul CLI and careless clients send them.

use serde_json::json;

use super::*;

#[test]
fn uuids_are_checked_by_shape_and_keep_their_case() {
    assert!(is_uuid("00000000-DEAD-BEEF-0000-000000000000"));
    assert!(is_uuid("6c62272e-07bb-0142-62b8-21756295c58d"));
    for bad in [
        "unknown",
        "",
        "00000000-0000-0000-0000-00000000000",
        "0000000g-0000-0000-0000-000000000000",
        "00000000-0000-0000-0000-0000000000000",
    ] {
        assert!(!is_uuid(bad), "{bad}");
    }
    let t = token(
        &json!({"AccessorID": "00000000-DEAD-BEEF-0000-000000000000"}),
        true,
    )
    .unwrap();
    assert_eq!(
        t.accessor_id.as_deref(),
        Some("00000000-DEAD-BEEF-0000-000000000000")
    );
    assert!(token(&json!({"AccessorID": "unknown"}), true).is_err());
}

#[test]
fn reserved_ids_cannot_be_chosen() {
    let e = token(
        &json!({"AccessorID": "00000000-0000-0000-0000-000000000002"}),
        true,
    )
    .unwrap_err();
    assert!(e.to_string().contains("reserved"), "{e}");
    assert!(token(
        &json!({"SecretID": "00000000-0000-0000-0000-000000000001"}),
        true
    )
    .is_err());
}

#[test]
fn a_token_may_have_nothing_but_an_id() {
    let t = token(
        &json!({"SecretID": "DEADBEEF-0000-0000-0000-000000000000"}),
        true,
    )
    .unwrap();
    assert_eq!(t.description, "");
    assert!(t.policies.is_empty() && t.service_identities.is_empty());
}

#[test]
fn token_links_identities_and_templates() {
    let t = token(&json!({
        "description": "x",
        "Policies": [{"ID": "00000000-0000-0000-0000-000000000001"}, {"Name": "read-only"}],
        "Roles": [{"Name": "ops"}],
        "ServiceIdentities": [{"ServiceName": "web", "Datacenters": ["dc2"]}, {"ServiceName": "web", "Datacenters": ["dc1"]}],
        "NodeIdentities": [{"NodeName": "deaf", "Datacenter": "dc1"}],
        "TemplatedPolicies": [{"TemplateName": "builtin/service", "TemplateVariables": {"Name": "my-service"}}],
        "ExpirationTTL": "10m",
    }), true)
    .unwrap();
    assert_eq!(
        t.policies,
        [
            Link::Id("00000000-0000-0000-0000-000000000001".into()),
            Link::Name("read-only".into())
        ]
    );
    assert_eq!(t.roles, [Link::Name("ops".into())]);
    // Repeats of one service are merged, their datacenters united.
    assert_eq!(t.service_identities.len(), 1);
    assert_eq!(t.service_identities[0].datacenters, ["dc1", "dc2"]);
    assert_eq!(t.node_identities[0].node_name, "deaf");
    let tp = &t.templated_policies[0];
    assert_eq!(tp.template_variables.as_ref().unwrap().name, "my-service");
    // Consul's wire form: lower-case `name`.
    assert_eq!(
        serde_json::to_value(tp).unwrap(),
        json!({"TemplateName": "builtin/service", "TemplateVariables": {"name": "my-service"}})
    );
    assert_eq!(t.expiration_ttl, Some(Duration::from_secs(600)));
}

#[test]
fn bad_tokens_are_refused_with_the_field() {
    let cases = [
        (json!({"Bogus": 1}), "bogus: unknown field"),
        (json!({"Policies": [{}]}), "Policies[0]"),
        (json!({"Policies": "global-management"}), "Policies"),
        (
            json!({"ServiceIdentities": [{"ServiceName": ""}]}),
            "missing the service name",
        ),
        (
            json!({"ServiceIdentities": [{"ServiceName": "Web!"}]}),
            "invalid name",
        ),
        (
            json!({"NodeIdentities": [{"NodeName": "n1"}]}),
            "missing the datacenter",
        ),
        (
            json!({"TemplatedPolicies": [{"TemplateName": "builtin/nope"}]}),
            "does not exist",
        ),
        (
            json!({"TemplatedPolicies": [{"TemplateName": "builtin/service"}]}),
            "TemplateVariables",
        ),
        (
            json!({"Local": true, "ServiceIdentities": [{"ServiceName": "web", "Datacenters": ["dc1"]}]}),
            "local token",
        ),
        (
            json!({"ExpirationTTL": "10m", "ExpirationTime": "2030-01-01T00:00:00Z"}),
            "cannot both",
        ),
        (json!({"AuthMethod": "jwt"}), "Login"),
        (json!({"Description": "a", "description": "b"}), "same key"),
        (json!([1]), "object"),
    ];
    for (body, want) in cases {
        let e = token(&body, true).unwrap_err().to_string();
        assert!(e.contains(want), "{body}: {e}");
    }
}

#[test]
fn policies_roles_methods_and_rules_parse() {
    let p = policy(&json!({"name": "test-policy", "Description": "original"})).unwrap();
    assert_eq!((p.name.as_str(), p.id), ("test-policy", None));
    assert!(policy(&json!({"Description": "x"}))
        .unwrap_err()
        .to_string()
        .contains("no Name"));
    assert!(policy(&json!({"Name": "bad name"})).is_err());

    let r = role(&json!({"Name": "test-role", "ServiceIdentities": [{"ServiceName": "web"}], "NodeIdentities": [{"NodeName": "node-1", "Datacenter": "dc1"}]})).unwrap();
    assert_eq!(r.service_identities[0].service_name, "web");
    assert!(role(&json!({"Name": ""})).is_err());

    let pem = "-----BEGIN PUBLIC KEY-----\nMFkw\n-----END PUBLIC KEY-----";
    let m = auth_method(&json!({"Name": "test-jwt", "Type": "jwt", "Config": {"JWTValidationPubKeys": [pem], "BoundIssuer": "i"}})).unwrap();
    assert_eq!(m.config["BoundIssuer"], "i");
    assert!(auth_method(&json!({"Name": "m", "Type": "ldap"})).is_err());
    assert!(auth_method(&json!({"Name": "m", "Type": "jwt", "Config": {}})).is_err());
    assert!(auth_method(
        &json!({"Name": "m", "Type": "jwt", "Config": {"JWTValidationPubKeys": ["not a key"]}})
    )
    .is_err());

    let b = binding_rule(&json!({"AuthMethod": "test-jwt", "BindType": "service", "BindName": "svc", "Selector": "value.iss==\"x\""})).unwrap();
    assert_eq!(b.bind_type, "service");
    assert!(
        binding_rule(&json!({"AuthMethod": "m", "BindType": "user", "BindName": "x"})).is_err()
    );
    assert!(binding_rule(&json!({"BindType": "service", "BindName": "x"})).is_err());
}

#[test]
fn an_update_may_repeat_the_tokens_own_ids() {
    let body =
        json!({"AccessorID": "00000000-0000-0000-0000-000000000002", "SecretID": "anonymous"});
    assert!(
        token(&body, true).is_err(),
        "reserved and not a UUID on create"
    );
    let t = token(&body, false).unwrap();
    assert_eq!(t.secret_id.as_deref(), Some("anonymous"));
}
