//! [`Authorizer`]: Consul's `policyAuthorizer` over a token's merged policies, chained to the
//! default policy (`ChainedAuthorizer` + `RootAuthorizer`). Each check first asks the rules;
//! a rule that applies decides (allow or deny), and only when none applies does the default
//! decide. Decisions follow `acl/policy_authorizer.go` check by check.

use std::collections::BTreeMap;
use std::ops::Bound;

use super::policy::Rules;
use super::{Access, Default, Level, Policy, Resource};

/// What a token may do: its policies merged, then the default policy. Immutable, so cheap to
/// share between requests (`Arc<Authorizer>`); every check is a few map lookups.
#[derive(Debug, Clone)]
pub struct Authorizer {
    root: Root,
    /// By `Resource as usize`; only the scalar resources' entries are ever set.
    scalars: [Option<Level>; Resource::ALL.len()],
    /// By `Resource as usize`; the scalar resources' tables stay empty.
    tables: [Table; Resource::ALL.len()],
}

/// The end of the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Root {
    /// ACLs disabled, or a management token: everything.
    Manage,
    Allow,
    Deny,
}

/// One rule kind, ready for longest-prefix lookups.
#[derive(Debug, Clone, PartialEq, Default)]
struct Table {
    exact: BTreeMap<String, Level>,
    prefix: BTreeMap<String, Level>,
    /// The distinct lengths of the prefixes, longest first: a lookup tries only these.
    prefix_lens: Vec<usize>,
}

/// A rule set's answer before the default policy has its say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decision {
    Allow,
    Deny,
    /// No rule applies.
    Default,
}

// === impl Authorizer ===

impl Authorizer {
    /// The policies merged (for each scalar and each (kind, exact or prefix, label) the
    /// strongest level: deny > write > list > read), ending in `default`.
    pub fn new(policies: &[Policy], default: Default) -> Authorizer {
        let mut merged = Policy::default();
        for p in policies {
            merged.merge(p);
        }
        let mut scalars = [None; Resource::ALL.len()];
        for (r, l) in &merged.scalars {
            scalars[*r as usize] = Some(*l);
        }
        let mut tables: [Table; Resource::ALL.len()] = std::array::from_fn(|_| Table::default());
        for (r, rules) in &merged.rules {
            if *r != Resource::Intention {
                tables[*r as usize] = Table::new(rules.clone());
            }
        }
        let service = merged.rules.get(&Resource::Service);
        let written = merged.rules.get(&Resource::Intention);
        tables[Resource::Intention as usize] = Table::new(intentions(service, written));
        Authorizer {
            root: match default {
                Default::Allow => Root::Allow,
                Default::Deny => Root::Deny,
            },
            scalars,
            tables,
        }
    }

    /// Everything allowed, `acl` and snapshots included: ACLs disabled, or a management token
    /// resolved without its policies (Consul's `ManageAll`).
    pub fn manage_all() -> Authorizer {
        Authorizer {
            root: Root::Manage,
            scalars: [None; Resource::ALL.len()],
            tables: std::array::from_fn(|_| Table::default()),
        }
    }

    /// May the token do `access` on `segment` of `r`? The exact rule for `segment` decides,
    /// else the longest prefix rule (`""` covers everything), else the default. Scalar
    /// resources ignore `segment`; `mesh` and `peering` use `operator` when unset. For
    /// [`Resource::Intention`] the segment is the destination service, and `"*"` asks about
    /// every destination (read: any allowed; write: all allowed). [`Access::List`] is a KV
    /// access; on any other resource it is checked as [`Access::Read`].
    pub fn allowed(&self, r: Resource, segment: &str, access: Access) -> bool {
        let access = if access == Access::List && r != Resource::Key {
            Access::Read
        } else {
            access
        };
        let decision = match r {
            Resource::Mesh | Resource::Peering => match self.scalars[r as usize] {
                Some(l) => enforce(l, access),
                None => self.scalar(Resource::Operator, access),
            },
            _ if r.is_scalar() => self.scalar(r, access),
            Resource::Intention if segment == "*" => {
                let table = self.table(r);
                match access {
                    Access::Write => table.all_allowed(Access::Write),
                    _ => table.any_allowed(Access::Read),
                }
            }
            _ => self
                .table(r)
                .get(segment)
                .map_or(Decision::Default, |l| enforce(l, access)),
        };
        self.resolve(decision, r == Resource::Acl)
    }

    /// May the token delete every key under `prefix` (`DELETE /v1/kv/<prefix>?recurse`)?
    /// Denied when the longest prefix rule covering `prefix` is not write, or when any rule
    /// under `prefix` (exact or prefix) is not write; allowed when a covering prefix rule is
    /// write; otherwise the default decides.
    pub fn key_write_prefix(&self, prefix: &str) -> bool {
        let table = self.table(Resource::Key);
        let base = match table.longest_prefix(prefix) {
            Some(Level::Write) => Decision::Allow,
            Some(_) => return false,
            None => Decision::Default,
        };
        let under = |m: &BTreeMap<String, Level>| {
            m.range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
                .take_while(|(k, _)| k.starts_with(prefix))
                .any(|(_, l)| *l != Level::Write)
        };
        if under(&table.exact) || under(&table.prefix) {
            return false;
        }
        self.resolve(base, false)
    }

