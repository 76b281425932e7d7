//! Consul's built-in and synthetic policies (`agent/structs/acl.go`, `acl_ce.go`): the two
//! built-in policies' IDs and exact rules, the rules a service or node identity stands for,
//! the ID Consul gives a synthetic policy, and the name rules for identities, policies and
//! roles.

/// The built-in `global-management` policy.
pub const GLOBAL_MANAGEMENT_ID: &str = "00000000-0000-0000-0000-000000000001";

/// The built-in `builtin/global-read-only` policy.
pub const GLOBAL_READ_ONLY_ID: &str = "00000000-0000-0000-0000-000000000002";

const GLOBAL_MANAGEMENT_RULES: &str = "
acl = \"write\"
agent_prefix \"\" {
\tpolicy = \"write\"
}
event_prefix \"\" {
\tpolicy = \"write\"
}
key_prefix \"\" {
\tpolicy = \"write\"
}
keyring = \"write\"
node_prefix \"\" {
\tpolicy = \"write\"
}
operator = \"write\"
mesh = \"write\"
peering = \"write\"
query_prefix \"\" {
\tpolicy = \"write\"
}
service_prefix \"\" {
\tpolicy = \"write\"
\tintentions = \"write\"
}
session_prefix \"\" {
\tpolicy = \"write\"
}";

/// The global-management text with every `write` made `read`, as Consul builds it.
const GLOBAL_READ_ONLY_RULES: &str = "
acl = \"read\"
agent_prefix \"\" {
\tpolicy = \"read\"
}
event_prefix \"\" {
\tpolicy = \"read\"
}
key_prefix \"\" {
\tpolicy = \"read\"
}
keyring = \"read\"
node_prefix \"\" {
\tpolicy = \"read\"
}
operator = \"read\"
mesh = \"read\"
peering = \"read\"
query_prefix \"\" {
\tpolicy = \"read\"
}
service_prefix \"\" {
\tpolicy = \"read\"
\tintentions = \"read\"
}
session_prefix \"\" {
\tpolicy = \"read\"
}";

/// FNV-1a 128 of nothing: what Go's `fnv.New128a().Sum(b)` appends to `b`.
pub(super) const FNV128A_EMPTY: &str = "6c62272e07bb014262b821756295c58d";

/// The exact `Rules` of the built-in `global-management` policy (CE): write on everything.
pub fn global_management_rules() -> &'static str {
    GLOBAL_MANAGEMENT_RULES
}

/// The exact `Rules` of the built-in `builtin/global-read-only` policy: read on everything.
pub fn global_read_only_rules() -> &'static str {
    GLOBAL_READ_ONLY_RULES
}

/// The rules a service identity stands for: write on the service and its sidecar proxy,
/// read on every service and node. `name` must be a valid identity name (it is not escaped).
pub fn service_identity_rules(name: &str) -> String {
    format!(
        "\nservice \"{name}\" {{\n\tpolicy = \"write\"\n}}\n\
         service \"{name}-sidecar-proxy\" {{\n\tpolicy = \"write\"\n}}\n\
         service_prefix \"\" {{\n\tpolicy = \"read\"\n}}\n\
         node_prefix \"\" {{\n\tpolicy = \"read\"\n}}"
    )
}

/// The rules a node identity stands for: write on the node, read on every service. `name`
/// must be a valid identity name (it is not escaped).
pub fn node_identity_rules(name: &str) -> String {
    format!(
        "\nnode \"{name}\" {{\n\tpolicy = \"write\"\n}}\n\
         service_prefix \"\" {{\n\tpolicy = \"read\"\n}}"
    )
}

/// The ID Consul gives the synthetic policy with these rules. Consul writes
/// `fmt.Sprintf("%x", fnv.New128a().Sum([]byte(rules)))`, and Go's `Sum(b)` *appends* the
/// hash (of nothing, since nothing was written) to `b`: so the ID is the rules' bytes in hex
/// followed by the FNV-1a-128 of the empty input. Kept so IDs match Consul's.
pub fn synthetic_policy_id(rules: &str) -> String {
    let mut out = String::with_capacity(rules.len() * 2 + FNV128A_EMPTY.len());
    for b in rules.bytes() {
        out.push_str(&format!("{b:02x}"));
    }
    out.push_str(&format!("{:032x}", fnv1a_128(b"")));
    out
}

/// FNV-1a, 128 bits.
pub(super) fn fnv1a_128(data: &[u8]) -> u128 {
    const OFFSET: u128 = 0x6c62272e07bb014262b821756295c58d;
    const PRIME: u128 = 0x0000000001000000000000000000013b;
    data.iter()
        .fold(OFFSET, |h, b| (h ^ u128::from(*b)).wrapping_mul(PRIME))
}

/// A service or node identity name: `^[a-z0-9]([a-z0-9\-_]*[a-z0-9])?$`, 1 to 256 bytes.
pub fn valid_identity_name(name: &str) -> bool {
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = name.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(&first), Some(&last)) => {
            bytes.len() <= 256
                && alnum(first)
                && alnum(last)
                && bytes.iter().all(|&b| alnum(b) || b == b'-' || b == b'_')
        }
        _ => false,
    }
}

/// A policy name: `^[A-Za-z0-9\-_]{1,128}$`.
pub fn valid_policy_name(name: &str) -> bool {
    valid_object_name(name, 128)
}

/// A role name: `^[A-Za-z0-9\-_]{1,256}$`.
pub fn valid_role_name(name: &str) -> bool {
    valid_object_name(name, 256)
}

fn valid_object_name(name: &str, max: usize) -> bool {
    (1..=max).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}
