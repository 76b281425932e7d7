//! Consul's built-in templated policies (`agent/structs/acl_templated_policy.go` and the
//! `acltemplatedpolicy/policies/ce/*.hcl` they embed): a template's rules with `{{.Name}}`
//! filled in become a synthetic policy. Rendering checks the name as Consul's
//! `ValidateTemplatedPolicy` does.

use super::builtin::valid_identity_name;
use super::RulesError;

/// A built-in templated policy, as `GET /v1/acl/templated-policies` describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Template {
    /// `builtin/service`...
    pub name: &'static str,
    /// Consul's fixed ID (`00000000-0000-0000-0000-000000000003`...).
    pub id: &'static str,
    /// Does the template need a `name` variable (its schema requires one)?
    pub needs_name: bool,
    /// The rules, with `{{.Name}}` where the name goes.
    pub template: &'static str,
    /// Consul's description.
    pub description: &'static str,
    /// The JSON schema of the variables, as served; `""` when there are none.
    pub schema: &'static str,
}

/// The schema of the templates that take a name (service, node, api-gateway), as served.
const NAME_SCHEMA: &str = "{
\t\"type\": \"object\",
\t\"properties\": {
\t\t\"name\": { \"type\": \"string\", \"$ref\": \"#/definitions/min-length-one\" }
\t},
\t\"required\": [\"name\"],
\t\"definitions\": {
\t\t\"min-length-one\": {
\t\t\t\t\"type\": \"string\",
\t\t\t\t\"minLength\": 1
\t\t}
\t}
}";

/// The six templates `api/acl.go` names, by ID (…0007, workload-identity, was removed).
/// Texts are Consul's `policies/ce/*.hcl`, indentation (tabs or two spaces) included, as
/// it goes into the synthetic policy and its ID.
static TEMPLATES: [Template; 6] = [
    Template {
        name: "builtin/service",
        id: "00000000-0000-0000-0000-000000000003",
        needs_name: true,
        template: "
service \"{{.Name}}\" {
\tpolicy = \"write\"
}
service \"{{.Name}}-sidecar-proxy\" {
\tpolicy = \"write\"
}
service_prefix \"\" {
\tpolicy = \"read\"
}
node_prefix \"\" {
\tpolicy = \"read\"
}",
        description: "Gives the token or role permissions to register a service and discover \
                      services in the Consul catalog. It also gives the specified service's \
                      sidecar proxy the permission to discover and route traffic to other \
                      services.",
        schema: NAME_SCHEMA,
    },
    Template {
        name: "builtin/node",
        id: "00000000-0000-0000-0000-000000000004",
        needs_name: true,
        template: "
node \"{{.Name}}\" {
\tpolicy = \"write\"
}
service_prefix \"\" {
\tpolicy = \"read\"
}",
        description: "Gives the token or role permissions for a register an agent/node into the \
                      catalog. A node is typically a consul agent but can also be a physical \
                      server, cloud instance or a container.",
        schema: NAME_SCHEMA,
    },
    Template {
        name: "builtin/dns",
        id: "00000000-0000-0000-0000-000000000005",
        needs_name: false,
        template: "
node_prefix \"\" {
\tpolicy = \"read\"
}
service_prefix \"\" {
\tpolicy = \"read\"
}
query_prefix \"\" {
\tpolicy = \"read\"
}",
        description: "Gives the token or role permissions for the Consul DNS to query services \
                      in the network.",
        schema: "",
    },
    Template {
        name: "builtin/nomad-server",
        id: "00000000-0000-0000-0000-000000000006",
        needs_name: false,
        // The 1.17/1.18 text (the docs'); later snapshots changed it (see the spec, §2.5).
        template: "
acl = \"write\"
agent_prefix \"\" {
  policy = \"read\"
}
node_prefix \"\" {
  policy = \"read\"
}
service_prefix \"\" {
  policy = \"write\"
}",
        description: "Gives the token or role permissions required for integration with a \
                      nomad server.",
        schema: "",
    },
    Template {
        name: "builtin/api-gateway",
        id: "00000000-0000-0000-0000-000000000008",
        needs_name: true,
        template: "mesh = \"read\"
node_prefix \"\" {
\tpolicy = \"read\"
}
service_prefix \"\" {
\tpolicy = \"read\"
}
service \"{{.Name}}\" {
\tpolicy = \"write\"
}",
        description: "Gives the token or role permissions for a Consul api gateway",
        schema: NAME_SCHEMA,
    },
    Template {
        name: "builtin/nomad-client",
        id: "00000000-0000-0000-0000-000000000009",
        needs_name: false,
        template: "agent_prefix \"\" {
  policy = \"read\"
}
node_prefix \"\" {
  policy = \"read\"
}
service_prefix \"\" {
  policy = \"write\"
}
key_prefix \"\" {
  policy = \"read\"
}",
        description: "Gives the token or role permissions required for integration with a \
                      nomad client.",
        schema: "",
    },
];

/// The built-in templated policies.
pub fn templates() -> &'static [Template] {
    &TEMPLATES
}

/// The built-in templated policy called `name` (`builtin/service`...).
pub fn template(name: &str) -> Option<&'static Template> {
    TEMPLATES.iter().find(|t| t.name == name)
}

/// The rules of `t` for the variable `name` (`{{.Name}}` filled in). A template that needs a
/// name refuses a missing, empty or invalid one (lowercase alphanumerics, `-` and `_`, as
/// for identities) with Consul's text; a template without variables ignores `name`.
pub fn render(t: &Template, name: Option<&str>) -> Result<String, RulesError> {
    if !t.needs_name {
        return Ok(t.template.to_owned());
    }
    let name = name.unwrap_or_default();
    if !valid_identity_name(name) {
        return Err(RulesError::Template(match t.name {
            // Consul's text, its doubled space included.
            "builtin/node" => format!(
                "node identity {name:?}  has an invalid name. Only lowercase alphanumeric \
                 characters, '-' and '_' are allowed"
            ),
            // Consul checks only the schema here (`minLength: 1`).
            _ if name.is_empty() && t.name != "builtin/service" => "name is required".to_owned(),
            _ => format!(
                "service identity {name:?} has an invalid name. Only lowercase alphanumeric \
                 characters, '-' and '_' are allowed"
            ),
        }));
    }
    Ok(t.template.replace("{{.Name}}", name))
}