    /// May the token read every name of `r` (Consul's `NodeReadAll` / `ServiceReadAll`)?
    /// Denied when any rule of the kind denies read; allowed when the `""` prefix rule
    /// allows it; otherwise the default decides. Scalar resources answer their read check.
    pub fn read_all(&self, r: Resource) -> bool {
        if r.is_scalar() {
            return self.allowed(r, "", Access::Read);
        }
        self.resolve(self.table(r).all_allowed(Access::Read), false)
    }

    /// Does some service rule grant write (Consul's `ServiceWriteAny`: "is this a service's
    /// token?")?
    pub fn service_write_any(&self) -> bool {
        let decision = self.table(Resource::Service).any_allowed(Access::Write);
        self.resolve(decision, false)
    }

    /// May the token save and restore snapshots? Needs `acl = "write"` (or management).
    pub fn snapshot(&self) -> bool {
        self.resolve(self.scalar(Resource::Acl, Access::Write), true)
    }

    fn scalar(&self, r: Resource, access: Access) -> Decision {
        self.scalars[r as usize].map_or(Decision::Default, |l| enforce(l, access))
    }

    fn table(&self, r: Resource) -> &Table {
        &self.tables[r as usize]
    }

    /// The default policy's answer when no rule decided. `acl_gated`: an `acl` or snapshot
    /// check, which Consul's default `allow` (AllowAll) still denies.
    fn resolve(&self, d: Decision, acl_gated: bool) -> bool {
        match (d, self.root) {
            (Decision::Allow, _) => true,
            (Decision::Deny, _) => false,
            (Decision::Default, Root::Manage) => true,
            (Decision::Default, Root::Allow) => !acl_gated,
            (Decision::Default, Root::Deny) => false,
        }
    }
}

/// The intention rules Consul derives from service rules: each `service`/`service_prefix`
/// rule gives an intention rule with its written `intentions`, or when none was written,
/// `read` for a read/write policy and `deny` for a deny policy.
fn intentions(service: Option<&Rules>, written: Option<&Rules>) -> Rules {
    let derive = |l: Level| match l {
        Level::Read | Level::Write => Level::Read,
        Level::Deny | Level::List => Level::Deny,
    };
    let mut out = Rules::default();
    let Some(service) = service else {
        return out;
    };
    for (name, l) in &service.exact {
        let w = written.and_then(|w| w.exact.get(name)).copied();
        out.exact
            .insert(name.clone(), w.unwrap_or_else(|| derive(*l)));
    }
    for (name, l) in &service.prefix {
        let w = written.and_then(|w| w.prefix.get(name)).copied();
        out.prefix
            .insert(name.clone(), w.unwrap_or_else(|| derive(*l)));
    }
    out
}

/// Consul's `enforce`: what a rule's level says about an access.
fn enforce(l: Level, access: Access) -> Decision {
    let allowed = match l {
        Level::Write => true,
        Level::List => matches!(access, Access::List | Access::Read),
        Level::Read => access == Access::Read,
        Level::Deny => false,
    };
    if allowed {
        Decision::Allow
    } else {
        Decision::Deny
    }
}

// === impl Table ===

impl Table {
    fn new(rules: Rules) -> Table {
        let mut prefix_lens: Vec<usize> = rules.prefix.keys().map(String::len).collect();
        prefix_lens.sort_unstable_by(|a, b| b.cmp(a));
        prefix_lens.dedup();
        Table {
            exact: rules.exact,
            prefix: rules.prefix,
            prefix_lens,
        }
    }

    /// The exact rule for `name`, else the longest prefix rule covering it.
    fn get(&self, name: &str) -> Option<Level> {
        self.exact
            .get(name)
            .copied()
            .or_else(|| self.longest_prefix(name))
    }

    /// The longest prefix rule covering `name` (one equal to it included).
    fn longest_prefix(&self, name: &str) -> Option<Level> {
        self.prefix_lens
            .iter()
            .filter_map(|&n| name.get(..n))
            .find_map(|p| self.prefix.get(p).copied())
    }

    fn levels(&self) -> impl Iterator<Item = Level> + '_ {
        self.prefix.values().chain(self.exact.values()).copied()
    }

    /// Consul's `anyAllowed`: allowed if any rule allows; otherwise what the `""` prefix rule
    /// says (deny), or no decision.
    fn any_allowed(&self, access: Access) -> Decision {
        if self.levels().any(|l| enforce(l, access) == Decision::Allow) {
            return Decision::Allow;
        }
        self.prefix
            .get("")
            .map_or(Decision::Default, |l| enforce(*l, access))
    }

    /// Consul's `allAllowed`: denied if any rule denies; otherwise what the `""` prefix rule
    /// says (allow), or no decision.
    fn all_allowed(&self, access: Access) -> Decision {
        if self.levels().any(|l| enforce(l, access) == Decision::Deny) {
            return Decision::Deny;
        }
        self.prefix
            .get("")
            .map_or(Decision::Default, |l| enforce(*l, access))
    }
}
